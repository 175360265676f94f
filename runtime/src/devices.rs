//! Device nodes in the container's /dev: the default set (when /dev is a tmpfs the config mounts) and
//! `linux.devices`. mknod first; where that is not allowed (user namespace) bind-mount the host's node instead.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use crate::inroot::{self, Kind};
use crate::procfs::FdPath;
use crate::sys;

/// One node to create, with the host path to bind from if mknod fails.
#[derive(Debug)]
pub struct DeviceStep {
    /// Path inside the container (absolute); resolved inside the root when used.
    pub dest: CString,
    /// Host node to bind if mknod is refused.
    pub host: CString,
    pub mode: libc::mode_t,
    pub dev: libc::dev_t,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// The default devices of the runtime spec ("Default Devices").
pub const DEFAULT: [(&str, u32, u32); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// Symlinks in /dev: (link name under /dev, target).
pub const LINKS: [(&str, &str); 5] = [
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Map a spec device type letter to S_IF* bits.
pub fn type_bits(kind: &str) -> libc::mode_t {
    match kind {
        "b" => libc::S_IFBLK,
        "p" => libc::S_IFIFO,
        _ => libc::S_IFCHR,
    }
}

/// Create one device node inside `root` (child side). The caller has set the umask to 0, so the node gets `mode`
/// exactly. Returns (what, errno) on failure.
///
/// The parent directory is resolved inside the root and the node made with mknodat in it: a symlink planted at the
/// node's name is replaced, never followed (CVE-2021-30465 class). An entry already there (the rootfs may ship
/// placeholder files) is replaced; where mknod is not allowed (user namespace) the host's node is bound instead.
pub fn create(d: &DeviceStep, root: BorrowedFd) -> Result<(), (&'static str, i32)> {
    let mut buf = [0u8; libc::PATH_MAX as usize + 2];
    let (dir, name) = inroot::split(&d.dest, &mut buf).map_err(|e| ("device path", e))?;
    let parent = inroot::open_or_create(root, dir, Kind::Dir).map_err(|e| ("resolve device directory", e))?;
    let pfd = parent.as_raw_fd();
    let mknod = || {
        // SAFETY: valid dirfd and C string; mknodat creates a node only and never follows a link at `name`.
        if unsafe { libc::mknodat(pfd, name.as_ptr(), d.mode, d.dev) } == 0 {
            0
        } else {
            sys::errno()
        }
    };
    let mut e = mknod();
    if e == libc::EEXIST {
        // SAFETY: valid dirfd and C string; unlinkat removes the entry itself (a link, not its target).
        unsafe { libc::unlinkat(pfd, name.as_ptr(), 0) };
        e = mknod();
    }
    if e != 0 {
        if e != libc::EPERM {
            return Err(("mknod", e));
        }
        // In a user namespace: bind the host's node onto an empty file.
        // SAFETY: as above; O_EXCL|O_NOFOLLOW never follows or truncates what is there.
        let fd = unsafe {
            libc::openat(pfd, name.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0o644)
        };
        if fd >= 0 {
            // SAFETY: our fd.
            unsafe { libc::close(fd) };
        } else if sys::errno() != libc::EEXIST {
            return Err(("create device bind target", sys::errno()));
        }
        let t = inroot::openat2(parent.as_fd(), name, libc::O_PATH | libc::O_NOFOLLOW, inroot::IN_ROOT)
            .map_err(|e| ("open device bind target", e))?;
        // SAFETY: valid C strings; bind mount onto the fd we hold.
        let r = unsafe {
            libc::mount(
                d.host.as_ptr(),
                FdPath::new(t.as_raw_fd()).as_cstr().as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(("bind device", sys::errno()));
        }
        return Ok(());
    }
    if d.uid.is_some() || d.gid.is_some() {
        let uid = d.uid.unwrap_or(u32::MAX);
        let gid = d.gid.unwrap_or(u32::MAX);
        // SAFETY: valid dirfd and C string; -1 (u32::MAX) leaves an id unchanged; never follows a link.
        if unsafe { libc::fchownat(pfd, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
            return Err(("chown device", sys::errno()));
        }
    }
    Ok(())
}
