//! A deterministic cpio "newc" writer (the format the kernel unpacks as an initramfs): entries in sorted path
//! order (parents first), mtime 0, inode numbers by position, files that share contents (same `Arc`) written once
//! as hard links (data on the first entry, which is what the kernel's unpacker expects). gzip via flate2.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use crate::tree::{Kind, Tree};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;

struct Hdr<'a> {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    filesize: u32,
    rdevmajor: u32,
    rdevminor: u32,
    name: &'a str,
}

fn pad4(w: &mut Vec<u8>) {
    while !w.len().is_multiple_of(4) {
        w.push(0);
    }
}

fn header(out: &mut Vec<u8>, h: &Hdr) {
    let namesize = h.name.len() + 1;
    let s = format!(
        "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
        h.ino, h.mode, h.uid, h.gid, h.nlink, 0u32, h.filesize, 0u32, 0u32, h.rdevmajor, h.rdevminor, namesize, 0u32
    );
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(h.name.as_bytes());
    out.push(0);
    pad4(out);
}

/// Serialise a tree as an uncompressed newc archive.
pub fn write_newc(tree: &Tree) -> Vec<u8> {
    let mut out = Vec::with_capacity(tree.content_bytes() as usize + tree.nodes.len() * 160);
    // Hard-link groups: contents pointer -> (ino, nlink).
    let mut links: HashMap<usize, u32> = HashMap::new();
    for n in tree.nodes.values() {
        if let Kind::File(d) = &n.kind {
            *links.entry(Arc::as_ptr(d) as usize).or_insert(0) += 1;
        }
    }
    let mut first_ino: HashMap<usize, u32> = HashMap::new();
    let mut ino = 0u32;
    for (path, n) in &tree.nodes {
        if path.is_empty() {
            continue;
        }
        ino += 1;
        let perm = n.mode & 0o7777;
        let (mode, size, data, rdev, nlink, this_ino): (u32, u32, &[u8], (u32, u32), u32, u32) = match &n.kind {
            Kind::Dir => (S_IFDIR | perm, 0, &[], (0, 0), 2, ino),
            Kind::File(d) => {
                let key = Arc::as_ptr(d) as usize;
                let count = links.get(&key).copied().unwrap_or(1);
                match first_ino.get(&key) {
                    Some(&i) if count > 1 => (S_IFREG | perm, 0, &[], (0, 0), count, i),
                    _ => {
                        first_ino.insert(key, ino);
                        (S_IFREG | perm, d.len() as u32, d.as_slice(), (0, 0), count, ino)
                    }
                }
            }
            Kind::Symlink(t) => (S_IFLNK | 0o777, t.len() as u32, t.as_bytes(), (0, 0), 1, ino),
            Kind::Char(a, b) => (S_IFCHR | perm, 0, &[], (*a, *b), 1, ino),
            Kind::Block(a, b) => (S_IFBLK | perm, 0, &[], (*a, *b), 1, ino),
            Kind::Fifo => (S_IFIFO | perm, 0, &[], (0, 0), 1, ino),
        };
        let h = Hdr {
            ino: this_ino,
            mode,
            uid: n.uid,
            gid: n.gid,
            nlink,
            filesize: size,
            rdevmajor: rdev.0,
            rdevminor: rdev.1,
            name: path,
        };
        header(&mut out, &h);
        out.extend_from_slice(data);
        pad4(&mut out);
    }
    let t =
        Hdr { ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, filesize: 0, rdevmajor: 0, rdevminor: 0, name: "TRAILER!!!" };
    header(&mut out, &t);
    out
}

/// gzip a buffer (level 6 by default: level 9 costs a lot of host time for ~1% size).
pub fn gzip(data: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 3), flate2::Compression::new(level));
    enc.write_all(data)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Node;
    use std::process::{Command, Stdio};

    fn sample() -> Tree {
        let mut t = Tree::new();
        t.insert("bin/busybox", Node::file(b"#!/bin/sh\necho hi\n".to_vec(), 0o755));
        t.insert("bin/sh", Node::symlink("busybox"));
        t.insert("dev/console", Node { kind: Kind::Char(5, 1), mode: 0o600, uid: 0, gid: 0 });
        t.insert("etc/hostname", Node::file(b"keel\n".to_vec(), 0o644));
        let shared = t.get("bin/busybox").cloned().unwrap();
        t.insert("containers/x/rootfs/bin/busybox", shared);
        t
    }

    #[test]
    fn deterministic() {
        assert_eq!(write_newc(&sample()), write_newc(&sample()));
        assert_eq!(gzip(&write_newc(&sample()), 6).unwrap(), gzip(&write_newc(&sample()), 6).unwrap());
    }

    #[test]
    fn readable_by_cpio() {
        if Command::new("cpio").arg("--version").output().is_err() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "cpio not installed (CI=true: make deps)");
            // Not eprintln!: the test harness captures that and hides it when the test passes.
            let _ = std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!("SKIPPED readable_by_cpio: cpio not installed (make deps)\n"),
            );
            return;
        }
        let data = write_newc(&sample());
        let mut c = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(&data).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "cpio -t failed: {}", String::from_utf8_lossy(&o.stderr));
        let listing = String::from_utf8_lossy(&o.stdout);
        for want in
            ["bin/busybox", "bin/sh -> busybox", "dev/console", "etc/hostname", "containers/x/rootfs/bin/busybox"]
        {
            assert!(listing.contains(want), "missing {want} in:\n{listing}");
        }
        // Extract and compare contents, hard link included.
        let dir = std::env::temp_dir().join(format!("keel-cpio-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Command::new("cpio")
            .args(["-i", "-d", "--quiet", "--no-absolute-filenames"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(&data).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "cpio -i failed: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(std::fs::read(dir.join("etc/hostname")).unwrap(), b"keel\n");
        assert_eq!(std::fs::read(dir.join("containers/x/rootfs/bin/busybox")).unwrap(), b"#!/bin/sh\necho hi\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
