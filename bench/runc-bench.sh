#!/usr/bin/env bash
# Runtime latency: `keel-runc run` vs `runc run` vs `crun run` of /bin/true from one busybox bundle, interleaved
# (one of each per round, so machine noise hits all three alike), N rounds (default 150, at least 100).
# Prints median and p90 in ms and the ratios keel/crun and keel/runc.
#
# crun 1.8 refuses hybrid cgroup layouts (cgroup2 at /sys/fs/cgroup/unified owning a controller): the whole
# benchmark runs in a private mount namespace where /sys/fs/cgroup/unified/cgroup.controllers is bind-mounted
# from an empty file, the same for all three runtimes.
#
# Usage: bench/runc-bench.sh [ROUNDS]      env: KEEL_RUNC=path (default: the static musl multi-call init, built
#        and run through a link named keel-runc: what the image ships and build/bin/keel-runc is)
#        KEEL_RUNC_BEFORE=path: also time that keel-runc (e.g. an older build) in the same rounds, for before/after.
set -euo pipefail

ROUNDS=${1:-${ROUNDS:-150}}
(( ROUNDS >= 100 )) || { echo "runc-bench: use at least 100 rounds" >&2; exit 2; }
REPO=$(cd "$(dirname "$0")/.." && pwd)

if [[ "${1:-}" != "--inner" && -z "${KEEL_BENCH_INNER:-}" ]]; then
    [[ $(id -u) == 0 ]] || { echo "runc-bench: needs root" >&2; exit 2; }
    need=()
    command -v runc >/dev/null || need+=(runc)
    command -v crun >/dev/null || need+=(crun)
    [[ -x /bin/busybox ]] || need+=(busybox-static)
    if (( ${#need[@]} )); then
        apt-get install -y -q "${need[@]}" >/dev/null
    fi
    if [[ -z "${KEEL_RUNC:-}" ]]; then
        # What the image ships and build/bin/keel-runc is: the static musl multi-call binary, run as keel-runc.
        TGT=${CARGO_TARGET_DIR:-$REPO/target}
        echo "runc-bench: building the multi-call init (release, static musl) as keel-runc" >&2
        (cd "$REPO" && cargo build -q --release --target x86_64-unknown-linux-musl -p keel-init --bin init)
        mkdir -p "$TGT/runc-bench"
        ln -sf "$TGT/x86_64-unknown-linux-musl/release/init" "$TGT/runc-bench/keel-runc"
        KEEL_RUNC=$TGT/runc-bench/keel-runc
    fi
    export KEEL_RUNC ROUNDS KEEL_RUNC_BEFORE=${KEEL_RUNC_BEFORE:-}
    WORK=$(mktemp -d /tmp/runc-bench.XXXXXX)
    export WORK
    trap 'rm -rf "$WORK"' EXIT
    # Bundle: busybox rootfs, runc's default spec running /bin/true (no terminal, writable root).
    mkdir -p "$WORK/bundle/rootfs/bin" "$WORK/bundle/rootfs/"{proc,dev,sys,tmp}
    cp /bin/busybox "$WORK/bundle/rootfs/bin/busybox"
    for c in sh true; do ln -s busybox "$WORK/bundle/rootfs/bin/$c"; done
    (cd "$WORK/bundle" && runc spec)
    python3 - "$WORK/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["root"]["readonly"] = False
# runc's default lists ambient caps without inheritable ones (runc only warns); make the set consistent.
caps = c["process"]["capabilities"]
caps["inheritable"] = caps.get("ambient", [])
json.dump(c, open(p, "w"), indent=1)
PY
    : > "$WORK/empty"
    MOUNTS='true'
    if [[ -e /sys/fs/cgroup/unified/cgroup.controllers ]]; then
        MOUNTS='mount --make-rprivate / && mount --bind "$WORK/empty" /sys/fs/cgroup/unified/cgroup.controllers'
    fi
    exec unshare -m bash -c "$MOUNTS && KEEL_BENCH_INNER=1 exec bash '$0' $ROUNDS"
fi

# ---- inside the private mount namespace ----
B=$WORK/bundle
declare -A T
run_one() { # name, command...
    local name=$1; shift
    local t0=$EPOCHREALTIME
    "$@" >/dev/null 2>"$WORK/err" || { echo "runc-bench: $name failed: $(cat "$WORK/err")" >&2; exit 1; }
    local t1=$EPOCHREALTIME
    T[$name]+="$(( (${t1/./} - ${t0/./}) )) "
}
# Warm-up (page cache, binaries).
for i in 1 2 3; do
    "$KEEL_RUNC" --root "$WORK/keel" run -b "$B" w$i >/dev/null
    runc --root "$WORK/runc" run -b "$B" w$i >/dev/null
    crun --root "$WORK/crun" run -b "$B" w$i >/dev/null
    [[ -z "$KEEL_RUNC_BEFORE" ]] || "$KEEL_RUNC_BEFORE" --root "$WORK/before" run -b "$B" w$i >/dev/null
done
for ((i = 0; i < ROUNDS; i++)); do
    run_one keel "$KEEL_RUNC" --root "$WORK/keel" run -b "$B" k$i
    run_one runc runc --root "$WORK/runc" run -b "$B" r$i
    run_one crun crun --root "$WORK/crun" run -b "$B" c$i
    [[ -z "$KEEL_RUNC_BEFORE" ]] || run_one before "$KEEL_RUNC_BEFORE" --root "$WORK/before" run -b "$B" b$i
done
stats() { # microsecond samples -> "median p90" in ms
    tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {
        m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; p = a[int(NR*0.9 + 0.999)];
        printf "%.2f %.2f\n", m/1000, p/1000 }'
}
read -r km kp < <(stats "${T[keel]}")
read -r rm rp < <(stats "${T[runc]}")
read -r cm cp < <(stats "${T[crun]}")
echo "runtime latency, run /bin/true from a busybox bundle, $ROUNDS interleaved rounds (ms):"
printf '  %-10s median %7.2f   p90 %7.2f\n' keel-runc "$km" "$kp" runc "$rm" "$rp" crun "$cm" "$cp"
if [[ -n "$KEEL_RUNC_BEFORE" ]]; then
    read -r bm bp < <(stats "${T[before]}")
    printf '  %-10s median %7.2f   p90 %7.2f   (%s)\n' before "$bm" "$bp" "$KEEL_RUNC_BEFORE"
    awk -v k="$km" -v b="$bm" -v c="$cm" 'BEGIN { printf "  before/crun %.3f   keel/before %.3f\n", b/c, k/b }'
fi
awk -v k="$km" -v c="$cm" -v r="$rm" 'BEGIN { printf "  ratio keel/crun %.3f   keel/runc %.3f   (target keel/crun <= 0.5)\n", k/c, k/r }'
