//! The runtime's own binary, out of the container's reach (CVE-2019-5736 class).
//!
//! A container's setup process is a copy of the runtime until it execs the user's program, and a program whose
//! interpreter is `/proc/self/exe` makes the kernel run the runtime's binary inside the container. Whoever then
//! opens `/proc/PID/exe` holds the host's binary and can rewrite it once the process exits. So a process that spawns
//! containers (keel-runc create/run/exec, PID 1) first re-executes itself from a copy that cannot be written: its
//! `/proc/self/exe`, and that of every child it clones, is then that copy.
//!
//! Two ways, cheapest first (runc 1.2's `exeseal` has the same two):
//! - a private overlayfs: the binary's directory as the upper of two *lower* layers, mounted detached
//!   (fsopen/fsmount) and read-only. An overlay with no upper layer can never be written, remounted or not, and a
//!   detached mount is in no mount table. No copy: the binary's pages stay shared with the page cache.
//! - a sealed memfd copy (runc 1.1, crun `ensure_cloned_binary`, youki's pentacle): where overlayfs or the new mount
//!   API is missing, or we may not mount.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::{sys, Error};

/// F_SEAL_EXEC (Linux 6.3+): the exec bits can no longer change. Older kernels refuse it: it is optional.
const F_SEAL_EXEC: libc::c_int = 0x20;
const REQUIRED_SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
/// Set by [`ensure`] for the re-executed process: the id of the private overlay mount it made. Only a hint: the
/// binary must still be on that mount, on overlayfs, refusing writes.
const SEALED_MNT_ENV: &str = "_KEEL_SEALED_MNT";

/// How this process's binary is sealed: the private overlay (no copy), a sealed memfd copy, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    Overlay,
    Memfd,
    None,
}

/// How this process runs: from a lower-only overlayfs mounted nowhere, from a sealed memfd, or from a plain file.
pub fn how() -> Sealing {
    // SAFETY: valid C string; a new fd or -1.
    let fd = unsafe { libc::open(c"/proc/self/exe".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Sealing::None;
    }
    // SAFETY: fd is a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: fcntl on our fd; EINVAL for files that are not memfds.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & REQUIRED_SEALS == REQUIRED_SEALS {
        Sealing::Memfd
    } else if on_private_overlay(&fd) {
        Sealing::Overlay
    } else {
        Sealing::None
    }
}

/// Is this process running from a copy nobody can write: a sealed memfd, or a lower-only overlayfs mounted nowhere?
pub fn is_sealed() -> bool {
    how() != Sealing::None
}

/// Is `exe` on an overlayfs that refuses writes (EROFS) and whose mount is not in this process's mount table (a
/// detached mount: nobody can remount it, and one with no upper layer stays read-only anyway)?
fn on_private_overlay(exe: &OwnedFd) -> bool {
    // SAFETY: zeroed out-parameter filled by fstatfs on our fd.
    let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstatfs(exe.as_raw_fd(), &mut sf) } != 0 || sf.f_type as i64 != OVERLAYFS_SUPER_MAGIC {
        return false;
    }
    // SAFETY: valid C string; a new fd or -1 (closed at once if it ever opened).
    let w = unsafe { libc::open(c"/proc/self/exe".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if w >= 0 {
        // SAFETY: our fd.
        unsafe { libc::close(w) };
        return false;
    }
    if sys::errno() != libc::EROFS {
        return false;
    }
    let Some(id) = mnt_id(exe) else { return false };
    // The mount [`ensure`] made and named before re-executing: no need to read the whole mount table.
    if std::env::var(SEALED_MNT_ENV).is_ok_and(|v| v == id) {
        return true;
    }
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    !table.lines().any(|l| l.split(' ').next() == Some(id.as_str()))
}

/// The id of the mount `fd` is on (/proc/self/fdinfo's mnt_id).
fn mnt_id(fd: &OwnedFd) -> Option<String> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines().find_map(|l| l.strip_prefix("mnt_id:")).map(|s| s.trim().to_string())
}

