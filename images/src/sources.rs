//! Image sources for `image:`: `busybox` (the host's static busybox and its applet links), `oci:PATH[:TAG]` (an OCI
//! image layout), `docker-archive:PATH` (a `docker save` tarball), `rootfs:DIR` (a directory copied as is), and any
//! other value as a registry reference (`linuxkit/getty:TAG`, `REGISTRY/REPO@sha256:…`), pulled into the cache
//! ([`crate::registry`], [`crate::cache`]) and read from there. Each yields a file tree plus the image config's
//! defaults. Blobs read from an OCI layout (the cache or `oci:`) are verified: size and sha256.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::{Descriptor, ImageIndex};
use serde::Deserialize;

use crate::cache::{parse_index, parse_root, pick_platform, ref_name, Layout, Root};
use crate::reference::Reference;
use crate::registry::{self, PullOptions};
use crate::tree::{norm, Kind, Node, Tree};
use crate::{io, Error};

/// The defaults an image config provides (OCI image spec `config`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// The image config's Labels (LinuxKit reads `org.mobyproject.config` from them).
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A resolved image: its root filesystem and config.
#[derive(Debug, Clone, Default)]
pub struct Image {
    pub rootfs: Tree,
    pub config: ImageConfig,
}

/// The default PATH, as Docker's busybox image sets it.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the host's static busybox is looked for.
pub const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// LinuxKit images keel replaces: its init, runc and containerd (in `init:`, or as onboot/services entries).
/// Every other `init:` image (ca-certificates, firmware, ...) is unpacked into the root, as LinuxKit does.
pub fn is_linuxkit_runtime_image(image: &str) -> bool {
    let image = image.strip_prefix("docker.io/").unwrap_or(image);
    let Some(rest) = image.strip_prefix("linuxkit/") else { return false };
    let name = rest.split([':', '@']).next().unwrap_or(rest);
    matches!(name, "init" | "runc" | "containerd")
}

/// Resolve `spec` (the `image:` value) for container `who`; `base` is the YAML file's directory (relative paths).
/// Registry references use the default cache (`~/.linuxkit/cache`) and pull what is missing.
pub fn load(spec: &str, who: &str, base: &Path) -> Result<Image, Error> {
    load_with(spec, who, base, &PullOptions::default())
}

/// [`load`] with explicit pull options (cache, `--offline`, `--arch`, credentials).
pub fn load_with(spec: &str, who: &str, base: &Path, pull: &PullOptions) -> Result<Image, Error> {
    let rel = |p: &str| -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    if spec == "busybox" || spec.starts_with("busybox:") || spec == "docker.io/library/busybox" {
        return busybox(who);
    }
    if let Some(rest) = spec.strip_prefix("oci:") {
        // oci:PATH[:TAG] — the tag is after the last ':' only if PATH without it is a directory.
        // (the first such ':': a tag may be a full reference, `docker.io/linuxkit/getty:v1`).
        let (path, tag) =
            match rest.match_indices(':').map(|(i, _)| (&rest[..i], &rest[i + 1..])).find(|(p, _)| rel(p).is_dir()) {
                Some((p, t)) if !rel(rest).is_dir() => (p, Some(t)),
                _ => (rest, None),
            };
        return oci_layout_arch(&rel(path), tag, &pull.arch)
            .map_err(|e| Error::Source(format!("{who}: image {spec}: {e}")));
    }
    if let Some(rest) = spec.strip_prefix("docker-archive:") {
        // docker-archive:FILE[:REF] — REF (a RepoTag, or its tag) only if FILE without it is a file.
        let (path, want) = match rest.split_once(':') {
            Some((p, r)) if rel(p).is_file() => (p, Some(r)),
            _ => (rest, None),
        };
        return docker_archive_ref(&rel(path), want).map_err(|e| Error::Source(format!("{who}: image {spec}: {e}")));
    }
    if let Some(dir) = spec.strip_prefix("rootfs:") {
        let d = rel(dir);
        if !d.is_dir() {
            return Err(Error::Source(format!("{who}: image {spec}: {} is not a directory", d.display())));
        }
        let rootfs = Tree::from_dir(&d).map_err(|e| Error::Source(format!("{who}: image {spec}: {e}")))?;
        return Ok(Image { rootfs, config: ImageConfig { env: vec![DEFAULT_PATH.into()], ..Default::default() } });
    }
    let r = Reference::parse(spec).map_err(|e| {
        Error::Source(format!("{who}: {e} (local sources: busybox, oci:PATH[:TAG], docker-archive:FILE, rootfs:DIR)"))
    })?;
    registry_image(&r, pull).map_err(|e| Error::Source(format!("{who}: image {spec}: {e}")))
}

