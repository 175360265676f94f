//! VM tests of the output formats, and of the demo built from a registry.
//!
//! The demo (images/demo.yml) with every `image: busybox` replaced by a registry reference: an OCI image of the
//! host's busybox pushed (skopeo) to Debian's `docker-registry` on 127.0.0.1, pulled into an empty cache (cold),
//! built again from the cache (warm), then offline with the registry stopped. Its kernel command line carries
//! `keel.autopoweroff=1`, so every boot ends with "all services up: powering off". Then each output format
//! (`--format` as in LinuxKit) is written and booted under QEMU TCG — OVMF for the EFI ones, SeaBIOS for the BIOS
//! ones — to all services up and power-off. Timings and sizes are printed (`--nocapture`).
//!
//! Run with `make test-vm` (#[ignore]d in a plain `cargo test`). Outside CI a missing tool skips (SKIPPED: why).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use keel_image::build::{self, Options};
use keel_image::outputs;
use keel_image::registry::PullOptions;
use keel_image::run::{parse_disk, RunOptions};
use keel_image::test_registry::{have, Registry};
use keel_image::testutil::{layer, write_oci_layout, Entry};
use keel_tests::vm::{self, Console, Vm};
use serde_json::json;

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

/// An OCI image of the host's busybox: the binary, one symlink per applet, minimal /etc.
fn busybox_layout(dir: &Path) {
    let bb = std::fs::read("/bin/busybox").unwrap_or_else(|e| panic!("/bin/busybox: {e} (make deps)"));
    let applets = keel_image::sources::busybox_applets(Path::new("/bin/busybox")).unwrap();
    let mut dirs: Vec<String> = ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "tmp", "root", "var", "www"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for a in &applets {
        if let Some((d, _)) = a.rsplit_once('/') {
            if !dirs.contains(&d.to_string()) {
                dirs.push(d.to_string());
            }
        }
    }
    let mut entries: Vec<Entry> = dirs.iter().map(|d| Entry::Dir(d)).collect();
    entries.push(Entry::File("bin/busybox", &bb, 0o755));
    for a in applets.iter().filter(|a| *a != "bin/busybox") {
        entries.push(Entry::Symlink(a, "/bin/busybox"));
    }
    entries.push(Entry::File("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644));
    entries.push(Entry::File("etc/group", b"root:x:0:\n", 0o644));
    let cfg = json!({"Env": [keel_image::sources::DEFAULT_PATH], "Cmd": ["sh"]});
    write_oci_layout(dir, &[layer(&entries)], true, cfg, "1").unwrap_or_else(|e| panic!("oci layout: {e}"));
}

/// The built demo (staging dir with kernel, initrd.img, cmdline) and where outputs go.
struct Built {
    staging: PathBuf,
    out: PathBuf,
}

fn options(env: &vm::Env, yaml: &Path, out: &Path, cache: &Path, offline: bool) -> Options {
    Options {
        yaml: yaml.to_path_buf(),
        out: out.to_path_buf(),
        init_binary: env.init_binary.clone(),
        kernel_cache: env.kernel_cache.clone(),
        gzip_level: 6,
        pull: PullOptions {
            cache: cache.to_path_buf(),
            offline,
            docker_config: cache.join("none.json"),
            quiet: true,
            ..Default::default()
        },
    }
}

/// Build the registry demo once per test process: cold (empty cache), warm (cache), offline (registry stopped).
/// None (after `SKIPPED test: why` for every test that asks, not only the first) when it cannot be built here.
fn built() -> Option<&'static Built> {
    static B: OnceLock<Option<Built>> = OnceLock::new();
    let b = built_once(&B);
    if b.is_none() {
        // Not eprintln!: the test harness captures that and hides it when the test passes.
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!(
                "SKIPPED {}: no registry demo image (VM prerequisites, docker-registry or skopeo missing: see above)\n",
                std::thread::current().name().unwrap_or("VM test")
            ),
        );
    }
    b
}

