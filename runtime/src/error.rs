//! One error enum for the runtime; every variant names what failed and where.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// Reading a file failed.
    Io { what: &'static str, path: PathBuf, err: std::io::Error },
    /// config.json / runtime.json did not parse; `field` is the JSON path if known.
    Json { path: PathBuf, field: String, msg: String },
    /// The config parsed but is not valid (e.g. missing process.args, relative root).
    Invalid { path: PathBuf, field: String, msg: String },
    /// A syscall failed.
    Sys { what: String, errno: nix::errno::Errno },
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
            Error::Invalid { path, field, msg } => write!(f, "{}: {field}: {msg}", path.display()),
            Error::Sys { what, errno } => write!(f, "{what}: {} (errno {})", errno.desc(), *errno as i32),
            Error::Rootfs { bundle, path, err } => write!(f, "bundle {bundle}: rootfs {}: {err}", path.display()),
            Error::Setup { bundle, msg } => write!(f, "bundle {bundle}: {msg}"),
        }
    }
}

impl std::error::Error for Error {}
