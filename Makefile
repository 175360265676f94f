# keel: build, image, run, test, bench. Every target installs what it needs (as root, via apt).
#   make build   static release binaries in $(REL)/ (init = PID 1 multi-call binary; keel-image = builder;
#                containerd-shim-keel-v1 = containerd's shim for keel, host side, also in build/bin/)
#   make deps    qemu-system-x86 busybox-static cpio runc crun containerd util-linux; for the seccomp tests
#                libseccomp-dev (verdicts compared with libseccomp) and gcc-multilib (an i386 program); for registries
#                and output formats docker-registry skopeo openssl apache2-utils ovmf systemd-boot-efi mtools dosfstools
#                xorriso qemu-utils fdisk isolinux syslinux; for the client matrices and conformance podman docker.io
#                golang-go; protobuf-compiler (protoc builds the CRI test client) ... (only what is missing)
#   make kernel  Debian's linux-image-amd64 unpacked in build/kernel (cached)
#   make image   build/demo/{kernel,initrd.img,cmdline} from images/demo.yml
#   make run     boot the demo on the serial console (stdin not a terminal: the demo powers itself off)
#   make test    unit + root tests, then the VM tests
#   make conformance  the OCI runtime-tools validation suite against runc, crun and keel-runc (not in make test)
#   make bench   boot timeline and memory (bench/boot-bench.sh), runtime latency (bench/runc-bench.sh),
#                keel-runc under containerd's runc shim (bench/containerd-bench.sh), keel's own containerd shim
#                against runc-v2 (bench/shim-bench.sh)

SHELL      := /bin/bash
TARGET     := x86_64-unknown-linux-gnu
# The in-image binary is built for musl when that target is installed (or installable): static musl is ~0.8 MB
# smaller than static glibc, and PID 1's RSS is mostly its own code. Fallback: the glibc build.
MUSL       := x86_64-unknown-linux-musl
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
REL        := $(TARGET_DIR)/$(TARGET)/release
KEEL_IMAGE := $(REL)/keel-image
INIT_BIN   := $(CURDIR)/build/bin/init
STATIC     := RUSTFLAGS="-C target-feature=+crt-static"
KCACHE     := $(CURDIR)/build/kernel
RUN_ARGS   ?= --forward 8080:80
export KEEL_INIT_BINARY  := $(INIT_BIN)
export KEEL_KERNEL_CACHE := $(KCACHE)
export KEEL_IMAGE_BIN    := $(KEEL_IMAGE)

.PHONY: all build deps kernel image run test lint test-unit test-vm bench clean conformance

all: build

build:
	$(STATIC) cargo build --release --target $(TARGET) --workspace --bins
	@mkdir -p build/bin
	@if rustup target list --installed 2>/dev/null | grep -qx $(MUSL) || rustup target add $(MUSL) >/dev/null 2>&1; then \
	  echo "$(STATIC) cargo build --release --target $(MUSL) -p keel-init --bin init -p containerd-shim-keel-v1 --bin containerd-shim-keel-v1"; \
	  $(STATIC) cargo build --release --target $(MUSL) -p keel-init --bin init -p containerd-shim-keel-v1 --bin containerd-shim-keel-v1 && \
	  cp -f $(TARGET_DIR)/$(MUSL)/release/init $(TARGET_DIR)/$(MUSL)/release/containerd-shim-keel-v1 build/bin/; \
	else \
	  echo "make build: target $(MUSL) not available: the image uses the glibc build"; \
	  cp -f $(REL)/init $(REL)/containerd-shim-keel-v1 build/bin/; \
	fi
	@rm -f build/bin/keel-runc; ln -s init build/bin/keel-runc
	@ls -l $(REL)/init $(REL)/keel-runc $(REL)/keelctl $(KEEL_IMAGE) build/bin/init build/bin/containerd-shim-keel-v1

