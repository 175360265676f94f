//! Final unmount before reboot(2): everything in reverse mount order, retried while it makes progress, lazily on
//! the last try; then `/` read-only where that is safe, and /proc last.

use crate::mountinfo;
use crate::sys;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Unmount every mount in reverse order, looping until nothing changes or `deadline`; lazy on the last try.
/// Returns the mount points that could not be unmounted.
///
/// `/` is remounted read-only only when this process is in the machine's initial pid namespace (see
/// [`in_initial_pid_ns`]): in a sandbox the root's superblock is the host's, and a read-only remount would hit
/// the host.
pub fn unmount_all(deadline: Instant) -> Vec<String> {
    unmount_all_with(deadline, in_initial_pid_ns())
}

/// [`unmount_all`] with the read-only remount of `/` chosen by the caller.
pub fn unmount_all_with(deadline: Instant, remount_root_ro: bool) -> Vec<String> {
    let keep_last = |p: &Path| p == Path::new("/") || p == Path::new("/proc");
    let mut lazy = false;
    let remaining: Vec<PathBuf>;
    loop {
        let Ok(ms) = mountinfo::read() else {
            return vec!["/proc/self/mountinfo unreadable".to_string()];
        };
        let targets: Vec<PathBuf> = ms.iter().rev().map(|m| m.mount_point.clone()).filter(|p| !keep_last(p)).collect();
        if targets.is_empty() {
            remaining = Vec::new();
            break;
        }
        let mut changed = false;
        for t in &targets {
            // EBUSY and EINVAL (already gone with its parent) are expected; the next round sees the truth
            if sys::umount(t, if lazy { libc::MNT_DETACH } else { 0 }).is_ok() {
                changed = true;
            }
        }
        if lazy {
            remaining = mountinfo::read()
                .map(|ms| ms.into_iter().map(|m| m.mount_point).filter(|p| !keep_last(p)).collect())
                .unwrap_or_default();
            break;
        }
        if !changed || Instant::now() >= deadline {
            lazy = true;
        }
    }
    if remount_root_ro {
        // may fail with EBUSY (files open for writing): nothing more to do about it here
        let _ = sys::mount("", Path::new("/"), "", libc::MS_REMOUNT | libc::MS_RDONLY, "");
    }
    let proc = Path::new("/proc");
    if sys::umount(proc, 0).is_err() {
        let _ = sys::umount(proc, libc::MNT_DETACH);
    }
    let mut out: Vec<String> = remaining.into_iter().map(|p| p.display().to_string()).collect();
    out.dedup();
    out
}

/// True if this process sees the kernel's threads (kthreadd is PID 2), i.e. it runs in the initial pid
/// namespace: a real machine, not a sandbox. Needs /proc mounted; false otherwise.
pub fn in_initial_pid_ns() -> bool {
    std::fs::read_to_string("/proc/2/stat").is_ok_and(|s| s.contains("(kthreadd)"))
}
