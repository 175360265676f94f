//! keel's one way to call the kernel, and one way to fail.
//!
//! Every `unsafe` libc call of keel lives in this crate and is wrapped once: the raw return value goes through
//! [`cvt`] (`-1` → [`Errno`], as Firecracker's `SyscallReturnCode` or youki's syscall layer), so no other crate
//! reads errno itself. On top of it:
//!
//! - [`Errno`]: a raw errno with its description, the building block of every keel error;
//! - [`Error`]: what failed, on which path, with the errno (or which field held a NUL byte): each crate's error type
//!   wraps it and keeps it as `source()`;
//! - [`cstring`] / [`cpath`]: the one way to make a C string; a NUL byte is an error naming the field, never stripped;
//! - [`mountinfo`]: the one /proc/self/mountinfo parser;
//! - [`fs`]: path-based calls (mount, umount, statfs, mknod, chown, chmod, mkfifo, write_file, hostname, uname);
//! - [`io`]: fd calls (pipes, non-blocking read/write, epoll, signalfd, poll, open, fd passing);
//! - [`process`]: kill, waitpid, reaping, signal names and dispositions;
//! - [`child`]: helpers for a freshly cloned child that must not allocate (stack buffer, status line, mkdir -p).
//!
//! It depends on libc only: PID 1 is a static musl binary whose size is its memory footprint.

use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub mod child;
pub mod fs;
pub mod io;
pub mod mountinfo;
pub mod process;

pub use child::{close_fds_from, fail, fail_msg, itoa, mkdir_p, show, write_all, StackBuf};
pub use fs::{chmod, fs_type, kernel_release, lchown, mkfifo, mknod, mount, sethostname, umount, write_file};
pub use io::{block_all_signals, open, pipe, poll_in, read, read_signal, set_nonblock, signalfd, write, Epoll, Io};
pub use process::{
    changed_signals, has_children, kill, lock_memory, reap_one, refresh_changed_signals, sig_bit, signal_by_name,
    waitpid, Reaped, WaitStatus,
};

/// A raw errno value. `Display`: "No such file or directory (errno 2)".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const ESRCH: Errno = Errno(libc::ESRCH);
    pub const EINTR: Errno = Errno(libc::EINTR);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const ECHILD: Errno = Errno(libc::ECHILD);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    pub const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);

    /// errno of the last failed libc call of this thread.
    pub fn last() -> Errno {
        Errno(errno())
    }

    /// From a raw value.
    pub const fn from_raw(e: i32) -> Errno {
        Errno(e)
    }

    /// The raw value.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// The description ("No such file or directory"), without allocating or locking.
    pub fn desc(self) -> &'static str {
        strerror(self.0)
    }

    /// The errno an `io::Error` carries (EIO when it carries none).
    pub fn from_io(e: &std::io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", self.desc(), self.0)
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(e.0)
    }
}

/// errno of the last failed libc call of this thread.
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

#[cfg(target_env = "gnu")]
extern "C" {
    /// glibc ≥ 2.32: the untranslated description; async-signal-safe, takes no lock.
    fn strerrordesc_np(errnum: libc::c_int) -> *const libc::c_char;
}

/// The description of an errno, without allocating or locking (glibc's strerror may take the gettext lock, which
/// another thread of a process could have held when it cloned us): glibc's strerrordesc_np, musl's strerror (static
/// strings, no lock).
pub fn strerror(e: i32) -> &'static str {
    #[cfg(target_env = "gnu")]
    // SAFETY: strerrordesc_np returns NULL or a pointer to a static NUL-terminated string.
    let p = unsafe { strerrordesc_np(e) };
    #[cfg(not(target_env = "gnu"))]
    // SAFETY: musl's strerror returns a pointer to a static NUL-terminated string (never NULL).
    let p = unsafe { libc::strerror(e) };
    if p.is_null() {
        return "Unknown error";
    }
    // SAFETY: p points to a static NUL-terminated string (above).
    unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("Unknown error")
}

/// A syscall return value whose failure is `-1` (with errno set).
pub trait SyscallReturn: Copy {
    fn is_minus_one(self) -> bool;
}

