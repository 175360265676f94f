//! Image sources end to end: an OCI image layout (index -> manifest by tag -> config -> gzip layers with
//! whiteouts and an opaque dir) and a `docker save` archive, built in the test, read through `sources::load`.

use keel_image::sources::load;
use keel_image::testutil::{layer, write_docker_archive, write_oci_layout, Entry};
use keel_image::tree::Kind;
use serde_json::json;

fn layers() -> Vec<Vec<u8>> {
    vec![
        layer(&[
            Entry::Dir("etc"),
            Entry::File("etc/a", b"a", 0o644),
            Entry::File("etc/b", b"b", 0o600),
            Entry::Dir("opt/x"),
            Entry::File("opt/x/old", b"old", 0o644),
            Entry::Symlink("bin", "usr/bin"),
        ]),
        layer(&[
            Entry::File("etc/.wh.a", b"", 0o644),
            Entry::File("opt/x/.wh..wh..opq", b"", 0o644),
            Entry::File("opt/x/new", b"new", 0o755),
        ]),
    ]
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("keel-image-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn oci_layout_with_whiteouts_and_tag() {
    let dir = tmp("oci");
    let cfg = json!({"Env": ["PATH=/bin", "A=1"], "Entrypoint": ["/bin/sh"], "Cmd": ["-c", "true"],
        "WorkingDir": "/opt", "User": "1000:1000"});
    write_oci_layout(&dir, &layers(), true, cfg, "v2").unwrap();
    let img = load(&format!("oci:{}:v2", dir.display()), "t", std::path::Path::new("/")).unwrap();
    let t = &img.rootfs;
    assert!(t.get("etc/a").is_none(), "whiteout .wh.a removes etc/a");
    assert_eq!(t.get("etc/b").unwrap().mode, 0o600);
    assert!(t.get("opt/x/old").is_none(), "opaque dir hides lower layers");
    assert_eq!(t.get("opt/x/new").unwrap().kind, Kind::File(b"new".to_vec().into()));
    assert_eq!(t.get("bin").unwrap().kind, Kind::Symlink("usr/bin".into()));
    assert_eq!(img.config.env, ["PATH=/bin", "A=1"]);
    assert_eq!(img.config.entrypoint, ["/bin/sh"]);
    assert_eq!(img.config.cmd, ["-c", "true"]);
    assert_eq!(img.config.working_dir, "/opt");
    assert_eq!(img.config.user, "1000:1000");
    // Without a tag: the only manifest. A wrong tag: an error naming the tags.
    assert!(load(&format!("oci:{}", dir.display()), "t", std::path::Path::new("/")).is_ok());
    let e = load(&format!("oci:{}:nope", dir.display()), "t", std::path::Path::new("/")).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("v2"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn docker_archive() {
    let dir = tmp("docker");
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("img.tar");
    write_docker_archive(&f, &layers(), json!({"Env": ["X=y"], "Cmd": ["/bin/true"]})).unwrap();
    let img = load(&format!("docker-archive:{}", f.display()), "t", std::path::Path::new("/")).unwrap();
    assert!(img.rootfs.get("etc/a").is_none());
    assert!(img.rootfs.get("opt/x/new").is_some());
    assert_eq!(img.config.cmd, ["/bin/true"]);
    assert_eq!(img.config.env, ["X=y"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rootfs_dir_source() {
    let dir = tmp("rootfs");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/app"), b"#!/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("app", dir.join("bin/alias")).unwrap();
    let img = load(&format!("rootfs:{}", dir.display()), "t", std::path::Path::new("/")).unwrap();
    assert!(matches!(img.rootfs.get("bin/app").unwrap().kind, Kind::File(_)));
    assert_eq!(img.rootfs.get("bin/alias").unwrap().kind, Kind::Symlink("app".into()));
    let e = load("rootfs:/nonexistent-dir", "svc", std::path::Path::new("/")).unwrap_err().to_string();
    assert!(e.contains("svc") && e.contains("/nonexistent-dir"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn oci_layout_blobs_are_verified() {
    let dir = tmp("oci-verify");
    write_oci_layout(&dir, &layers(), true, json!({}), "v1").unwrap();
    let spec = format!("oci:{}:v1", dir.display());
    assert!(load(&spec, "t", std::path::Path::new("/")).is_ok());
    // Corrupt the first layer (same size): refused, naming container, image and blob.
    let idx: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let md = idx["manifests"][0]["digest"].as_str().unwrap().to_string();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(&md[7..])).unwrap()).unwrap();
    let l0 = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let p = dir.join("blobs/sha256").join(&l0[7..]);
    let mut data = std::fs::read(&p).unwrap();
    let n = data.len() / 2;
    data[n] ^= 1;
    std::fs::write(&p, &data).unwrap();
    let e = load(&spec, "svc", std::path::Path::new("/")).unwrap_err().to_string();
    assert!(e.contains("svc") && e.contains(&spec) && e.contains(&l0) && e.contains("hashes to"), "{e}");
    // Truncated: a size mismatch.
    std::fs::write(&p, &data[..n]).unwrap();
    let e = load(&spec, "svc", std::path::Path::new("/")).unwrap_err().to_string();
    assert!(e.contains(&l0) && e.contains("size"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
