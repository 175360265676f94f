//! Device nodes in the container's /dev: the default set (when /dev is a tmpfs the config mounts) and
//! `linux.devices`. mknod first; where that is not allowed (user namespace) bind-mount the host's node instead.

use std::ffi::{CStr, CString};

use crate::sys;

/// One node to create, with the host path to bind from if mknod fails.
#[derive(Debug)]
pub struct DeviceStep {
    /// Target, rootfs-prefixed.
    pub path: CString,
    /// Host node to bind if mknod is refused.
    pub host: CString,
    /// Path inside the container, for messages.
    pub display: CString,
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

/// Create one device node (child side). The caller has set the umask to 0, so the node gets `mode` exactly. Returns
/// (what, errno) on failure.
///
/// mknod first: on the freshly mounted /dev tmpfs that is the only syscall. Only when it fails: a missing parent is
/// created, an entry already there (the rootfs may ship placeholder files) is replaced, and where mknod is not
/// allowed (user namespace) the host's node is bound instead.
pub fn create(d: &DeviceStep) -> Result<(), (&'static str, i32)> {
    let mknod = || {
        // SAFETY: valid C string; mknod creates a node only.
        if unsafe { libc::mknod(d.path.as_ptr(), d.mode, d.dev) } == 0 {
            0
        } else {
            sys::errno()
        }
    };
    let mut e = mknod();
    if e == libc::ENOENT {
        if let Some(slash) = d.path.to_bytes().iter().rposition(|&b| b == b'/') {
            let mut buf = [0u8; libc::PATH_MAX as usize + 1];
            if slash < buf.len() {
                buf[..slash].copy_from_slice(&d.path.to_bytes()[..slash]);
                if let Ok(parent) = CStr::from_bytes_until_nul(&buf[..=slash]) {
                    let _ = sys::mkdir_p(parent, 0o755);
                }
            }
        }
        e = mknod();
    }
    if e == libc::EEXIST {
        // SAFETY: valid C string.
        unsafe { libc::unlink(d.path.as_ptr()) };
        e = mknod();
    }
    if e != 0 {
        if e != libc::EPERM {
            return Err(("mknod", e));
        }
        // In a user namespace: bind the host's node onto an empty file.
        sys::touch_p(&d.path).map_err(|e| ("create device bind target", e))?;
        // SAFETY: valid C strings; bind mount only.
        let r =
            unsafe { libc::mount(d.host.as_ptr(), d.path.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
        if r != 0 {
            return Err(("bind device", sys::errno()));
        }
        return Ok(());
    }
    if d.uid.is_some() || d.gid.is_some() {
        let uid = d.uid.unwrap_or(u32::MAX);
        let gid = d.gid.unwrap_or(u32::MAX);
        // SAFETY: valid C string; -1 (u32::MAX) leaves an id unchanged.
        if unsafe { libc::chown(d.path.as_ptr(), uid, gid) } != 0 {
            return Err(("chown device", sys::errno()));
        }
    }
    Ok(())
}