macro_rules! syscall_return {
    ($($t:ty)*) => {$(
        impl SyscallReturn for $t {
            fn is_minus_one(self) -> bool {
                self == -1
            }
        }
    )*};
}
syscall_return!(i32 i64 isize);

/// The one `-1 → errno` conversion every wrapper uses.
pub fn cvt<T: SyscallReturn>(r: T) -> Result<T, Errno> {
    if r.is_minus_one() {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// [`cvt`], calling `f` again while it fails with EINTR.
pub fn cvt_r<T: SyscallReturn>(mut f: impl FnMut() -> T) -> Result<T, Errno> {
    loop {
        match cvt(f()) {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// What went wrong in a call to the kernel: the building block of every keel error type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A system call failed: the operation ("mount", "open cgroup"), the path it applied to (empty if none), the
    /// errno. Display: "mount /sys: Device or resource busy (errno 16)".
    Sys { what: Cow<'static, str>, path: PathBuf, errno: Errno },
    /// A string bound for the kernel (argument, path, environment entry, ...) holds a NUL byte; `field` names it.
    /// Display: "process.args[1]: contains a NUL byte".
    Nul { field: String },
}

impl Error {
    /// A `Sys` error from an errno.
    pub fn sys(what: impl Into<Cow<'static, str>>, path: impl AsRef<Path>, errno: Errno) -> Error {
        Error::Sys { what: what.into(), path: path.as_ref().to_path_buf(), errno }
    }

    /// A `Sys` error from the current errno.
    pub fn last(what: impl Into<Cow<'static, str>>, path: impl AsRef<Path>) -> Error {
        Error::sys(what, path, Errno::last())
    }

    /// A `Sys` error from an io::Error (EIO if it carries no errno).
    pub fn io(what: impl Into<Cow<'static, str>>, path: impl AsRef<Path>, e: &std::io::Error) -> Error {
        Error::sys(what, path, Errno::from_io(e))
    }

    /// The errno, for a `Sys` error.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Sys { errno, .. } => Some(*errno),
            Error::Nul { .. } => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sys { what, path, errno } if path.as_os_str().is_empty() => write!(f, "{what}: {errno}"),
            Error::Sys { what, path, errno } => write!(f, "{what} {}: {errno}", path.display()),
            Error::Nul { field } => write!(f, "{field}: contains a NUL byte"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Sys { errno, .. } => Some(errno),
            Error::Nul { .. } => None,
        }
    }
}

/// The one way to make a C string: a NUL byte inside is an error naming `field`, never stripped.
pub fn cstring(field: &str, s: impl AsRef<[u8]>) -> Result<CString, Error> {
    CString::new(s.as_ref()).map_err(|_| Error::Nul { field: field.to_string() })
}

/// [`cstring`] for a path.
pub fn cpath(field: &str, p: &Path) -> Result<CString, Error> {
    cstring(field, p.as_os_str().as_bytes())
}

/// A pointer for an optional C string argument: NULL for `None`.
pub fn opt_ptr(c: Option<&CStr>) -> *const libc::c_char {
    c.map_or(std::ptr::null(), CStr::as_ptr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_display_and_cvt() {
        assert_eq!(Errno::ENOENT.to_string(), "No such file or directory (errno 2)");
        assert_eq!(cvt(0), Ok(0));
        // SAFETY: close of an invalid fd only sets errno.
        assert_eq!(cvt(unsafe { libc::close(-1) }), Err(Errno::from_raw(libc::EBADF)));
        assert!(matches!(Errno::EPERM, Errno::EPERM));
    }

    #[test]
    fn error_names_path_field_and_errno() {
        let e = Error::sys("mount", "/sys/fs/cgroup", Errno::EBUSY);
        assert_eq!(e.to_string(), format!("mount /sys/fs/cgroup: Device or resource busy (errno {})", libc::EBUSY));
        assert_eq!(Error::sys("setns", "", Errno::EINVAL).to_string(), "setns: Invalid argument (errno 22)");
        assert!(std::error::Error::source(&e).is_some());
        let n = cstring("process.args[1]", "a\0b").unwrap_err();
        assert_eq!(n.to_string(), "process.args[1]: contains a NUL byte");
        assert_eq!(cstring("x", "ab").map(|c| c.into_bytes()), Ok(b"ab".to_vec()));
    }
}
