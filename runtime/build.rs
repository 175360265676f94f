//! Builds keel-reaper (reaper/reaper.rs), the pid-namespace reaper program the runtime execs from a memfd, with the
//! same rustc as the crate: freestanding (no std, no libc), static, non-PIE, stripped, a couple of KiB. It is
//! embedded with include_bytes! (see src/reaper.rs). The program is x86_64 machine code (raw syscalls): on other
//! architectures cfg `keel_exec_reaper` stays unset and the runtime uses its fork-only reaper.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(keel_exec_reaper)");
    println!("cargo:rerun-if-changed=reaper/reaper.rs");
    println!("cargo:rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if arch != "x86_64" || os != "linux" {
        println!("cargo:warning=keel-reaper is x86_64-only: ns reaper falls back to a fork of the runtime");
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR set by cargo")).join("keel-reaper");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    // The crate's own RUSTFLAGS (e.g. +crt-static for musl) are not passed: this is a separate, libc-free program,
    // always built for x86_64-unknown-linux-gnu (its core library ships with every x86_64 Linux toolchain).
    let status = Command::new(rustc)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .args(["--edition", "2021", "--crate-type", "bin", "--crate-name", "keel_reaper"])
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .args(["-C", "panic=abort", "-C", "opt-level=s", "-C", "relocation-model=static"])
        .args(["-C", "target-feature=+crt-static", "-C", "strip=symbols", "-C", "debuginfo=0"])
        .args(["-C", "codegen-units=1", "-C", "force-unwind-tables=no"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib", "-C", "link-arg=-static"])
        .args(["-C", "link-arg=-Wl,--build-id=none"])
        .arg("-o")
        .arg(&out)
        .arg("reaper/reaper.rs")
        .status()
        .expect("run rustc for reaper/reaper.rs");
    assert!(status.success(), "building reaper/reaper.rs failed");
    println!("cargo:rustc-cfg=keel_exec_reaper");
}