/// Re-execute this process from a sealed memfd copy of its binary, with the same arguments and environment, unless
/// it already runs from one. Returns Ok(()) only when already sealed; on success it does not return. Call it first
/// thing in main, while the process is single-threaded.
pub fn ensure(args: &[OsString]) -> Result<(), Error> {
    let sealed = is_sealed();
    // The marker has done its job (or is not ours): it goes to no child and no hook.
    std::env::remove_var(SEALED_MNT_ENV);
    if sealed {
        return Ok(());
    }
    let (copy, marker) = match overlay_self() {
        Ok(fd) => {
            let id = mnt_id(&fd);
            (fd, id.map(|id| format!("{SEALED_MNT_ENV}={id}").into_bytes()))
        }
        Err(_) => (copy_self()?, None),
    };
    let memfd = copy.as_raw_fd();
    let cstrings = |items: &mut dyn Iterator<Item = Vec<u8>>| -> Result<Vec<CString>, Error> {
        items
            .map(|b| CString::new(b).map_err(|_| Error::invalid("argument or environment entry with a NUL byte")))
            .collect()
    };
    let argv = cstrings(&mut args.iter().map(|a| a.as_bytes().to_vec()))?;
    let envp = cstrings(
        &mut std::env::vars_os()
            .map(|(k, v)| {
                let mut e = k.as_bytes().to_vec();
                e.push(b'=');
                e.extend_from_slice(v.as_bytes());
                e
            })
            .chain(marker),
    )?;
    let mut argp: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argp.push(std::ptr::null());
    let mut envpp: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envpp.push(std::ptr::null());
    // SAFETY: memfd is our fd; argv/envp are NULL-terminated arrays of valid C strings that outlive the call.
    unsafe {
        libc::syscall(libc::SYS_execveat, memfd, c"".as_ptr(), argp.as_ptr(), envpp.as_ptr(), libc::AT_EMPTY_PATH)
    };
    let errno = sys::Errno::last();
    drop(copy);
    Err(Error::Sys { what: "exec sealed copy of /proc/self/exe".into(), errno })
}

