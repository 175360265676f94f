//! Orchestrates a build: YAML -> kernel + bundles + files + modules -> DIR/{kernel, initrd.img, cmdline}.
//!
//! Bundles follow LinuxKit's layout: /containers/onboot/NNN-name, /containers/services/name,
//! /containers/onshutdown/NNN-name, each with config.json, runtime.json and rootfs/ (writable containers get their
//! image in lower/ and an overlay set up by runtime.json; containers using the same image share one copy, as
//! LinuxKit does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::sources::{self, Image};
use crate::spec::{self, Spec};
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

/// Kernel modules LinuxKit's storage packages need (built into LinuxKit's kernel), by container name.
fn package_modules(m: &Moby) -> Vec<(String, &'static [&'static str])> {
    let mut out = Vec::new();
    for (_, c) in bundle_paths(m) {
        let image = c.image.strip_prefix("docker.io/").unwrap_or(&c.image);
        let Some(rest) = image.strip_prefix("linuxkit/") else { continue };
        let mods: &'static [&'static str] = match rest.split([':', '@']).next().unwrap_or("") {
            "format" | "mount" | "extend" | "swap" => &["ext4"],
            "dm-crypt" => &["dm_crypt"],
            _ => continue,
        };
        out.push((c.name.clone(), mods));
    }
    out
}

/// Every image the build needs (containers, `init:` images other than LinuxKit's init/runc/containerd, volumes),
/// each loaded once (registry references from the cache, pulled as `pull` says). One error lists every image that
/// cannot be loaded, each with how to get it.
pub fn load_images(
    m: &Moby,
    base: &Path,
    pull: &crate::registry::PullOptions,
) -> Result<HashMap<String, Image>, Error> {
    let mut wanted: Vec<(String, String)> = Vec::new(); // (spec, who)
    for (i, spec) in m.init.iter().enumerate() {
        if !sources::is_linuxkit_runtime_image(spec) {
            wanted.push((spec.clone(), format!("init[{i}]")));
        }
    }
    for v in &m.volumes {
        if let Some(img) = v.image.as_ref().filter(|s| !s.is_empty()) {
            wanted.push((img.clone(), format!("volume {}", v.name)));
        }
    }
    for (_, c) in bundle_paths(m) {
        if !sources::is_linuxkit_runtime_image(&c.image) {
            wanted.push((c.image.clone(), c.name.clone()));
        }
    }
    let mut images = HashMap::new();
    let mut errors: Vec<String> = Vec::new();
    for (spec, who) in wanted {
        if images.contains_key(&spec) {
            continue;
        }
        match sources::load_with(&spec, &who, base, pull) {
            Ok(img) => {
                images.insert(spec, img);
            }
            Err(e) => {
                // One line per image, even when several containers use it.
                if !errors
                    .iter()
                    .any(|x| x.contains(&format!("image {spec:?}")) || x.contains(&format!("image {spec}:")))
                {
                    errors.push(e.to_string());
                }
                images.insert(spec, Image::default());
            }
        }
    }
    match errors.len() {
        0 => Ok(images),
        1 => Err(Error::Source(errors.remove(0))),
        n => Err(Error::Source(format!("{n} images cannot be loaded:\n  - {}", errors.join("\n  - ")))),
    }
}

/// Paths of keel's own in-image binaries that an `init:` image may not replace.
const PROTECTED: &[&str] =
    &["init", "sbin/init", "sbin/modprobe", "usr/bin/keelctl", "usr/bin/keel-runc", "usr/bin/runc", "usr/bin/ctr"];

