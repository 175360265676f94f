//! The declarative mount table of early boot, and the code that applies it.
//!
//! Each row says what to mount where, with which flags and data, the mode of the directory it creates, and
//! whether the row is optional (skipped quietly when the kernel lacks the filesystem, per /proc/filesystems).

use crate::error::Error;
use crate::mountinfo;
use crate::sys;
use std::path::Path;

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;
const RELATIME: libc::c_ulong = libc::MS_RELATIME;

/// When a row is skipped even though its filesystem exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Never: mount unless the same fstype is already mounted there.
    Never,
    /// When the target is already a mount point or a non-empty directory (e.g. /var shipped in the image:
    /// a tmpfs on top would hide its files).
    IfMountedOrNonEmpty,
}

/// One row of the mount table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountRow {
    /// mount(2) source.
    pub source: &'static str,
    /// Absolute mount point.
    pub target: &'static str,
    /// Filesystem type, as in /proc/filesystems.
    pub fstype: &'static str,
    /// MS_* flags.
    pub flags: libc::c_ulong,
    /// Filesystem options.
    pub data: &'static str,
    /// Options to retry with when `data` is refused with EINVAL (older kernels).
    pub fallback_data: Option<&'static str>,
    /// Mode of the mount point directory if rc creates it.
    pub mode: u32,
    /// Skip quietly when the kernel does not know `fstype` (or the mount point cannot be created).
    pub optional: bool,
    /// Extra skip rule.
    pub skip: Skip,
}

const fn row(
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: libc::c_ulong,
    data: &'static str,
    mode: u32,
    optional: bool,
) -> MountRow {
    MountRow { source, target, fstype, flags, data, fallback_data: None, mode, optional, skip: Skip::Never }
}

/// The full table for PID 1 of a real (virtual) machine, in mount order.
pub const FULL: &[MountRow] = &[
    row("proc", "/proc", "proc", NOSUID | NODEV | NOEXEC | RELATIME, "", 0o555, false),
    row("sysfs", "/sys", "sysfs", NOSUID | NODEV | NOEXEC | RELATIME, "", 0o555, false),
    row("devtmpfs", "/dev", "devtmpfs", NOSUID | NOEXEC | RELATIME, "mode=0755", 0o755, false),
    // gid 5 = tty, as every distro and runc; ptmxmode so that /dev/ptmx (a link to pts/ptmx) is usable.
    row(
        "devpts",
        "/dev/pts",
        "devpts",
        NOSUID | NOEXEC | RELATIME,
        "newinstance,ptmxmode=0666,gid=5,mode=0620",
        0o755,
        false,
    ),
    row("shm", "/dev/shm", "tmpfs", NOSUID | NODEV | NOEXEC | RELATIME, "mode=1777", 0o1777, false),
    row("mqueue", "/dev/mqueue", "mqueue", NOSUID | NODEV | NOEXEC | RELATIME, "", 0o1777, true),
    row("tmpfs", "/run", "tmpfs", NOSUID | NODEV | RELATIME, "mode=0755", 0o755, false),
    row("tmpfs", "/tmp", "tmpfs", NOSUID | NODEV | RELATIME, "mode=1777", 0o1777, false),
    MountRow {
        source: "tmpfs",
        target: "/var",
        fstype: "tmpfs",
        flags: NOSUID | NODEV | RELATIME,
        data: "mode=0755",
        fallback_data: None,
        mode: 0o755,
        optional: false,
        skip: Skip::IfMountedOrNonEmpty,
    },
    // nsdelegate lets containers manage their own subtree (cgroup namespaces); pre-4.13 kernels lack it.
    MountRow {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID | NODEV | NOEXEC | RELATIME,
        data: "nsdelegate",
        fallback_data: Some(""),
        mode: 0o755,
        optional: false,
        skip: Skip::Never,
    },
    row("securityfs", "/sys/kernel/security", "securityfs", NOSUID | NODEV | NOEXEC | RELATIME, "", 0o755, true),
    row("bpf", "/sys/fs/bpf", "bpf", NOSUID | NODEV | NOEXEC | RELATIME, "mode=0700", 0o700, true),
    row("debugfs", "/sys/kernel/debug", "debugfs", NOSUID | NODEV | NOEXEC | RELATIME, "", 0o700, true),
    row("tracefs", "/sys/kernel/tracing", "tracefs", NOSUID | NODEV | NOEXEC | RELATIME, "", 0o700, true),
    row("configfs", "/sys/kernel/config", "configfs", NOSUID | NODEV | NOEXEC | RELATIME, "", 0o755, true),
    row("fusectl", "/sys/fs/fuse/connections", "fusectl", NOSUID | NODEV | NOEXEC | RELATIME, "", 0o755, true),
    row("pstore", "/sys/fs/pstore", "pstore", NOSUID | NODEV | NOEXEC | RELATIME, "", 0o755, true),
    row("binfmt_misc", "/proc/sys/fs/binfmt_misc", "binfmt_misc", NOSUID | NODEV | NOEXEC | RELATIME, "", 0o755, true),
];

