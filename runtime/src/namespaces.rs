//! Namespaces: which to create (CLONE_NEW* flags for clone) and which to join by path. Joins are opened in the
//! parent; the child calls setns on them, user namespace first. A pid (or time) namespace given by path cannot be
//! entered by the process itself, only by its children, so the parent enters it for its children
//! (`pid_for_children`) around the clone and returns to its own right after (single-threaded callers only).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::spec::{Linux, NamespaceType};
use crate::Error;

/// A namespace to join in the child.
#[derive(Debug)]
pub struct Join {
    pub fd: OwnedFd,
    pub nstype: libc::c_int,
    pub path: CString,
}

/// Namespaces of a bundle, resolved.
#[derive(Debug, Default)]
pub struct NsPlan {
    /// CLONE_NEW* flags for namespaces to create.
    pub clone_flags: u64,
    /// To join in the child, user namespace first.
    pub joins: Vec<Join>,
    /// A pid or time namespace to enter for the child (around clone): (target, our own to return to).
    pub for_children: Vec<(OwnedFd, OwnedFd, libc::c_int)>,
    /// The mount namespace: new (true) or the caller's / joined (false).
    pub new_mount: bool,
    pub joined_mount: bool,
    pub new_user: bool,
    pub new_uts: bool,
    /// A new time namespace with offsets: /proc/self/timens_offsets content, and our own time_for_children to
    /// return to. The namespace is unshared in the parent (offsets can only be set before a process enters it).
    /// timens_offsets exists per process only, so this needs a single-threaded caller (init and keel-runc are).
    pub time_offsets: Option<(String, OwnedFd)>,
}

fn open(path: &str) -> Result<OwnedFd, Error> {
    keel_sys::io::open_path(std::path::Path::new(path), libc::O_RDONLY, 0)
        .map_err(|e| Error::os(format!("open namespace {path}"), e))
}

/// Resolve `linux.namespaces`. A type not listed means the runtime's own namespace (the spec), so no linux
/// section creates nothing.
pub fn plan(linux: Option<&Linux>) -> Result<NsPlan, Error> {
    let mut p = NsPlan::default();
    let Some(linux) = linux else { return Ok(p) };
    for ns in &linux.namespaces {
        match ns.path.as_deref().filter(|s| !s.is_empty()) {
            None if ns.kind == NamespaceType::Time && !linux.time_offsets.is_empty() => {
                let mut text = String::new();
                for (clock, off) in &linux.time_offsets {
                    text.push_str(&format!("{clock} {} {}\n", off.secs, off.nanosecs));
                }
                p.time_offsets = Some((text, open("/proc/self/ns/time_for_children")?));
            }
            None => {
                p.clone_flags |= ns.kind.clone_flag() as u64;
                match ns.kind {
                    NamespaceType::Mount => p.new_mount = true,
                    NamespaceType::User => p.new_user = true,
                    NamespaceType::Uts => p.new_uts = true,
                    _ => {}
                }
            }
            Some(path) => {
                let fd = open(path)?;
                match ns.kind {
                    NamespaceType::Pid | NamespaceType::Time => {
                        let own = open(if ns.kind == NamespaceType::Pid {
                            "/proc/self/ns/pid_for_children"
                        } else {
                            "/proc/self/ns/time_for_children"
                        })?;
                        p.for_children.push((fd, own, ns.kind.clone_flag()));
                    }
                    kind => {
                        if kind == NamespaceType::Mount {
                            p.joined_mount = true;
                        }
                        let j = Join {
                            fd,
                            nstype: kind.clone_flag(),
                            path: keel_sys::cstring("linux.namespaces[].path", path)?,
                        };
                        if kind == NamespaceType::User {
                            p.joins.insert(0, j);
                        } else {
                            p.joins.push(j);
                        }
                    }
                }
            }
        }
    }
    Ok(p)
}

/// Enter the pid/time namespaces for our next child (and create the time namespace with offsets).
pub fn enter_for_children(p: &NsPlan) -> Result<(), Error> {
    if let Some((text, _)) = &p.time_offsets {
        // SAFETY: unshare of the time namespace only affects future children of this process.
        if unsafe { libc::unshare(NamespaceType::Time.clone_flag()) } != 0 {
            return Err(Error::Sys { what: "unshare time namespace".into(), errno: keel_sys::Errno::last() });
        }
        if let Err(err) = std::fs::write("/proc/self/timens_offsets", text) {
            leave_for_children(p);
            return Err(Error::Io {
                what: "write linux.timeOffsets to",
                path: "/proc/self/timens_offsets".into(),
                err,
            });
        }
    }
    for (target, _, t) in &p.for_children {
        // SAFETY: setns on an fd we own; affects only namespaces of future children of this (single-threaded) process.
        if unsafe { libc::setns(target.as_raw_fd(), *t) } != 0 {
            return Err(Error::Sys { what: "setns (for children)".into(), errno: keel_sys::Errno::last() });
        }
    }
    Ok(())
}

/// Undo [`enter_for_children`].
pub fn leave_for_children(p: &NsPlan) {
    if let Some((_, own)) = &p.time_offsets {
        // SAFETY: back to our own time namespace for future children.
        unsafe { libc::setns(own.as_raw_fd(), NamespaceType::Time.clone_flag()) };
    }
    for (_, own, t) in &p.for_children {
        // SAFETY: as above, back to our own namespace.
        unsafe { libc::setns(own.as_raw_fd(), *t) };
    }
}

/// The namespaces of a running process that differ from ours, to join (keel-runc exec): user first, then ipc, uts,
/// net, cgroup, mount; pid and time for children only.
pub fn of_process(pid: i32) -> Result<NsPlan, Error> {
    use std::os::unix::fs::MetadataExt;
    let mut p = NsPlan::default();
    let differs = |name: &str, mine: &str| -> bool {
        let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{name}"));
        let ours = std::fs::metadata(format!("/proc/self/ns/{mine}"));
        match (theirs, ours) {
            (Ok(t), Ok(o)) => t.ino() != o.ino() || t.dev() != o.dev(),
            _ => false,
        }
    };
    for (name, kind) in [
        ("user", NamespaceType::User),
        ("ipc", NamespaceType::Ipc),
        ("uts", NamespaceType::Uts),
        ("net", NamespaceType::Network),
        ("cgroup", NamespaceType::Cgroup),
        ("mnt", NamespaceType::Mount),
    ] {
        if !differs(name, name) {
            continue;
        }
        let path = format!("/proc/{pid}/ns/{name}");
        let fd = open(&path)?;
        if kind == NamespaceType::Mount {
            p.joined_mount = true;
        }
        let path = keel_sys::cstring("namespace path", path)?;
        p.joins.push(Join { fd, nstype: kind.clone_flag(), path });
    }
    for (name, mine, kind) in
        [("pid", "pid_for_children", NamespaceType::Pid), ("time", "time_for_children", NamespaceType::Time)]
    {
        if !differs(name, mine) {
            continue;
        }
        let fd = open(&format!("/proc/{pid}/ns/{name}"))?;
        let own = open(&format!("/proc/self/ns/{mine}"))?;
        p.for_children.push((fd, own, kind.clone_flag()));
    }
    Ok(p)
}
