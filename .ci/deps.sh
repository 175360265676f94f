#!/usr/bin/env bash
# What each make target needs, installed only when missing (Debian 12 or later, as root): quick and silent when
# everything is there, so every target can run it first.
#   .ci/deps.sh rust    Rust >= MSRV (rustup's stable toolchain when cargo is missing or too old), a C linker and
#                       libc.a (static binaries), the musl target (smaller in-image binary; optional)
#   .ci/deps.sh run     rust + what building and booting an image needs: qemu-system-x86, busybox-static, cpio
#   .ci/deps.sh lint    rust + clippy and rustfmt (rustup components); fails when they cannot be had
#   .ci/deps.sh test    run + lint + what the root, client, conformance and VM tests use
# Environment: RUSTUP_DIST_SERVER (default https://static.rust-lang.org), RUST_TOOLCHAIN (default stable).
set -euo pipefail

MSRV=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$(dirname "$0")/../Cargo.toml" | head -1)
MSRV=${MSRV:-1.80}
DIST=${RUSTUP_DIST_SERVER:-https://static.rust-lang.org}
TOOLCHAIN=${RUST_TOOLCHAIN:-stable}
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
export PATH="$CARGO_BIN:$PATH"

die() { echo "make deps: $*" >&2; exit 1; }

# apt_need PKG... : install the packages (one apt-get update and a retry when the first try fails).
apt_need() {
    [ $# -gt 0 ] || return 0
    [ "$(id -u)" = 0 ] || die "missing:$(printf ' %s' "$@"); run make as root, or: sudo apt-get install -y $*"
    command -v apt-get >/dev/null || die "missing:$(printf ' %s' "$@") and no apt-get (Debian 12 or later expected)"
    echo "make deps: installing $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "$@" >/dev/null ||
        { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$@" >/dev/null; } ||
        die "apt-get install $* failed"
}

have() { command -v "$1" >/dev/null 2>&1; }
sbin() { have "$1" || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

# rustc's version >= MSRV?
rust_ok() {
    have cargo && have rustc || return 1
    local v
    v=$(rustc --version 2>/dev/null | awk '{print $2}') || return 1
    [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$MSRV" "${v%%-*}" | sort -V | head -1)" = "$MSRV" ]
}

rust() {
    local need=()
    have cc || need+=(gcc)
    [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
    if ! rust_ok && ! have rustup; then
        have curl || need+=(curl)
        [ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
    fi
    apt_need "${need[@]}"
    if ! rust_ok; then
        if have rustup; then
            echo "make deps: rustc $(rustc --version 2>/dev/null | awk '{print $2}') is older than $MSRV: rustup toolchain $TOOLCHAIN"
            rustup toolchain install --profile minimal "$TOOLCHAIN" >/dev/null && rustup default "$TOOLCHAIN" >/dev/null ||
                die "rustup could not install the $TOOLCHAIN toolchain (from $DIST); install Rust >= $MSRV and re-run"
        else
            echo "make deps: no Rust >= $MSRV here: installing rustup and the $TOOLCHAIN toolchain into ${CARGO_HOME:-$HOME/.cargo}"
            local tmp init
            # rustup-init acts by its file name (as rustup, cargo, ... otherwise): keep the name.
            tmp=$(mktemp -d)
            init=$tmp/rustup-init
            curl --proto '=https' --tlsv1.2 -sSf --retry 3 -o "$init" \
                "$DIST/rustup/dist/x86_64-unknown-linux-gnu/rustup-init" ||
                { rm -rf "$tmp"; die "cannot download rustup-init from $DIST (no network?); install Rust >= $MSRV yourself (https://rustup.rs, or RUSTUP_DIST_SERVER=a mirror) and re-run"; }
            chmod +x "$init"
            RUSTUP_DIST_SERVER=$DIST "$init" -y -q --no-modify-path --profile minimal \
                --default-toolchain "$TOOLCHAIN" >/dev/null || { rm -rf "$tmp"; die "rustup-init failed"; }
            rm -rf "$tmp"
        fi
        rust_ok || die "Rust >= $MSRV still not on PATH ($CARGO_BIN)"
    fi
    # The in-image binary is smaller with musl; the build falls back to glibc when this fails.
    if have rustup && ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
        echo "make deps: rustup target add x86_64-unknown-linux-musl"
        rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || echo "make deps: musl target unavailable (glibc build used)"
    fi
}

run() {
    rust
    local need=()
    have qemu-system-x86_64 || need+=(qemu-system-x86)
    # A static busybox: the image's containers run it in bare rootfses.
    { [ -x /bin/busybox ] && ! grep -qa /lib64/ld-linux /bin/busybox; } || need+=(busybox-static)
    have cpio || need+=(cpio)
    have dpkg-deb || need+=(dpkg)
    apt_need "${need[@]}"
}

lint() {
    rust
    local c
    for c in rustfmt clippy; do
        if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
            have rustup || die "cargo $c is missing and there is no rustup to add it; install $c"
            echo "make deps: rustup component add $c"
            rustup component add "$c" >/dev/null || die "rustup component add $c failed"
            cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1 || die "cargo ${c/rustfmt/fmt} still missing"
        fi
    done
}

test_deps() {
    run
    lint
    local need=()
    have runc || need+=(runc)
    have crun || need+=(crun)
    { have containerd && have ctr && have containerd-shim-runc-v2; } || need+=(containerd)
    have unshare || need+=(util-linux)
    have losetup || sbin losetup || need+=(mount)
    [ -f /usr/include/seccomp.h ] || need+=(libseccomp-dev)
    [ -f /usr/lib32/libc.a ] || need+=(gcc-multilib)
    have docker-registry || need+=(docker-registry)
    have skopeo || need+=(skopeo)
    have openssl || need+=(openssl)
    have htpasswd || need+=(apache2-utils)
    [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || [ -f /usr/share/OVMF/OVMF_CODE.fd ] || need+=(ovmf)
    [ -f /usr/lib/systemd/boot/efi/linuxx64.efi.stub ] || need+=(systemd-boot-efi)
    { have objcopy && have objdump; } || need+=(binutils)
    { have mcopy && have mmd; } || need+=(mtools)
    sbin mkfs.vfat || need+=(dosfstools)
    have xorriso || need+=(xorriso)
    have qemu-img || need+=(qemu-utils)
    sbin sfdisk || need+=(fdisk)
    [ -f /usr/lib/ISOLINUX/isolinux.bin ] || need+=(isolinux)
    { have syslinux && [ -f /usr/lib/syslinux/mbr/mbr.bin ]; } || need+=(syslinux syslinux-common)
    { have podman && have conmon; } || need+=(podman conmon)
    [ -x /usr/libexec/podman/catatonit ] || need+=(catatonit)
    { have dockerd && [ -x /usr/bin/docker ] && have docker-init; } || need+=(docker.io tini)
    have script || need+=(bsdutils)
    have go || need+=(golang-go)
    [ -d /usr/share/gocode/src/github.com/opencontainers/runtime-tools ] ||
        need+=(golang-github-opencontainers-runtime-tools-dev)
    have protoc || need+=(protobuf-compiler)
    have git || need+=(git)
    apt_need "${need[@]}"
}

case "${1:-}" in
    rust) rust ;;
    run) run ;;
    lint) lint ;;
    test) test_deps ;;
    *) die "usage: $0 rust|run|lint|test" ;;
esac
