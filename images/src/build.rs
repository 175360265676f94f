//! Orchestrates a build: YAML -> kernel + bundles + files + modules -> DIR/{kernel, initrd.img, cmdline}.
//!
//! Bundles follow LinuxKit's layout: /containers/onboot/NNN-name, /containers/services/name,
//! /containers/onshutdown/NNN-name, each with config.json, runtime.json and rootfs/ (writable containers get their
//! image in lower/ and an overlay set up by runtime.json; containers using the same image share one copy, as
//! LinuxKit does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::sources::{self, Image};
use crate::tree::{Kind, Node, Tree};
use crate::yaml::{Container, Moby};
use crate::{config, cpio, files, io, kernel, layout, Error};

/// Default kernel command line.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=-1 quiet";

/// Build inputs.
#[derive(Debug, Clone)]
pub struct Options {
    pub yaml: PathBuf,
    pub out: PathBuf,
    pub init_binary: PathBuf,
    pub kernel_cache: PathBuf,
    pub gzip_level: u32,
    /// Registry references: cache, --offline, --arch, credentials.
    pub pull: crate::registry::PullOptions,
}

/// What was built (printed by the CLI, used by tests and the benchmark).
#[derive(Debug, Default)]
pub struct Summary {
    pub bundles: Vec<String>,
    pub notes: Vec<String>,
    pub kernel_version: String,
    pub modules: usize,
    pub modules_bytes: u64,
    pub init_bytes: u64,
    pub initrd_bytes: u64,
    pub uncompressed_bytes: u64,
}

/// The bundles of an image, as (in-image bundle path, container, section) in boot order.
pub fn bundle_paths(m: &Moby) -> Vec<(String, &Container)> {
    let mut v = Vec::new();
    for (i, c) in m.onboot.iter().enumerate() {
        v.push((format!("containers/onboot/{i:03}-{}", c.name), c));
    }
    for c in &m.services {
        v.push((format!("containers/services/{}", c.name), c));
    }
    for (i, c) in m.onshutdown.iter().enumerate() {
        v.push((format!("containers/onshutdown/{i:03}-{}", c.name), c));
    }
    v
}

/// Assemble the bundles into `t`. `base` resolves relative source paths.
pub fn add_bundles(
    t: &mut Tree,
    m: &Moby,
    base: &Path,
    pull: &crate::registry::PullOptions,
    s: &mut Summary,
) -> Result<(), Error> {
    // image spec -> (image, in-image path of its unpacked copy)
    let mut images: HashMap<String, (Image, Option<String>)> = HashMap::new();
    for (bundle, c) in bundle_paths(m) {
        if sources::is_linuxkit_runtime_image(&c.image) {
            s.notes.push(format!("{bundle}: {} skipped: keel replaces LinuxKit's runtime images", c.image));
            continue;
        }
        if !images.contains_key(&c.image) {
            images.insert(c.image.clone(), (sources::load_with(&c.image, &c.name, base, pull)?, None));
        }
        let readonly = c.readonly.unwrap_or(false);
        let (img, shared) = images.get_mut(&c.image).ok_or_else(|| Error::Source(c.image.clone()))?;
        let cfg = config::oci_config(c, &img.config, &img.rootfs)?;
        // Where the image tree lives: shared copy, or unpack here.
        let own = format!("{bundle}/{}", if readonly { "rootfs" } else { "lower" });
        let lower = match shared.clone() {
            Some(p) => p,
            None => {
                let mut rootfs = img.rootfs.clone();
                prepare_rootfs(&mut rootfs, &cfg, t);
                t.graft(&own, &rootfs);
                *shared = Some(own.clone());
                own.clone()
            }
        };
        t.mkdir_p(&format!("{bundle}/rootfs"));
        if !readonly {
            t.mkdir_p(&format!("{bundle}/tmp"));
        }
        // A shared copy still needs this bundle's mount points.
        if lower != own {
            let mut extra = Tree::new();
            prepare_rootfs(&mut extra, &cfg, t);
            for (p, n) in extra.nodes {
                if !p.is_empty() && t.get(&format!("{lower}/{p}")).is_none() {
                    t.insert(&format!("{lower}/{p}"), n);
                }
            }
        }
        let rt = config::runtime_json(c, &format!("/{bundle}"), &format!("/{lower}"), readonly);
        let pretty = |v: &Value| serde_json::to_vec_pretty(v).unwrap_or_default();
        t.insert(&format!("{bundle}/config.json"), Node::file(pretty(&cfg), 0o644));
        t.insert(&format!("{bundle}/runtime.json"), Node::file(pretty(&rt), 0o644));
        s.bundles.push(bundle);
    }
    Ok(())
}