/// Unpack the `init:` images other than LinuxKit's init/runc/containerd into the root, in order, as LinuxKit does
/// (with its filter: /etc/resolv.conf a symlink to /run/resolvconf/resolv.conf, /etc/hosts replaced, /etc/hostname
/// dropped). keel's own binaries are kept.
pub fn add_init_images(t: &mut Tree, m: &Moby, images: &HashMap<String, Image>, s: &mut Summary) {
    for (i, spec) in m.init.iter().enumerate() {
        if sources::is_linuxkit_runtime_image(spec) {
            s.notes.push(format!("init[{i}]: {spec} not unpacked: keel's init and keel-runc replace LinuxKit's init, runc and containerd"));
            continue;
        }
        let Some(img) = images.get(spec) else { continue };
        let mut tree = img.rootfs.clone();
        layout::linuxkit_filter(&mut tree, Some(layout::RESOLVCONF));
        let kept: Vec<String> = PROTECTED.iter().filter(|p| tree.get(p).is_some()).map(|p| format!("/{p}")).collect();
        for p in PROTECTED.iter().chain(["containers"].iter()) {
            tree.remove(p);
        }
        // LinuxKit mounts a tmpfs on /var at boot, hiding what an init image has there; keel's rc mounts it only
        // on an empty /var, so leave those files out.
        let var_hidden = tree.nodes.keys().any(|k| k.starts_with("var/"));
        tree.remove_children("var");
        t.graft("", &tree);
        let mut note = format!("init[{i}]: {spec} unpacked into the root ({} entries)", tree.nodes.len());
        if !kept.is_empty() {
            note.push_str(&format!("; keel's own {} kept", kept.join(", ")));
        }
        if var_hidden {
            note.push_str("; its /var left out (LinuxKit's tmpfs on /var hides it)");
        }
        s.notes.push(note);
    }
}

/// LinuxKit's volumes: /containers/volumes/NAME/{lower (the image, or empty), tmp, merged}; keel's rc mounts them
/// at boot (a tmpfs on tmp and an overlay on merged).
pub fn add_volumes(t: &mut Tree, m: &Moby, images: &HashMap<String, Image>, s: &mut Summary) -> Result<(), Error> {
    for v in &m.volumes {
        let dir = format!("containers/volumes/{}", v.name);
        match v.format.as_deref() {
            None | Some("") | Some("filesystem") => {}
            Some(f) => {
                return Err(Error::Config(format!(
                    "volumes: {}: format {f:?} is not supported by keel (only `filesystem`: the image's files)",
                    v.name
                )))
            }
        }
        t.mkdir_p(&format!("{dir}/lower"));
        if let Some(img) = v.image.as_ref().and_then(|i| images.get(i)) {
            let mut tree = img.rootfs.clone();
            layout::linuxkit_filter(&mut tree, Some(layout::RESOLVCONF));
            t.graft(&format!("{dir}/lower"), &tree);
        }
        // Always, as LinuxKit: a read-only volume is read-write underneath; its `:ro` binds (checked at build
        // time) keep containers from writing.
        t.mkdir_p(&format!("{dir}/tmp"));
        t.mkdir_p(&format!("{dir}/merged"));
        if v.platforms.as_ref().is_some_and(|p| !p.is_empty()) {
            s.notes.push(format!("volumes: {}: platforms ignored (only used with format oci)", v.name));
        }
    }
    Ok(())
}

/// Replace volume names in the YAML's `binds`, `binds.add` and bind `mounts` by the volume's merged directory
/// (LinuxKit's updateMountsAndBindsFromVolumes: a source not starting with `/` is a volume name; a read-only
/// volume must be bound `:ro`). Label binds are not rewritten (as LinuxKit).
pub fn volume_binds(c: &Container, m: &Moby) -> Result<Container, Error> {
    let who = &c.name;
    let vol = |name: &str| -> Result<&crate::yaml::Volume, Error> {
        m.volumes.iter().find(|v| v.name == name).ok_or_else(|| {
            Error::Config(format!(
                "{who}: bind source {name:?} is neither an absolute path nor a volume (volumes: {:?})",
                m.volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>()
            ))
        })
    };
    let mut out = c.clone();
    let map = |list: &Option<Vec<String>>| -> Result<Option<Vec<String>>, Error> {
        let Some(l) = list else { return Ok(None) };
        let mut r = Vec::new();
        for b in l {
            let mut parts: Vec<String> = b.split(':').map(String::from).collect();
            if parts[0].starts_with('/') || parts.len() < 2 {
                r.push(b.clone());
                continue;
            }
            let v = vol(&parts[0])?;
            if v.readonly && parts.get(2).map(String::as_str) != Some("ro") {
                return Err(Error::Config(format!(
                    "{who}: bind {b:?}: volume {} is read-only, bind it with `:ro`",
                    v.name
                )));
            }
            parts[0] = format!("/containers/volumes/{}/merged", v.name);
            r.push(parts.join(":"));
        }
        Ok(Some(r))
    };
    out.binds = map(&c.binds)?;
    out.binds_add = map(&c.binds_add)?;
    if let Some(ms) = &mut out.mounts {
        for mt in ms.iter_mut() {
            if mt.kind != "bind" || mt.source.starts_with('/') {
                continue;
            }
            let v = vol(&mt.source)?;
            let ro = mt.options.iter().find(|o| *o == "ro" || *o == "rw").map(|o| o == "ro").unwrap_or(false);
            if v.readonly && !ro {
                return Err(Error::Config(format!(
                    "{who}: mount {}: volume {} is read-only, add option ro",
                    mt.destination, v.name
                )));
            }
            mt.source = format!("/containers/volumes/{}/merged", v.name);
        }
    }
    Ok(out)
}