fn built_once(b: &'static OnceLock<Option<Built>>) -> Option<&'static Built> {
    b.get_or_init(|| {
        let env = vm::env()?;
        if !have(&["docker-registry", "skopeo"]) {
            return None;
        }
        let base = env.out_base.join("outputs");
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let mut reg = Registry::start(&base, "");
        let layout = base.join("busybox-oci");
        busybox_layout(&layout);
        reg.push(&layout, "1", "keel/busybox:1", false, None);
        let demo = std::fs::read_to_string(vm::root().join("images/demo.yml")).unwrap();
        let image = format!("{}/keel/busybox:1", reg.host());
        // Plus an onboot step listing the block devices (the boot disk, and a `--disk` data disk).
        let disks = format!(
            "onboot:\n  - name: disks\n    image: {image}\n    command: [sh, -c, 'echo block devices: $(ls /sys/block)']\n"
        );
        let yaml = format!(
            "kernel:\n  cmdline: \"console=ttyS0 panic=-1 quiet keel.autopoweroff=1\"\n{}",
            demo.replace("image: busybox", &format!("image: {image}")).replacen("onboot:\n", &disks, 1)
        );
        let yml = base.join("demo.yml");
        std::fs::write(&yml, yaml).unwrap();
        let cache = base.join("cache");
        let staging = base.join("staging");
        let time = |what: &str, o: &Options, log: &dyn Fn() -> String| {
            let t0 = Instant::now();
            let s = build::build(o).unwrap_or_else(|e| panic!("{what} build: {e}\n{}", log()));
            let t = t0.elapsed();
            eprintln!("TIMING demo {what} build: {:.2} s (initrd {} KiB)", t.as_secs_f64(), s.initrd_bytes / 1024);
        };
        let log = || reg.log();
        time("cold (pull from 127.0.0.1 registry)", &options(&env, &yml, &base.join("cold"), &cache, false), &log);
        time("warm (from the cache)", &options(&env, &yml, &base.join("warm"), &cache, false), &log);
        reg.stop();
        time("offline (registry stopped)", &options(&env, &yml, &staging, &cache, true), &|| String::new());
        let a = std::fs::read(base.join("cold/initrd.img")).unwrap();
        assert_eq!(a, std::fs::read(staging.join("initrd.img")).unwrap(), "cold and offline initrds differ");
        Some(Built { staging, out: base.join("out") })
    })
    .as_ref()
}

fn write_format(b: &Built, format: &str) -> PathBuf {
    if let Err(e) = outputs::check(format) {
        if vm::in_ci() {
            panic!("{e}");
        }
        // Not eprintln!: the test harness captures that and hides it when the test passes.
        let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("SKIPPED: {e}\n"));
        return PathBuf::new();
    }
    std::fs::create_dir_all(&b.out).unwrap();
    let w = outputs::write(&b.staging, &b.out, "demo", format).unwrap_or_else(|e| panic!("{format}: {e}"));
    eprintln!("TIMING format {format}: {} {} KiB in {:.2} s", w.path.display(), w.bytes / 1024, w.took.as_secs_f64());
    w.path
}

fn boot_to_all_services_up(what: &str, target: &Path, disks: &[String]) -> Console {
    let o = RunOptions {
        dir: target.to_path_buf(),
        autopoweroff: Some(false),
        disks: disks.iter().map(|d| parse_disk(d).unwrap_or_else(|e| panic!("{e}"))).collect(),
        ..Default::default()
    };
    let c = Vm::start_with(&o, BOOT_TIMEOUT).finish();
    eprintln!("TIMING boot {what}: {:.1} s wall to power-off", c.wall.as_secs_f64());
    assert!(!c.timed_out, "{what}: no power-off within {BOOT_TIMEOUT:?}:\n{}", c.text());
    c.expect("keel&boot complete");
    c.expect("all services up: powering off");
    c.expect("reboot: Power down");
    assert_eq!(c.exit, Some(0), "{what}: qemu exit code:\n{}", c.text());
    c
}

fn format_boots(format: &str) -> Option<Console> {
    format_boots_with(format, &[])
}

fn format_boots_with(format: &str, disks: &[String]) -> Option<Console> {
    let b = built()?;
    let p = write_format(b, format);
    if p.as_os_str().is_empty() {
        return None;
    }
    // kernel+initrd boots by its NAME prefix, as `linuxkit run NAME` does.
    let target = if format == "kernel+initrd" { b.out.join("demo") } else { p };
    Some(boot_to_all_services_up(format, &target, disks))
}

#[test]
#[ignore = "VM test: make test-vm"]
fn demo_from_registry_kernel_initrd() {
    if let Some(c) = format_boots("kernel+initrd") {
        c.expect("disks&block devices:");
    }
    if let Some(b) = built() {
        for f in ["demo-kernel", "demo-initrd.img", "demo-cmdline"] {
            assert!(b.out.join(f).is_file(), "{f} missing");
        }
    }
}

#[test]
#[ignore = "VM test: make test-vm"]
fn tar_kernel_initrd_boots() {
    format_boots("tar-kernel-initrd");
}

#[test]
#[ignore = "VM test: make test-vm"]
fn raw_efi_boots_with_ovmf_and_a_data_disk() {
    // `--disk FILE,size=N` as `linuxkit run -disk`: created (qemu-img), attached as the second virtio disk.
    let data = vm::root().join("build/vm-tests/outputs/data.qcow2");
    let _ = std::fs::remove_file(&data);
    if let Some(c) = format_boots_with("raw-efi", &[format!("{},size=64M", data.display())]) {
        assert!(data.is_file(), "--disk did not create {}", data.display());
        c.expect("disks&block devices:&vda&vdb");
    }
}

#[test]
#[ignore = "VM test: make test-vm"]
fn qcow2_efi_boots_with_ovmf() {
    format_boots("qcow2-efi");
}

#[test]
#[ignore = "VM test: make test-vm"]
fn iso_efi_boots_with_ovmf() {
    format_boots("iso-efi");
}

#[test]
#[ignore = "VM test: make test-vm"]
fn iso_bios_boots_with_seabios() {
    format_boots("iso-bios");
}

#[test]
#[ignore = "VM test: make test-vm"]
fn raw_bios_boots_with_seabios() {
    format_boots("raw-bios");
}

#[test]
#[ignore = "VM test: make test-vm"]
fn qcow2_bios_boots_with_seabios() {
    format_boots("qcow2-bios");
}
