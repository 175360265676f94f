//! A whole build without network: local kernel file (`kernel.path`), a stand-in init binary, busybox bundles;
//! the initrd is listed with `cpio -t` and checked for keel's layout and LinuxKit's bundle layout.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use keel_image::build::{build, Options};

#[test]
fn builds_layout_without_network() {
    if !std::path::Path::new("/bin/busybox").exists() || Command::new("cpio").arg("--version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "needs /bin/busybox and cpio (CI=true: make deps)");
        // Not eprintln!: the test harness captures that and hides it when the test passes.
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!("SKIPPED builds_layout_without_network: needs /bin/busybox and cpio (make deps)\n"),
        );
        return;
    }
    let d = std::env::temp_dir().join(format!("keel-image-build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("bzImage"), b"not really a kernel").unwrap();
    std::fs::write(d.join("init"), b"\x7fELF stand-in").unwrap();
    std::fs::write(d.join("keel-runc"), b"\x7fELF keel-runc stand-in").unwrap(); // taken from beside init
    let yaml = d.join("img.yml");
    std::fs::write(
        &yaml,
        "kernel:\n  path: bzImage\n  cmdline: console=ttyS0\ninit: [linuxkit/init:v1]\nonboot:\n  - name: a\n    image: busybox\n    command: [true]\nservices:\n  - name: s1\n    image: busybox\n    command: [sleep, '1']\n  - name: s2\n    image: busybox\n    readonly: true\n    command: [sleep, '1']\n    binds: [/sbin/init:/usr/bin/keelctl]\nfiles:\n  - path: etc/motd\n    contents: hi\n",
    )
    .unwrap();
    let o = Options {
        yaml: yaml.clone(),
        out: d.join("out"),
        init_binary: d.join("init"),
        kernel_cache: d.join("kcache"),
        gzip_level: 1,
        pull: Default::default(),
    };
    let s = build(&o).unwrap();
    assert_eq!(s.bundles, ["containers/onboot/000-a", "containers/services/s1", "containers/services/s2"]);
    assert!(s.notes.iter().any(|n| n.contains("linuxkit/init")), "{:?}", s.notes);
    assert_eq!(std::fs::read_to_string(d.join("out/cmdline")).unwrap(), "console=ttyS0\n");
    assert_eq!(std::fs::read(d.join("out/kernel")).unwrap(), b"not really a kernel");
    let mut gz = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(d.join("out/initrd.img")).unwrap()).read_to_end(&mut gz).unwrap();
    let mut c =
        Command::new("cpio").args(["-t", "--quiet"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(&gz).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    let list = String::from_utf8_lossy(&out.stdout);
    let has = |p: &str| list.lines().any(|l| l == p);
    for p in [
        "init",
        "sbin/init",
        "usr/bin/keelctl",
        "usr/bin/keel-runc",
        "sbin/modprobe",
        "bin/busybox",
        "bin/sh",
        "etc/hostname",
        "etc/motd",
        "dev/console",
        "containers/onboot/000-a/config.json",
        "containers/onboot/000-a/runtime.json",
        "containers/onboot/000-a/lower/bin/busybox",
        "containers/onboot/000-a/rootfs",
        "containers/onboot/000-a/tmp",
        "containers/services/s1/rootfs",
        "containers/services/s2/rootfs",
        // the shared image copy gets s2's file bind mount point
        "containers/onboot/000-a/lower/usr/bin/keelctl",
    ] {
        assert!(has(p), "{p} missing from the initrd:\n{list}");
    }
    // Same image, one copy.
    assert!(!has("containers/services/s1/lower/bin/busybox"));
    let _ = std::fs::remove_dir_all(&d);
}
