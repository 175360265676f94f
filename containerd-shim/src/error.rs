//! The shim's one error type: what failed, on which container or path, with the error underneath as `source()`.
//! At the service boundary it becomes a ttrpc status whose message is its Display (the text containerd logs and
//! returns to its client).

use std::fmt;
use std::path::{Path, PathBuf};

use containerd_shim::protos::ttrpc;
use keel_runtime::cli::CliError;

#[derive(Debug)]
pub enum Error {
    /// A file or system call failed: what ("open stdin", "bind console socket"), on which path (empty if none), the
    /// I/O error.
    Io { what: String, path: PathBuf, source: std::io::Error },
    /// A keel-sys call failed (what, path, errno).
    Sys(keel_sys::Error),
    /// keel-runtime failed (bundle load, spawn, cgroups).
    Runtime(keel_runtime::Error),
    /// The runc-compatible state layer failed (state.json, the state directory).
    State(CliError),
    /// A request or a container's state that does not allow the operation; the message says why.
    Invalid(String),
    /// A container process failed during setup or exec, or did not finish it in time (the child's message).
    Process(String),
    /// What the shim was doing when `source` failed, on which container: "c1", "container c1: save state".
    Context { what: String, source: Box<Error> },
}

impl Error {
    /// An `Io` error: `what` failed on `path`.
    pub fn io(what: impl Into<String>, path: impl AsRef<Path>, source: std::io::Error) -> Error {
        Error::Io { what: what.into(), path: path.as_ref().to_path_buf(), source }
    }

    /// Say what was being done (on which container) when this failed.
    pub fn context(self, what: impl Into<String>) -> Error {
        Error::Context { what: what.into(), source: Box::new(self) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, path, source } if path.as_os_str().is_empty() => write!(f, "{what}: {source}"),
            Error::Io { what, path, source } => write!(f, "{what} {}: {source}", path.display()),
            Error::Sys(e) => e.fmt(f),
            Error::Runtime(e) => e.fmt(f),
            Error::State(e) => e.fmt(f),
            Error::Invalid(msg) | Error::Process(msg) => f.write_str(msg),
            Error::Context { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Sys(e) => Some(e),
            Error::Runtime(e) => Some(e),
            Error::State(e) => Some(e),
            Error::Invalid(_) | Error::Process(_) => None,
            Error::Context { source, .. } => Some(source.as_ref()),
        }
    }
}

impl From<keel_sys::Error> for Error {
    fn from(e: keel_sys::Error) -> Error {
        Error::Sys(e)
    }
}

impl From<keel_runtime::Error> for Error {
    fn from(e: keel_runtime::Error) -> Error {
        Error::Runtime(e)
    }
}

impl From<CliError> for Error {
    fn from(e: CliError) -> Error {
        Error::State(e)
    }
}

/// At the service boundary: an INTERNAL status whose message is the error's line.
impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> ttrpc::Error {
        crate::service::internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_chain() {
        use std::error::Error as _;
        let e = Error::io("open stdin", "/run/x/fifo", std::io::Error::from_raw_os_error(libc::ENOENT)).context("c1");
        assert!(e.to_string().starts_with("c1: open stdin /run/x/fifo: "), "{e}");
        assert!(e.source().and_then(|s| s.source()).is_some(), "context -> io -> os error");
        assert_eq!(Error::Invalid("x".into()).context("c1").to_string(), "c1: x");
    }
}
