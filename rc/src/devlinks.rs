//! The standard /dev symlinks devtmpfs does not create (fd, stdin, stdout, stderr, core) and /dev/ptmx.

use crate::error::Error;
use std::path::Path;

/// (link name under /dev, target).
pub const LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("core", "/proc/kcore"),
];

/// Create the links under `dev`, leaving existing entries alone; returns the errors.
pub fn create(dev: &Path) -> Vec<Error> {
    let mut errs = Vec::new();
    for (name, target) in LINKS {
        let p = dev.join(name);
        if p.symlink_metadata().is_ok() {
            continue;
        }
        if let Err(e) = std::os::unix::fs::symlink(target, &p) {
            errs.push(Error::io("symlink", &p, &e));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_links_once() {
        let d = std::env::temp_dir().join(format!("keel-rc-devlinks-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        let _ = std::fs::write(d.join("core"), "x");
        assert!(create(&d).is_empty());
        assert!(create(&d).is_empty());
        assert_eq!(std::fs::read_link(d.join("stderr")).ok(), Some("/proc/self/fd/2".into()));
        assert!(d.join("core").is_file(), "existing entry left alone");
        let _ = std::fs::remove_dir_all(&d);
    }
}