/// A registry image: pulled into the cache unless there (or `--offline`), then read from it, verified. An image
/// that is neither cached nor pulled is an error saying how to get it ([`how_to_get`]).
pub fn registry_image(r: &Reference, pull: &PullOptions) -> Result<Image, Error> {
    let desc = registry::ensure(r, pull).map_err(|e| {
        if pull.offline {
            e // says so, with how to get it
        } else {
            Error::Source(format!("{e}; {}", how_to_get(r, pull)))
        }
    })?;
    let digest = desc.digest().to_string();
    image_from_layout(&Layout::at(&pull.cache), &digest, Some(desc.size()), &pull.arch).map_err(|e| {
        Error::Source(format!("{e} (in the cache {}; `keel-image cache rm {r}` drops it)", pull.cache.display()))
    })
}

/// How to get a registry image the cache lacks and that could not be pulled here.
pub fn how_to_get(r: &Reference, pull: &PullOptions) -> String {
    format!(
        "to get it: `keel-image pull {r}` where the registry is reachable (into the cache {}: then build here \
         with --offline), or a local source: oci:PATH[:TAG], docker-archive:FILE",
        pull.cache.display()
    )
}

/// The host's busybox binary (must be static: it runs inside containers with nothing else).
pub fn busybox_binary() -> Result<(PathBuf, Arc<Vec<u8>>), Error> {
    for c in BUSYBOX_CANDIDATES {
        let p = Path::new(c);
        if let Ok(data) = std::fs::read(p) {
            return Ok((p.to_path_buf(), Arc::new(data)));
        }
    }
    Err(Error::Source(
        "busybox not found on the host (/bin/busybox); install it: apt-get install -y busybox-static".into(),
    ))
}

