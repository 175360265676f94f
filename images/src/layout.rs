//! keel's in-image layout: /sbin/init (the static multi-call binary; /init, /usr/bin/keelctl, /sbin/modprobe and
//! /usr/bin/keel-runc, the runc-compatible CLI, link to it; /usr/bin/runc links to keel-runc), busybox with its applets in the host root (emergency and debug shells), a
//! minimal /etc, the mount points rc uses, and the LinuxKit bundle directories under /containers.

use std::path::Path;

use crate::tree::{Kind, Node, Tree};
use crate::{io, Error};

/// Names the multi-call binary answers to, and where they live.
pub const LINKS: &[(&str, &str)] = &[
    ("init", "/sbin/init"),
    ("usr/bin/keelctl", "/sbin/init"),
    ("sbin/modprobe", "/sbin/init"),
    ("usr/bin/keel-runc", "/sbin/init"),
    // LinuxKit's packages bind /usr/bin/runc (getty, sshd: `runc list` inside works).
    ("usr/bin/runc", "keel-runc"),
];

/// keel's in-image binaries and where they came from.
#[derive(Debug, Clone)]
pub struct InImage {
    pub init: Vec<u8>,
    /// "PATH" or "embedded in keel-image".
    pub origin: String,
}

/// The init binary at `init_binary`, or, when `init_binary` is empty, the one embedded in keel-image.
pub fn in_image_binaries(init_binary: &Path) -> Result<InImage, Error> {
    if init_binary.as_os_str().is_empty() {
        let init = crate::embedded::init().ok_or_else(|| {
            Error::Config(
                "no init binary: this keel-image has none embedded and none was found (build/bin/init after \
                 `make build`, beside keel-image, or --init-binary PATH / $KEEL_INIT_BINARY); \
                 `cargo install --path images` embeds them"
                    .into(),
            )
        })?;
        return Ok(InImage { init: init.to_vec(), origin: "embedded in keel-image".into() });
    }
    let init = std::fs::read(init_binary).map_err(|e| Error::Io {
        what: "reading the init binary (build it with `make build`, or pass --init-binary)".into(),
        path: init_binary.display().to_string(),
        err: e,
    })?;
    Ok(InImage { init, origin: init_binary.display().to_string() })
}

/// The base tree: everything but the containers, files and modules.
pub fn base(init_binary: &Path, hostname: &str) -> Result<Tree, Error> {
    base_with(&in_image_binaries(init_binary)?, hostname)
}

/// [`base`] with the in-image binaries given.
pub fn base_with(bins: &InImage, hostname: &str) -> Result<Tree, Error> {
    let mut t = Tree::new();
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "run",
        "var",
        "root",
        "mnt",
        "lib/modules",
        "containers",
    ] {
        t.mkdir_p(d);
    }
    t.insert("tmp", Node::dir(0o1777));
    t.insert("root", Node::dir(0o700));
    t.insert("dev/console", Node { kind: Kind::Char(5, 1), mode: 0o600, uid: 0, gid: 0 });
    t.insert("dev/null", Node { kind: Kind::Char(1, 3), mode: 0o666, uid: 0, gid: 0 });
    t.insert("sbin/init", Node::file(bins.init.clone(), 0o755));
    // ... and /usr/bin/ctr: keel has no containerd; a stub says so instead of a failing bind.
    t.insert("usr/bin/ctr", Node::file(CTR_STUB.as_bytes().to_vec(), 0o755));
    // LinuxKit's init image: /etc/ssl/certs exists (ca-certificates fills it; metadata binds it).
    t.mkdir_p("etc/ssl/certs");
    crate::sources::add_busybox(&mut t)?;
    for (link, target) in LINKS {
        t.insert(link, Node::symlink(target));
    }
    let etc = [
        ("etc/hostname", format!("{hostname}\n"), 0o644),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n".into(), 0o644),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n".into(), 0o644),
        ("etc/shadow", "root::0:0:99999:7:::\n".into(), 0o600),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".into(), 0o644),
        ("etc/os-release", "NAME=keel\nID=keel\nPRETTY_NAME=\"keel\"\n".into(), 0o644),
        (
            "etc/profile",
            "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='\\h:\\w# '\n".into(),
            0o644,
        ),
    ];
    for (p, c, m) in etc {
        t.insert(p, Node::file(c.into_bytes(), m));
    }
    // As LinuxKit's init image: a symlink into /run, so that containers (dhcpcd) can write it; rc creates the
    // directory and an empty file at boot.
    t.insert("etc/resolv.conf", Node::symlink(RESOLVCONF));
    Ok(t)
}

