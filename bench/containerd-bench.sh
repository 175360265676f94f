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

# shellcheck source=bench/containerd-lib.sh
. "$REPO/bench/containerd-lib.sh"
BENCH=containerd-bench
NS=bench

if [[ -z "${KEEL_BENCH_INNER:-}" ]]; then
    [[ $(id -u) == 0 ]] || { echo "containerd-bench: needs root" >&2; exit 2; }
    bench_deps runc crun
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
    bench_prepare
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
KEEP_WORK=1 # the outer shell's EXIT trap removes it
bench_start_containerd

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
echo "containerd 1.6 + containerd-shim-runc-v2: ctr run --rm --rootfs of /bin/true, $ROUNDS interleaved rounds (ms):"
declare -A M
for n in "${names[@]}"; do
    read -r m p < <(bench_stats "${T[$n]}")
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
