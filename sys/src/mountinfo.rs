//! Parsing /proc/self/mountinfo (proc(5)): keel's one parser of "what is mounted where".

use crate::Error;
use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount id.
    pub id: u32,
    /// Parent mount id.
    pub parent: u32,
    /// Where it is mounted (octal escapes decoded).
    pub mount_point: PathBuf,
    /// Per-mount options (rw, nosuid, ...).
    pub options: String,
    /// Filesystem type ("rootfs", "tmpfs", ...).
    pub fstype: String,
    /// Mount source.
    pub source: String,
    /// Root of the mount within its filesystem (octal escapes decoded).
    pub root: String,
    /// Per-superblock options (for cgroup v1: the controllers).
    pub super_options: String,
}

/// Read and parse /proc/self/mountinfo.
pub fn read() -> Result<Vec<Mount>, Error> {
    read_from(Path::new("/proc/self/mountinfo"))
}

/// Read and parse a mountinfo file.
pub fn read_from(p: &Path) -> Result<Vec<Mount>, Error> {
    let s = std::fs::read_to_string(p).map_err(|e| Error::io("read", p, &e))?;
    Ok(parse(&s))
}

/// Parse mountinfo text; malformed lines are skipped.
pub fn parse(s: &str) -> Vec<Mount> {
    s.lines().filter_map(parse_line).collect()
}

fn parse_line(l: &str) -> Option<Mount> {
    let mut it = l.split(' ');
    let id = it.next()?.parse().ok()?;
    let parent = it.next()?.parse().ok()?;
    let _devno = it.next()?;
    let root = unescape(it.next()?);
    let mount_point = PathBuf::from(unescape(it.next()?));
    let options = it.next()?.to_string();
    // optional fields, up to the "-" separator
    for f in it.by_ref() {
        if f == "-" {
            break;
        }
    }
    let fstype = it.next()?.to_string();
    let source = unescape(it.next().unwrap_or(""));
    let super_options = it.next().unwrap_or("").to_string();
    Some(Mount { id, parent, mount_point, options, fstype, source, root, super_options })
}

/// Decode mountinfo's `\040`-style octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            if let Some(d) = b.get(i + 1..i + 4) {
                if d.iter().all(|x| (b'0'..=b'7').contains(x)) {
                    let v = d.iter().fold(0u32, |a, x| a * 8 + u32::from(x - b'0'));
                    out.push(v as u8);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that is visible at `p` (the last one listed there), if any.
pub fn at<'a>(mounts: &'a [Mount], p: &Path) -> Option<&'a Mount> {
    mounts.iter().rev().find(|m| m.mount_point == p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_optional_fields_and_escapes() {
        let s = "1 0 0:1 / / rw - rootfs rootfs rw\n\
                 22 1 0:21 / /proc rw,relatime shared:5 master:2 - proc proc rw\n\
                 30 22 0:30 / /mnt/a\\040b rw - tmpfs none rw\n\
                 garbage\n";
        let m = parse(s);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].fstype, "rootfs");
        assert_eq!(m[1].fstype, "proc");
        assert_eq!(m[1].parent, 1);
        assert_eq!(m[2].mount_point, PathBuf::from("/mnt/a b"));
        assert_eq!(m[1].super_options, "rw");
        assert_eq!(m[1].root, "/");
        assert_eq!(at(&m, Path::new("/")).map(|x| x.id), Some(1));
    }
}
