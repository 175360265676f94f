# Shared by bench/containerd-bench.sh and bench/shim-bench.sh (sourced, not run): a private containerd 1.6 (own
# root, state, socket and opt dir under $WORK; CRI plugin off), a busybox rootfs, the cleanup of the benchmark's
# tasks, and the median/p90 of latency samples. The caller sets WORK, NS and BENCH (its name, for messages).

# Install the Debian packages missing for: containerd (with ctr and the runc shim), busybox-static, and the runtime
# binaries named as arguments (runc, crun).
bench_deps() {
    local need=()
    command -v containerd >/dev/null && command -v ctr >/dev/null && command -v containerd-shim-runc-v2 >/dev/null ||
        need+=(containerd)
    local r
    for r in "$@"; do command -v "$r" >/dev/null || need+=("$r"); done
    [[ -x /bin/busybox ]] || need+=(busybox-static)
    if (( ${#need[@]} )); then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null ||
            { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
    fi
}

# $WORK/rootfs (busybox with sh, true, sleep) and $WORK/config.toml.
bench_prepare() {
    mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/"{proc,dev,sys,tmp,etc,run}
    cp /bin/busybox "$WORK/rootfs/bin/busybox"
    local c
    for c in sh true sleep; do ln -s busybox "$WORK/rootfs/bin/$c"; done
    cat >"$WORK/config.toml" <<CONFIG
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
CONFIG
}

# Start containerd (PATH with $WORK/bin first, if present: containerd finds shims there) and wait until it
# answers. Sets SOCK and CPID; ids+=(...) are the tasks bench_cleanup removes. The EXIT trap runs bench_cleanup.
ids=()
bench_start_containerd() {
    SOCK=$WORK/containerd.sock
    PATH="$WORK/bin:$PATH" containerd --config "$WORK/config.toml" >"$WORK/containerd.log" 2>&1 &
    CPID=$!
    trap bench_cleanup EXIT
    local _
    for _ in $(seq 150); do ctr --address "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
    ctr --address "$SOCK" version >/dev/null ||
        { echo "$BENCH: containerd did not start:" >&2; tail -20 "$WORK/containerd.log" >&2; exit 1; }
}

# Remove the tasks in ids, stop containerd, remove the namespace's cgroups and shim state dirs, and $WORK unless
# KEEP_WORK is set (a caller that removes it itself).
bench_cleanup() {
    local id _
    for id in "${ids[@]}"; do
        ctr --address "$SOCK" -n "$NS" task kill -s SIGKILL "$id" >/dev/null 2>&1 || true
        ctr --address "$SOCK" -n "$NS" task delete --force "$id" >/dev/null 2>&1 || true
        ctr --address "$SOCK" -n "$NS" container delete "$id" >/dev/null 2>&1 || true
    done
    kill "$CPID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$CPID" 2>/dev/null || true
    wait "$CPID" 2>/dev/null || true
    rmdir /sys/fs/cgroup/"$NS" /sys/fs/cgroup/unified/"$NS" /sys/fs/cgroup/*/"$NS" /run/containerd/runc/"$NS" \
        /run/containerd/keel/"$NS" 2>/dev/null || true
    [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$WORK"
}

# Microsecond samples -> "median p90" in ms.
bench_stats() {
    tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {
        m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; p = a[int(NR*0.9 + 0.999)];
        printf "%.2f %.2f\n", m/1000, p/1000 }'
}