/// Mount points the config needs inside the rootfs (bind destinations take the source's type from the image root
/// `host` where known: a file bind needs a file to mount on).
fn prepare_rootfs(rootfs: &mut Tree, cfg: &Value, host: &Tree) {
    for mt in cfg["mounts"].as_array().into_iter().flatten() {
        let dest = mt["destination"].as_str().unwrap_or("");
        let is_bind = mt["type"] == "bind"
            || mt["options"].as_array().map(|o| o.iter().any(|x| x == "bind" || x == "rbind")).unwrap_or(false);
        let as_file = is_bind
            && host
                .resolve(mt["source"].as_str().unwrap_or(""))
                .and_then(|p| host.get(&p))
                .map(|n| !matches!(n.kind, Kind::Dir))
                .unwrap_or(false);
        layout::ensure_mountpoint(rootfs, dest, as_file);
    }
}

fn kernel_for(m: &Moby, base: &Path, cache: &Path, s: &mut Summary) -> Result<kernel::Kernel, Error> {
    let k = m.kernel.clone().unwrap_or_default();
    if let Some(p) = &k.path {
        let p = if Path::new(p).is_absolute() { PathBuf::from(p) } else { base.join(p) };
        if !p.is_file() {
            return Err(Error::Kernel(format!("kernel.path {} is not a file", p.display())));
        }
        let modules = k.modules_dir.as_ref().map(|d| base.join(d));
        let version =
            modules.as_ref().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(kernel::Kernel { image: p, version, modules });
    }
    match k.image.as_deref() {
        None | Some("debian") | Some("") => {}
        Some(other) if other.starts_with("debian") => {}
        Some(other) => s.notes.push(format!(
            "kernel image {other} cannot be fetched here (no registry); using Debian's linux-image-amd64"
        )),
    }
    kernel::debian(cache)
}

/// Build an image.
pub fn build(o: &Options) -> Result<Summary, Error> {
    let text = std::fs::read_to_string(&o.yaml).map_err(io("reading", &o.yaml))?;
    let m = Moby::parse(&text, &o.yaml.display().to_string())?;
    let base = o.yaml.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let mut s = Summary::default();
    for i in &m.init {
        s.notes.push(format!("init: {i} ignored: keel's init replaces LinuxKit's init, runc and containerd"));
    }
    let k = kernel_for(&m, &base, &o.kernel_cache, &mut s)?;
    s.kernel_version = k.version.clone();
    let hostname = o.yaml.file_stem().map(|x| x.to_string_lossy().replace('_', "-")).unwrap_or_else(|| "keel".into());
    let mut t = layout::base(&o.init_binary, &format!("keel-{hostname}"))?;
    s.init_bytes = layout::file_size(&o.init_binary)?;
    files::apply(&mut t, &m.files, &text, &base)?;
    add_bundles(&mut t, &m, &base, &o.pull, &mut s)?;
    let extra = m.kernel.as_ref().and_then(|k| k.modules.clone()).unwrap_or_default();
    let rep = kernel::add_modules(&mut t, &k, &extra)?;
    if !rep.not_found.is_empty() {
        return Err(Error::Kernel(format!("kernel.modules: not found in {}: {}", k.version, rep.not_found.join(", "))));
    }
    s.modules = rep.count;
    s.modules_bytes = rep.bytes;
    let raw = cpio::write_newc(&t);
    s.uncompressed_bytes = raw.len() as u64;
    let gz = cpio::gzip(&raw, o.gzip_level).map_err(io("compressing initrd for", &o.out))?;
    s.initrd_bytes = gz.len() as u64;
    std::fs::create_dir_all(&o.out).map_err(io("creating", &o.out))?;
    let w = |name: &str, data: &[u8]| -> Result<(), Error> {
        let p = o.out.join(name);
        let tmp = o.out.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, data).map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &p).map_err(io("renaming to", &p))
    };
    w("initrd.img", &gz)?;
    let kdata = std::fs::read(&k.image).map_err(io("reading kernel", &k.image))?;
    w("kernel", &kdata)?;
    let cmdline = m.kernel.as_ref().and_then(|k| k.cmdline.clone()).unwrap_or_else(|| DEFAULT_CMDLINE.into());
    w("cmdline", format!("{}\n", cmdline.trim()).as_bytes())?;
    Ok(s)
}
