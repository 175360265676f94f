#!/usr/bin/env bash
# Boot benchmark (make bench): boots the demo and a 30-service image under QEMU TCG and prints
#  - the boot timeline in guest milliseconds, from the console's timestamps (kernel -> PID 1 start -> rc done ->
#    onboot done -> all services started), plus host wall time per boot;
#  - the memory of PID 1 and of every keel process (VmRSS and Pss, printed by the image's `memstat` service);
#  - the sizes of the in-image binary (what the initrd ships of keel: /sbin/init and its links) and of each initrd;
#  - a yes/NO verdict against each target: 30 services up within 1 s of guest time, PID 1 <= 1.5 MiB RSS, all keel
#    processes <= 4 MiB, keel in the image <= 2 MiB;
#  - a reference: the host's runc starting busybox bundles one at a time (`runc run -d`, as LinuxKit's init does)
#    inside the same kind of guest; REF_N containers (default 10) are measured and 30 extrapolated.
# Environment: KEEL_IMAGE_BIN, KEEL_INIT_BINARY, KEEL_KERNEL_CACHE (the Makefile sets them), REF_N, BENCH_REUSE.
set -euo pipefail
cd "$(dirname "$0")/.."

REL="${CARGO_TARGET_DIR:-$PWD/target}/x86_64-unknown-linux-gnu/release"
KI="${KEEL_IMAGE_BIN:-$REL/keel-image}"
INIT="${KEEL_INIT_BINARY:-}"
[ -n "$INIT" ] || { [ -x build/bin/init ] && INIT=$PWD/build/bin/init; } || INIT=$REL/init
KC="${KEEL_KERNEL_CACHE:-$PWD/build/kernel}"
OUT=build/bench
REF_N="${REF_N:-10}"
mkdir -p "$OUT"
for f in "$KI" "$INIT"; do [ -x "$f" ] || { echo "boot-bench: $f missing (make build)" >&2; exit 1; }; done

