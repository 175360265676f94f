//! init's one error type (PID 1 and keelctl): what failed, on which unit or path, with the errno, and the error
//! underneath as `source()`. Display is the console line's text ("bind /run/keel/control.sock: Address in use
//! (errno 98)"); keel-sys's errno form, never std's "(os error N)".

use std::fmt;
use std::path::{Path, PathBuf};

use crate::sys::Errno;

#[derive(Debug)]
pub enum Error {
    /// A system call failed: what ("bind notify socket", "coldplug: fork"), on which path (empty if none), the errno.
    Sys { what: String, path: PathBuf, errno: Errno },
    /// keel-runtime failed for a unit (its spawn) or for PID 1 itself (`unit` empty: the sealed re-exec).
    Runtime { unit: String, source: keel_runtime::Error },
    /// Input that is not valid: what it is ("bad request", "keel.ready=fd:9"), the message.
    Invalid { what: String, msg: String },
}

impl Error {
    /// A `Sys` error from an errno.
    pub fn sys(what: impl Into<String>, path: impl AsRef<Path>, errno: Errno) -> Error {
        Error::Sys { what: what.into(), path: path.as_ref().to_path_buf(), errno }
    }

    /// A `Sys` error from the current errno.
    pub fn last(what: impl Into<String>, path: impl AsRef<Path>) -> Error {
        Error::sys(what, path, Errno::last())
    }

    /// A `Sys` error from an io::Error (EIO if it carries no errno).
    pub fn io(what: impl Into<String>, path: impl AsRef<Path>, e: &std::io::Error) -> Error {
        Error::sys(what, path, Errno::from_io(e))
    }

    /// An `Invalid` error.
    pub fn invalid(what: impl Into<String>, msg: impl Into<String>) -> Error {
        Error::Invalid { what: what.into(), msg: msg.into() }
    }

    /// The errno, if a system call failed (directly, or in keel-runtime).
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Sys { errno, .. } => Some(errno.raw()),
            Error::Runtime { source: keel_runtime::Error::Sys { errno, .. }, .. } => Some(errno.raw()),
            Error::Runtime { source: keel_runtime::Error::Io { err, .. }, .. } => err.raw_os_error(),
            Error::Runtime { source: keel_runtime::Error::Setup { msg, .. }, .. } => crate::supervisor::errno_in(msg),
            _ => None,
        }
    }

    /// May a start that failed with this heal by itself (retry with backoff)? See [`crate::spawner::classify`].
    pub fn transient(&self) -> bool {
        match self {
            Error::Runtime { source, .. } => crate::spawner::classify(source),
            e => e.errno().is_some_and(crate::supervisor::transient_errno),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sys { what, path, errno } if path.as_os_str().is_empty() => write!(f, "{what}: {errno}"),
            Error::Sys { what, path, errno } => write!(f, "{what} {}: {errno}", path.display()),
            Error::Runtime { source, .. } => f.write_str(&crate::spawner::cause(source)),
            Error::Invalid { what, msg } if what.is_empty() => f.write_str(msg),
            Error::Invalid { what, msg } => write!(f, "{what}: {msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Sys { errno, .. } => Some(errno),
            Error::Runtime { source, .. } => Some(source),
            Error::Invalid { .. } => None,
        }
    }
}

/// keel-sys's errors keep their what, path and errno; a NUL byte names the field.
impl From<crate::sys::Error> for Error {
    fn from(e: crate::sys::Error) -> Error {
        match e {
            crate::sys::Error::Sys { what, path, errno } => Error::Sys { what: what.into_owned(), path, errno },
            crate::sys::Error::Nul { field } => Error::invalid(field, "contains a NUL byte"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_chain() {
        use std::error::Error as _;
        let e = Error::sys("bind", "/run/keel/control.sock", Errno(libc::EADDRINUSE));
        assert_eq!(e.to_string(), format!("bind /run/keel/control.sock: {}", Errno(libc::EADDRINUSE)));
        assert!(e.to_string().ends_with(&format!("(errno {})", libc::EADDRINUSE)), "{e}");
        assert!(e.source().is_some());
        assert!(Error::sys("fork", "", Errno(libc::EAGAIN)).transient());
        assert!(!Error::invalid("bad request", "x").transient());
        assert_eq!(Error::invalid("", "m").to_string(), "m");
        let rt = keel_runtime::Error::Setup { bundle: "web".into(), msg: "exec /x: No such file (errno 2)".into() };
        let e = Error::Runtime { unit: "web".into(), source: rt };
        assert_eq!(e.to_string(), "exec /x: No such file (errno 2)");
        assert_eq!(e.errno(), Some(2));
    }
}