/// Where /etc/resolv.conf points (LinuxKit's resolvconfSymlink).
pub const RESOLVCONF: &str = "/run/resolvconf/resolv.conf";

/// Host paths that are files at boot although the image has none (or only a symlink to a tmpfs): a bind of one
/// needs a file as its mount point.
pub const BOOT_FILES: &[&str] = &["/etc/resolv.conf", RESOLVCONF, "/usr/bin/runc", "/usr/bin/ctr"];

/// The image's /usr/bin/ctr.
pub const CTR_STUB: &str = "#!/bin/sh\necho \"ctr: not available: keel runs containers without containerd \
    (try: runc list, keelctl list)\" >&2\nexit 1\n";

/// LinuxKit's filter of an image's files (ImageTar in moby/build/image.go): drops /.dockerenv, /Dockerfile,
/// /dev/console and /etc/hostname; replaces /etc/hosts with a localhost table and /etc/resolv.conf with a comment
/// (or, for `init:` images and volumes, a symlink to `resolv`); makes sure dev, dev/pts, dev/shm, etc, proc, sys,
/// /etc/mtab (-> /proc/mounts), /etc/hosts and /etc/resolv.conf exist.
pub fn linuxkit_filter(t: &mut Tree, resolv: Option<&str>) {
    for p in [".dockerenv", "Dockerfile", "dev/console", "etc/hostname"] {
        if t.get(p).is_some_and(|n| n.kind != Kind::Dir) {
            t.remove(p);
        }
    }
    let hosts = "127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\n\
                 ff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n";
    t.insert("etc/hosts", Node::file(hosts.as_bytes().to_vec(), 0o644));
    match resolv {
        Some(target) => t.insert("etc/resolv.conf", Node::symlink(target)),
        None => t.insert("etc/resolv.conf", Node::file(b"\n# no resolv.conf configured\n".to_vec(), 0o644)),
    }
    for d in ["dev", "dev/pts", "dev/shm", "etc", "proc", "sys"] {
        if t.get(d).is_none() {
            t.insert(d, Node::dir(0o755));
        }
    }
    if t.get("etc/mtab").is_none() {
        t.insert("etc/mtab", Node::symlink("/proc/mounts"));
    }
}

/// Create directory `dest` inside a rootfs tree as a mount point if nothing is in the way (stops at a symlink
/// or file; the runtime handles those).
pub fn ensure_mountpoint(t: &mut Tree, dest: &str, as_file: bool) {
    let parts: Vec<&str> = dest.split('/').filter(|s| !s.is_empty()).collect();
    let mut cur = String::new();
    for (i, c) in parts.iter().enumerate() {
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(c);
        let last = i + 1 == parts.len();
        match t.get(&cur).map(|n| &n.kind) {
            Some(Kind::Dir) => continue,
            Some(_) => return,
            None if last && as_file => t.insert(&cur, Node::file(Vec::new(), 0o644)),
            None => t.insert(&cur, Node::dir(0o755)),
        }
    }
}

/// Read the init binary's size (for reports).
pub fn file_size(p: &Path) -> Result<u64, Error> {
    Ok(std::fs::metadata(p).map_err(io("stat", p))?.len())
}
