//! Module index for the image's /lib/modules/KVER: which modules to copy (a name list closed over dependencies)
//! and the index files (modules.dep, modules.alias in depmod's text format) computed from each .ko's .modinfo
//! section ("depends=", "alias=") — Debian's package ships no modules.dep.
//!
//! The in-image reader is keel-rc's modprobe; if keel-rc grows `modules::write_index(dir)`, [`write_index`] should
//! call it so both sides share one format. Until then this writes the standard depmod text format.

use std::collections::{BTreeMap, BTreeSet};

/// One module: its path relative to lib/modules/KVER, its dependencies (names) and aliases.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModInfo {
    pub rel: String,
    pub depends: Vec<String>,
    pub aliases: Vec<String>,
}

/// Canonical module name: file stem without .ko[.xz|.zst|.gz], '-' -> '_'.
pub fn canon(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

/// Extract `key=value` strings from a module's .modinfo section. The section is a run of NUL-terminated strings;
/// rather than parse ELF we scan for the known keys, which is what every .ko from the Debian package holds.
/// Compressed modules (.ko.xz/.zst) are not decompressed: their info is taken as empty.
pub fn modinfo(data: &[u8]) -> (Vec<String>, Vec<String>) {
    let mut deps = Vec::new();
    let mut aliases = Vec::new();
    for s in data.split(|b| *b == 0) {
        if let Some(v) = s.strip_prefix(b"depends=") {
            deps.extend(String::from_utf8_lossy(v).split(',').filter(|d| !d.is_empty()).map(canon));
        } else if let Some(v) = s.strip_prefix(b"alias=") {
            let a = String::from_utf8_lossy(v).into_owned();
            if a.chars().all(|c| c.is_ascii_graphic()) {
                aliases.push(a);
            }
        }
    }
    deps.sort();
    deps.dedup();
    (deps, aliases)
}

/// The modules a module's `softdep=pre: A B post: C` names (canonical; they may be aliases, e.g. ext4's `crc32c`).
pub fn softdeps(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for s in data.split(|b| *b == 0) {
        if let Some(v) = s.strip_prefix(b"softdep=") {
            out.extend(String::from_utf8_lossy(v).split_whitespace().filter(|w| !w.ends_with(':')).map(canon));
        }
    }
    out
}

/// Close `wanted` (canonical names) over dependencies in `all`. Unknown names are returned separately (they may
/// be built into the kernel).
pub fn closure(all: &BTreeMap<String, ModInfo>, wanted: &[String]) -> (BTreeSet<String>, Vec<String>) {
    let mut out = BTreeSet::new();
    let mut unknown = Vec::new();
    let mut stack: Vec<String> = wanted.iter().map(|w| canon(w)).collect();
    while let Some(n) = stack.pop() {
        match all.get(&n) {
            Some(mi) => {
                if out.insert(n.clone()) {
                    stack.extend(mi.depends.iter().cloned());
                }
            }
            None => unknown.push(n),
        }
    }
    (out, unknown)
}

/// The modules.dep text ("kernel/a.ko: kernel/b.ko kernel/c.ko"), dependencies in load order (deepest last, as
/// depmod writes them: modprobe loads the list right to left).
pub fn modules_dep(mods: &BTreeMap<String, ModInfo>) -> String {
    let mut s = String::new();
    for mi in mods.values() {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        fn visit(n: &str, mods: &BTreeMap<String, ModInfo>, seen: &mut BTreeSet<String>, order: &mut Vec<String>) {
            if !seen.insert(n.to_string()) {
                return;
            }
            if let Some(mi) = mods.get(n) {
                for d in &mi.depends {
                    visit(d, mods, seen, order);
                }
                order.push(mi.rel.clone());
            }
        }
        for d in &mi.depends {
            visit(d, mods, &mut seen, &mut order);
        }
        order.reverse();
        s.push_str(&mi.rel);
        s.push(':');
        for o in order {
            if o != mi.rel {
                s.push(' ');
                s.push_str(&o);
            }
        }
        s.push('\n');
    }
    s
}

/// The modules.alias text ("alias PATTERN name").
pub fn modules_alias(mods: &BTreeMap<String, ModInfo>) -> String {
    let mut s = String::new();
    for (name, mi) in mods {
        for a in &mi.aliases {
            s.push_str(&format!("alias {a} {name}\n"));
        }
    }
    s
}

/// Write modules.dep and modules.alias into a host directory holding lib/modules/KVER contents (used by tests and
/// by anyone building a tree on disk; the builder itself calls [`modules_dep`] / [`modules_alias`] in memory).
pub fn write_index(dir: &std::path::Path, mods: &BTreeMap<String, ModInfo>) -> std::io::Result<()> {
    std::fs::write(dir.join("modules.dep"), modules_dep(mods))?;
    std::fs::write(dir.join("modules.alias"), modules_alias(mods))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softdep_names() {
        assert_eq!(
            softdeps(b"license=GPL\0softdep=pre: crc32c post: foo-bar\0depends=mbcache\0"),
            ["crc32c", "foo_bar"]
        );
    }

    fn mi(rel: &str, deps: &[&str]) -> ModInfo {
        ModInfo { rel: rel.into(), depends: deps.iter().map(|s| s.to_string()).collect(), aliases: vec![] }
    }

    #[test]
    fn modinfo_scan() {
        let data = b"\x7fELF...\0license=GPL\0depends=virtio,virtio_ring\0alias=virtio:d00000001v*\0intree=Y\0";
        let (d, a) = modinfo(data);
        assert_eq!(d, ["virtio", "virtio_ring"]);
        assert_eq!(a, ["virtio:d00000001v*"]);
    }

    #[test]
    fn closure_and_dep_order() {
        let mut all = BTreeMap::new();
        all.insert("virtio_net".into(), mi("kernel/drivers/net/virtio_net.ko", &["net_failover", "virtio"]));
        all.insert("net_failover".into(), mi("kernel/drivers/net/net_failover.ko", &["failover"]));
        all.insert("failover".into(), mi("kernel/net/core/failover.ko", &[]));
        all.insert("virtio".into(), mi("kernel/drivers/virtio/virtio.ko", &[]));
        all.insert("overlay".into(), mi("kernel/fs/overlayfs/overlay.ko", &[]));
        let (set, unknown) = closure(&all, &["virtio-net".into(), "af_packet".into()]);
        assert_eq!(set.into_iter().collect::<Vec<_>>(), ["failover", "net_failover", "virtio", "virtio_net"]);
        assert_eq!(unknown, ["af_packet"]);
        let dep = modules_dep(&all);
        let line = dep.lines().find(|l| l.starts_with("kernel/drivers/net/virtio_net.ko:")).unwrap();
        // failover must come after net_failover (loaded first, from the right).
        let nf = line.find("net_failover.ko").unwrap();
        let f = line.find("core/failover.ko").unwrap();
        assert!(nf < f, "{line}");
    }
}
