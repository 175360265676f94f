//! Calls on paths: mount, umount, statfs, mknod, lchown, chmod, mkfifo, writing a kernel file, hostname, uname.
//! Each returns an [`Error`] naming the operation and the path, with the errno.

use std::ffi::CString;
use std::path::Path;

use crate::{cpath, cstring, cvt, Error};

/// mount(2). `source`, `fstype` and `data` may be empty (passed as NULL).
pub fn mount(source: &str, target: &Path, fstype: &str, flags: libc::c_ulong, data: &str) -> Result<(), Error> {
    let t = cpath("mount target", target)?;
    let s = cstring("mount source", source)?;
    let f = cstring("mount fstype", fstype)?;
    let d = cstring("mount data", data)?;
    let opt = |c: &CString, empty: bool| if empty { std::ptr::null() } else { c.as_ptr() };
    // SAFETY: every pointer is either NULL or a valid NUL-terminated string that outlives the call.
    cvt(unsafe {
        libc::mount(
            opt(&s, source.is_empty()),
            t.as_ptr(),
            opt(&f, fstype.is_empty()),
            flags,
            opt(&d, data.is_empty()) as *const libc::c_void,
        )
    })
    .map(drop)
    .map_err(|e| Error::sys("mount", target, e))
}

/// umount2(2).
pub fn umount(target: &Path, flags: libc::c_int) -> Result<(), Error> {
    let t = cpath("umount target", target)?;
    // SAFETY: t is a valid NUL-terminated string.
    cvt(unsafe { libc::umount2(t.as_ptr(), flags) }).map(drop).map_err(|e| Error::sys("umount", target, e))
}

/// statfs(2)'s f_type of `p`.
pub fn fs_type(p: &Path) -> Result<i64, Error> {
    let c = cpath("statfs path", p)?;
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is valid; st is a valid out pointer.
    cvt(unsafe { libc::statfs(c.as_ptr(), &mut st) }).map_err(|e| Error::sys("statfs", p, e))?;
    Ok(st.f_type as i64)
}

/// mknod(2).
pub fn mknod(p: &Path, mode: u32, rdev: u64) -> Result<(), Error> {
    let c = cpath("mknod path", p)?;
    // SAFETY: c is a valid NUL-terminated string.
    cvt(unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) })
        .map(drop)
        .map_err(|e| Error::sys("mknod", p, e))
}

/// mkfifo(3).
pub fn mkfifo(p: &Path, mode: u32) -> Result<(), Error> {
    let c = cpath("mkfifo path", p)?;
    // SAFETY: c is a valid NUL-terminated string.
    cvt(unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) }).map(drop).map_err(|e| Error::sys("mkfifo", p, e))
}

/// lchown(2) (does not follow a symlink).
pub fn lchown(p: &Path, uid: u32, gid: u32) -> Result<(), Error> {
    let c = cpath("lchown path", p)?;
    // SAFETY: c is a valid NUL-terminated string.
    cvt(unsafe { libc::lchown(c.as_ptr(), uid, gid) }).map(drop).map_err(|e| Error::sys("lchown", p, e))
}

/// chmod(2).
pub fn chmod(p: &Path, mode: u32) -> Result<(), Error> {
    let c = cpath("chmod path", p)?;
    // SAFETY: c is a valid NUL-terminated string.
    cvt(unsafe { libc::chmod(c.as_ptr(), mode as libc::mode_t) }).map(drop).map_err(|e| Error::sys("chmod", p, e))
}

/// Write `value` to an existing file in one go (no create, no truncate: proc, sys and cgroup files).
pub fn write_file(p: &Path, value: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(p).map_err(|e| Error::io("open", p, &e))?;
    f.write_all(value).map_err(|e| Error::io("write", p, &e))
}

/// sethostname(2).
pub fn sethostname(name: &str) -> Result<(), Error> {
    // SAFETY: name is a valid buffer of name.len() bytes.
    cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
        .map(drop)
        .map_err(|e| Error::sys("sethostname", name, e))
}

/// The running kernel's release (uname -r); empty if uname fails.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; all-zero is valid.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid out pointer.
    if cvt(unsafe { libc::uname(&mut u) }).is_err() {
        return String::new();
    }
    let bytes: Vec<u8> = u.release.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The new mount API (the same syscall numbers on every architecture: the unified table from 424 on).
const SYS_FSOPEN: libc::c_long = 430;
const SYS_FSCONFIG: libc::c_long = 431;
const SYS_FSMOUNT: libc::c_long = 432;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
pub const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
pub const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
pub const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
pub const MOUNT_ATTR_NOEXEC: libc::c_uint = 0x8;

/// One string option of [`mount_detached`]: key, value, and whether a refusal is tolerated.
pub struct FsOption<'a> {
    pub key: &'a std::ffi::CStr,
    pub value: &'a std::ffi::CStr,
    pub optional: bool,
}

/// A new superblock of `fstype` mounted nowhere (fsopen, the string `options` in order, create, fsmount with
/// `attrs`): an fd no other process can reach or mount over. Never allocates (the runtime's cloned child uses it).
/// The error names the step that failed: "fsopen", "fsconfig" (with the option's key), "create" or "fsmount".
pub fn mount_detached(
    fstype: &std::ffi::CStr,
    options: &[FsOption],
    attrs: libc::c_uint,
) -> Result<std::os::fd::OwnedFd, (&'static str, crate::Errno)> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: fsopen with a valid C string; a new fd or -1.
    let fs = cvt(unsafe { libc::syscall(SYS_FSOPEN, fstype.as_ptr(), FSOPEN_CLOEXEC) }).map_err(|e| ("fsopen", e))?;
    // SAFETY: a fresh fd we own.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    for o in options {
        // SAFETY: fsconfig on our context with valid C strings.
        let r = cvt(unsafe {
            libc::syscall(SYS_FSCONFIG, fs.as_raw_fd(), FSCONFIG_SET_STRING, o.key.as_ptr(), o.value.as_ptr(), 0)
        });
        if let (Err(e), false) = (r, o.optional) {
            return Err(("fsconfig", e));
        }
    }
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: fsconfig CMD_CREATE takes no key or value.
    cvt(unsafe { libc::syscall(SYS_FSCONFIG, fs.as_raw_fd(), FSCONFIG_CMD_CREATE, null, null, 0) })
        .map_err(|e| ("create", e))?;
    // SAFETY: fsmount on our context fd.
    let m = cvt(unsafe { libc::syscall(SYS_FSMOUNT, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
        .map_err(|e| ("fsmount", e))?;
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(m as i32) })
}
