//! The kernel: Debian's linux-image-amd64 by default (fetched with `apt-get download` into a cache directory and
//! unpacked with `dpkg -x`: the meta package names the real linux-image-KVER-amd64 in its Depends), or a local
//! bzImage (`kernel.path`). Modules come from the package's /lib/modules/KVER: a default set for QEMU (virtio,
//! e1000, overlay, veth, bridge, tun, loop) plus `kernel.modules`, closed over dependencies, with a computed
//! modules.dep/modules.alias (the package ships none).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::modindex::{self, ModInfo};
use crate::tree::{Node, Tree};
use crate::{io, Error};

/// Modules every image gets (when present in the kernel): what a QEMU guest and LinuxKit-style services need.
pub const DEFAULT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "virtio_console",
    "virtio_rng",
    "virtio_balloon",
    "e1000",
    "overlay",
    "veth",
    "bridge",
    "tun",
    "loop",
];

/// A kernel ready to use.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub image: PathBuf,
    pub version: String,
    /// The lib/modules/KVER directory, if known.
    pub modules: Option<PathBuf>,
}

fn run(cmd: &mut Command) -> Result<String, Error> {
    let out = cmd.output().map_err(|e| Error::Kernel(format!("running {cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Kernel(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn find_vmlinuz(x: &Path) -> Option<(PathBuf, String)> {
    let rd = std::fs::read_dir(x.join("boot")).ok()?;
    let mut v: Vec<_> = rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    let name = v.into_iter().rev().find(|n| n.starts_with("vmlinuz-"))?;
    let ver = name.trim_start_matches("vmlinuz-").to_string();
    Some((x.join("boot").join(&name), ver))
}

/// `apt-get download PKG` into `dir` (one `apt-get update` and a retry if the package lists are missing).
fn apt_download(pkg: &str, dir: &Path) -> Result<PathBuf, Error> {
    let attempt = || run(Command::new("apt-get").args(["download", "-q", pkg]).current_dir(dir));
    if let Err(first) = attempt() {
        eprintln!("keel-image: apt-get download {pkg} failed ({first}); running apt-get update once");
        run(Command::new("apt-get").args(["update", "-q"]))?;
        attempt()?;
    }
    let prefix = format!("{pkg}_");
    std::fs::read_dir(dir)
        .map_err(io("reading", dir))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().map(|n| n.to_string_lossy().starts_with(&prefix)).unwrap_or(false))
        .ok_or_else(|| Error::Kernel(format!("apt-get download {pkg}: no .deb appeared in {}", dir.display())))
}

/// The Debian kernel, fetched into `cache` (cache/x holds the unpacked packages) unless already there.
pub fn debian(cache: &Path) -> Result<Kernel, Error> {
    let x = cache.join("x");
    if let Some((image, version)) = find_vmlinuz(&x) {
        let m = x.join("lib/modules").join(&version);
        return Ok(Kernel { image, modules: m.is_dir().then_some(m), version });
    }
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).map_err(io("creating", &debs))?;
    eprintln!("keel-image: fetching Debian's linux-image-amd64 into {}", cache.display());
    let meta = apt_download("linux-image-amd64", &debs)?;
    let depends = run(Command::new("dpkg-deb").arg("-f").arg(&meta).arg("Depends"))?;
    let real = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|d| d.starts_with("linux-image-") && d.ends_with("-amd64"))
        .ok_or_else(|| Error::Kernel(format!("linux-image-amd64 Depends has no linux-image-*-amd64: {depends}")))?
        .to_string();
    let deb = apt_download(&real, &debs)?;
    let tmp = cache.join("x.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io("creating", &tmp))?;
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&tmp))?;
    let _ = std::fs::remove_dir_all(&x);
    std::fs::rename(&tmp, &x).map_err(io("renaming to", &x))?;
    let (image, version) =
        find_vmlinuz(&x).ok_or_else(|| Error::Kernel(format!("no boot/vmlinuz-* in {}", deb.display())))?;
    let m = x.join("lib/modules").join(&version);
    Ok(Kernel { image, modules: m.is_dir().then_some(m), version })
}

/// Index every module file under a lib/modules/KVER dir: canonical name -> relative path.
pub fn scan_modules(dir: &Path) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io("reading", &d))?.flatten() {
            let p = e.path();
            let ft = e.file_type().map_err(io("stat", &p))?;
            if ft.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(".ko") {
                let rel = p.strip_prefix(dir).unwrap_or(&p).to_string_lossy().into_owned();
                out.insert(modindex::canon(&rel), rel);
            }
        }
    }
    Ok(out)
}

/// The module (canonical name) under kernel/crypto, kernel/arch/*/crypto or kernel/lib with alias `alias`; the
/// alias table of those directories is read once, on first use.
fn soft_alias(
    alias: &str,
    files: &BTreeMap<String, String>,
    dir: &Path,
    map: &mut Option<BTreeMap<String, String>>,
) -> Result<Option<String>, Error> {
    if map.is_none() {
        let mut m = BTreeMap::new();
        for (name, rel) in files {
            if rel.starts_with("kernel/crypto/") || rel.starts_with("kernel/lib/") || rel.contains("/crypto/") {
                let p = dir.join(rel);
                let bytes = std::fs::read(&p).map_err(io("reading module", &p))?;
                for a in modindex::modinfo(&bytes).1 {
                    m.entry(modindex::canon(&a)).or_insert_with(|| name.clone());
                }
            }
        }
        *map = Some(m);
    }
    Ok(map.as_ref().and_then(|m| m.get(&modindex::canon(alias)).cloned()))
}

