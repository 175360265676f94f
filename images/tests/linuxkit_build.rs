//! A LinuxKit-shaped YAML (examples/getty.yml plus a volume) built from stand-ins of LinuxKit's packages in an
//! image cache laid out as LinuxKit's (`$KEEL_IMAGE_CACHE`, an OCI layout keyed by full reference), each carrying
//! its real `org.mobyproject.config` label: labels merged, notes printed, init images unpacked, base paths,
//! volumes, files owned by a container's id. Then the errors: every missing image in one error, ambiguous picks.
//!
//! One test function: it sets `KEEL_IMAGE_CACHE` for this process.

use std::path::Path;

use keel_image::build::{assemble, Options};
use keel_image::testutil::{add_to_layout, busybox_layer, layer, write_docker_archive, write_oci_layout, Entry};
use keel_image::tree::{Kind, Tree};
use serde_json::{json, Value};

const GETTY: &str = r#"{"capabilities":["all"],"binds":["/etc/resolv.conf:/etc/resolv.conf","/run:/run","/tmp:/tmp","/etc:/hostroot/etc","/usr/bin/ctr:/usr/bin/ctr","/usr/bin/runc:/usr/bin/runc","/containers:/containers","/var/log:/var/log","/var/lib/containerd:/var/lib/containerd","/dev:/dev","/sys:/sys"],"devices":[{"path":"/dev/console","type":"c","major":5,"minor":1,"mode":"0666"},{"path":"/dev/tty0","type":"c","major":4,"minor":0,"mode":"0666"},{"path":"/dev/ttyS0","type":"c","major":4,"minor":64,"mode":"0666"},{"path":"/dev/ttyAMA0","type":"c","major":204,"minor":64,"mode":"0666"},{"path":"/dev/hvc0","type":"c","major":229,"minor":0,"mode":"0666"}],"net":"host","pid":"host"}"#;
const RNGD: &str = r#"{"capabilities":["CAP_SYS_ADMIN"],"net":"new","ipc":"new","readonly":true,"oomScoreAdj":-800}"#;
const DHCPCD: &str = r#"{"capabilities":["CAP_NET_ADMIN","CAP_NET_BIND_SERVICE","CAP_NET_RAW","CAP_SYS_ADMIN"],"binds":["/run/resolvconf:/etc"]}"#;
const SYSCTL: &str = r#"{"capabilities":["CAP_SYS_ADMIN","CAP_NET_ADMIN"],"pid":"host","readonly":true}"#;

fn cfg(label: &str, cmd: &[&str], user: &str) -> Value {
    json!({"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": cmd,
           "WorkingDir": "/", "User": user, "Labels": {"org.mobyproject.config": label}})
}

fn file<'a>(t: &'a Tree, p: &str) -> &'a [u8] {
    match &t.get(p).unwrap_or_else(|| panic!("{p} missing")).kind {
        Kind::File(d) => d,
        k => panic!("{p}: {k:?}"),
    }
}

fn json_of(t: &Tree, p: &str) -> Value {
    serde_json::from_slice(file(t, p)).unwrap()
}