/// What a LinuxKit package binds that keel provides differently, per container (a note).
fn base_path_notes(c: &Container, cfg: &Spec, s: &mut Summary) {
    let mut left = Vec::new();
    for mt in &cfg.mounts {
        match mt.source.as_str() {
            "/usr/bin/ctr" => left.push("/usr/bin/ctr is a stub that says keel has no containerd"),
            "/var/lib/containerd" => left.push("/var/lib/containerd is an empty directory (no containerd)"),
            _ => {}
        }
    }
    if !left.is_empty() {
        s.notes.push(format!("{}: {}", c.name, left.join("; ")));
    }
}

/// Assemble the bundles into `t`. `base` resolves relative source paths; `images` holds every image
/// ([`load_images`]).
pub fn add_bundles(t: &mut Tree, m: &Moby, images: &HashMap<String, Image>, s: &mut Summary) -> Result<(), Error> {
    let ids = config::assigned_ids(m);
    // image spec -> in-image path of its unpacked copy
    let mut shared_copy: HashMap<String, String> = HashMap::new();
    // The images as LinuxKit unpacks them for containers (its ImageTar filter), once each.
    let mut filtered: HashMap<String, Image> = HashMap::new();
    for (bundle, c) in bundle_paths(m) {
        if sources::is_linuxkit_runtime_image(&c.image) {
            s.notes.push(format!("{bundle}: {} skipped: keel replaces LinuxKit's runtime images", c.image));
            continue;
        }
        if !filtered.contains_key(&c.image) {
            let mut img = images
                .get(&c.image)
                .cloned()
                .ok_or_else(|| Error::Source(format!("{}: image {} was not loaded", c.name, c.image)))?;
            layout::linuxkit_filter(&mut img.rootfs, None);
            filtered.insert(c.image.clone(), img);
        }
        let img = &filtered[&c.image];
        let with_vols = volume_binds(c, m)?;
        let (merged, note) = crate::label::resolve(&with_vols, &img.config)?;
        if let Some(n) = note {
            s.notes.push(n);
        }
        if let Some(n) = config::ignored_image_settings(&merged, &img.config) {
            s.notes.push(n);
        }
        for (given, add, key) in [
            (c.binds.is_some(), c.binds_add.is_some(), "binds"),
            (c.capabilities.is_some(), c.capabilities_add.is_some(), "capabilities"),
        ] {
            if given && add {
                s.notes.push(format!("{}: {key}.add ignored: {key} is given and replaces them (as LinuxKit)", c.name));
            }
        }
        let cfg = config::oci_config(&merged, &img.config, &img.rootfs, &ids)?;
        base_path_notes(c, &cfg, s);
        let readonly = merged.readonly.unwrap_or(false);
        // Where the image tree lives: shared copy, or unpack here.
        let own = format!("{bundle}/{}", if readonly { "rootfs" } else { "lower" });
        let lower = match shared_copy.get(&c.image) {
            Some(p) => p.clone(),
            None => {
                let mut rootfs = img.rootfs.clone();
                prepare_rootfs(&mut rootfs, &cfg, t);
                t.graft(&own, &rootfs);
                shared_copy.insert(c.image.clone(), own.clone());
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
        let rt = config::runtime_json(&merged, &format!("/{bundle}"), &format!("/{lower}"), readonly);
        let config_json = spec::to_json(&cfg, &format!("{bundle}/config.json"))?;
        let runtime_json = spec::to_json(&rt, &format!("{bundle}/runtime.json"))?;
        t.insert(&format!("{bundle}/config.json"), Node::file(config_json, 0o644));
        t.insert(&format!("{bundle}/runtime.json"), Node::file(runtime_json, 0o644));
        s.bundles.push(bundle);
    }
    if !s.bundles.is_empty() {
        s.notes.push(config::CGROUP_NS_NOTE.to_string());
    }
    Ok(())
}

/// Mount points the config needs inside the rootfs (bind destinations take the source's type from the image root
/// `host` where known: a file bind needs a file to mount on).
fn prepare_rootfs(rootfs: &mut Tree, cfg: &Spec, host: &Tree) {
    for mt in &cfg.mounts {
        let (dest, src) = (mt.destination.as_str(), mt.source.as_str());
        let as_file = mt.is_bind()
            && (layout::BOOT_FILES.contains(&src)
                || host.resolve(src).and_then(|p| host.get(&p)).map(|n| !matches!(n.kind, Kind::Dir)).unwrap_or(false));
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
            "kernel image {other} not used: keel-image boots Debian's linux-image-amd64 (or kernel.path)"
        )),
    }
    kernel::debian(cache)
}

