//! Thin, checked wrappers over the few raw system calls rc needs (mount, umount2, statfs, mknod, ...).

use crate::error::Error;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A path as a C string; a path with a NUL byte is reported as EINVAL on that path.
pub(crate) fn cpath(what: &'static str, p: &Path) -> Result<CString, Error> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::errno(what, p, libc::EINVAL))
}

fn cstr(what: &'static str, p: &Path, s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::errno(what, p, libc::EINVAL))
}

/// mount(2). `source`, `fstype` and `data` may be empty (passed as NULL).
pub(crate) fn mount(source: &str, target: &Path, fstype: &str, flags: libc::c_ulong, data: &str) -> Result<(), Error> {
    let t = cpath("mount", target)?;
    let s = cstr("mount", target, source)?;
    let f = cstr("mount", target, fstype)?;
    let d = cstr("mount", target, data)?;
    let opt = |c: &CString, empty: bool| if empty { std::ptr::null() } else { c.as_ptr() };
    // SAFETY: every pointer is either NULL or a valid NUL-terminated string that outlives the call.
    let r = unsafe {
        libc::mount(
            opt(&s, source.is_empty()),
            t.as_ptr(),
            opt(&f, fstype.is_empty()),
            flags,
            opt(&d, data.is_empty()) as *const libc::c_void,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(Error::last("mount", target))
    }
}

/// umount2(2).
pub(crate) fn umount(target: &Path, flags: libc::c_int) -> Result<(), Error> {
    let t = cpath("umount", target)?;
    // SAFETY: t is a valid NUL-terminated string.
    if unsafe { libc::umount2(t.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(Error::last("umount", target))
    }
}

/// statfs(2)'s f_type of `p`.
pub(crate) fn fs_type(p: &Path) -> Result<i64, Error> {
    let c = cpath("statfs", p)?;
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is valid; st is a valid out pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0 {
        Ok(st.f_type as i64)
    } else {
        Err(Error::last("statfs", p))
    }
}

/// mknod(2).
pub(crate) fn mknod(p: &Path, mode: u32, rdev: u64) -> Result<(), Error> {
    let c = cpath("mknod", p)?;
    // SAFETY: c is a valid NUL-terminated string.
    if unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) } == 0 {
        Ok(())
    } else {
        Err(Error::last("mknod", p))
    }
}

/// lchown(2) (does not follow a symlink).
pub(crate) fn lchown(p: &Path, uid: u32, gid: u32) -> Result<(), Error> {
    let c = cpath("lchown", p)?;
    // SAFETY: c is a valid NUL-terminated string.
    if unsafe { libc::lchown(c.as_ptr(), uid, gid) } == 0 {
        Ok(())
    } else {
        Err(Error::last("lchown", p))
    }
}

/// chmod(2) (used after chown, which clears set-id bits).
pub(crate) fn chmod(p: &Path, mode: u32) -> Result<(), Error> {
    let c = cpath("chmod", p)?;
    // SAFETY: c is a valid NUL-terminated string.
    if unsafe { libc::chmod(c.as_ptr(), mode as libc::mode_t) } == 0 {
        Ok(())
    } else {
        Err(Error::last("chmod", p))
    }
}

/// Write `value` to an existing file (no create, no truncate surprises for proc/sys files).
pub(crate) fn write_file(p: &Path, value: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(p).map_err(|e| Error::io("open", p, &e))?;
    f.write_all(value).map_err(|e| Error::io("write", p, &e))
}
