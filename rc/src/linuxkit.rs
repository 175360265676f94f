//! The base system LinuxKit's rc.init gives its packages, which bind these paths:
//! - [`var_dirs`]: the standard directories in /var (a fresh tmpfs): cache, empty, lib, local, lock, log, opt,
//!   spool, tmp, lib/containerd (LinuxKit's packages bind it; keel has no containerd, so it stays empty), and the
//!   /var/run -> /run link;
//! - [`resolv_conf`]: when /etc/resolv.conf is a symlink (into /run/resolvconf, as in LinuxKit's init image), its
//!   directory and an empty file, so that dhcpcd-style containers can bind and write it;
//! - [`volumes`]: LinuxKit's volumes, /containers/volumes/NAME/{lower,tmp,merged}: a tmpfs on tmp and an overlay of
//!   lower + tmp/upper on merged (keel-image always writes tmp/, as LinuxKit: a `readonly` volume is enforced by
//!   its `:ro` binds); without tmp/, a read-only bind of lower.
//!
//! Each returns one message per failure; nothing here stops the boot.

use crate::mounts::ensure_dir;
use crate::sys;
use std::path::Path;

/// /var's standard directories (LinuxKit's rc.init) plus /var/lib/containerd.
pub const VAR_DIRS: &[(&str, u32)] = &[
    ("cache", 0o755),
    ("empty", 0o555),
    ("lib", 0o755),
    ("lib/containerd", 0o711),
    ("local", 0o755),
    ("lock", 0o755),
    ("log", 0o755),
    ("opt", 0o755),
    ("spool", 0o755),
    ("tmp", 0o1777),
];

/// Create /var's standard directories under `root` and the /var/run link.
pub fn var_dirs(root: &Path) -> Vec<String> {
    let var = root.join("var");
    let mut errs = Vec::new();
    for (d, mode) in VAR_DIRS {
        if let Err(e) = ensure_dir(&var.join(d), *mode) {
            errs.push(format!("rc: /var/{d}: {e}"));
        }
    }
    let run = var.join("run");
    if std::fs::symlink_metadata(&run).is_err() {
        if let Err(e) = std::os::unix::fs::symlink("/run", &run) {
            errs.push(format!("rc: symlink /var/run -> /run: {e}"));
        }
    }
    errs
}

/// If `root`/etc/resolv.conf is a symlink to an absolute path, create that file's directory and the file (empty).
pub fn resolv_conf(root: &Path) -> Vec<String> {
    let Ok(target) = std::fs::read_link(root.join("etc/resolv.conf")) else { return Vec::new() };
    if !target.is_absolute() {
        return Vec::new();
    }
    let file = root.join(target.strip_prefix("/").unwrap_or(&target));
    let mut errs = Vec::new();
    if let Some(dir) = file.parent() {
        if let Err(e) = ensure_dir(dir, 0o755) {
            errs.push(format!("rc: resolv.conf: {e}"));
            return errs;
        }
    }
    if !file.exists() {
        if let Err(e) = std::fs::write(&file, b"") {
            errs.push(format!("rc: resolv.conf: create {}: {e}", file.display()));
        }
    }
    errs
}

/// Mount LinuxKit's volumes under `root`/containers/volumes. Returns (volumes mounted, failures).
pub fn volumes(root: &Path) -> (usize, Vec<String>) {
    let base = root.join("containers/volumes");
    let Ok(rd) = std::fs::read_dir(&base) else { return (0, Vec::new()) };
    let mut names: Vec<String> = rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let (mut n, mut errs) = (0, Vec::new());
    for name in names {
        let v = base.join(&name);
        let (lower, tmp, merged) = (v.join("lower"), v.join("tmp"), v.join("merged"));
        if !lower.is_dir() || !merged.is_dir() {
            errs.push(format!("rc: volume {name}: needs lower/ and merged/ in {}", v.display()));
            continue;
        }
        let rw = tmp.is_dir();
        if !rw {
            // overlayfs needs an upper dir or two lower ones: a read-only bind of lower instead.
            let r = sys::mount(&lower.to_string_lossy(), &merged, "", libc::MS_BIND, "")
                .and_then(|_| sys::mount("", &merged, "", libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY, ""));
            match r {
                Ok(()) => n += 1,
                Err(e) => errs.push(format!("rc: volume {name}: read-only bind on {}: {e}", merged.display())),
            }
            continue;
        }
        if let Err(e) = sys::mount("tmpfs", &tmp, "tmpfs", libc::MS_RELATIME, "mode=0755") {
            errs.push(format!("rc: volume {name}: tmpfs on {}: {e}", tmp.display()));
            continue;
        }
        let (upper, work) = (tmp.join("upper"), tmp.join("work"));
        if let Some(e) = [&upper, &work].iter().find_map(|d| ensure_dir(d, 0o755).err()) {
            errs.push(format!("rc: volume {name}: {e}"));
            continue;
        }
        let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        match sys::mount("overlay", &merged, "overlay", libc::MS_RELATIME, &opts) {
            Ok(()) => n += 1,
            Err(e) => errs.push(format!("rc: volume {name}: overlay on {}: {e}", merged.display())),
        }
    }
    (n, errs)
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Result<(), Box<dyn std::error::Error>>;

    fn tmp(name: &str) -> std::io::Result<std::path::PathBuf> {
        let d = std::env::temp_dir().join(format!("keel-rc-lk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    #[test]
    fn var_dirs_and_resolv_conf() -> R {
        let d = tmp("var")?;
        std::fs::create_dir_all(d.join("etc"))?;
        std::os::unix::fs::symlink("/run/resolvconf/resolv.conf", d.join("etc/resolv.conf"))?;
        assert!(var_dirs(&d).is_empty());
        assert!(resolv_conf(&d).is_empty());
        assert!(d.join("var/log").is_dir() && d.join("var/lib/containerd").is_dir());
        assert_eq!(std::fs::read_link(d.join("var/run"))?, Path::new("/run"));
        assert_eq!(std::fs::read(d.join("run/resolvconf/resolv.conf"))?, b"");
        // Idempotent.
        assert!(var_dirs(&d).is_empty() && resolv_conf(&d).is_empty());
        let _ = std::fs::remove_dir_all(&d);
        Ok(())
    }

    #[test]
    fn no_volumes_no_work() -> R {
        let d = tmp("vol")?;
        assert_eq!(volumes(&d), (0, Vec::new()));
        std::fs::create_dir_all(d.join("containers/volumes/bad/lower"))?;
        let (n, errs) = volumes(&d);
        assert_eq!(n, 0);
        assert!(errs.first().is_some_and(|e| e.contains("volume bad")), "{errs:?}");
        let _ = std::fs::remove_dir_all(&d);
        Ok(())
    }
}