/// The applet paths (relative, e.g. "bin/sh") busybox provides.
pub fn busybox_applets(bin: &Path) -> Result<Vec<String>, Error> {
    let out = std::process::Command::new(bin)
        .arg("--list-full")
        .output()
        .map_err(|e| Error::Command(format!("running {} --list-full: {e}", bin.display())))?;
    if !out.status.success() {
        return Err(Error::Command(format!("{} --list-full failed: {}", bin.display(), out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(|l| norm(l.trim())).filter(|l| !l.is_empty()).collect())
}

/// Add /bin/busybox plus an absolute symlink per applet to `t`.
pub fn add_busybox(t: &mut Tree) -> Result<(), Error> {
    let (path, data) = busybox_binary()?;
    t.insert("bin/busybox", Node { kind: Kind::File(data), mode: 0o755, uid: 0, gid: 0 });
    for a in busybox_applets(&path)? {
        if a != "bin/busybox" && t.get(&a).is_none() {
            t.insert(&a, Node::symlink("/bin/busybox"));
        }
    }
    Ok(())
}

fn busybox(who: &str) -> Result<Image, Error> {
    let mut t = Tree::new();
    add_busybox(&mut t).map_err(|e| Error::Source(format!("{who}: {e}")))?;
    for d in ["dev", "proc", "sys", "etc", "tmp", "root", "run", "var", "www"] {
        t.mkdir_p(d);
    }
    t.insert("tmp", Node::dir(0o1777));
    t.insert(
        "etc/passwd",
        Node::file(b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n".to_vec(), 0o644),
    );
    t.insert("etc/group", Node::file(b"root:x:0:\nnogroup:x:65534:\n".to_vec(), 0o644));
    Ok(Image {
        rootfs: t,
        config: ImageConfig { env: vec![DEFAULT_PATH.into()], cmd: vec!["sh".into()], ..Default::default() },
    })
}

/// An image config blob (OCI, or Docker's, which has the same `config` object) -> the defaults keel uses; `what`
/// names the blob in errors (which carry line, column and field). Only the `config` object is read (not
/// `architecture`, `os`, `rootfs`, which oci-spec's `ImageConfiguration` requires), so configs written by any tool
/// are accepted.
pub fn parse_image_config(data: &[u8], what: &str) -> Result<ImageConfig, Error> {
    #[derive(Deserialize)]
    struct ConfigFile {
        #[serde(alias = "Config")]
        config: Option<oci_spec::image::Config>,
    }
    let f: ConfigFile = crate::parse_json(data, what, "image config")?;
    let c = f.config.unwrap_or_default();
    Ok(ImageConfig {
        env: c.env().clone().unwrap_or_default(),
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone().unwrap_or_default(),
        user: c.user().clone().unwrap_or_default(),
        labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
    })
}

/// Pick a manifest descriptor from an index: by tag (`org.opencontainers.image.ref.name` equal to it, else ending
/// in `:TAG`), else the only one, else the only linux/amd64 one. More than one candidate (with different digests)
/// is an error naming them: never a silent pick.
fn pick(index: &ImageIndex, tag: Option<&str>, what: &str) -> Result<Descriptor, Error> {
    let ms = index.manifests();
    if ms.is_empty() {
        return Err(Error::Source(format!("{what}: no manifests")));
    }
    let name = |m: &Descriptor| ref_name(m).to_string();
    let describe = |c: &[&Descriptor]| -> String {
        c.iter()
            .map(|m| {
                let n = name(m);
                let d = m.digest().to_string();
                let d = &d[..d.len().min(19)];
                let p = match m.platform() {
                    Some(p) => format!("{}/{}", p.os(), p.architecture()),
                    None => "?/?".into(),
                };
                if n.is_empty() {
                    format!("{d} ({p})")
                } else {
                    format!("{n:?} {d} ({p})")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    // One candidate, or several that are the same manifest.
    let only = |c: Vec<&Descriptor>, why: &str| -> Result<Descriptor, Error> {
        let mut digests: Vec<&str> = c.iter().map(|m| m.digest().as_ref()).collect();
        digests.dedup();
        if digests.len() == 1 {
            return Ok(c[0].clone());
        }
        Err(Error::Source(format!("{what}: {} manifests {why}: {}; name one by its full tag", c.len(), describe(&c))))
    };
    if let Some(tag) = tag {
        let exact: Vec<&Descriptor> = ms.iter().filter(|m| name(m) == tag).collect();
        if !exact.is_empty() {
            return only(exact, &format!("tagged {tag:?}"));
        }
        let suffix: Vec<&Descriptor> =
            ms.iter().filter(|m| name(m).rsplit_once(':').map(|(_, t)| t) == Some(tag)).collect();
        if !suffix.is_empty() {
            return only(suffix, &format!("tagged ...:{tag}"));
        }
        let names: Vec<String> = ms.iter().map(name).filter(|n| !n.is_empty()).collect();
        return Err(Error::Source(format!("{what}: no manifest tagged {tag:?} (tags: {names:?})")));
    }
    if ms.len() == 1 {
        return Ok(ms[0].clone());
    }
    let amd64: Vec<&Descriptor> = ms
        .iter()
        .filter(|m| {
            m.platform()
                .as_ref()
                .is_some_and(|p| p.os().to_string() == "linux" && p.architecture().to_string() == "amd64")
        })
        .collect();
    if amd64.is_empty() {
        return Err(Error::Source(format!(
            "{what}: {} manifests and none for linux/amd64: {}; name a tag",
            ms.len(),
            describe(&ms.iter().collect::<Vec<_>>())
        )));
    }
    only(amd64, "for linux/amd64 and no tag given")
}

/// Read an OCI image layout directory (linux/amd64 from a multi-platform index).
pub fn oci_layout(dir: &Path, tag: Option<&str>) -> Result<Image, Error> {
    oci_layout_arch(dir, tag, "amd64")
}

/// Read an OCI image layout directory, resolving indexes to linux/`arch`. Every blob is verified.
pub fn oci_layout_arch(dir: &Path, tag: Option<&str>, arch: &str) -> Result<Image, Error> {
    let p = dir.join("index.json");
    let index = parse_index(&std::fs::read(&p).map_err(io("reading", &p))?, &p.display().to_string())?;
    let desc = pick(&index, tag, "index.json")?;
    image_from_layout(&Layout::at(dir), desc.digest().as_ref(), Some(desc.size()), arch)
}

/// The image whose manifest (or index, resolved to linux/`arch`) is blob `digest` of layout `l`: manifest,
/// config and layers read and verified (size and sha256), layers applied in order.
pub fn image_from_layout(l: &Layout, digest: &str, size: Option<u64>, arch: &str) -> Result<Image, Error> {
    let (mut dg, mut sz) = (digest.to_string(), size);
    for _ in 0..4 {
        let data = l.read_blob(&dg, sz)?;
        match parse_root(&data, &format!("manifest {dg}"))? {
            Root::Index(ix) => {
                let d = pick_platform(&ix, arch, &format!("index {dg}"))?;
                (dg, sz) = (d.digest().to_string(), Some(d.size()));
            }
            Root::Manifest(m) => {
                let raw = l.read_desc(m.config())?;
                let config = parse_image_config(&raw, &format!("config {}", m.config().digest()))?;
                let mut rootfs = Tree::new();
                for layer in m.layers() {
                    let mt = layer.media_type().to_string();
                    if mt.contains("zstd") {
                        return Err(Error::Source(format!("layer {}: {mt} is not supported", layer.digest())));
                    }
                    let data = l.read_desc(layer)?;
                    apply_layer(&mut rootfs, &data)
                        .map_err(|e| Error::Source(format!("layer {}: {e}", layer.digest())))?;
                }
                return Ok(Image { rootfs, config });
            }
        }
    }
    Err(Error::Source("index nesting too deep".into()))
}

/// Read a `docker save` tarball (manifest.json -> Config + Layers) holding one image.
pub fn docker_archive(path: &Path) -> Result<Image, Error> {
    docker_archive_ref(path, None)
}

/// Read a `docker save` tarball; `want` picks one of several images by RepoTag (`repo:tag`, or just `tag`).
pub fn docker_archive_ref(path: &Path, want: Option<&str>) -> Result<Image, Error> {
    let raw = std::fs::read(path).map_err(io("reading", path))?;
    let data = maybe_gunzip(raw)?;
    let mut files: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    let mut ar = tar::Archive::new(data.as_slice());
    for e in ar.entries().map_err(io("reading tar", path))? {
        let mut e = e.map_err(io("reading tar", path))?;
        if e.header().entry_type().is_file() {
            let name = norm(&e.path().map_err(io("reading tar", path))?.to_string_lossy());
            let mut buf = Vec::new();
            e.read_to_end(&mut buf).map_err(io("reading tar", path))?;
            files.insert(name, buf);
        }
    }
    let get = |n: &str| files.get(&norm(n)).ok_or_else(|| Error::Source(format!("{n} missing in the archive")));
    /// One image of a `docker save` manifest.json.
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ArchiveImage {
        config: String,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
        #[serde(default)]
        layers: Vec<String>,
    }
    let all: Vec<ArchiveImage> = crate::parse_json(get("manifest.json")?, "manifest.json", "docker save manifest")?;
    let tags = |m: &ArchiveImage| m.repo_tags.clone().unwrap_or_default();
    let chosen: Vec<&ArchiveImage> = match want {
        Some(w) => all
            .iter()
            .filter(|m| tags(m).iter().any(|t| t == w || t.rsplit_once(':').map(|x| x.1) == Some(w)))
            .collect(),
        None => all.iter().collect(),
    };
    let list = || all.iter().map(|m| format!("{:?}", tags(m))).collect::<Vec<_>>().join(", ");
    let m = match chosen.as_slice() {
        [] if all.is_empty() => return Err(Error::Source("manifest.json: empty".into())),
        [] => {
            return Err(Error::Source(format!(
                "no image tagged {:?} in the archive (images: {})",
                want.unwrap_or(""),
                list()
            )))
        }
        [one] => *one,
        many => {
            return Err(Error::Source(format!(
                "{} images in the archive{}: {}; name one: docker-archive:FILE:REPO:TAG",
                many.len(),
                want.map(|w| format!(" match {w:?}")).unwrap_or_default(),
                many.iter().map(|m| format!("{:?}", tags(m))).collect::<Vec<_>>().join(", ")
            )))
        }
    };
    let config = parse_image_config(get(&m.config)?, &format!("image config {}", m.config))?;
    let mut rootfs = Tree::new();
    for l in &m.layers {
        apply_layer(&mut rootfs, get(l)?).map_err(|e| Error::Source(format!("layer {l}: {e}")))?;
    }
    Ok(Image { rootfs, config })
}

fn maybe_gunzip(data: Vec<u8>) -> Result<Vec<u8>, Error> {
    if data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::Source(format!("gunzip: {e}")))?;
        Ok(out)
    } else {
        Ok(data)
    }
}

/// Apply one layer (tar or tar+gzip) to `t` with OCI whiteout semantics: `.wh..wh..opq` empties its directory
/// (lower layers only), `.wh.NAME` deletes NAME. Whiteouts are applied before the layer's own entries.
pub fn apply_layer(t: &mut Tree, data: &[u8]) -> Result<(), Error> {
    let data = maybe_gunzip(data.to_vec())?;
    let mut ar = tar::Archive::new(data.as_slice());
    let mut adds: Vec<(String, Node, Option<String>)> = Vec::new();
    let mut whiteouts: Vec<(String, bool)> = Vec::new();
    for e in ar.entries().map_err(|e| Error::Source(format!("tar: {e}")))? {
        let mut e = e.map_err(|e| Error::Source(format!("tar: {e}")))?;
        let path = norm(&e.path().map_err(|e| Error::Source(format!("tar path: {e}")))?.to_string_lossy());
        let (dir, name) = match path.rfind('/') {
            Some(i) => (path[..i].to_string(), path[i + 1..].to_string()),
            None => (String::new(), path.clone()),
        };
        if name == ".wh..wh..opq" {
            whiteouts.push((dir, true));
            continue;
        }
        if let Some(victim) = name.strip_prefix(".wh.") {
            whiteouts.push((if dir.is_empty() { victim.to_string() } else { format!("{dir}/{victim}") }, false));
            continue;
        }
        let h = e.header().clone();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let uid = h.uid().unwrap_or(0) as u32;
        let gid = h.gid().unwrap_or(0) as u32;
        let et = h.entry_type();
        let mut link = None;
        let kind = match et {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut buf = Vec::new();
                e.read_to_end(&mut buf).map_err(|e| Error::Source(format!("tar {path}: {e}")))?;
                Kind::File(Arc::new(buf))
            }
            tar::EntryType::Symlink => Kind::Symlink(
                e.link_name().ok().flatten().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default(),
            ),
            tar::EntryType::Link => {
                link = e.link_name().ok().flatten().map(|l| norm(&l.to_string_lossy()));
                Kind::Fifo // placeholder, resolved below
            }
            tar::EntryType::Char => {
                Kind::Char(h.device_major().ok().flatten().unwrap_or(0), h.device_minor().ok().flatten().unwrap_or(0))
            }
            tar::EntryType::Block => {
                Kind::Block(h.device_major().ok().flatten().unwrap_or(0), h.device_minor().ok().flatten().unwrap_or(0))
            }
            tar::EntryType::Fifo => Kind::Fifo,
            _ => continue, // pax headers etc. are consumed by the tar crate
        };
        if path.is_empty() {
            continue;
        }
        adds.push((path, Node { kind, mode, uid, gid }, link));
    }
    for (p, opaque) in whiteouts {
        if opaque {
            t.remove_children(&p);
        } else {
            t.remove(&p);
        }
    }
    for (p, node, link) in adds {
        match link {
            Some(target) => {
                let n = t
                    .get(&target)
                    .cloned()
                    .ok_or_else(|| Error::Source(format!("hard link {p} -> {target}: target not found")))?;
                t.insert(&p, n);
            }
            None => t.insert(&p, node),
        }
    }
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Build a tar layer from (path, contents-or-None-for-dir) pairs.
    pub fn layer(entries: &[(&str, Option<&[u8]>)], gz: bool) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, c) in entries {
            let mut h = tar::Header::new_gnu();
            match c {
                Some(data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                    h.set_mode(0o644);
                    h.set_cksum();
                    b.append_data(&mut h, p, *data).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    h.set_cksum();
                    b.append_data(&mut h, p, &[][..]).unwrap();
                }
            }
        }
        let raw = b.into_inner().unwrap();
        if gz {
            crate::cpio::gzip(&raw, 6).unwrap()
        } else {
            raw
        }
    }

    #[test]
    fn whiteouts_and_opaque() {
        let mut t = Tree::new();
        let l1 = layer(
            &[
                ("etc/", None),
                ("etc/a", Some(b"a")),
                ("etc/b", Some(b"b")),
                ("opt/", None),
                ("opt/x/", None),
                ("opt/x/old", Some(b"old")),
            ],
            false,
        );
        let l2 =
            layer(&[("etc/.wh.a", Some(b"")), ("opt/x/.wh..wh..opq", Some(b"")), ("opt/x/new", Some(b"new"))], true);
        apply_layer(&mut t, &l1).unwrap();
        apply_layer(&mut t, &l2).unwrap();
        assert!(t.get("etc/a").is_none());
        assert!(t.get("etc/b").is_some());
        assert!(t.get("opt/x/old").is_none(), "opaque dir hides the lower layer");
        assert!(t.get("opt/x/new").is_some(), "opaque dir keeps this layer's entries");
        assert!(t.get("etc/.wh.a").is_none());
    }

    #[test]
    fn registry_image_offline_and_bad_references_are_clear_errors() {
        let cache = std::env::temp_dir().join(format!("keel-src-offline-{}", std::process::id()));
        let o = PullOptions { cache, offline: true, ..Default::default() };
        let e = load_with("linuxkit/sshd:v1.0", "sshd", Path::new("."), &o).unwrap_err().to_string();
        assert!(e.contains("sshd") && e.contains("docker.io/linuxkit/sshd:v1.0") && e.contains("--offline"), "{e}");
        let e = load_with("Not/Valid", "svc", Path::new("."), &o).unwrap_err().to_string();
        assert!(e.contains("svc") && e.contains("Not/Valid") && e.contains("oci:"), "{e}");
    }

    #[test]
    fn cache_keys_are_full_references() {
        // The names LinuxKit's cache uses (`docker.io/linuxkit/getty:v1`): what the cache lookup asks for.
        for (spec, full) in [
            ("linuxkit/getty:v1", "docker.io/linuxkit/getty:v1"),
            ("alpine", "docker.io/library/alpine:latest"),
            ("docker.io/linuxkit/getty:v1", "docker.io/linuxkit/getty:v1"),
            ("localhost:5000/a/b", "localhost:5000/a/b:latest"),
            ("ghcr.io/o/r:1", "ghcr.io/o/r:1"),
        ] {
            assert_eq!(Reference::parse(spec).unwrap().full(), full);
        }
    }

    #[test]
    fn linuxkit_runtime_images() {
        assert!(is_linuxkit_runtime_image("linuxkit/init:8f1e6a0747acbbb4d7e24dc98f97faa8d1c6cec7"));
        assert!(is_linuxkit_runtime_image("linuxkit/runc:v1.0"));
        assert!(!is_linuxkit_runtime_image("linuxkit/sshd:v1.0"));
        assert!(!is_linuxkit_runtime_image("linuxkit/ca-certificates:v1.0"));
        assert!(is_linuxkit_runtime_image("docker.io/linuxkit/containerd:abc"));
    }
}