# Install only what is missing; `apt-get update` only when a package is not known yet.
deps:
	@need=""; \
	command -v qemu-system-x86_64 >/dev/null || need="$$need qemu-system-x86"; \
	{ [ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q static; } || \
	  { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need="$$need busybox-static"; \
	command -v cpio >/dev/null || need="$$need cpio"; \
	command -v runc >/dev/null || need="$$need runc"; \
	command -v crun >/dev/null || need="$$need crun"; \
	{ command -v containerd && command -v ctr && command -v containerd-shim-runc-v2; } >/dev/null || \
	  need="$$need containerd"; \
	command -v unshare >/dev/null || need="$$need util-linux"; \
	command -v dpkg-deb >/dev/null || need="$$need dpkg"; \
	[ -f /usr/include/seccomp.h ] || need="$$need libseccomp-dev"; \
	[ -f /usr/lib32/libc.a ] || need="$$need gcc-multilib"; \
	command -v docker-registry >/dev/null || need="$$need docker-registry"; \
	command -v skopeo >/dev/null || need="$$need skopeo"; \
	command -v openssl >/dev/null || need="$$need openssl"; \
	command -v htpasswd >/dev/null || need="$$need apache2-utils"; \
	[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || [ -f /usr/share/OVMF/OVMF_CODE.fd ] || need="$$need ovmf"; \
	[ -f /usr/lib/systemd/boot/efi/linuxx64.efi.stub ] || need="$$need systemd-boot-efi"; \
	{ command -v objcopy && command -v objdump; } >/dev/null || need="$$need binutils"; \
	{ command -v mcopy && command -v mmd; } >/dev/null || need="$$need mtools"; \
	command -v mkfs.vfat >/dev/null || [ -x /usr/sbin/mkfs.vfat ] || [ -x /sbin/mkfs.vfat ] || need="$$need dosfstools"; \
	command -v xorriso >/dev/null || need="$$need xorriso"; \
	command -v qemu-img >/dev/null || need="$$need qemu-utils"; \
	command -v sfdisk >/dev/null || [ -x /usr/sbin/sfdisk ] || [ -x /sbin/sfdisk ] || need="$$need fdisk"; \
	[ -f /usr/lib/ISOLINUX/isolinux.bin ] || need="$$need isolinux"; \
	{ command -v syslinux >/dev/null && [ -f /usr/lib/syslinux/mbr/mbr.bin ]; } || need="$$need syslinux syslinux-common"; \
	{ command -v podman && command -v conmon; } >/dev/null || need="$$need podman conmon"; \
	[ -x /usr/libexec/podman/catatonit ] || need="$$need catatonit"; \
	{ command -v dockerd && [ -x /usr/bin/docker ] && command -v docker-init; } >/dev/null || need="$$need docker.io tini"; \
	command -v script >/dev/null || need="$$need bsdutils"; \
	command -v go >/dev/null || need="$$need golang-go"; \
	[ -d /usr/share/gocode/src/github.com/opencontainers/runtime-tools ] || \
	  need="$$need golang-github-opencontainers-runtime-tools-dev"; \
	command -v protoc >/dev/null || need="$$need protobuf-compiler"; \
	if [ -n "$$need" ]; then \
	  echo "make deps: installing$$need"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends $$need || \
	    { apt-get update -q && apt-get install -y -q --no-install-recommends $$need; }; \
	else echo "make deps: all present"; fi

$(KEEL_IMAGE) $(INIT_BIN):
	$(MAKE) build

kernel: $(KEEL_IMAGE)
	$(KEEL_IMAGE) kernel --kernel-cache $(KCACHE)

image: deps build kernel
	$(KEEL_IMAGE) build images/demo.yml -o build/demo

run: image
	$(KEEL_IMAGE) run build/demo $(RUN_ARGS)

test: deps build kernel lint test-unit test-vm

# Formatting and clippy (init and rc deny unwrap/expect/panic outside tests).
lint:
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt >/dev/null 2>&1 || \
	  { echo "lint: rustfmt is missing and cannot be installed (rustup component add rustfmt)"; exit 1; }
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy >/dev/null 2>&1 || \
	  { echo "lint: clippy is missing and cannot be installed (rustup component add clippy)"; exit 1; }
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test-unit:
	cargo test --workspace
	@# The shipped binaries are static musl: what differs from glibc in the runtime's own code paths runs there too
	@# (issue 13: std's OpenOptions drops O_PATH on musl, so the exec fifo open blocked).
	@if rustup target list --installed 2>/dev/null | grep -qx $(MUSL); then \
	  echo "cargo test -p keel-runtime --lib --target $(MUSL) open_o_path"; \
	  cargo test -p keel-runtime --lib --target $(MUSL) open_o_path; \
	fi

# VM tests boot real images under QEMU TCG (one at a time: 2 cores).
test-vm: build kernel
	cargo test -p keel-tests --test vm -- --ignored --test-threads=1 --nocapture
	cargo test -p keel-tests --test vm_outputs -- --ignored --test-threads=1 --nocapture
	cargo test -p keel-tests --test vm_hostile -- --ignored --test-threads=1 --nocapture
	cargo test -p keel-tests --test vm_linuxkit -- --ignored --test-threads=1 --nocapture

# ~3 min: 58 test programs x 3 runtimes. Table in build/conformance/conformance.md, TAP logs beside it.
conformance: deps build
	RUNTIME_TOOLS_SRC="$(RUNTIME_TOOLS_SRC)" bash tests/conformance/run.sh $(REL)/keel-runc

bench: deps build kernel
	bash bench/boot-bench.sh
	@if [ -f bench/runc-bench.sh ]; then bash bench/runc-bench.sh; else echo "bench/runc-bench.sh: not present"; fi
	KEEL_RUNC=$(REL)/keel-runc bash bench/containerd-bench.sh
	KEEL_RUNC=$(REL)/keel-runc KEEL_SHIM=$(CURDIR)/build/bin/containerd-shim-keel-v1 bash bench/shim-bench.sh

clean:
	rm -rf build
	cargo clean