build() { # yaml name
    "$KI" build "$1" -o "$OUT/$2" --init-binary "$INIT" --kernel-cache "$KC" 2>&1 | grep -v '^keel-image: note' >&2
}
boot() { # name extra-args...
    local name=$1; shift
    local t0 t1
    t0=$(date +%s%N)
    "$KI" run "$OUT/$name" --no-autopoweroff --timeout 300 "$@" </dev/null >"$OUT/$name.log" 2>&1 || true
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 )) >"$OUT/$name.wall"
}
# First console timestamp (seconds) of a line matching an ERE.
ts() { { grep -aE "$2" "$OUT/$1.log" || true; } | head -1 | sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p'; }
lastts() { { grep -aE "$2" "$OUT/$1.log" || true; } | tail -1 | sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p'; }
ms() { [ -n "${1:-}" ] && awk -v s="$1" 'BEGIN { printf "%d", s * 1000 + 0.5 }' || echo "-"; }
diffms() { [ -n "${1:-}" ] && [ -n "${2:-}" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 + 0.5 }' || echo "-"; }

timeline() { # name
    local n=$1 rc rc_ms pid1 onb comp last
    rc=$(ts "$n" 'keel: rc:')
    rc_ms=$({ grep -aE 'keel: rc:' "$OUT/$n.log" || true; } | head -1 | sed -n 's/.* in \([0-9]*\) ms.*/\1/p')
    # PID 1 start: keelctl analyze says it ("PID 1 started X.XXXs after kernel boot"), else rc's end - duration.
    pid1=$({ grep -aoE 'PID 1 started [0-9.]+s' "$OUT/$n.log" || true; } | head -1 | sed 's/PID 1 started //; s/s$//')
    if [ -z "$pid1" ] && [ -n "$rc" ] && [ -n "$rc_ms" ]; then pid1=$(awk -v a="$rc" -v b="$rc_ms" 'BEGIN { printf "%.3f", a - b / 1000 }'); fi
    onb=$(ts "$n" 'keel: onboot done')
    comp=$(ts "$n" 'keel: (WARN )?boot complete')
    last=$(lastts "$n" 'keel: starting ')
    printf '  %-34s %8s ms\n' "kernel start -> PID 1 start" "$(ms "$pid1")"
    printf '  %-34s %8s ms  (+%s)\n' "rc (early setup) done" "$(ms "$rc")" "$(diffms "$pid1" "$rc")"
    [ -n "$onb" ] && printf '  %-34s %8s ms  (+%s)\n' "onboot done" "$(ms "$onb")" "$(diffms "$pid1" "$onb")"
    printf '  %-34s %8s ms  (+%s)\n' "last service spawned" "$(ms "$last")" "$(diffms "$pid1" "$last")"
    printf '  %-34s %8s ms  (+%s)   <- all services started/ready\n' "boot complete" "$(ms "$comp")" "$(diffms "$pid1" "$comp")"
    { grep -aE 'keel: (WARN )?boot complete' "$OUT/$n.log" || true; } | head -1 | sed 's/^/  console: /'
    printf '  %-34s %8s ms\n' "host wall time, QEMU start -> exit" "$(cat "$OUT/$n.wall")"
    if grep -aq 'reboot: Power down' "$OUT/$n.log"; then echo "  powered off cleanly"; else echo "  WARNING: no clean power-off (see $OUT/$n.log)"; fi
}

if [ -z "${BENCH_REUSE:-}" ]; then # BENCH_REUSE=1: only re-read the last run's consoles
    echo "== building images"
    build images/demo.yml demo
    build images/test/services30.yml services30
    build bench/runc-ref.yml runcref
    echo "== booting (TCG, one at a time)"
    boot demo --append keel.autopoweroff=2
    boot services30
    boot runcref --append "keel.ref_n=$REF_N"
fi

echo
echo "== boot timeline: demo (2 onboot steps incl. DHCP, 5 services), guest time since kernel start"
timeline demo
echo
echo "== boot timeline: 30 trivial services (+ memstat), guest time since kernel start"
timeline services30
pid1=$({ grep -aoE 'PID 1 started [0-9.]+s' "$OUT/services30.log" || true; } | head -1 | sed 's/PID 1 started //; s/s$//')
comp=$(ts services30 'keel: (WARN )?boot complete')
keel30=$(diffms "$pid1" "$comp")
kern30=$(ms "$comp")
if [ "$keel30" != "-" ]; then
    if [ "$keel30" -le 1000 ]; then v=yes; else v=NO; fi
    echo "  target: 30 services up within 1 s of guest time after PID 1 starts: $v ($keel30 ms; $kern30 ms after kernel start)"
fi

echo
echo "== memory (services30, after all services are up; KiB)"
if grep -aq 'memstat: rss' "$OUT/services30.log"; then
    grep -aoE 'memstat: rss .*' "$OUT/services30.log" | awk '
        { name = $3; pid = $4; rss = $6; pss = $7 }
        pid == 1 { p1r = rss; p1p = pss }
        # PID 1 runs from a sealed memfd copy of itself (its name is then "memfd:keel"): count it by pid.
        pid == 1 || name == "init" || name == "keel-reaper" { n++; r += rss; if (pss != "?") p += pss }
        { all_r += rss }
        END {
            printf "  PID 1:                           VmRSS %6d  Pss %6s\n", p1r, p1p
            printf "  keel processes (PID 1 + %2d per-service reapers): VmRSS sum %6d  Pss sum %6d\n", n - 1, r, p
            printf "  (VmRSS counts the shared pages of the one static binary in every process; Pss splits them)\n"
            printf "  every process in the guest:      VmRSS sum %6d\n", all_r
            printf "  targets: PID 1 <= 1536 KiB: %s; all keel processes <= 4096 KiB: %s (VmRSS sum), %s (Pss sum)\n", \
                (p1r <= 1536 ? "yes" : "NO"), (r <= 4096 ? "yes" : "NO"), (p <= 4096 ? "yes" : "NO")
        }'
    { grep -aoE 'memstat: pid1 .*' "$OUT/services30.log" || true; } | head -1 | sed 's/^memstat: pid1/  PID 1 by kind:/'
else
    echo "  no memstat lines on the console (see $OUT/services30.log)"
fi

echo
echo "== sizes"
# What the image ships of keel, read from the initrd itself: one multi-call binary, every other name a link to it.
printf '  init binary built (%s): %d KiB\n' "$INIT" $(( $(stat -L -c %s "$INIT") / 1024 ))
if command -v cpio >/dev/null; then
    ship=$(zcat -f "$OUT/services30/initrd.img" | cpio -itv --quiet 2>/dev/null |
        grep -E ' (\./)?(init|sbin/init|sbin/modprobe|usr/bin/keelctl|usr/bin/keel-runc|usr/bin/runc|sbin/keel-[a-z]*)( ->.*)?$' || true)
    echo "$ship" | sed 's/^/    /'
    # Regular files only (symlinks cost nothing; hard links show with a link count > 1 and are counted once).
    bytes=$(echo "$ship" | awk '$1 ~ /^-/ { if ($2 > 1) { if (!seen[$5]++) s += $5 } else s += $5 } END { print s + 0 }')
    if [ "$bytes" -gt 0 ]; then v=$([ "$bytes" -le 2097152 ] && echo yes || echo NO); else v="?"; fi
    printf '  keel in the image (regular files above, links once): %d KiB; target <= 2048 KiB: %s\n' $(( bytes / 1024 )) "$v"
else
    echo "  cpio missing: cannot list the initrd (make deps)"
fi
for n in demo services30; do
    printf '  %-11s initrd.img %6d KiB gz, kernel %6d KiB\n' "$n" $(( $(stat -c %s "$OUT/$n/initrd.img") / 1024 )) $(( $(stat -c %s "$OUT/$n/kernel") / 1024 ))
done

echo
echo "== reference: runc (host package, copied into the guest) starting busybox bundles one at a time, TCG"
if grep -aq 'runcref: started' "$OUT/runcref.log"; then
    grep -aoE 'runcref: started ref[0-9]+ [0-9.]+ [0-9.]+' "$OUT/runcref.log" | awk -v n30=30 -v keel="$keel30" '
        { d = ($5 - $4) * 1000; sum += d; k++; if (d > max) max = d }
        END {
            avg = sum / k
            printf "  runc run -d: %d containers, %.0f ms each on average (max %.0f ms) of guest time\n", k, avg, max
            printf "  30 containers with runc: ~%.0f ms (extrapolated from %d, one at a time as LinuxKit does)\n", avg * n30, k
            if (keel != "-" && keel > 0) printf "  keel, 30 services: %d ms from PID 1 start to all started -> runc/keel ratio %.1fx\n", keel, avg * n30 / keel
        }'
    grep -a 'runc run ref.* failed' "$OUT/runcref.log" | head -3 || true
else
    echo "  no runc measurements on the console (see $OUT/runcref.log)"
fi