#[test]
fn linuxkit_yaml_from_labelled_stand_ins() {
    if !Path::new("/bin/busybox").exists() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "needs /bin/busybox (CI=true: make deps)");
        // Not eprintln!: the test harness captures that and hides it when the test passes.
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!("SKIPPED linuxkit_yaml_from_labelled_stand_ins: needs /bin/busybox (make deps)\n"),
        );
        return;
    }
    let d = std::env::temp_dir().join(format!("keel-lk-build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let cache = d.join("cache");
    std::env::set_var("KEEL_IMAGE_CACHE", &cache);
    let bb = busybox_layer().unwrap();
    for (r, label, cmd, user) in [
        ("linuxkit/getty:a86d74c8f89be8956330c3b115b0b1f2e09ef6e0", GETTY, "/usr/bin/rungetty.sh", ""),
        ("linuxkit/rngd:984eb580ecb63986f07f626b61692a97aacd7198", RNGD, "/sbin/rngd", "1000"),
        ("linuxkit/dhcpcd:b87e9ececac55a65eaa592f4dd8b4e0c3009afdb", DHCPCD, "/sbin/dhcpcd", ""),
        ("linuxkit/sysctl:43ac1d39da329c3567fcb9689e5ca99de6d169b6", SYSCTL, "/usr/bin/sysctl", ""),
    ] {
        add_to_layout(&cache, &format!("docker.io/{r}"), std::slice::from_ref(&bb), cfg(label, &[cmd], user)).unwrap();
    }
    let certs = layer(&[
        Entry::Dir("etc/"),
        Entry::Dir("etc/ssl/"),
        Entry::Dir("etc/ssl/certs/"),
        Entry::File("etc/ssl/certs/ca-certificates.crt", b"-----BEGIN CERTIFICATE-----\n", 0o644),
        Entry::File("etc/hostname", b"ca-build\n", 0o644),
        Entry::File("sbin/init", b"not keel's init", 0o755),
        Entry::Dir("var/"),
        Entry::Dir("var/cache/"),
        Entry::File("var/cache/apk.idx", b"x", 0o644),
    ]);
    add_to_layout(
        &cache,
        "docker.io/linuxkit/ca-certificates:256f1950df59f2f209e9f0b81374177409eb11de",
        &[certs],
        json!({}),
    )
    .unwrap();
    let vol = layer(&[Entry::Dir("data/"), Entry::File("data/hello", b"from the volume image\n", 0o644)]);
    add_to_layout(&cache, "docker.io/library/alpine:3.21", &[vol], json!({})).unwrap();

    std::fs::write(d.join("bzImage"), b"not really a kernel").unwrap();
    std::fs::write(d.join("init"), b"\x7fELF stand-in").unwrap();
    std::fs::write(d.join("keel-runc"), b"\x7fELF keel-runc stand-in").unwrap();
    let yaml = d.join("getty.yml");
    std::fs::write(
        &yaml,
        r#"kernel:
  image: linuxkit/kernel:6.12.59
  cmdline: "console=tty0 console=ttyS0 console=ttyAMA0"
  path: bzImage
init:
  - linuxkit/init:b5506cc74a6812dc40982cacfd2f4328f8a4b12a
  - linuxkit/runc:9442aa234715e751a16144f1d4ae3fd1a00fd492
  - linuxkit/containerd:ba19f64efd3331a8fd0a33e00eabd14f6ee1780e
  - linuxkit/ca-certificates:256f1950df59f2f209e9f0b81374177409eb11de
onboot:
  - name: sysctl
    image: linuxkit/sysctl:43ac1d39da329c3567fcb9689e5ca99de6d169b6
  - name: dhcpcd
    image: linuxkit/dhcpcd:b87e9ececac55a65eaa592f4dd8b4e0c3009afdb
    command: ["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"]
  - name: vol
    image: linuxkit/rngd:984eb580ecb63986f07f626b61692a97aacd7198
    binds:
      - vola:/vola
    command: ["cat", "/vola/data/hello"]
services:
  - name: getty
    image: linuxkit/getty:a86d74c8f89be8956330c3b115b0b1f2e09ef6e0
  - name: rngd
    image: linuxkit/rngd:984eb580ecb63986f07f626b61692a97aacd7198
    uid: rngd
volumes:
  - name: vola
    image: alpine:3.21
files:
  - path: etc/getty.shadow
    contents: 'root:x:17322:0:::::'
  - path: var/lib/rngd/state
    contents: "seed"
    uid: rngd
trust:
  org:
    - linuxkit
"#,
    )
    .unwrap();
    let o = Options {
        yaml: yaml.clone(),
        out: d.join("out"),
        init_binary: d.join("init"),
        kernel_cache: d.join("kcache"),
        gzip_level: 1,
        // The cache ($KEEL_IMAGE_CACHE, set above) only: no registry is contacted.
        pull: keel_image::registry::PullOptions { offline: true, ..Default::default() },
    };
    assert_eq!(o.pull.cache, cache);
    let a = assemble(&o).unwrap();
    let (t, notes) = (&a.tree, &a.summary.notes);
    let has_note = |s: &str| notes.iter().any(|n| n.contains(s));
    for n in [
        "getty: from label: capabilities all, 11 binds, 5 devices, net host, pid host",
        "rngd: from label: capabilities SYS_ADMIN, net new, ipc new, readonly, oomScoreAdj -800",
        "dhcpcd: from label: capabilities NET_ADMIN,NET_BIND_SERVICE,NET_RAW,SYS_ADMIN, 1 bind",
        "init[0]: linuxkit/init:b5506cc74a6812dc40982cacfd2f4328f8a4b12a not unpacked",
        "init[3]: linuxkit/ca-certificates:256f1950df59f2f209e9f0b81374177409eb11de unpacked into the root",
        "keel's own /sbin/init kept",
        "its /var left out",
        "getty: /usr/bin/ctr is a stub",
        "rngd: image User \"1000\" ignored (as LinuxKit)",
        "cgroup namespace",
        "trust: ignored",
    ] {
        assert!(has_note(n), "note {n:?} missing: {notes:#?}");
    }

    // The base system LinuxKit's packages bind.
    assert_eq!(file(t, "etc/ssl/certs/ca-certificates.crt"), b"-----BEGIN CERTIFICATE-----\n");
    assert_eq!(file(t, "sbin/init"), b"\x7fELF stand-in", "an init image does not replace keel's init");
    assert_ne!(file(t, "etc/hostname"), b"ca-build\n");
    assert_eq!(t.get("etc/resolv.conf").unwrap().kind, Kind::Symlink("/run/resolvconf/resolv.conf".into()));
    assert_eq!(t.get("usr/bin/runc").unwrap().kind, Kind::Symlink("keel-runc".into()));
    assert!(file(t, "usr/bin/ctr").starts_with(b"#!/bin/sh"));
    assert_eq!(t.get("containers").unwrap().kind, Kind::Dir);
    assert!(t.get("var/cache/apk.idx").is_none(), "an init image's /var is hidden by the tmpfs, as in LinuxKit");

    // getty: the label's binds, devices, namespaces and capabilities.
    let g = json_of(t, "containers/services/getty/config.json");
    let binds: Vec<&str> = g["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "bind")
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    assert_eq!(binds.len(), 11, "{binds:?}");
    assert_eq!(g["linux"]["devices"].as_array().unwrap().len(), 5);
    assert_eq!(g["process"]["capabilities"]["effective"].as_array().unwrap().len(), 41);
    assert_eq!(g["linux"]["namespaces"], json!([{"type": "mount"}, {"type": "cgroup"}]));
    assert_eq!(g["process"]["args"], json!(["/usr/bin/rungetty.sh"]));
    // Mount points in getty's copy of the image: files for file binds (also those only at boot), dirs else.
    for (p, is_file) in
        [("etc/resolv.conf", true), ("usr/bin/ctr", true), ("usr/bin/runc", true), ("hostroot/etc", false)]
    {
        let n = t.get(&format!("containers/services/getty/lower/{p}")).unwrap_or_else(|| panic!("{p} missing"));
        assert_eq!(matches!(n.kind, Kind::Dir), !is_file, "{p}: {:?}", n.kind);
    }
    // LinuxKit's filter on container images: /etc/hosts and /etc/resolv.conf present, /etc/mtab a link.
    assert!(file(t, "containers/services/getty/lower/etc/hosts").starts_with(b"127.0.0.1"));
    assert_eq!(t.get("containers/services/getty/lower/etc/mtab").unwrap().kind, Kind::Symlink("/proc/mounts".into()));

    // rngd: readonly from its label; uid by its own name (LinuxKit: ids from 100 in onboot, onshutdown, services
    // order: sysctl 100, dhcpcd 101, vol 102, getty 103, rngd 104); image User ignored.
    let r = json_of(t, "containers/services/rngd/config.json");
    assert_eq!(r["root"]["readonly"], true);
    assert_eq!(r["process"]["user"], json!({"uid": 104, "gid": 0}));
    assert_eq!(r["process"]["oomScoreAdj"], -800);
    let st = t.get("var/lib/rngd/state").unwrap();
    assert_eq!((st.uid, st.mode), (104, 0o600));

    // The volume: lower from its image, tmp (read-write), merged; the bind points at merged.
    assert_eq!(file(t, "containers/volumes/vola/lower/data/hello"), b"from the volume image\n");
    assert!(t.get("containers/volumes/vola/tmp").is_some() && t.get("containers/volumes/vola/merged").is_some());
    let v = json_of(t, "containers/onboot/002-vol/config.json");
    let vm = v["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/vola").unwrap().clone();
    assert_eq!(vm["source"], "/containers/volumes/vola/merged");

    // Errors: every missing image in one error, each with how to get it.
    std::fs::write(
        &yaml,
        "kernel:\n  path: bzImage\ninit: [linuxkit/init:v1, linuxkit/firmware:v9]\nonboot:\n  - name: a\n    image: linuxkit/nope:v1\n  - name: b\n    image: linuxkit/nope:v1\nservices:\n  - name: c\n    image: oci:missing-dir\n  - name: getty\n    image: linuxkit/getty:a86d74c8f89be8956330c3b115b0b1f2e09ef6e0\n",
    )
    .unwrap();
    let e = assemble(&o).expect_err("missing images").to_string();
    assert!(e.starts_with("3 images cannot be loaded:"), "{e}");
    for s in ["init[1]: image linuxkit/firmware:v9:", "a: image linuxkit/nope:v1:", "c: image oci:missing-dir"] {
        assert!(e.contains(s), "{s:?} not in: {e}");
    }
    // How to get each registry image: pull it, or build without --offline.
    assert_eq!(e.matches("`keel-image pull docker.io/linuxkit/").count(), 2, "{e}");
    assert_eq!(e.matches("drop --offline").count(), 2, "{e}");
    assert!(!e.contains("b: image"), "one line per image: {e}");

    // Ambiguous picks name the candidates.
    let two = d.join("two");
    add_to_layout(&two, "docker.io/linuxkit/getty:v1", std::slice::from_ref(&bb), json!({"Cmd": ["getty"]})).unwrap();
    add_to_layout(&two, "docker.io/linuxkit/rngd:v1", std::slice::from_ref(&bb), json!({"Cmd": ["rngd"]})).unwrap();
    let e = keel_image::sources::load("oci:two:v1", "rngd", &d).expect_err("ambiguous tag").to_string();
    assert!(e.contains("rngd: image oci:two:v1") && e.contains("getty:v1") && e.contains("rngd:v1"), "{e}");
    let ok = keel_image::sources::load("oci:two:docker.io/linuxkit/rngd:v1", "rngd", &d).unwrap();
    assert_eq!(ok.config.cmd, ["rngd"]);
    let e = keel_image::sources::load("oci:two", "x", &d).expect_err("no tag, two images").to_string();
    assert!(e.contains("2 manifests") && e.contains("getty:v1"), "{e}");
    let one = d.join("one");
    write_oci_layout(&one, std::slice::from_ref(&bb), false, json!({"Cmd": ["sh"]}), "latest").unwrap();
    assert!(keel_image::sources::load("oci:one", "x", &d).is_ok());
    // docker save of two images
    let arch = d.join("two.tar");
    write_docker_archive(&arch, std::slice::from_ref(&bb), json!({"Cmd": ["sh"]})).unwrap();
    let mut tw = tar::Archive::new(std::fs::File::open(&arch).unwrap());
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for e in tw.entries().unwrap() {
        let mut e = e.unwrap();
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut b).unwrap();
        files.push((e.path().unwrap().to_string_lossy().into_owned(), b));
    }
    let mut man: Value = serde_json::from_slice(&files.iter().find(|(n, _)| n == "manifest.json").unwrap().1).unwrap();
    let mut second = man[0].clone();
    second["RepoTags"] = json!(["linuxkit/rngd:v1"]);
    man.as_array_mut().unwrap().push(second);
    let mut b = tar::Builder::new(Vec::new());
    for (n, data) in files.iter().map(|(n, d)| {
        if n == "manifest.json" {
            (n.clone(), serde_json::to_vec(&man).unwrap())
        } else {
            (n.clone(), d.clone())
        }
    }) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, n, data.as_slice()).unwrap();
    }
    std::fs::write(&arch, b.into_inner().unwrap()).unwrap();
    let e = keel_image::sources::load("docker-archive:two.tar", "x", &d).expect_err("two images").to_string();
    assert!(
        e.contains("2 images in the archive") && e.contains("test:latest") && e.contains("linuxkit/rngd:v1"),
        "{e}"
    );
    assert!(keel_image::sources::load("docker-archive:two.tar:linuxkit/rngd:v1", "x", &d).is_ok());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn volume_names_in_binds_and_mounts() {
    use keel_image::build::volume_binds;
    use keel_image::yaml::Moby;
    let y = "onboot:\n  - name: a\n    image: busybox\n    binds: [vola:/vola, /x:/x]\n    binds.add: [volb:/volb:ro]\n    mounts:\n      - {type: bind, source: vola, destination: /m, options: [rbind, ro]}\nvolumes:\n  - name: vola\n  - name: volb\n    readonly: true\n";
    let m = Moby::parse(y, "t").unwrap();
    let c = volume_binds(&m.onboot[0], &m).unwrap();
    assert_eq!(c.binds.unwrap(), ["/containers/volumes/vola/merged:/vola", "/x:/x"]);
    assert_eq!(c.binds_add.unwrap(), ["/containers/volumes/volb/merged:/volb:ro"]);
    assert_eq!(c.mounts.unwrap()[0].source, "/containers/volumes/vola/merged");
    // A read-only volume bound read-write, or an unknown volume: errors naming container and volume.
    let y = "onboot:\n  - name: a\n    image: busybox\n    binds: [volb:/volb]\nvolumes:\n  - name: volb\n    readonly: true\n";
    let m = Moby::parse(y, "t").unwrap();
    let e = volume_binds(&m.onboot[0], &m).unwrap_err().to_string();
    assert!(e.contains("a: bind \"volb:/volb\": volume volb is read-only"), "{e}");
    let y = "onboot:\n  - name: a\n    image: busybox\n    binds: [nope:/n]\n";
    let m = Moby::parse(y, "t").unwrap();
    let e = volume_binds(&m.onboot[0], &m).unwrap_err().to_string();
    assert!(e.contains("a: bind source \"nope\" is neither an absolute path nor a volume"), "{e}");
    // Volume names are checked like LinuxKit's.
    assert!(Moby::parse("volumes:\n  - name: Bad/Name\n", "t").is_err());
    assert!(Moby::parse("volumes:\n  - name: v\n  - name: v\n", "t")
        .unwrap_err()
        .to_string()
        .contains("duplicate volume"));
}
