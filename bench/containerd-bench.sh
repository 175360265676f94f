#!/usr/bin/env bash
# containerd latency: `ctr run --rm --rootfs` of /bin/true through containerd 1.6 and its runc shim
# (containerd-shim-runc-v2), with --runc-binary keel-runc vs runc vs crun, interleaved (one of each per round, so
# machine noise hits all alike), N rounds (default 30). Prints median and p90 in ms, the ratios, and containerd's
# and one shim's RSS for scale.
#
# A private containerd (own root, state, socket under a temp dir; CRI plugin off) runs for the benchmark and is
# stopped at the end. Every run passes --cpu-shares 0 (no cpu limit in the spec), the same for all three runtimes,
# so that the figures compare the runtimes alone (keel-runc applies ctr's default 1024 as runc does, in the v1 cpu
# hierarchy on hybrid hosts: tests/tests/containerd.rs, default_cpu_shares_are_accepted).
#
# crun 1.8 refuses hybrid cgroup layouts (cgroup2 at /sys/fs/cgroup/unified owning a controller): everything
# (containerd, shims, runtimes) runs in a private mount namespace where /sys/fs/cgroup/unified/cgroup.controllers
# is bind-mounted from an empty file, the same for all three runtimes (as bench/runc-bench.sh does).
#
# Usage: bench/containerd-bench.sh [ROUNDS]   env: KEEL_RUNC=path (default: build release static keel-runc)
set -euo pipefail

