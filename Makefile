# keel: build, image, run, test, bench. Every target first installs what it needs and is missing (.ci/deps.sh:
# apt-get as root on Debian 12+, rustup's stable toolchain when cargo is missing or older than rust-version), so on
# a fresh machine `make run` is the first command (only make itself must be there).
#   make build   static release binaries in $(REL)/ (init = PID 1 multi-call binary; keel-image = builder;
#                containerd-shim-keel-v1 = containerd's shim for keel, host side, also in build/bin/); needs Rust
#   make deps    everything the tests use: Rust with clippy and rustfmt; qemu-system-x86 busybox-static cpio; runc
#                crun containerd util-linux; for the seccomp tests libseccomp-dev (verdicts compared with
#                libseccomp) and gcc-multilib (an i386 program); for registries and output formats docker-registry
#                skopeo openssl apache2-utils ovmf systemd-boot-efi mtools dosfstools xorriso qemu-utils fdisk
#                isolinux syslinux; for the client matrices and conformance podman docker.io golang-go;
#                protobuf-compiler (protoc builds the CRI test client) ... (only what is missing). Tests never
#                install anything: a test whose tools are missing prints SKIPPED (and fails under CI=true).
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
# rustup's cargo, when `make deps-rust` installed it (a fresh machine has no ~/.cargo/bin on PATH yet).
export PATH := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin:$(PATH)

.PHONY: all build deps deps-rust deps-run deps-lint kernel image run test lint test-unit test-vm bench clean conformance

all: build

build: deps-rust
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

# Install only what is missing (.ci/deps.sh: apt-get as root; rustup's toolchain when cargo is missing or older
# than rust-version). Quick when everything is there, so every target runs the part it needs first.
deps:
	@bash .ci/deps.sh test
deps-rust:
	@bash .ci/deps.sh rust
deps-run:
	@bash .ci/deps.sh run
deps-lint:
	@bash .ci/deps.sh lint

$(KEEL_IMAGE) $(INIT_BIN):
	$(MAKE) build

kernel: deps-run $(KEEL_IMAGE)
	$(KEEL_IMAGE) kernel --kernel-cache $(KCACHE)

image: deps-run build kernel
	$(KEEL_IMAGE) build images/demo.yml -o build/demo

run: image
	$(KEEL_IMAGE) run build/demo $(RUN_ARGS)

test: deps build kernel lint test-unit test-vm

# Formatting and clippy (init and rc deny unwrap/expect/panic outside tests). Fails when rustfmt or clippy is
# missing and rustup cannot add it (deps-lint says which).
lint: deps-lint
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test-unit: deps
	cargo test --workspace
	@# The shipped binaries are static musl: what differs from glibc in the runtime's own code paths runs there too
	@# (issue 13: std's OpenOptions drops O_PATH on musl, so the exec fifo open blocked).
	@if rustup target list --installed 2>/dev/null | grep -qx $(MUSL); then \
	  echo "cargo test -p keel-runtime --lib --target $(MUSL) open_o_path"; \
	  cargo test -p keel-runtime --lib --target $(MUSL) open_o_path; \
	fi

# VM tests boot real images under QEMU TCG (one at a time: 2 cores).
test-vm: deps build kernel
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
