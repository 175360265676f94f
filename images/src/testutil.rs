//! Writers for small OCI image layouts and `docker save` archives, used by keel-image's unit tests and by the VM
//! tests to make local image sources.

use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{io, Error};

/// A layer entry: a file with contents and mode, a directory, or a symlink.
pub enum Entry<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

/// Make a tar layer.
pub fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        let r = match e {
            Entry::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(*mode);
                h.set_cksum();
                b.append_data(&mut h, p, *data)
            }
            Entry::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                h.set_cksum();
                b.append_data(&mut h, p, &[][..])
            }
            Entry::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                b.append_link(&mut h, p, target)
            }
        };
        r.unwrap_or_else(|e| panic!("tar: {e}"));
    }
    b.into_inner().unwrap_or_default()
}

fn sha(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn put_blob(dir: &Path, data: &[u8]) -> Result<String, Error> {
    let h = sha(data);
    let p = dir.join("blobs/sha256").join(&h);
    std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(io("creating", dir))?;
    std::fs::write(&p, data).map_err(io("writing", &p))?;
    Ok(h)
}

/// Write an OCI image layout at `dir` with `layers` (gzip'ed when `gz`), image config `config` (the `config` object:
/// Env, Cmd, ...) and tag `tag`.
pub fn write_oci_layout(
    dir: &Path,
    layers: &[Vec<u8>],
    gz: bool,
    config: serde_json::Value,
    tag: &str,
) -> Result<(), Error> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io("writing", dir))?;
    let mut descs = Vec::new();
    for l in layers {
        let data = if gz { crate::cpio::gzip(l, 6).map_err(io("gzip", dir))? } else { l.clone() };
        let h = put_blob(dir, &data)?;
        let mt =
            if gz { "application/vnd.oci.image.layer.v1.tar+gzip" } else { "application/vnd.oci.image.layer.v1.tar" };
        descs.push(json!({"mediaType": mt, "digest": format!("sha256:{h}"), "size": data.len()}));
    }
    let cfg = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": []}}))
    .unwrap_or_default();
    let ch = put_blob(dir, &cfg)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{ch}"), "size": cfg.len()},
        "layers": descs,
    }))
    .unwrap_or_default();
    let mh = put_blob(dir, &manifest)?;
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{mh}"), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
        "platform": {"architecture": "amd64", "os": "linux"},
    }]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap_or_default()).map_err(io("writing", dir))
}

/// Write a `docker save`-style archive at `path`.
pub fn write_docker_archive(path: &Path, layers: &[Vec<u8>], config: serde_json::Value) -> Result<(), Error> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap_or_else(|e| panic!("tar: {e}"));
    };
    let cfg =
        serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "config": config})).unwrap_or_default();
    let cname = format!("{}.json", sha(&cfg));
    add(&cname, &cfg);
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let n = format!("layer{i}/layer.tar");
        add(&n, l);
        names.push(n);
    }
    let manifest = json!([{"Config": cname, "RepoTags": ["test:latest"], "Layers": names}]);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap_or_default());
    let data = b.into_inner().unwrap_or_default();
    std::fs::write(path, data).map_err(io("writing", path))
}

/// Write a multi-platform OCI image layout at `dir`: one image per `(architecture, layers, config)` (layers
/// gzip'ed), an image index over them (with platforms), and index.json naming that index `tag`.
pub fn write_oci_index(dir: &Path, images: &[(&str, Vec<Vec<u8>>, serde_json::Value)], tag: &str) -> Result<(), Error> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io("writing", dir))?;
    let mut manifests = Vec::new();
    for (arch, layers, config) in images {
        let mut descs = Vec::new();
        for l in layers {
            let data = crate::cpio::gzip(l, 6).map_err(io("gzip", dir))?;
            let h = put_blob(dir, &data)?;
            descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": format!("sha256:{h}"), "size": data.len()}));
        }
        let cfg = serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": []}}))
        .unwrap_or_default();
        let ch = put_blob(dir, &cfg)?;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{ch}"), "size": cfg.len()},
            "layers": descs,
        }))
        .unwrap_or_default();
        let mh = put_blob(dir, &manifest)?;
        manifests.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{mh}"), "size": manifest.len(),
            "platform": {"architecture": arch, "os": "linux"}}));
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}))
    .unwrap_or_default();
    let ih = put_blob(dir, &index)?;
    let top = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": format!("sha256:{ih}"), "size": index.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap_or_default()).map_err(io("writing", dir))
}

/// Add one image to the OCI layout at `dir` (created if missing), named `ref_name` in index.json (for LinuxKit's
/// cache layout: the full reference, e.g. `docker.io/linuxkit/getty:TAG`). An existing entry of that name is
/// replaced. `config` is the image config's `config` object (Env, Cmd, Labels, ...).
pub fn add_to_layout(dir: &Path, ref_name: &str, layers: &[Vec<u8>], config: serde_json::Value) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io("writing", dir))?;
    let mut descs = Vec::new();
    for l in layers {
        let h = put_blob(dir, l)?;
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{h}"), "size": l.len()}));
    }
    let cfg = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": []}}))
    .unwrap_or_default();
    let ch = put_blob(dir, &cfg)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{ch}"), "size": cfg.len()},
        "layers": descs,
    }))
    .unwrap_or_default();
    let mh = put_blob(dir, &manifest)?;
    let ip = dir.join("index.json");
    let mut index: serde_json::Value = std::fs::read(&ip)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({"schemaVersion": 2, "manifests": []}));
    let ms = index["manifests"].as_array_mut().ok_or_else(|| Error::Source("index.json: no manifests".into()))?;
    ms.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != ref_name);
    ms.push(json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{mh}"), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": ref_name},
        "platform": {"architecture": "amd64", "os": "linux"},
    }));
    std::fs::write(&ip, serde_json::to_vec(&index).unwrap_or_default()).map_err(io("writing", &ip))
}

/// A layer holding the host's static busybox as /bin/busybox with a link per applet (for stand-in images).
pub fn busybox_layer() -> Result<Vec<u8>, Error> {
    let (path, data) = crate::sources::busybox_binary()?;
    let applets = crate::sources::busybox_applets(&path)?;
    let mut entries = vec![Entry::Dir("bin/"), Entry::File("bin/busybox", &data, 0o755)];
    let mut dirs: Vec<String> = applets
        .iter()
        .filter_map(|a| a.rsplit_once('/').map(|(d, _)| format!("{d}/")))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    dirs.retain(|d| d != "bin/");
    for d in &dirs {
        entries.push(Entry::Dir(d));
    }
    for a in applets.iter().filter(|a| a.as_str() != "bin/busybox") {
        entries.push(Entry::Symlink(a, "/bin/busybox"));
    }
    Ok(layer(&entries))
}