/// The sandbox table: init is PID 1 of a fresh pid+mount namespace on a host (tests). Only mounts private to
/// that namespace; /dev is the host's and is left alone.
pub const SANDBOX: &[MountRow] = &[
    row("proc", "/proc", "proc", NOSUID | NODEV | NOEXEC | RELATIME, "", 0o555, false),
    row("tmpfs", "/run", "tmpfs", NOSUID | NODEV | RELATIME, "mode=0755", 0o755, false),
    row("tmpfs", "/tmp", "tmpfs", NOSUID | NODEV | RELATIME, "mode=1777", 0o1777, false),
];

/// What happened to one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Mounted now.
    Mounted,
    /// Already mounted with that fstype (e.g. by the kernel or a previous run), or skipped by its rule.
    AlreadyThere,
    /// Optional and the kernel lacks it.
    Unsupported,
    /// Failed.
    Failed(Error),
}

/// Filesystems the kernel knows, from /proc/filesystems (empty if unreadable: then nothing is skipped).
pub fn kernel_filesystems() -> Vec<String> {
    std::fs::read_to_string("/proc/filesystems")
        .map(|s| s.lines().filter_map(|l| l.split_whitespace().last()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Apply `table` in order. `root` prefixes every target (tests use a scratch dir; boot uses "/").
/// With `fresh`, rows are mounted even where the same fstype is already mounted (a sandbox inherits the host's
/// /run and /tmp, which are not its own); a proc is reused only if it belongs to our pid namespace.
/// Never stops at a failing row.
pub fn apply(table: &[MountRow], root: &Path, fresh: bool) -> Vec<(MountRow, Outcome, std::time::Duration)> {
    let mut out = Vec::with_capacity(table.len());
    let mut mounts: Option<Vec<mountinfo::Mount>> = None;
    let mut known: Option<Vec<String>> = None;
    for r in table {
        let target = join(root, r.target);
        // proc first: until it is mounted we cannot read mountinfo.
        if mounts.is_none() && Path::new("/proc/self/mountinfo").exists() {
            mounts = mountinfo::read().ok();
        }
        if known.is_none() && Path::new("/proc/filesystems").exists() {
            known = Some(kernel_filesystems());
        }
        let t = std::time::Instant::now();
        let o = apply_row(r, &target, mounts.as_deref(), known.as_deref(), fresh);
        if o == Outcome::Mounted {
            // refresh lazily: the next row re-reads it (cheap: one small proc file)
            mounts = None;
        }
        out.push((*r, o, t.elapsed()));
    }
    out
}

fn join(root: &Path, target: &str) -> std::path::PathBuf {
    root.join(target.trim_start_matches('/'))
}

fn apply_row(
    r: &MountRow,
    target: &Path,
    mounts: Option<&[mountinfo::Mount]>,
    known: Option<&[String]>,
    fresh: bool,
) -> Outcome {
    if let Some(k) = known {
        if !k.is_empty() && !k.iter().any(|f| f == r.fstype) {
            return if r.optional {
                Outcome::Unsupported
            } else {
                Outcome::Failed(Error::errno("mount", target, libc::ENODEV))
            };
        }
    }
    let here = match mounts {
        Some(m) => mountinfo::at(m, target).map(|m| m.fstype.clone()),
        // before proc exists only proc itself can be mounted; recognise an existing proc by its magic
        None => match sys::fs_type(target) {
            Ok(t) if t == libc::PROC_SUPER_MAGIC && r.fstype == "proc" => Some("proc".to_string()),
            _ => None,
        },
    };
    if here.as_deref() == Some(r.fstype) {
        let ours = if r.fstype == "proc" { proc_is_ours(target) } else { !fresh };
        if ours {
            return Outcome::AlreadyThere;
        }
    }
    if r.skip == Skip::IfMountedOrNonEmpty {
        let non_empty = std::fs::read_dir(target).map(|mut d| d.next().is_some()).unwrap_or(false);
        if here.is_some() || non_empty {
            return Outcome::AlreadyThere;
        }
    }
    if let Err(e) = ensure_dir(target, r.mode) {
        return if r.optional { Outcome::Unsupported } else { Outcome::Failed(e) };
    }
    match sys::mount(r.source, target, r.fstype, r.flags, r.data) {
        Ok(()) => Outcome::Mounted,
        Err(e) if e.errno() == Some(keel_sys::Errno::EINVAL) && r.fallback_data.is_some() => {
            match sys::mount(r.source, target, r.fstype, r.flags, r.fallback_data.unwrap_or("")) {
                Ok(()) => Outcome::Mounted,
                Err(e) => Outcome::Failed(e.into()),
            }
        }
        Err(e) if r.optional && e.errno() == Some(keel_sys::Errno(libc::ENODEV)) => Outcome::Unsupported,
        Err(e) => Outcome::Failed(e.into()),
    }
}

/// A proc mount belongs to our pid namespace if its `self` is our pid.
fn proc_is_ours(proc: &Path) -> bool {
    std::fs::read_link(proc.join("self")).ok().and_then(|p| p.to_str().and_then(|s| s.parse::<u32>().ok()))
        == Some(std::process::id())
}

/// Create `p` (and missing parents) with `mode` if it does not exist.
pub(crate) fn ensure_dir(p: &Path, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    if p.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(mode).create(p).map_err(|e| Error::io("mkdir", p, &e))?;
    // the umask may have cut bits (e.g. the sticky /tmp)
    Ok(sys::chmod(p, mode)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_table(t: &[MountRow]) {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in t.iter().enumerate() {
            assert!(r.target.starts_with('/'), "{r:?}");
            assert!(seen.insert(r.target), "duplicate target {}", r.target);
            assert!(!r.fstype.is_empty() && !r.source.is_empty(), "{r:?}");
            assert!(r.mode <= 0o7777, "{r:?}");
            assert_eq!(r.flags & (libc::MS_BIND | libc::MS_MOVE | libc::MS_REMOUNT), 0, "{r:?}");
            // every parent mount must come earlier (proc before binfmt_misc, sys before cgroup...)
            for (j, p) in t.iter().enumerate() {
                if r.target != p.target && Path::new(r.target).starts_with(p.target) && p.target != "/" {
                    assert!(j < i, "{} must come after {}", r.target, p.target);
                }
            }
        }
    }

    #[test]
    fn tables_are_sane() {
        check_table(FULL);
        check_table(SANDBOX);
        assert_eq!(FULL.first().map(|r| r.fstype), Some("proc"), "proc must be first (cmdline, mountinfo)");
        assert_eq!(SANDBOX.first().map(|r| r.fstype), Some("proc"));
        for must in ["proc", "sysfs", "devtmpfs", "devpts", "cgroup2", "mqueue"] {
            assert!(FULL.iter().any(|r| r.fstype == must), "{must}");
        }
        let tmp = FULL.iter().find(|r| r.target == "/tmp").map(|r| r.mode);
        assert_eq!(tmp, Some(0o1777));
        let pts = FULL.iter().find(|r| r.target == "/dev/pts").map(|r| r.data).unwrap_or("");
        assert!(pts.contains("ptmxmode=0666") && pts.contains("gid=5") && pts.contains("mode=0620"));
        // the sandbox must never touch host-global things
        for r in SANDBOX {
            assert!(!["cgroup2", "sysfs", "devtmpfs", "securityfs", "debugfs", "bpf"].contains(&r.fstype), "{r:?}");
        }
    }
}
