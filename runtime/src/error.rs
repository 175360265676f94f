//! One error enum for the runtime; every variant names what failed and where.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// Reading a file failed.
    Io { what: &'static str, path: PathBuf, err: std::io::Error },
    /// config.json / runtime.json did not parse; `field` is the JSON path if known.
    Json { path: PathBuf, field: String, msg: String },
    /// The config parsed but is not valid (e.g. missing process.args, relative root). A parser of one value leaves
    /// `path` and `field` empty ([`Error::invalid`]); its caller places it ([`Error::at`]).
    Invalid { path: PathBuf, field: String, msg: String },
    /// A syscall failed.
    Sys { what: String, errno: keel_sys::Errno },
    /// The bundle's root filesystem is missing or not a directory.
    Rootfs { bundle: String, path: PathBuf, err: std::io::Error },
    /// Container setup failed before exec (message from the child: what failed, path, errno).
    Setup { bundle: String, msg: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, path, err } => write!(f, "{what} {}: {err}", path.display()),
            Error::Json { path, field, msg } if field.is_empty() => write!(f, "{}: {msg}", path.display()),
            Error::Json { path, field, msg } => write!(f, "{}: {field}: {msg}", path.display()),
            Error::Invalid { path, field, msg } if path.as_os_str().is_empty() && field.is_empty() => f.write_str(msg),
            Error::Invalid { path, field, msg } if path.as_os_str().is_empty() => write!(f, "{field}: {msg}"),
            Error::Invalid { path, field, msg } if field.is_empty() => write!(f, "{}: {msg}", path.display()),
            Error::Invalid { path, field, msg } => write!(f, "{}: {field}: {msg}", path.display()),
            Error::Sys { what, errno } => write!(f, "{what}: {errno}"),
            Error::Rootfs { bundle, path, err } => write!(f, "bundle {bundle}: rootfs {}: {err}", path.display()),
            Error::Setup { bundle, msg } => write!(f, "bundle {bundle}: {msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { err, .. } | Error::Rootfs { err, .. } => Some(err),
            Error::Sys { errno, .. } => Some(errno),
            _ => None,
        }
    }
}

/// keel-sys's errors: a failed call keeps its "what path" and errno; a NUL byte names the field.
impl From<keel_sys::Error> for Error {
    fn from(e: keel_sys::Error) -> Error {
        match e {
            keel_sys::Error::Sys { what, path, errno } if path.as_os_str().is_empty() => {
                Error::Sys { what: what.into_owned(), errno }
            }
            keel_sys::Error::Sys { what, path, errno } => {
                Error::Sys { what: format!("{what} {}", path.display()), errno }
            }
            keel_sys::Error::Nul { field } => {
                Error::Invalid { path: PathBuf::new(), field, msg: "contains a NUL byte".into() }
            }
        }
    }
}

impl Error {
    /// An `Invalid` error with no path or field yet: a parser's, placed by its caller with [`Error::at`].
    pub fn invalid(msg: impl Into<String>) -> Error {
        Error::Invalid { path: PathBuf::new(), field: String::new(), msg: msg.into() }
    }

    /// Place an `Invalid` error on `path` and `field`; other errors are returned unchanged.
    pub fn at(self, path: impl Into<PathBuf>, field: impl Into<String>) -> Error {
        match self {
            Error::Invalid { msg, .. } => Error::Invalid { path: path.into(), field: field.into(), msg },
            e => e,
        }
    }

    /// A `Sys` error saying `what`, from a keel-sys error (its errno; a NUL byte stays an `Invalid` naming the field).
    pub fn os(what: String, e: keel_sys::Error) -> Error {
        match e.errno() {
            Some(errno) => Error::Sys { what, errno },
            None => e.into(),
        }
    }
}
