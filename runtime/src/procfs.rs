//! A procfs the container cannot touch, child side (never allocates).
//!
//! The child needs /proc for three things: mount(2) onto a target it holds as an fd (`self/fd/N`), reopening the
//! exec fifo it holds as an O_PATH fd, and writing sysctls. A /proc reached by path can be a symlink or a volume the
//! container controls (CVE-2019-16884, CVE-2023-27561, CVE-2025-52881 class). So the child makes its own instance
//! with the new mount API (fsopen/fsmount: a detached mount no other process can reach or mount over) and checks it
//! with fstatfs; only where that API is missing does it fall back to the host's /proc, checked the same way.
//! Relative paths (`self/fd/N`, `sys/net/...`) are then resolved from that fd, never from a path string.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::inroot;
use crate::sys;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const PROC_ROOT_INO: u64 = 1;

/// Open a private procfs (or, without fsopen, the host's /proc), verified to be the root of a procfs.
pub fn open() -> Result<OwnedFd, (&'static str, i32)> {
    if let Some(fd) = private() {
        return Ok(fd);
    }
    // SAFETY: valid C string; a new fd or -1.
    let fd = unsafe { libc::open(c"/proc".as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(("open /proc", sys::errno()));
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    verify(fd.as_raw_fd()).map_err(|e| ("/proc is not a procfs", e))?;
    Ok(fd)
}

fn private() -> Option<OwnedFd> {
    use sys::fs::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID};
    let m = sys::fs::mount_detached(c"proc", &[], MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC).ok()?;
    verify(m.as_raw_fd()).ok()?;
    Some(m)
}

/// Is `fd` the root directory of a procfs?
fn verify(fd: i32) -> Result<(), i32> {
    // SAFETY: zeroed out-parameters; fd is valid.
    let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstatfs(fd, &mut sf) } != 0 {
        return Err(sys::errno());
    }
    // SAFETY: as above.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(sys::errno());
    }
    if sf.f_type as i64 != PROC_SUPER_MAGIC || st.st_ino != PROC_ROOT_INO {
        return Err(libc::EXDEV);
    }
    Ok(())
}

/// `self/fd/N` (NUL-terminated), the path of fd `n` relative to a procfs root.
pub struct FdPath {
    buf: [u8; 32],
}

impl FdPath {
    pub fn new(fd: i32) -> FdPath {
        let mut buf = [0u8; 32];
        let head = b"self/fd/";
        buf[..head.len()].copy_from_slice(head);
        let mut num = [0u8; 24];
        let digits = sys::itoa(fd as i64, &mut num);
        buf[head.len()..head.len() + digits.len()].copy_from_slice(digits);
        FdPath { buf }
    }

    pub fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"self/fd/-1")
    }
}

/// Write a sysctl through `proc` (`key` relative to /proc/sys, e.g. "net/ipv4/ip_forward"), refusing symlinks,
/// magic links and any mount crossing on the way.
pub fn write_sysctl(proc: BorrowedFd, key: &CStr, value: &[u8]) -> Result<(), i32> {
    let sys_dir = inroot::openat2(proc, c"sys", libc::O_PATH | libc::O_DIRECTORY, inroot::STRICTLY_BENEATH)?;
    let f = inroot::openat2(
        std::os::fd::AsFd::as_fd(&sys_dir),
        key,
        libc::O_WRONLY | libc::O_TRUNC,
        inroot::STRICTLY_BENEATH,
    )?;
    if !sys::write_all(f.as_raw_fd(), value) {
        return Err(sys::errno());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn fd_path() {
        assert_eq!(FdPath::new(7).as_cstr(), c"self/fd/7");
        assert_eq!(FdPath::new(1234).as_cstr(), c"self/fd/1234");
    }

    #[test]
    fn opens_a_procfs() {
        let p = open().unwrap();
        // A symlink or a mount crossing on the way to a sysctl is refused.
        let e = inroot::openat2(p.as_fd(), c"self/fd", libc::O_PATH, inroot::STRICTLY_BENEATH).unwrap_err();
        assert!(e == libc::ELOOP || e == libc::EXDEV, "errno {e}");
    }
}
