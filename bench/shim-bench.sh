#!/usr/bin/env bash
# keel's containerd shim vs containerd's runc shim, through containerd 1.6, in one run:
#   runc-v2+runc       containerd-shim-runc-v2 exec'ing runc       (containerd's default)
#   runc-v2+keel-runc  containerd-shim-runc-v2 exec'ing keel-runc  (--runc-binary)
#   keel-shim          containerd-shim-keel-v1, keel's runtime in-process (--runtime io.containerd.keel.v1)
# 1. latency of `ctr run --rm --rootfs` of /bin/true, interleaved (one of each per round, so machine noise hits all
#    alike), N rounds (default 30): median and p90 in ms, and the ratios against runc-v2+runc;
# 2. memory per running container: K detached `sleep` tasks per configuration (default 5; one shim each), the
#    shims' RSS and Pss per container (the sleep processes themselves are the same for all and not counted).
#
# A private containerd (own root, state, socket under a temp dir; CRI plugin off) runs for the benchmark, with a
# directory holding containerd-shim-keel-v1 first on its PATH; it is stopped at the end.
#
# Usage: bench/shim-bench.sh [ROUNDS [K]]   env: KEEL_SHIM=path, KEEL_RUNC=path (default: build release static)
set -euo pipefail

ROUNDS=${1:-${ROUNDS:-30}}
K=${2:-5}
(( ROUNDS >= 5 )) || { echo "shim-bench: use at least 5 rounds" >&2; exit 2; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
TRIPLE=x86_64-unknown-linux-gnu
TGT=${CARGO_TARGET_DIR:-$REPO/target}

# shellcheck source=bench/containerd-lib.sh
. "$REPO/bench/containerd-lib.sh"
BENCH=shim-bench
NS=shimbench
[[ $(id -u) == 0 ]] || { echo "shim-bench: needs root" >&2; exit 2; }
bench_deps runc
if [[ -z "${KEEL_RUNC:-}" || -z "${KEEL_SHIM:-}" ]]; then
    echo "shim-bench: building keel-runc and containerd-shim-keel-v1 (release, static)" >&2
    (cd "$REPO" && RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build -q --release -p keel-runtime --bin keel-runc -p containerd-shim-keel-v1 --target $TRIPLE)
    KEEL_RUNC=${KEEL_RUNC:-$TGT/$TRIPLE/release/keel-runc}
    KEEL_SHIM=${KEEL_SHIM:-$TGT/$TRIPLE/release/containerd-shim-keel-v1}
fi
KEEL_RUNC=$(realpath "$KEEL_RUNC")
KEEL_SHIM=$(realpath "$KEEL_SHIM")
RUNC=$(command -v runc)
WORK=$(mktemp -d /tmp/shim-bench.XXXXXX)
mkdir -p "$WORK/bin"
ln -s "$KEEL_SHIM" "$WORK/bin/containerd-shim-keel-v1"
bench_prepare
bench_start_containerd

NAMES=(runc-v2+runc runc-v2+keel-runc keel-shim)
declare -A OPTS=(
    [runc-v2+runc]="--runc-binary $RUNC"
    [runc-v2+keel-runc]="--runc-binary $KEEL_RUNC"
    [keel-shim]="--runtime io.containerd.keel.v1"
)
ctr_run() { # name id ctr-run-flags... -- cmd...
    local n=$1 id=$2; shift 2
    # shellcheck disable=SC2086
    ctr --address "$SOCK" -n $NS run --cpu-shares 0 --fifo-dir "$WORK/fifo" ${OPTS[$n]} "$@"
}
# Warm-up; a configuration that fails here is left out (with its error), the others still run.
names=()
for n in "${NAMES[@]}"; do
    if ctr_run "$n" w --rm --rootfs "$WORK/rootfs" "w-${n//+/-}" /bin/true >/dev/null 2>"$WORK/err" &&
        ctr_run "$n" w --rm --rootfs "$WORK/rootfs" "w2-${n//+/-}" /bin/true >/dev/null 2>>"$WORK/err"; then
        names+=("$n")
    else
        echo "shim-bench: $n does not work here: $(tr '\n' ' ' <"$WORK/err")" >&2
    fi
done
declare -A T
for ((i = 0; i < ROUNDS; i++)); do
    for n in "${names[@]}"; do
        t0=$EPOCHREALTIME
        ctr_run "$n" x --rm --rootfs "$WORK/rootfs" "${n//+/-}-$i" /bin/true >/dev/null 2>"$WORK/err" ||
            { echo "shim-bench: $n round $i failed: $(cat "$WORK/err")" >&2; exit 1; }
        t1=$EPOCHREALTIME
        T[$n]+="$(( ${t1/./} - ${t0/./} )) "
    done
done
echo "containerd 1.6: ctr run --rm --rootfs of /bin/true, $ROUNDS interleaved rounds (ms):"
declare -A M
for n in "${names[@]}"; do
    read -r m p < <(bench_stats "${T[$n]}")
    M[$n]=$m
    printf '  %-18s median %7.2f   p90 %7.2f' "$n" "$m" "$p"
    [[ -n "${M[runc-v2+runc]:-}" ]] && awk -v a="$m" -v b="${M[runc-v2+runc]}" 'BEGIN { printf "   %.2fx of runc-v2+runc", a/b }'
    echo
done

# Memory per running container: K detached tasks per configuration, interleaved; shim = parent of the task.
kib() { awk -v k="$1" '$1 == k":" { print $2; exit }' "$2" 2>/dev/null || echo 0; }
echo "memory per running container ($K detached sleep tasks each; the shims only):"
declare -A RSS PSS NSHIM
for ((i = 0; i < K; i++)); do
    for n in "${names[@]}"; do
        id="m-${n//+/-}-$i"
        ids+=("$id")
        ctr_run "$n" d -d --rootfs "$WORK/rootfs" "$id" /bin/sleep 600 >/dev/null 2>"$WORK/err" ||
            { echo "shim-bench: $n detached task failed: $(cat "$WORK/err")" >&2; exit 1; }
    done
done
sleep 1
for n in "${names[@]}"; do
    declare -A seen=()
    for ((i = 0; i < K; i++)); do
        tpid=$(ctr --address "$SOCK" -n $NS task ls | awk -v id="m-${n//+/-}-$i" '$1 == id { print $2 }')
        spid=$(awk '{ print $4 }' "/proc/$tpid/stat" 2>/dev/null || echo "")
        [[ -n "$spid" && -z "${seen[$spid]:-}" ]] || continue
        seen[$spid]=1
        RSS[$n]=$(( ${RSS[$n]:-0} + $(kib VmRSS "/proc/$spid/status") ))
        PSS[$n]=$(( ${PSS[$n]:-0} + $(kib Pss "/proc/$spid/smaps_rollup") ))
        NSHIM[$n]=$(( ${NSHIM[$n]:-0} + 1 ))
    done
    unset seen
    printf '  %-18s %d shims   RSS %6.2f MiB/container   Pss %6.2f MiB/container' "$n" "${NSHIM[$n]:-0}" \
        "$(awk -v r="${RSS[$n]:-0}" -v k="$K" 'BEGIN { print r/k/1024 }')" \
        "$(awk -v r="${PSS[$n]:-0}" -v k="$K" 'BEGIN { print r/k/1024 }')"
    [[ -n "${RSS[runc-v2+runc]:-}" ]] && awk -v a="${RSS[$n]:-0}" -v b="${RSS[runc-v2+runc]}" 'BEGIN { printf "   RSS %.3fx of runc-v2+runc", a/b }'
    echo
done
sz=$(stat -c %s "$KEEL_SHIM")
echo "  containerd-shim-keel-v1 binary: $(awk -v s="$sz" 'BEGIN { printf "%.2f MB", s/1e6 }') ($KEEL_SHIM)"
echo "  targets: keel-shim RSS <= 2 MiB per container; ctr run --rm <= 0.70x of runc-v2+runc"