/// Build an image.
pub fn build(o: &Options) -> Result<Summary, Error> {
    let Assembled { tree: t, mut summary, kernel: k, cmdline } = assemble(o)?;
    let s = &mut summary;
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
    w("cmdline", format!("{}\n", cmdline.trim()).as_bytes())?;
    Ok(summary)
}

/// An assembled image, before it is written.
#[derive(Debug)]
pub struct Assembled {
    /// The initramfs tree.
    pub tree: Tree,
    pub summary: Summary,
    pub kernel: kernel::Kernel,
    pub cmdline: String,
}

/// Everything [`build`] does but writing: the image tree, the notes, the kernel and its command line.
pub fn assemble(o: &Options) -> Result<Assembled, Error> {
    let text = std::fs::read_to_string(&o.yaml).map_err(io("reading", &o.yaml))?;
    let m = Moby::parse(&text, &o.yaml.display().to_string())?;
    let base = o.yaml.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let mut s = Summary::default();
    // Every image first: one error names all that are missing.
    let images = load_images(&m, &base, &o.pull)?;
    if m.trust.is_some() {
        s.notes.push("trust: ignored (blob digests are verified, signatures are not: no Notary content trust)".into());
    }
    if let Some(u) = m.kernel.as_ref().and_then(|k| k.ucode.as_ref()) {
        s.notes.push(format!(
            "kernel.ucode {u:?} ignored: keel prepends no microcode cpio (the kernel image's ucode is not fetched)"
        ));
    }
    let k = kernel_for(&m, &base, &o.kernel_cache, &mut s)?;
    s.kernel_version = k.version.clone();
    let hostname = o.yaml.file_stem().map(|x| x.to_string_lossy().replace('_', "-")).unwrap_or_else(|| "keel".into());
    let bins = layout::in_image_binaries(&o.init_binary)?;
    s.init_bytes = bins.init.len() as u64;
    let mut t = layout::base_with(&bins, &format!("keel-{hostname}"))?;
    add_init_images(&mut t, &m, &images, &mut s);
    add_volumes(&mut t, &m, &images, &mut s)?;
    files::apply(&mut t, &m.files, &text, &base, &config::assigned_ids(&m))?;
    add_bundles(&mut t, &m, &images, &mut s)?;
    let mut extra = m.kernel.as_ref().and_then(|k| k.modules.clone()).unwrap_or_default();
    if !extra.iter().any(|e| e == "none") {
        for (c, mods) in package_modules(&m) {
            let new: Vec<&str> = mods.iter().copied().filter(|x| !extra.iter().any(|e| e == x)).collect();
            if !new.is_empty() {
                s.notes.push(format!(
                    "{c}: kernel modules {} added (LinuxKit's kernel has them built in; Debian's as modules)",
                    new.join(", ")
                ));
                extra.extend(new.iter().map(|x| x.to_string()));
            }
        }
    }
    let rep = kernel::add_modules(&mut t, &k, &extra)?;
    if !rep.not_found.is_empty() {
        return Err(Error::Kernel(format!("kernel.modules: not found in {}: {}", k.version, rep.not_found.join(", "))));
    }
    s.modules = rep.count;
    s.modules_bytes = rep.bytes;
    let cmdline = m.kernel.as_ref().and_then(|k| k.cmdline.clone()).unwrap_or_else(|| DEFAULT_CMDLINE.into());
    Ok(Assembled { tree: t, summary: s, kernel: k, cmdline })
}
