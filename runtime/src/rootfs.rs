//! The container's mount tree, child side: spec mounts (prepared in the parent as [`MountStep`]s), masked and
//! readonly paths, pivot_root (or MS_MOVE + chroot), readonly root.
//!
//! Nothing here takes a path string inside the rootfs at its word: every target is opened inside the root by
//! [`crate::inroot`] at the moment of use and mount(2) is aimed at that fd (`self/fd/N`, relative to the child's
//! private procfs, which is its working directory during the mount phase). After a mount the target is opened
//! again, so remounts and propagation changes reach the new mount, not what it covers.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::inroot::{self, Kind};
use crate::procfs::FdPath;
use crate::sys;

/// One mount(2) sequence, fully prepared.
#[derive(Debug)]
pub struct MountStep {
    pub source: Option<CString>,
    /// Destination inside the container (absolute, as in config.json); resolved inside the root when used.
    pub dest: CString,
    pub fstype: Option<CString>,
    pub flags: libc::c_ulong,
    pub data: Option<CString>,
    /// For binds with extra flags (ro, nosuid, ...): flags of the MS_REMOUNT|MS_BIND call.
    pub remount: Option<libc::c_ulong>,
    pub propagation: libc::c_ulong,
    /// Target is a file (bind of a file source).
    pub file: bool,
    /// A cgroup2 mount refused with EBUSY (the same cgroup2 already there, e.g. under a bind of the host's /sys) or
    /// EPERM (user namespace without a cgroup namespace): bind this host directory, the container's own cgroup,
    /// instead (as runc does).
    pub fallback_bind: Option<CString>,
}

fn opt_ptr(c: &Option<CString>) -> *const libc::c_char {
    c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

fn raw_mount(
    src: *const libc::c_char,
    target: &CStr,
    fstype: *const libc::c_char,
    flags: libc::c_ulong,
    data: *const libc::c_char,
) -> Result<(), i32> {
    // SAFETY: pointers are valid C strings or null.
    if unsafe { libc::mount(src, target.as_ptr(), fstype, flags, data.cast()) } != 0 {
        return Err(sys::errno());
    }
    Ok(())
}

/// Perform a mount step inside `root`. Returns (what, errno) on failure.
pub fn mount(m: &MountStep, root: BorrowedFd) -> Result<(), (&'static str, i32)> {
    let kind = if m.file { Kind::File } else { Kind::Dir };
    let target = inroot::open_or_create(root, &m.dest, kind).map_err(|e| ("resolve mount target", e))?;
    let at = FdPath::new(target.as_raw_fd());
    let mut remount_flags = m.remount;
    if let Err(e) = raw_mount(opt_ptr(&m.source), at.as_cstr(), opt_ptr(&m.fstype), m.flags, opt_ptr(&m.data).cast()) {
        let fstype = m.fstype.as_deref().map(|t| t.to_bytes());
        if fstype == Some(b"sysfs") && e == libc::EPERM {
            // sysfs cannot be mounted in a user namespace that does not own the network namespace: show the host's
            // /sys read-only instead, as runc does.
            raw_mount(c"/sys".as_ptr(), at.as_cstr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null())
                .map_err(|e| ("mount", e))?;
            remount_flags = Some(m.flags | libc::MS_RDONLY);
        } else if let (Some(b"cgroup2"), Some(src), true) =
            (fstype, &m.fallback_bind, e == libc::EBUSY || e == libc::EPERM)
        {
            raw_mount(src.as_ptr(), at.as_cstr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null())
                .map_err(|e| ("bind own cgroup", e))?;
            let extra = m.flags & (libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
            remount_flags = (extra != 0).then_some(extra);
        } else {
            return Err(("mount", e));
        }
    }
    drop(target);
    if remount_flags.is_none() && m.propagation == 0 {
        return Ok(());
    }
    let top = inroot::open(root, &m.dest, libc::O_PATH).map_err(|e| ("reopen mount", e))?;
    if let Some(flags) = remount_flags {
        remount(top.as_raw_fd(), flags).map_err(|e| ("remount", e))?;
    }
    if m.propagation != 0 {
        let at = FdPath::new(top.as_raw_fd());
        raw_mount(std::ptr::null(), at.as_cstr(), std::ptr::null(), m.propagation, std::ptr::null())
            .map_err(|e| ("set mount propagation", e))?;
    }
    Ok(())
}

/// statfs f_flags bit of relatime (linux/statfs.h); the libc crate defines ST_RELATIME for glibc only, not musl.
const ST_RELATIME: libc::c_ulong = 0x1000;

/// Flags of the mount `fd` is on that a bind remount must keep (they are locked in a user namespace).
fn kept_flags(fd: i32) -> libc::c_ulong {
    // SAFETY: st is a valid out-parameter; fd is ours.
    let mut st: libc::statfs64 = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstatfs64(fd, &mut st) } != 0 {
        return 0;
    }
    let mut f = 0;
    for (st_flag, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (ST_RELATIME, libc::MS_RELATIME),
        (libc::ST_RDONLY, libc::MS_RDONLY),
    ] {
        if st.f_flags as libc::c_ulong & st_flag != 0 {
            f |= ms;
        }
    }
    f
}

/// MS_REMOUNT|MS_BIND with `flags` plus the flags the mount already has, on the mount whose root `fd` is.
pub fn remount(fd: i32, flags: libc::c_ulong) -> Result<(), i32> {
    let f = flags | libc::MS_REMOUNT | libc::MS_BIND | kept_flags(fd);
    raw_mount(std::ptr::null(), FdPath::new(fd).as_cstr(), std::ptr::null(), f, std::ptr::null())
}

/// Remount the mount at `dest` inside `root` with `flags` added.
pub fn remount_at(root: BorrowedFd, dest: &CStr, flags: libc::c_ulong) -> Result<(), i32> {
    let fd = inroot::open(root, dest, libc::O_PATH)?;
    remount(fd.as_raw_fd(), flags)
}

/// Mask a path: /dev/null (`null`, an fd of the host's null device checked by the parent) over a file, an empty
/// read-only tmpfs over a directory. Missing paths are skipped. The container's own /dev/null is never used: it
/// could be a link to anything (CVE-2025-31133).
pub fn mask(root: BorrowedFd, path: &CStr, null: i32) -> Result<(), i32> {
    let t = match inroot::open(root, path, libc::O_PATH) {
        Ok(t) => t,
        Err(libc::ENOENT | libc::ENOTDIR) => return Ok(()),
        Err(e) => return Err(e),
    };
    // SAFETY: st a valid out-parameter; t is ours.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(t.as_raw_fd(), &mut st) } != 0 {
        return Err(sys::errno());
    }
    let at = FdPath::new(t.as_raw_fd());
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        raw_mount(
            c"tmpfs".as_ptr(),
            at.as_cstr(),
            c"tmpfs".as_ptr(),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"size=0,mode=755".as_ptr(),
        )
    } else {
        raw_mount(FdPath::new(null).as_cstr().as_ptr(), at.as_cstr(), std::ptr::null(), libc::MS_BIND, std::ptr::null())
    }
}