/// An O_PATH fd of this binary on a private overlayfs: two lower layers (the binary's directory on top of an empty
/// scratch directory, removed again at once: overlayfs needs two lowers to run with no upper), mounted detached and
/// read-only. Fails where overlayfs, the new mount API or the right to mount is missing.
fn overlay_self() -> Result<OwnedFd, Error> {
    let exe = std::fs::read_link("/proc/self/exe").map_err(|err| Error::Io {
        what: "readlink",
        path: "/proc/self/exe".into(),
        err,
    })?;
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(Error::invalid("no directory and name").at(exe, ""));
    };
    if !exe.is_absolute() || exe.as_os_str().as_bytes().ends_with(b" (deleted)") {
        return Err(Error::invalid("not a binary on disk").at(exe, ""));
    }
    let scratch = scratch_dir()?;
    let r = mount_overlay(dir, &scratch).and_then(|m| {
        let name = CString::new(name.as_bytes()).map_err(|_| Error::invalid("binary name with a NUL byte"))?;
        // SAFETY: m is our mount fd; valid C string; a new fd or -1.
        let fd =
            unsafe { libc::openat(m.as_raw_fd(), name.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
        if fd < 0 {
            let errno = sys::Errno::last();
            return Err(Error::Sys { what: format!("open {} on a private overlay", exe.display()), errno });
        }
        // SAFETY: a fresh fd we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    });
    let _ = std::fs::remove_dir(&scratch);
    r
}

/// A fresh empty directory in the first of /run, /tmp, /dev/shm that takes one.
fn scratch_dir() -> Result<std::path::PathBuf, Error> {
    for base in ["/run", "/tmp", "/dev/shm"] {
        let mut t = format!("{base}/.keel-seal-XXXXXX\0").into_bytes();
        // SAFETY: t is a writable NUL-terminated template ending in six X.
        if !unsafe { libc::mkdtemp(t.as_mut_ptr().cast()) }.is_null() {
            t.pop();
            return Ok(std::path::PathBuf::from(OsString::from_vec(t)));
        }
    }
    Err(Error::invalid("no scratch directory in /run, /tmp or /dev/shm"))
}

/// Mount overlayfs with lower layers `top:bottom`, detached, read-only, nosuid, nodev.
fn mount_overlay(top: &std::path::Path, bottom: &std::path::Path) -> Result<OwnedFd, Error> {
    use sys::fs::{FsOption, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
    let mut lower = escape_lowerdir(top.as_os_str().as_bytes());
    lower.push(b':');
    lower.extend(escape_lowerdir(bottom.as_os_str().as_bytes()));
    let lower = CString::new(lower).map_err(|_| Error::invalid("overlay lowerdir with a NUL byte"))?;
    let options = [
        FsOption { key: c"lowerdir", value: &lower, optional: false },
        // Inode number mapping is irrelevant here and only logs noise where the layers are on different filesystems.
        FsOption { key: c"xino", value: c"off", optional: true },
    ];
    sys::fs::mount_detached(c"overlay", &options, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV).map_err(
        |(step, errno)| Error::Sys { what: format!("{step} overlay (lowerdir={})", lower.to_string_lossy()), errno },
    )
}

/// Escape `\` and `:` in an overlay lowerdir path.
fn escape_lowerdir(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        if b == b'\\' || b == b':' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// A sealed, close-on-exec memfd holding a copy of /proc/self/exe.
fn copy_self() -> Result<OwnedFd, Error> {
    let err = |what: &str| Error::Sys { what: what.to_string(), errno: sys::Errno::last() };
    // SAFETY: valid C string; a new fd or -1.
    let src = unsafe { libc::open(c"/proc/self/exe".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if src < 0 {
        return Err(err("open /proc/self/exe"));
    }
    let close = |fd: i32| {
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
    };
    // MFD_EXEC (Linux 6.3+) says we mean to exec it, which vm.memfd_noexec=1 otherwise refuses; older kernels reject
    // the unknown flag with EINVAL: retry without it.
    const MFD_EXEC: libc::c_uint = 0x10;
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: valid C string name; memfd_create only creates an fd.
    let mut memfd = unsafe { libc::memfd_create(c"keel".as_ptr(), flags | MFD_EXEC) };
    if memfd < 0 && sys::errno() == libc::EINVAL {
        // SAFETY: as above.
        memfd = unsafe { libc::memfd_create(c"keel".as_ptr(), flags) };
    }
    if memfd < 0 {
        let e = err("memfd_create");
        close(src);
        return Err(e);
    }
    loop {
        // SAFETY: sendfile between our two fds with a null offset (the source's own position advances).
        let n = unsafe { libc::sendfile(memfd, src, std::ptr::null_mut(), 1 << 30) };
        if n > 0 {
            continue;
        }
        if n < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        if n < 0 {
            let e = err("copy /proc/self/exe into a memfd");
            close(src);
            close(memfd);
            return Err(e);
        }
        break;
    }
    close(src);
    // The optional seal first: F_SEAL_SEAL forbids adding any later.
    // SAFETY: fcntl with integer arguments on our memfd.
    unsafe { libc::fcntl(memfd, libc::F_ADD_SEALS, F_SEAL_EXEC) };
    // SAFETY: as above.
    if unsafe { libc::fcntl(memfd, libc::F_ADD_SEALS, REQUIRED_SEALS) } != 0 {
        let e = err("seal memfd copy of /proc/self/exe");
        close(memfd);
        return Err(e);
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(memfd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both copies refuse writes; the overlay needs root (mounting), the memfd nothing.
    #[test]
    fn both_copies_refuse_writes() {
        let memfd = copy_self().expect("memfd copy");
        let path = format!("/proc/self/fd/{}", memfd.as_raw_fd());
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
        assert!(w.is_err(), "memfd copy writable");
        // SAFETY: fcntl on our fd.
        let seals = unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_GET_SEALS) };
        assert_eq!(seals & REQUIRED_SEALS, REQUIRED_SEALS, "seals {seals:#x}");

        // SAFETY: geteuid has no memory effects.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: the private overlay needs root");
            assert!(std::env::var_os("CI").is_none(), "root tests must run under CI");
            return;
        }
        let o = overlay_self().expect("private overlay");
        let path = format!("/proc/self/fd/{}", o.as_raw_fd());
        let e = std::fs::OpenOptions::new().write(true).open(&path).map(drop).map_err(|e| e.raw_os_error());
        assert_eq!(e, Err(Some(libc::EROFS)), "write through the overlay");
        let (a, b) = (std::fs::read(&path).unwrap(), std::fs::read("/proc/self/exe").unwrap());
        assert!(a == b, "the overlay shows another binary");
        assert!(
            std::fs::read_dir("/run")
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().starts_with(".keel-seal-")),
            "scratch dir left in /run"
        );
    }

    #[test]
    fn lowerdir_escapes() {
        assert_eq!(escape_lowerdir(br"/a:b\c"), br"/a\:b\\c".to_vec());
    }
}