ROUNDS=${1:-${ROUNDS:-30}}
(( ROUNDS >= 5 )) || { echo "containerd-bench: use at least 5 rounds" >&2; exit 2; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
TRIPLE=x86_64-unknown-linux-gnu

if [[ -z "${KEEL_BENCH_INNER:-}" ]]; then
    [[ $(id -u) == 0 ]] || { echo "containerd-bench: needs root" >&2; exit 2; }
    need=()
    command -v containerd >/dev/null && command -v ctr >/dev/null && command -v containerd-shim-runc-v2 >/dev/null ||
        need+=(containerd)
    command -v runc >/dev/null || need+=(runc)
    command -v crun >/dev/null || need+=(crun)
    [[ -x /bin/busybox ]] || need+=(busybox-static)
    if (( ${#need[@]} )); then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null ||
            { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
    fi
    if [[ -z "${KEEL_RUNC:-}" ]]; then
        TGT=${CARGO_TARGET_DIR:-$REPO/target}
        echo "containerd-bench: building keel-runc (release, static)" >&2
        (cd "$REPO" && RUSTFLAGS="-C target-feature=+crt-static" \
            cargo build -q --release -p keel-runtime --bin keel-runc --target $TRIPLE)
        KEEL_RUNC=$TGT/$TRIPLE/release/keel-runc
    fi
    KEEL_RUNC=$(realpath "$KEEL_RUNC")
    WORK=$(mktemp -d /tmp/containerd-bench.XXXXXX)
    export KEEL_RUNC ROUNDS WORK
    trap 'rm -rf "$WORK"' EXIT
    mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/"{proc,dev,sys,tmp,etc,run}
    cp /bin/busybox "$WORK/rootfs/bin/busybox"
    for c in sh true sleep; do ln -s busybox "$WORK/rootfs/bin/$c"; done
    cat >"$WORK/config.toml" <<EOF
version = 2
root = "$WORK/root"
state = "$WORK/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.tracing",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$WORK/containerd.sock"
[ttrpc]
  address = "$WORK/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$WORK/opt"
EOF
    : >"$WORK/empty"
    MOUNTS='true'
    if [[ -e /sys/fs/cgroup/unified/cgroup.controllers ]]; then
        MOUNTS='mount --make-rprivate / && mount --bind "$WORK/empty" /sys/fs/cgroup/unified/cgroup.controllers'
    fi
    # Not exec: the EXIT trap above removes $WORK afterwards.
    unshare -m bash -c "$MOUNTS && KEEL_BENCH_INNER=1 exec bash '$0' $ROUNDS"
    exit $?
fi

# ---- inside the private mount namespace ----
NS=bench
SOCK=$WORK/containerd.sock
containerd --config "$WORK/config.toml" >"$WORK/containerd.log" 2>&1 &
CPID=$!
ids=()
cleanup() {
    for id in "${ids[@]}"; do
        ctr --address "$SOCK" -n $NS task kill -s SIGKILL "$id" >/dev/null 2>&1 || true
        ctr --address "$SOCK" -n $NS task delete --force "$id" >/dev/null 2>&1 || true
        ctr --address "$SOCK" -n $NS container delete "$id" >/dev/null 2>&1 || true
    done
    kill "$CPID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$CPID" 2>/dev/null || true
    wait "$CPID" 2>/dev/null || true
    rmdir /sys/fs/cgroup/unified/$NS /sys/fs/cgroup/*/$NS /run/containerd/runc/$NS 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 150); do ctr --address "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
ctr --address "$SOCK" version >/dev/null || { echo "containerd-bench: containerd did not start:" >&2; tail -20 "$WORK/containerd.log" >&2; exit 1; }

declare -A RT=([keel-runc]=$KEEL_RUNC [runc]=$(command -v runc) [crun]=$(command -v crun))
ctr_run() { # runtime-binary id cmd...
    local bin=$1 id=$2; shift 2
    ctr --address "$SOCK" -n $NS run --rm --cpu-shares 0 --fifo-dir "$WORK/fifo" --runc-binary "$bin" \
        --rootfs "$WORK/rootfs" "$id" "$@"
}
# Warm-up; a runtime that fails here is left out (with its error), the others still run.
names=()
for n in keel-runc runc crun; do
    if ctr_run "${RT[$n]}" "w-$n" /bin/true >/dev/null 2>"$WORK/err" && ctr_run "${RT[$n]}" "w2-$n" /bin/true >/dev/null 2>>"$WORK/err"; then
        names+=("$n")
    else
        echo "containerd-bench: $n does not work with containerd here: $(tr '\n' ' ' <"$WORK/err")" >&2
    fi
done
declare -A T
for ((i = 0; i < ROUNDS; i++)); do
    for n in "${names[@]}"; do
        t0=$EPOCHREALTIME
        ctr_run "${RT[$n]}" "$n-$i" /bin/true >/dev/null 2>"$WORK/err" ||
            { echo "containerd-bench: $n round $i failed: $(cat "$WORK/err")" >&2; exit 1; }
        t1=$EPOCHREALTIME
        T[$n]+="$(( ${t1/./} - ${t0/./} )) "
    done
done
stats() { # microsecond samples -> "median p90" in ms
    tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {
        m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; p = a[int(NR*0.9 + 0.999)];
        printf "%.2f %.2f\n", m/1000, p/1000 }'
}
echo "containerd 1.6 + containerd-shim-runc-v2: ctr run --rm --rootfs of /bin/true, $ROUNDS interleaved rounds (ms):"
declare -A M
for n in "${names[@]}"; do
    read -r m p < <(stats "${T[$n]}")
    M[$n]=$m
    printf '  %-10s median %7.2f   p90 %7.2f\n' "$n" "$m" "$p"
done
if [[ -n "${M[keel-runc]:-}" ]]; then
    line="  ratio"
    for n in runc crun; do
        [[ -n "${M[$n]:-}" ]] && line+=$(awk -v k="${M[keel-runc]}" -v o="${M[$n]}" -v n="$n" 'BEGIN { printf "   keel/%s %.3f", n, k/o }')
    done
    echo "$line"
fi

# Memory for scale: containerd (after the runs, no task) and the shim of one running keel-runc task.
rss() { awk '/^VmRSS/ { printf "%.1f MiB", $2/1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }
echo "  RSS containerd (idle, after the runs): $(rss "$CPID")"
id=rss-keel
ids+=("$id")
if ctr --address "$SOCK" -n $NS run -d --cpu-shares 0 --fifo-dir "$WORK/fifo" --runc-binary "$KEEL_RUNC" \
    --rootfs "$WORK/rootfs" "$id" /bin/sleep 60 >/dev/null 2>"$WORK/err"; then
    tpid=$(ctr --address "$SOCK" -n $NS task ls | awk -v id="$id" '$1 == id { print $2 }')
    spid=$(awk '{ print $4 }' "/proc/$tpid/stat" 2>/dev/null || echo "")
    echo "  RSS containerd-shim-runc-v2 (one running task): $(rss "$spid")   containerd with it: $(rss "$CPID")"
else
    echo "  (shim RSS: detached keel-runc task failed: $(cat "$WORK/err"))"
fi
