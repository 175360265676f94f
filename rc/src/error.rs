//! rc's one error type: every variant names what failed and on which path or module, with the errno.

use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in rc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A system call on a path failed (what, path, errno), or a path or argument held a NUL byte (which field).
    Sys(keel_sys::Error),
    /// A file had content we could not understand.
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when not line-oriented).
        line: usize,
        /// What was wrong.
        msg: String,
    },
    /// A module name or alias that matches nothing in modules.dep / modules.alias / modules.builtin.
    ModuleNotFound {
        /// The name or alias asked for.
        name: String,
        /// The modules directory searched.
        dir: PathBuf,
    },
    /// A command line (modprobe's) that is not understood; the message says why.
    Usage(String),
    /// A module file whose ELF layout we could not read.
    Elf {
        /// The file (empty when parsing bytes).
        path: PathBuf,
        /// What was wrong.
        msg: String,
    },
}

impl Error {
    /// A `Sys` error from the current errno.
    pub fn last(what: &'static str, path: impl AsRef<Path>) -> Error {
        Error::Sys(keel_sys::Error::last(what, path))
    }

    /// A `Sys` error from an io::Error (EIO if it carries none).
    pub fn io(what: &'static str, path: impl AsRef<Path>, e: &std::io::Error) -> Error {
        Error::Sys(keel_sys::Error::io(what, path, e))
    }

    /// A `Sys` error from an errno value.
    pub fn errno(what: &'static str, path: impl AsRef<Path>, errno: i32) -> Error {
        Error::Sys(keel_sys::Error::sys(what, path, keel_sys::Errno(errno)))
    }

    /// Name the module file of an `Elf` error read without one; other errors are returned unchanged.
    pub fn on_file(self, path: &Path) -> Error {
        match self {
            Error::Elf { msg, .. } => Error::Elf { path: path.to_path_buf(), msg },
            e => e,
        }
    }

    /// The errno, if this is a system call error.
    pub fn raw_errno(&self) -> Option<i32> {
        match self {
            Error::Sys(e) => e.errno().map(keel_sys::Errno::raw),
            _ => None,
        }
    }
}

impl From<keel_sys::Error> for Error {
    fn from(e: keel_sys::Error) -> Error {
        Error::Sys(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sys(e) => e.fmt(f),
            Error::Parse { path, line, msg } => write!(f, "{}:{line}: {msg}", path.display()),
            Error::ModuleNotFound { name, dir } => write!(f, "module {name}: not found in {}", dir.display()),
            Error::Usage(msg) => f.write_str(msg),
            Error::Elf { path, msg } => write!(f, "module file {}: {msg}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Sys(e) => e.source(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_path_and_errno() {
        let e = Error::errno("mount", "/sys/fs/cgroup", libc::EBUSY);
        let s = e.to_string();
        assert!(s.starts_with("mount /sys/fs/cgroup: "), "{s}");
        assert!(s.ends_with(&format!("(errno {})", libc::EBUSY)), "{s}");
        assert!(!s.contains("os error"), "{s}");
    }
}
