//! An in-memory file tree: what the initramfs will contain. Image layers, `files:` and keel's layout are all
//! applied here (with OCI whiteout semantics), so the build needs no root and no scratch directory, and the cpio
//! written from it is deterministic.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::{io, Error};

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// Contents are shared: the same Arc in several places is written once (hard links in the cpio).
    File(Arc<Vec<u8>>),
    Symlink(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// One node: kind plus permission bits and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits only (07777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Node {
    pub fn dir(mode: u32) -> Node {
        Node { kind: Kind::Dir, mode, uid: 0, gid: 0 }
    }
    pub fn file(data: Vec<u8>, mode: u32) -> Node {
        Node { kind: Kind::File(Arc::new(data)), mode, uid: 0, gid: 0 }
    }
    pub fn symlink(target: &str) -> Node {
        Node { kind: Kind::Symlink(target.to_string()), mode: 0o777, uid: 0, gid: 0 }
    }
}

/// A tree keyed by normalised relative path ("" is the root, "a/b" below it).
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub nodes: BTreeMap<String, Node>,
}

/// Normalise a path to tree form: no leading/trailing '/', no "." parts, ".." resolved lexically (never above root).
pub fn norm(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn parent(p: &str) -> Option<&str> {
    if p.is_empty() {
        None
    } else {
        Some(p.rfind('/').map(|i| &p[..i]).unwrap_or(""))
    }
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Create `p` and its missing parents as directories (0755, root); existing nodes are kept.
    pub fn mkdir_p(&mut self, p: &str) {
        let p = norm(p);
        let mut cur = String::new();
        if !p.is_empty() {
            for c in p.split('/') {
                if !cur.is_empty() {
                    cur.push('/');
                }
                cur.push_str(c);
                self.nodes.entry(cur.clone()).or_insert_with(|| Node::dir(0o755));
            }
        }
    }

    /// Insert a node at `p` (replacing what is there; a directory replaced by a non-directory loses its
    /// contents), creating parent directories.
    pub fn insert(&mut self, p: &str, node: Node) {
        let p = norm(p);
        if p.is_empty() {
            return;
        }
        if let Some(par) = parent(&p) {
            self.mkdir_p(par);
        }
        if let Some(old) = self.nodes.get(&p) {
            if old.kind == Kind::Dir && node.kind == Kind::Dir {
                // Directory over directory: keep contents, take the new metadata.
                self.nodes.insert(p, node);
                return;
            }
            if old.kind == Kind::Dir {
                self.remove_children(&p);
            }
        }
        self.nodes.insert(p, node);
    }

    /// Remove `p` and everything below it.
    pub fn remove(&mut self, p: &str) {
        let p = norm(p);
        self.remove_children(&p);
        self.nodes.remove(&p);
    }

    /// Remove everything below directory `p`, keeping `p` itself (OCI opaque whiteout).
    pub fn remove_children(&mut self, p: &str) {
        let p = norm(p);
        let prefix = if p.is_empty() { String::new() } else { format!("{p}/") };
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.nodes.remove(&k);
        }
    }

    pub fn get(&self, p: &str) -> Option<&Node> {
        self.nodes.get(&norm(p))
    }

    /// Copy every node of `other` below `prefix` in this tree.
    pub fn graft(&mut self, prefix: &str, other: &Tree) {
        let prefix = norm(prefix);
        self.mkdir_p(&prefix);
        for (k, n) in &other.nodes {
            let p = match (prefix.is_empty(), k.is_empty()) {
                (_, true) => continue,
                (true, false) => k.clone(),
                (false, false) => format!("{prefix}/{k}"),
            };
            self.insert(&p, n.clone());
        }
    }

    /// Read a host directory (recursively, not following symlinks) into a tree.
    pub fn from_dir(dir: &Path) -> Result<Tree, Error> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let mut t = Tree::new();
        let mut stack = vec![(dir.to_path_buf(), String::new())];
        while let Some((host, rel)) = stack.pop() {
            let rd = std::fs::read_dir(&host).map_err(io("reading directory", &host))?;
            let mut entries: Vec<_> = rd.collect::<Result<_, _>>().map_err(io("reading directory", &host))?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let name = e.file_name().to_string_lossy().into_owned();
                let hp = e.path();
                let rp = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
                let md = std::fs::symlink_metadata(&hp).map_err(io("stat", &hp))?;
                let ft = md.file_type();
                let (mode, uid, gid) = (md.mode() & 0o7777, md.uid(), md.gid());
                let kind = if ft.is_dir() {
                    stack.push((hp.clone(), rp.clone()));
                    Kind::Dir
                } else if ft.is_symlink() {
                    let target = std::fs::read_link(&hp).map_err(io("readlink", &hp))?;
                    Kind::Symlink(target.to_string_lossy().into_owned())
                } else if ft.is_file() {
                    Kind::File(Arc::new(std::fs::read(&hp).map_err(io("reading", &hp))?))
                } else if ft.is_char_device() || ft.is_block_device() {
                    let rdev = md.rdev();
                    let (ma, mi) = (libc::major(rdev), libc::minor(rdev));
                    if ft.is_char_device() {
                        Kind::Char(ma, mi)
                    } else {
                        Kind::Block(ma, mi)
                    }
                } else if ft.is_fifo() {
                    Kind::Fifo
                } else {
                    continue; // sockets are not copied
                };
                t.insert(&rp, Node { kind, mode, uid, gid });
            }
        }
        Ok(t)
    }

    /// Resolve `p` to its final node, following symlinks inside the tree (absolute targets are relative to the
    /// tree's root). Returns the resolved path.
    pub fn resolve(&self, p: &str) -> Option<String> {
        let mut cur = norm(p);
        for _ in 0..40 {
            // Resolve each prefix component.
            let parts: Vec<&str> = cur.split('/').collect();
            let mut acc = String::new();
            let mut changed = false;
            for (i, c) in parts.iter().enumerate() {
                let next = if acc.is_empty() { c.to_string() } else { format!("{acc}/{c}") };
                if let Some(Node { kind: Kind::Symlink(t), .. }) = self.nodes.get(&next) {
                    let base = if t.starts_with('/') { t.clone() } else { format!("{acc}/{t}") };
                    let rest = parts[i + 1..].join("/");
                    cur = norm(&format!("{base}/{rest}"));
                    changed = true;
                    break;
                }
                acc = next;
            }
            if !changed {
                return self.nodes.contains_key(&cur).then_some(cur);
            }
        }
        None
    }

    /// Total bytes of file contents (each shared Arc counted once).
    pub fn content_bytes(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        self.nodes
            .values()
            .filter_map(|n| match &n.kind {
                Kind::File(d) if seen.insert(Arc::as_ptr(d) as usize) => Some(d.len() as u64),
                _ => None,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_and_opaque() {
        let mut t = Tree::new();
        t.insert("/a/b/c", Node::file(b"x".to_vec(), 0o644));
        t.insert("a/bb", Node::file(b"y".to_vec(), 0o644));
        assert!(t.get("a").is_some() && t.get("a/b").is_some());
        t.remove_children("a/b");
        assert!(t.get("a/b").is_some() && t.get("a/b/c").is_none());
        assert!(t.get("a/bb").is_some(), "a sibling with a common prefix survives");
        t.remove("a");
        assert!(t.nodes.is_empty());
    }

    #[test]
    fn resolve_follows_symlinks() {
        let mut t = Tree::new();
        t.insert("usr/bin/busybox", Node::file(vec![], 0o755));
        t.insert("bin", Node::symlink("usr/bin"));
        t.insert("usr/bin/sh", Node::symlink("/usr/bin/busybox"));
        assert_eq!(t.resolve("/bin/sh").as_deref(), Some("usr/bin/busybox"));
        assert_eq!(t.resolve("/nope"), None);
    }

    #[test]
    fn norm_paths() {
        assert_eq!(norm("/a//b/./c/"), "a/b/c");
        assert_eq!(norm("../../x"), "x");
        assert_eq!(norm("/"), "");
    }
}