/// What went into the image.
#[derive(Debug, Default)]
pub struct ModulesReport {
    pub count: usize,
    pub bytes: u64,
    pub not_found: Vec<String>,
}

/// Put the selected modules (plus dependencies) and their index into `t` at lib/modules/KVER.
/// `extra`: `kernel.modules` from the YAML (`all` = everything, `none` = nothing).
pub fn add_modules(t: &mut Tree, k: &Kernel, extra: &[String]) -> Result<ModulesReport, Error> {
    let Some(dir) = &k.modules else { return Ok(ModulesReport::default()) };
    if extra.iter().any(|e| e == "none") {
        return Ok(ModulesReport::default());
    }
    let files = scan_modules(dir)?;
    let all = extra.iter().any(|e| e == "all");
    let mut infos: BTreeMap<String, ModInfo> = BTreeMap::new();
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // Some(its soft dependencies) when loaded, None when there is no such module file.
    let mut load = |name: &str, infos: &mut BTreeMap<String, ModInfo>| -> Result<Option<Vec<String>>, Error> {
        if infos.contains_key(name) {
            return Ok(Some(Vec::new()));
        }
        let Some(rel) = files.get(name) else { return Ok(None) };
        let p = dir.join(rel);
        let bytes = std::fs::read(&p).map_err(io("reading module", &p))?;
        let (depends, aliases) = modindex::modinfo(&bytes);
        let soft = modindex::softdeps(&bytes);
        infos.insert(name.to_string(), ModInfo { rel: rel.clone(), depends, aliases });
        data.insert(name.to_string(), bytes);
        Ok(Some(soft))
    };
    let wanted: Vec<String> = if all {
        files.keys().cloned().collect()
    } else {
        DEFAULT_MODULES.iter().map(|s| s.to_string()).chain(extra.iter().map(|e| modindex::canon(e))).collect()
    };
    let mut report = ModulesReport::default();
    let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let is_builtin = |n: &str| builtin.lines().any(|l| modindex::canon(l) == n);
    let mut stack = wanted.clone();
    let mut alias_map: Option<BTreeMap<String, String>> = None;
    while let Some(n) = stack.pop() {
        let n = modindex::canon(&n);
        if infos.contains_key(&n) {
            continue;
        }
        if let Some(soft) = load(&n, &mut infos)? {
            stack.extend(infos[&n].depends.clone());
            // Soft dependencies (ext4: `pre: crc32c`): a module of that name, else a crypto/lib module with that
            // alias (the kernel asks for `crypto-crc32c` at mount time; without it ext4 cannot mount).
            for sd in soft {
                if files.contains_key(&sd) {
                    stack.push(sd);
                } else if let Some(m) = soft_alias(&sd, &files, dir, &mut alias_map)? {
                    stack.push(m);
                }
            }
        } else if !is_builtin(&n) && extra.iter().any(|e| modindex::canon(e) == n) {
            report.not_found.push(n);
        }
    }
    let base = format!("lib/modules/{}", k.version);
    for (name, mi) in &infos {
        if let Some(bytes) = data.remove(name) {
            report.bytes += bytes.len() as u64;
            t.insert(&format!("{base}/{}", mi.rel), Node::file(bytes, 0o644));
        }
    }
    report.count = infos.len();
    for f in ["modules.builtin", "modules.order", "modules.builtin.modinfo"] {
        if let Ok(b) = std::fs::read(dir.join(f)) {
            t.insert(&format!("{base}/{f}"), Node::file(b, 0o644));
        }
    }
    // The index is written by keel-rc's own writer (the in-image modprobe reads what it writes), on a scratch copy
    // of the selected tree; our in-memory writer is the fallback.
    let (dep, alias) = match index_with_rc(t, &base) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "keel-image: note: keel_rc::modules::modinfo::write_index failed ({e}); using keel-image's index"
            );
            (modindex::modules_dep(&infos), modindex::modules_alias(&infos))
        }
    };
    t.insert(&format!("{base}/modules.dep"), Node::file(dep.into_bytes(), 0o644));
    t.insert(&format!("{base}/modules.alias"), Node::file(alias.into_bytes(), 0o644));
    Ok(report)
}

/// Write the tree's lib/modules/KVER (at `base`) to a scratch dir, run keel-rc's index writer on it, and read
/// modules.dep / modules.alias back.
fn index_with_rc(t: &Tree, base: &str) -> Result<(String, String), Error> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let tmp = std::env::temp_dir().join(format!(
        "keel-image-mods-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let prefix = format!("{base}/");
    let result = (|| {
        for (p, n) in t.nodes.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)) {
            if let crate::tree::Kind::File(d) = &n.kind {
                let dst = tmp.join(&p[prefix.len()..]);
                if let Some(par) = dst.parent() {
                    std::fs::create_dir_all(par).map_err(io("creating", par))?;
                }
                std::fs::write(&dst, d.as_slice()).map_err(io("writing", &dst))?;
            }
        }
        keel_rc::modules::modinfo::write_index(&tmp).map_err(|e| Error::Kernel(format!("write_index: {e}")))?;
        let rd = |f: &str| std::fs::read_to_string(tmp.join(f)).map_err(io("reading", tmp.join(f)));
        Ok((rd("modules.dep")?, rd("modules.alias")?))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}
