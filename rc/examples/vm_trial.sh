#!/bin/sh
# Boot rc_probe (rc/examples/rc_probe.rs) as PID 1 of a Debian-kernel initramfs under QEMU TCG: switch root,
# full setup, coldplug of virtio modules, an overlay mount that makes the kernel call /sbin/modprobe, unmount_all,
# power off. A developer's trial harness, not a CI test (keel-tests owns VM tests).
#   KDL=/tmp/kdl/x (unpacked linux-image-6.1.0-*-amd64) PROFILE=release APPEND="..." rc/examples/vm_trial.sh
set -eu
KDL=${KDL:-/tmp/kdl/x}
W=${W:-/tmp/keel-rc-vm}
KVER=$(ls "$KDL/lib/modules" | head -n1)
MODS="$KDL/lib/modules/$KVER"
PROFILE=${PROFILE:-debug}
T=${CARGO_TARGET_DIR:-target}
flag=""; [ "$PROFILE" = release ] && flag=--release
RUSTFLAGS="-C target-feature=+crt-static" cargo build -q -p keel-rc --example rc_probe --target x86_64-unknown-linux-gnu $flag
BIN="$T/x86_64-unknown-linux-gnu/$PROFILE/examples/rc_probe"

rm -rf "$W"; mkdir -p "$W/full" "$W/root"
R="$W/root"; MD="$R/lib/modules/$KVER"
# index the whole package through symlinks, to pick the modules we want with their dependencies
(cd "$MODS" && find kernel -name '*.ko') | while read -r f; do mkdir -p "$W/full/$(dirname "$f")"; ln -s "$MODS/$f" "$W/full/$f"; done
cp "$MODS"/modules.order "$MODS"/modules.builtin "$MODS"/modules.builtin.modinfo "$W/full/"
"$BIN" write-index "$W/full"
mkdir -p "$MD" "$R/bin" "$R/sbin" "$R/etc/sysctl.d" "$R/dev" "$R/var/lib/keep"
cp "$MODS"/modules.order "$MODS"/modules.builtin "$MODS"/modules.builtin.modinfo "$MD/"
for m in overlay virtio_pci virtio_net virtio_blk; do
  grep -E "^kernel/.*/$m\.ko:" "$W/full/modules.dep" | tr -d ':' | tr ' ' '\n'
done | sort -u | while read -r f; do [ -n "$f" ] && mkdir -p "$MD/$(dirname "$f")" && cp "$MODS/$f" "$MD/$f"; done
"$BIN" write-index "$MD"
strip -o "$R/init" "$BIN"
ln -s /init "$R/sbin/modprobe"
cp "$(command -v busybox)" "$R/bin/busybox"; ln -s busybox "$R/bin/mount"
echo probe-vm > "$R/etc/hostname"
printf 'no.such.key = 1\n-also.missing = 2\n' > "$R/etc/sysctl.conf"
echo 'net.ipv4.ip_forward=1' > "$R/etc/sysctl.d/10-fwd.conf"
echo keep > "$R/var/lib/keep/file"
mknod "$R/dev/console" c 5 1
dd if=/dev/urandom of="$R/var/big" bs=1M count=30 2>/dev/null
(cd "$R" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$W/initrd.gz"
truncate -s 8M "$W/disk.img"
timeout 180 qemu-system-x86_64 -accel tcg -m 512M -nographic -nodefaults -serial stdio -no-reboot \
  -kernel "$KDL/boot/vmlinuz-$KVER" -initrd "$W/initrd.gz" -append "console=ttyS0 panic=-1 quiet ${APPEND:-}" \
  -device virtio-net-pci,netdev=n0 -netdev user,id=n0 -drive "file=$W/disk.img,if=virtio,format=raw" > "$W/boot.log" 2>&1
grep -a 'probe:' "$W/boot.log" | cut -c1-400
grep -aq PROBE-DONE "$W/boot.log"