/// Make a path read-only: bind it on itself, then remount read-only. Missing paths are skipped.
pub fn readonly(root: BorrowedFd, path: &CStr) -> Result<(), i32> {
    let t = match inroot::open(root, path, libc::O_PATH) {
        Ok(t) => t,
        Err(libc::ENOENT | libc::ENOTDIR) => return Ok(()),
        Err(e) => return Err(e),
    };
    let at = FdPath::new(t.as_raw_fd());
    raw_mount(at.as_cstr().as_ptr(), at.as_cstr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null())?;
    drop(t);
    remount_at(root, path, libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC)
}

/// Switch to the new root `root` (an fd of the rootfs mount). pivot_root(".", ".") then detach the old root
/// (runc's trick: no put_old directory), or MS_MOVE + chroot for `no_pivot`. Returns (what, errno).
pub fn switch_root(root: BorrowedFd, no_pivot: bool) -> Result<(), (&'static str, i32)> {
    // SAFETY: root is our fd; these calls change only this process's root/cwd and its mount namespace.
    unsafe {
        if libc::fchdir(root.as_raw_fd()) != 0 {
            return Err(("chdir to", sys::errno()));
        }
        if no_pivot {
            if libc::mount(c".".as_ptr(), c"/".as_ptr(), std::ptr::null(), libc::MS_MOVE, std::ptr::null()) != 0 {
                return Err(("move rootfs to /", sys::errno()));
            }
            if libc::chroot(c".".as_ptr()) != 0 {
                return Err(("chroot", sys::errno()));
            }
        } else {
            if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0 {
                return Err(("pivot_root", sys::errno()));
            }
            // The old root is stacked under "."; keep its unmount from propagating to the host.
            if libc::mount(
                std::ptr::null(),
                c".".as_ptr(),
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            ) != 0
            {
                return Err(("make old root rslave", sys::errno()));
            }
            if libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0 {
                return Err(("unmount old root", sys::errno()));
            }
        }
        if libc::chdir(c"/".as_ptr()) != 0 {
            return Err(("chdir /", sys::errno()));
        }
    }
    Ok(())
}

/// Create the symlink `link` (inside `root`) pointing to `target`; an entry already there is left alone.
pub fn symlink(root: BorrowedFd, target: &CStr, link: &CStr) -> Result<(), i32> {
    let mut buf = [0u8; libc::PATH_MAX as usize + 2];
    let (dir, name) = inroot::split(link, &mut buf)?;
    let parent = inroot::open_or_create(root, dir, Kind::Dir)?;
    // SAFETY: valid C strings and dirfd; symlinkat never follows anything at `name`.
    if unsafe { libc::symlinkat(target.as_ptr(), parent.as_raw_fd(), name.as_ptr()) } != 0
        && sys::errno() != libc::EEXIST
    {
        return Err(sys::errno());
    }
    Ok(())
}

/// The working directory after a chdir: inside the root (`Ok`), or not reachable from it (an fd leaked from the
/// host, CVE-2024-21626): the kernel then prefixes the path with "(unreachable)".
pub fn cwd_inside_root() -> Result<(), i32> {
    let mut buf = [0u8; libc::PATH_MAX as usize + 16];
    // SAFETY: valid buffer and length. The raw syscall: libc getcwd may turn "(unreachable)" into ENOENT or not.
    if unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) } < 0 {
        return Err(sys::errno());
    }
    if buf[0] != b'/' {
        return Err(libc::ENOENT);
    }
    Ok(())
}
