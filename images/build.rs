//! Embeds keel's in-image binary (the static multi-call `init`, which is also keel-runc) into keel-image, so that an installed
//! keel-image builds images from any directory, without the project tree.
//!
//! - `KEEL_EMBED_DIR=DIR`: embed DIR/init and DIR/keel-runc (e.g. `KEEL_EMBED_DIR=build/bin` after `make build`).
//! - A release build for the host without `--target` (what `cargo install --path images` does: it builds in the
//!   workspace's target/release), or `KEEL_EMBED=build`: build both here, static (musl when that target is
//!   installed, else glibc with crt-static), in a target directory of their own, and embed them. Fresh from the
//!   same sources, always; rebuilt (incrementally) when init/, runtime/ or rc/ change.
//! - Otherwise (`make build` passes `--target`; debug builds, `cargo test`), or `KEEL_EMBED=none`: nothing is
//!   embedded: keel-image finds build/bin/init as before, and a workspace build stays as fast as it was.
//!
//! Empty files are written when nothing is embedded; keel-image treats them as absent.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().map(Path::to_path_buf).unwrap_or_else(|| manifest.clone());
    let embed = out.join("embed");
    std::fs::create_dir_all(&embed).expect("creating OUT_DIR/embed");
    println!("cargo:rerun-if-env-changed=KEEL_EMBED_DIR");
    println!("cargo:rerun-if-env-changed=KEEL_EMBED");
    println!("cargo:rerun-if-changed=build.rs");

    let mut found: Option<PathBuf> = None;
    if let Some(d) = std::env::var_os("KEEL_EMBED_DIR") {
        let d = PathBuf::from(d);
        let d = if d.is_absolute() { d } else { root.join(d) };
        println!("cargo:rerun-if-changed={}", d.join("init").display());
        if !d.join("init").is_file() {
            panic!("KEEL_EMBED_DIR={}: init must be there (make build)", d.display());
        }
        found = Some(d);
    } else {
        let mode = std::env::var("KEEL_EMBED").unwrap_or_default();
        let release = std::env::var("PROFILE").as_deref() == Ok("release");
        // With --target, OUT_DIR is target/TRIPLE/release/...; cargo install --path: target/release/...
        let explicit_target = out.components().any(|c| c.as_os_str().to_string_lossy().contains("-unknown-linux-"));
        if mode == "build" || (mode != "none" && release && !explicit_target) {
            found = Some(build_in_image_binaries(&root, &out));
        }
    }
    let data = match &found {
        Some(d) => {
            std::fs::read(d.join("init")).unwrap_or_else(|e| panic!("reading {}: {e}", d.join("init").display()))
        }
        None => Vec::new(),
    };
    std::fs::write(embed.join("init"), data).expect("writing the embedded binary");
    if let Some(d) = found {
        println!("cargo:warning=keel-image embeds init (also keel-runc) from {}", d.display());
    }
}

/// `cargo build` the in-image binary, static, into OUT_DIR/in-image-target; returns its directory.
fn build_in_image_binaries(root: &Path, out: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let musl = "x86_64-unknown-linux-musl";
    let has_musl = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == musl))
        .unwrap_or(false);
    let target = if has_musl { musl } else { "x86_64-unknown-linux-gnu" };
    let target_dir = out.join("in-image-target");
    for src in ["init/src", "runtime/src", "rc/src", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(src).display());
    }
    let mut c = Command::new(cargo);
    c.current_dir(root)
        .args(["build", "--release", "--locked", "--target", target])
        .args(["-p", "keel-init", "--bin", "init"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    // What the outer cargo set for this build script must not leak into the inner build.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k == "CARGO_ENCODED_RUSTFLAGS" || k == "CARGO_TARGET_DIR" || k.starts_with("CARGO_BUILD_") {
            c.env_remove(&k);
        }
    }
    let st = c.status().unwrap_or_else(|e| panic!("running cargo to build init: {e}"));
    if !st.success() {
        panic!("building init for embedding failed ({st}); or build them with `make build` and set KEEL_EMBED_DIR=build/bin");
    }
    target_dir.join(target).join("release")
}
