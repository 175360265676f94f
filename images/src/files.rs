//! `files:` entries (LinuxKit semantics, `filesystem()` in moby/build/build.go): `path` (relative to the image
//! root), one of `contents`, `source` (a host file; keel also takes a directory; `~/` expanded; relative to the
//! YAML's directory), `directory: true`, `symlink: TARGET` or `metadata: yaml|json` (the image definition itself);
//! `mode` (octal string; default 0600 for files, 0700 for directories, as LinuxKit), `uid`/`gid` (numbers, `root`,
//! or a container's name: LinuxKit's per-container ids), `optional` (a missing `source` is skipped). Missing parent
//! directories are created with the entry's mode plus the matching x bits and its owner (as LinuxKit); existing
//! ones are left as they are (LinuxKit's cpio would re-chmod them too).

use std::collections::BTreeMap;
use std::path::Path;

use crate::tree::{Kind, Node, Tree};
use crate::yaml::{File, Id};
use crate::Error;

fn id(v: &Option<Id>, what: &str, path: &str, ids: &BTreeMap<String, u32>) -> Result<u32, Error> {
    match v {
        None => Ok(0),
        Some(Id::Num(n)) => Ok(*n),
        Some(Id::Name(s)) if s == "root" || s.is_empty() => Ok(0),
        Some(Id::Name(s)) => ids.get(s).copied().or_else(|| s.parse().ok()).ok_or_else(|| {
            Error::Config(format!(
                "files: {path}: {what} {s:?}: not a number, root, or a container name (LinuxKit's per-container ids)"
            ))
        }),
    }
}

/// The mode LinuxKit gives a missing parent directory of a `files:` entry: the entry's mode plus x where r or w.
pub fn dir_mode(mode: u32) -> u32 {
    let mut d = mode;
    for (rw, x) in [(0o600, 0o100), (0o060, 0o010), (0o006, 0o001)] {
        if d & rw != 0 {
            d |= x;
        }
    }
    d
}

