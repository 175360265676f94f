//! modules.dep (`kernel/path/mod.ko: dep.ko dep.ko ...`) and modules.builtin: module names, files and the
//! order to load a module's dependencies in.

use std::collections::{HashMap, HashSet};

/// Normalise a module name: '-' and '_' are the same to the kernel; we use '_'.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Module name of a path: `kernel/fs/overlayfs/overlay.ko.xz` -> `overlay`; `intel-uncore.ko` -> `intel_uncore`.
pub fn name_of(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    normalize(stem)
}

/// One modules.dep entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File, relative to the modules directory (or absolute).
    pub path: String,
    /// Dependencies' names, as listed.
    pub deps: Vec<String>,
}

/// Parsed modules.dep.
#[derive(Debug, Clone, Default)]
pub struct Deps {
    map: HashMap<String, Entry>,
}

impl Deps {
    /// Parse modules.dep text; malformed lines are skipped.
    pub fn parse(content: &str) -> Deps {
        let mut map = HashMap::new();
        for l in content.lines() {
            let Some((m, rest)) = l.split_once(':') else { continue };
            let m = m.trim();
            if m.is_empty() || m.starts_with('#') {
                continue;
            }
            let deps = rest.split_whitespace().map(name_of).collect();
            map.insert(name_of(m), Entry { path: m.to_string(), deps });
        }
        Deps { map }
    }

    /// The entry of module `name` (any of '-'/'_').
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.map.get(&normalize(name))
    }

    /// Number of modules.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// (name, path) of `name` and everything it needs, dependencies first, each once. Each dependency's own
    /// modules.dep line is followed too, so the order inside a line does not matter. None if `name` is unknown;
    /// dependencies missing from modules.dep are left out (the kernel will say what is missing).
    pub fn load_order(&self, name: &str) -> Option<Vec<(String, String)>> {
        let root = normalize(name);
        self.map.get(&root)?;
        let mut out = Vec::new();
        let mut done = HashSet::new();
        let mut onpath = HashSet::new();
        self.visit(&root, &mut done, &mut onpath, &mut out);
        Some(out)
    }

    fn visit(
        &self,
        n: &str,
        done: &mut HashSet<String>,
        onpath: &mut HashSet<String>,
        out: &mut Vec<(String, String)>,
    ) {
        if done.contains(n) || !onpath.insert(n.to_string()) {
            return; // done, or a cycle
        }
        if let Some(e) = self.map.get(n) {
            // modules.dep lists a module's users before what they use: walk it backwards so that, even without the
            // recursion, the last-listed (deepest) comes first
            for d in e.deps.iter().rev() {
                self.visit(d, done, onpath, out);
            }
            out.push((n.to_string(), e.path.clone()));
        }
        onpath.remove(n);
        done.insert(n.to_string());
    }
}

/// Module names from modules.builtin text.
pub fn parse_builtin(content: &str) -> HashSet<String> {
    content.lines().map(str::trim).filter(|l| !l.is_empty()).map(name_of).collect()
}

/// (alias, module) pairs from modules.builtin.modinfo (NUL-separated `module.key=value`).
pub fn parse_builtin_aliases(content: &[u8]) -> Vec<(String, String)> {
    content
        .split(|b| *b == 0)
        .filter_map(|r| std::str::from_utf8(r).ok())
        .filter_map(|r| {
            let (k, v) = r.split_once('=')?;
            let (m, key) = k.split_once('.')?;
            (key == "alias").then(|| (v.to_string(), normalize(m)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name_of("kernel/fs/overlayfs/overlay.ko"), "overlay");
        assert_eq!(name_of("kernel/arch/x86/events/intel/intel-uncore.ko.xz"), "intel_uncore");
        assert_eq!(name_of("x.ko.zst"), "x");
    }

    #[test]
    fn order_is_dependencies_first() {
        let d = Deps::parse(
            "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
             kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
             kernel/net/core/failover.ko:\n\
             kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n\
             garbage line\n",
        );
        assert_eq!(d.len(), 5);
        let o: Vec<String> = d.load_order("virtio-net").unwrap_or_default().into_iter().map(|x| x.0).collect();
        assert_eq!(o, ["failover", "net_failover", "virtio_net"]);
        let c: Vec<String> = d.load_order("a").unwrap_or_default().into_iter().map(|x| x.0).collect();
        assert_eq!(c, ["b", "a"], "a cycle terminates");
        assert!(d.load_order("nope").is_none());
    }

    #[test]
    fn builtin_files() {
        let b = parse_builtin("kernel/fs/ext4/ext4.ko\nkernel/drivers/x-y.ko\n");
        assert!(b.contains("ext4") && b.contains("x_y"));
        let a = parse_builtin_aliases(b"zbud.alias=zpool-zbud\0debugfs.alias=fs-debugfs\0debugfs.license=GPL\0");
        assert_eq!(
            a,
            [("zpool-zbud".to_string(), "zbud".to_string()), ("fs-debugfs".to_string(), "debugfs".to_string())]
        );
    }
}
