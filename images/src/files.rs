//! `files:` entries (LinuxKit semantics): `path` (relative to the image root), one of `contents`, `source` (a host
//! file or directory; `~/` expanded; relative to the YAML's directory), `directory: true`, `symlink: TARGET` or
//! `metadata: yaml` (the image definition itself); `mode` (octal string; default 0600 for files, 0755 for
//! directories, as LinuxKit), `uid`/`gid` (numbers or root), `optional` (a missing `source` is skipped).

use std::path::Path;

use crate::tree::{Kind, Node, Tree};
use crate::yaml::{File, Id};
use crate::Error;

fn id(v: &Option<Id>, what: &str, path: &str) -> Result<u32, Error> {
    match v {
        None => Ok(0),
        Some(Id::Num(n)) => Ok(*n),
        Some(Id::Name(s)) if s == "root" || s.is_empty() => Ok(0),
        Some(Id::Name(s)) => s.parse().map_err(|_| {
            Error::Config(format!("files: {path}: {what} {s:?}: only numbers or root are known in the image root"))
        }),
    }
}

/// Apply `files` to the image root `t`. `yaml_text` is the image definition (for `metadata: yaml`), `base` the
/// directory relative `source` paths start from.
pub fn apply(t: &mut Tree, files: &[File], yaml_text: &str, base: &Path) -> Result<(), Error> {
    for f in files {
        let p = f.path.as_str();
        if p.is_empty() {
            return Err(Error::Config("files: an entry has no path".into()));
        }
        let mode = match &f.mode {
            Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
                .map_err(|e| Error::Config(format!("files: {p}: mode {m:?} is not octal: {e}")))?,
            None if f.directory => 0o755,
            None => 0o600,
        };
        let (uid, gid) = (id(&f.uid, "uid", p)?, id(&f.gid, "gid", p)?);
        let set = [f.contents.is_some(), f.source.is_some(), f.symlink.is_some(), f.metadata.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if set > 1 || (set == 1 && f.directory) {
            return Err(Error::Config(format!(
                "files: {p}: give only one of contents, source, symlink, metadata, directory"
            )));
        }
        let node = if f.directory {
            Node { kind: Kind::Dir, mode, uid, gid }
        } else if let Some(target) = &f.symlink {
            Node::symlink(target)
        } else if let Some(c) = &f.contents {
            Node { kind: Kind::File(c.clone().into_bytes().into()), mode, uid, gid }
        } else if let Some(md) = &f.metadata {
            if md != "yaml" {
                return Err(Error::Config(format!("files: {p}: unsupported metadata {md:?} (only yaml)")));
            }
            Node { kind: Kind::File(yaml_text.as_bytes().to_vec().into()), mode, uid, gid }
        } else if let Some(src) = &f.source {
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
        } else {
            // LinuxKit: an entry with nothing else is an empty file.
            Node { kind: Kind::File(Vec::new().into()), mode, uid, gid }
        };
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
        apply(&mut t, &m.files, y, Path::new(".")).unwrap();
        let motd = t.get("etc/motd").unwrap();
        assert_eq!(motd.mode, 0o644);
        assert_eq!(motd.kind, Kind::File(b"hello\n".to_vec().into()));
        assert_eq!(t.get("var/lib/x").unwrap().kind, Kind::Dir);
        assert_eq!(t.get("etc/link").unwrap().kind, Kind::Symlink("/etc/motd".into()));
        assert!(t.get("etc/missing").is_none());
        assert_eq!(t.get("etc/keel.yml").unwrap().mode, 0o600);
    }

    #[test]
    fn missing_source_is_an_error() {
        let m = Moby::parse("files:\n  - path: a\n    source: /nonexistent\n", "t").unwrap();
        let e = apply(&mut Tree::new(), &m.files, "", Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent"), "{e}");
    }
}