/// Apply `files` to the image root `t`. `yaml_text` is the image definition (for `metadata:`), `base` the
/// directory relative `source` paths start from, `ids` the per-container ids (`uid: getty`).
pub fn apply(
    t: &mut Tree,
    files: &[File],
    yaml_text: &str,
    base: &Path,
    ids: &BTreeMap<String, u32>,
) -> Result<(), Error> {
    for f in files {
        let p = f.path.trim_start_matches('/');
        if p.is_empty() {
            return Err(Error::Config("files: an entry has no path".into()));
        }
        let mode = match &f.mode {
            Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
                .map_err(|e| Error::Config(format!("files: {p}: mode {m:?} is not octal: {e}")))?,
            None if f.directory => 0o700,
            None => 0o600,
        };
        let (uid, gid) = (id(&f.uid, "uid", p, ids)?, id(&f.gid, "gid", p, ids)?);
        let set = [f.contents.is_some(), f.source.is_some(), f.symlink.is_some(), f.metadata.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if set > 1 || (set == 1 && f.directory) {
            return Err(Error::Config(format!(
                "files: {p}: give only one of contents, source, symlink, metadata, directory"
            )));
        }
        if set == 0 && !f.directory {
            return Err(Error::Config(format!(
                "files: {p}: contents not specified (give contents, source, symlink, metadata or directory: true)"
            )));
        }
        let node = if f.directory {
            Node { kind: Kind::Dir, mode, uid, gid }
        } else if let Some(target) = &f.symlink {
            Node::symlink(target)
        } else if let Some(c) = &f.contents {
            Node { kind: Kind::File(c.clone().into_bytes().into()), mode, uid, gid }
        } else if let Some(md) = &f.metadata {
            let data = match md.as_str() {
                "yaml" => yaml_text.as_bytes().to_vec(),
                "json" => {
                    let v: yaml_serde::Value = yaml_serde::from_str(yaml_text)
                        .map_err(|e| Error::Config(format!("files: {p}: metadata json: {e}")))?;
                    serde_json::to_vec_pretty(&v)
                        .map_err(|e| Error::Config(format!("files: {p}: metadata json: {e}")))?
                }
                other => {
                    return Err(Error::Config(format!("files: {p}: unsupported metadata {other:?} (yaml or json)")))
                }
            };
            Node { kind: Kind::File(data.into()), mode, uid, gid }
        } else {
            let src = f.source.as_deref().unwrap_or_default();
            let src_path = if let Some(rest) = src.strip_prefix("~/") {
                Path::new(&std::env::var("HOME").unwrap_or_default()).join(rest)
            } else if Path::new(src).is_absolute() {
                Path::new(src).to_path_buf()
            } else {
                base.join(src)
            };
            if !src_path.exists() {
                if f.optional {
                    continue;
                }
                return Err(Error::Config(format!("files: {p}: source {} does not exist", src_path.display())));
            }
            if src_path.is_dir() {
                let sub = Tree::from_dir(&src_path)?;
                t.insert(p, Node { kind: Kind::Dir, mode: if f.mode.is_some() { mode } else { 0o755 }, uid, gid });
                t.graft(p, &sub);
                continue;
            }
            let data = std::fs::read(&src_path).map_err(crate::io("reading", &src_path))?;
            Node { kind: Kind::File(data.into()), mode, uid, gid }
        };
        // Missing parents: LinuxKit's mode and owner.
        let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        let mut cur = String::new();
        for c in parts.iter().take(parts.len().saturating_sub(1)) {
            if !cur.is_empty() {
                cur.push('/');
            }
            cur.push_str(c);
            if t.get(&cur).is_none() {
                t.insert(&cur, Node { kind: Kind::Dir, mode: dir_mode(mode), uid, gid });
            }
        }
        t.insert(p, node);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::Moby;

    #[test]
    fn files_entries() {
        let y = r#"
files:
  - path: etc/motd
    contents: "hello\n"
    mode: "0644"
  - path: var/lib/x
    directory: true
  - path: etc/link
    symlink: /etc/motd
  - path: etc/missing
    source: /nonexistent/file
    optional: true
  - path: etc/keel.yml
    metadata: yaml
"#;
        let m = Moby::parse(y, "t").unwrap();
        let mut t = Tree::new();
        apply(&mut t, &m.files, y, Path::new("."), &BTreeMap::new()).unwrap();
        let motd = t.get("etc/motd").unwrap();
        assert_eq!(motd.mode, 0o644);
        assert_eq!(motd.kind, Kind::File(b"hello\n".to_vec().into()));
        assert_eq!(t.get("var/lib/x").unwrap().kind, Kind::Dir);
        assert_eq!(t.get("etc/link").unwrap().kind, Kind::Symlink("/etc/motd".into()));
        assert!(t.get("etc/missing").is_none());
        assert_eq!(t.get("etc/keel.yml").unwrap().mode, 0o600);
    }

    #[test]
    fn linuxkit_modes_ids_and_parents() {
        let y = "files:\n  - path: /var/x/y\n    directory: true\n  - path: opt/a/b\n    contents: hi\n    mode: \"0640\"\n    uid: getty\n    gid: 7\n  - path: etc/j\n    metadata: json\n";
        let m = Moby::parse(y, "t").unwrap();
        let mut t = Tree::new();
        let ids = BTreeMap::from([("getty".to_string(), 101)]);
        apply(&mut t, &m.files, y, Path::new("."), &ids).unwrap();
        assert_eq!(t.get("var/x/y").unwrap().mode, 0o700, "directories default to 0700 (LinuxKit)");
        let b = t.get("opt/a/b").unwrap();
        assert_eq!((b.mode, b.uid, b.gid), (0o640, 101, 7));
        let a = t.get("opt/a").unwrap();
        assert_eq!((a.mode, a.uid), (0o750, 101), "parent: the entry's mode plus x, its owner");
        assert!(matches!(&t.get("etc/j").unwrap().kind, Kind::File(d) if d.starts_with(b"{")));
        let m = Moby::parse("files:\n  - path: a\n", "t").unwrap();
        let e = apply(&mut Tree::new(), &m.files, "", Path::new("."), &ids).unwrap_err().to_string();
        assert!(e.contains("contents not specified"), "{e}");
        let m = Moby::parse("files:\n  - path: a\n    contents: x\n    uid: nobody\n", "t").unwrap();
        let e = apply(&mut Tree::new(), &m.files, "", Path::new("."), &ids).unwrap_err().to_string();
        assert!(e.contains("files: a: uid \"nobody\""), "{e}");
    }

    #[test]
    fn missing_source_is_an_error() {
        let m = Moby::parse("files:\n  - path: a\n    source: /nonexistent\n", "t").unwrap();
        let e = apply(&mut Tree::new(), &m.files, "", Path::new("."), &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("/nonexistent"), "{e}");
    }
}
