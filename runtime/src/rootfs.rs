//! The container's mount tree, child side: spec mounts (prepared in the parent as [`MountStep`]s), masked and
//! readonly paths, pivot_root (or MS_MOVE + chroot), readonly root. Parent side: [`secure_join`] resolves a
//! destination under the rootfs without following symlinks out of it.

use std::ffi::{CStr, CString};
use std::path::{Component, Path, PathBuf};

use crate::sys;

/// One mount(2) sequence, fully prepared.
#[derive(Debug)]
pub struct MountStep {
    pub source: Option<CString>,
    /// Rootfs-prefixed target.
    pub target: CString,
    /// Destination inside the container, for messages.
    pub display: CString,
    pub fstype: Option<CString>,
    pub flags: libc::c_ulong,
    pub data: Option<CString>,
    /// For binds with extra flags (ro, nosuid, ...): flags of the MS_REMOUNT|MS_BIND call.
    pub remount: Option<libc::c_ulong>,
    pub propagation: libc::c_ulong,
    /// Target is a file (bind of a file source).
    pub file: bool,
}

fn opt_ptr(c: &Option<CString>) -> *const libc::c_char {
    c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

/// Perform a mount step. Returns (what, errno) on failure.
pub fn mount(m: &MountStep) -> Result<(), (&'static str, i32)> {
    let call = || {
        // SAFETY: all pointers are valid C strings or null.
        unsafe {
            libc::mount(opt_ptr(&m.source), m.target.as_ptr(), opt_ptr(&m.fstype), m.flags, opt_ptr(&m.data).cast())
        }
    };
    // Try the mount first and create the target only when it is missing: most targets exist (one syscall instead
    // of a mkdir that fails with EEXIST, then the mount).
    let mut r = call();
    if r != 0 && sys::errno() == libc::ENOENT {
        if m.file {
            sys::touch_p(&m.target).map_err(|e| ("create mount target", e))?;
        } else {
            sys::mkdir_p(&m.target, 0o755).map_err(|e| ("create mount target", e))?;
        }
        r = call();
    }
    if r != 0 {
        let e = sys::errno();
        // sysfs cannot be mounted in a user namespace that does not own the network namespace: show the host's
        // /sys read-only instead, as runc does.
        let sysfs = m.fstype.as_deref().is_some_and(|t| t.to_bytes() == b"sysfs");
        if !(sysfs && e == libc::EPERM) {
            return Err(("mount", e));
        }
        // SAFETY: valid C strings; recursive bind of the host's /sys.
        let r = unsafe {
            libc::mount(
                c"/sys".as_ptr(),
                m.target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(("mount", sys::errno()));
        }
        remount(&m.target, m.flags | libc::MS_RDONLY).map_err(|e| ("remount", e))?;
    }
    if let Some(flags) = m.remount {
        remount(&m.target, flags).map_err(|e| ("remount", e))?;
    }
    if m.propagation != 0 {
        // SAFETY: valid C string; propagation change only.
        let r = unsafe {
            libc::mount(std::ptr::null(), m.target.as_ptr(), std::ptr::null(), m.propagation, std::ptr::null())
        };
        if r != 0 {
            return Err(("set mount propagation", sys::errno()));
        }
    }
    Ok(())
}

/// statfs f_flags bit of relatime (linux/statfs.h); the libc crate defines ST_RELATIME for glibc only, not musl.
const ST_RELATIME: libc::c_ulong = 0x1000;

/// Flags of the mount at `path` that a bind remount must keep (they are locked in a user namespace).
fn kept_flags(path: &CStr) -> libc::c_ulong {
    // statfs, not statvfs: glibc's statvfs may fall back to reading /proc/mounts (stdio, malloc).
    // SAFETY: st is a valid out-parameter; path a valid C string.
    let mut st: libc::statfs64 = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs64(path.as_ptr(), &mut st) } != 0 {
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

/// MS_REMOUNT|MS_BIND with `flags` plus the flags the mount already has.
pub fn remount(path: &CStr, flags: libc::c_ulong) -> Result<(), i32> {
    let f = flags | libc::MS_REMOUNT | libc::MS_BIND | kept_flags(path);
    // SAFETY: valid C string; remount only.
    if unsafe { libc::mount(std::ptr::null(), path.as_ptr(), std::ptr::null(), f, std::ptr::null()) } != 0 {
        return Err(sys::errno());
    }
    Ok(())
}

/// Mask a path: /dev/null over a file, an empty read-only tmpfs over a directory. Missing paths are skipped.
pub fn mask(path: &CStr, dev_null: &CStr) -> Result<(), i32> {
    // SAFETY: valid C string; st a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::stat(path.as_ptr(), &mut st) } != 0 {
        return match sys::errno() {
            libc::ENOENT | libc::ENOTDIR => Ok(()),
            e => Err(e),
        };
    }
    // SAFETY: valid C strings.
    let r = unsafe {
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            libc::mount(
                c"tmpfs".as_ptr(),
                path.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"size=0,mode=755".as_ptr().cast(),
            )
        } else {
            libc::mount(dev_null.as_ptr(), path.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null())
        }
    };
    if r != 0 {
        return Err(sys::errno());
    }
    Ok(())
}

/// Make a path read-only: bind it on itself, then remount read-only. Missing paths are skipped.
pub fn readonly(path: &CStr) -> Result<(), i32> {
    // SAFETY: valid C string; bind mount on itself.
    let r = unsafe {
        libc::mount(path.as_ptr(), path.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null())
    };
    if r != 0 {
        return match sys::errno() {
            libc::ENOENT | libc::ENOTDIR => Ok(()),
            e => Err(e),
        };
    }
    remount(path, libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC)
}

/// Switch to the new root. pivot_root(".", ".") then detach the old root (runc's trick: no put_old directory), or
/// MS_MOVE + chroot for `no_pivot`. Returns (what, errno).
pub fn switch_root(rootfs: &CStr, no_pivot: bool) -> Result<(), (&'static str, i32)> {
    // SAFETY: valid C strings; these calls change only this process's root/cwd and its mount namespace.
    unsafe {
        if libc::chdir(rootfs.as_ptr()) != 0 {
            return Err(("chdir", sys::errno()));
        }
        if no_pivot {
            if libc::mount(rootfs.as_ptr(), c"/".as_ptr(), std::ptr::null(), libc::MS_MOVE, std::ptr::null()) != 0 {
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

/// `rootfs` + `dest`, resolving symlinks found on the way as if `rootfs` were `/` (a link cannot lead out of the
/// rootfs). Components that do not exist yet are appended as they are. Parent side.
pub fn secure_join(rootfs: &Path, dest: &str) -> PathBuf {
    secure_join_at(rootfs, rootfs.to_path_buf(), components(dest))
}

/// The components of `dest`, last first ("..") kept, "." and "/" dropped.
fn components(dest: &str) -> Vec<String> {
    Path::new(dest)
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// What a destination resolves to when its symlinks loop (more than 40 hops, as the kernel's ELOOP): a path below
/// a character device, on which mount(2), mkdir(2) and stat(2) all fail with ENOTDIR. Never the looping link
/// itself: `rootfs/etc -> /etc` resolves to itself forever, and handing out `rootfs/etc/x` would let the kernel
/// follow the link to the host's /etc, where the target would be created and mounted on.
pub const LOOP_TARGET: &str = "/dev/null/keel-symlink-loop-in-rootfs";

/// Go on resolving `pending` (last first) from `out`, an already resolved path inside `rootfs`.
fn secure_join_at(rootfs: &Path, mut out: PathBuf, mut pending: Vec<String>) -> PathBuf {
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            if out != rootfs {
                out.pop();
            }
            continue;
        }
        let next = out.join(&comp);
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() && hops >= 40 => return PathBuf::from(LOOP_TARGET),
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if let Ok(target) = std::fs::read_link(&next) {
                    if target.is_absolute() {
                        out = rootfs.to_path_buf();
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::Normal(s) => pending.push(s.to_string_lossy().into_owned()),
                            Component::ParentDir => pending.push("..".into()),
                            _ => {}
                        }
                    }
                }
            }
            _ => out = next,
        }
    }
    out
}

/// [`secure_join`] for many destinations of one plan, with fewer lookups (every lstat is slow under emulation):
/// parent directories are resolved once and remembered, and nothing is looked up below the mount point of a new
/// file system the container mounts earlier (tmpfs on /dev, proc, sysfs, ...): what the rootfs has there is hidden
/// once it is mounted, so a component below it is appended as it is.
pub struct Resolver<'a> {
    rootfs: &'a Path,
    /// Destinations (normalized, "/a/b") of new file systems mounted so far, with their resolved paths.
    fresh: Vec<(String, PathBuf)>,
    dirs: std::collections::HashMap<String, PathBuf>,
}

impl<'a> Resolver<'a> {
    pub fn new(rootfs: &'a Path) -> Self {
        Resolver { rootfs, fresh: Vec::new(), dirs: std::collections::HashMap::new() }
    }

    /// Resolve `dest` (as [`secure_join`]).
    pub fn resolve(&mut self, dest: &str) -> PathBuf {
        let comps = components(dest);
        if comps.iter().any(|c| c == "..") {
            return secure_join(self.rootfs, dest);
        }
        self.resolve_comps(&comps)
    }

    /// `comps` is last first and has no "..".
    fn resolve_comps(&mut self, comps: &[String]) -> PathBuf {
        if comps.is_empty() {
            return self.rootfs.to_path_buf();
        }
        let key = comps.iter().rev().fold(String::new(), |mut k, c| {
            k.push('/');
            k.push_str(c);
            k
        });
        // Below (not at) the most recent new file system containing it: append the rest as it is.
        if let Some((fk, fp)) = self
            .fresh
            .iter()
            .rev()
            .find(|(f, _)| key.len() > f.len() && key.starts_with(f.as_str()) && key.as_bytes()[f.len()] == b'/')
        {
            let mut out = fp.clone();
            for c in key[fk.len() + 1..].split('/') {
                out.push(c);
            }
            return out;
        }
        if let Some(p) = self.dirs.get(&key) {
            return p.clone();
        }
        let parent = self.resolve_comps(&comps[1..]);
        let out = secure_join_at(self.rootfs, parent, vec![comps[0].clone()]);
        self.dirs.insert(key, out.clone());
        out
    }

    /// Resolve the mount point `dest` of a new file system, remembering that nothing below it is to be looked up.
    pub fn resolve_fresh_mount(&mut self, dest: &str) -> PathBuf {
        let out = self.resolve(dest);
        let comps = components(dest);
        if !comps.iter().any(|c| c == "..") {
            let key = comps.iter().rev().fold(String::new(), |mut k, c| {
                k.push('/');
                k.push_str(c);
                k
            });
            if !key.is_empty() {
                self.fresh.push((key, out.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_stays_inside() {
        let d = std::env::temp_dir().join(format!("keel-sj-{}", std::process::id()));
        std::fs::create_dir_all(d.join("a")).unwrap();
        let _ = std::os::unix::fs::symlink("/etc", d.join("a/link"));
        let _ = std::os::unix::fs::symlink("../../..", d.join("up"));
        assert_eq!(secure_join(&d, "/a/link/x"), d.join("etc/x"));
        assert_eq!(secure_join(&d, "/up/y"), d.join("y"));
        assert_eq!(secure_join(&d, "/../../z"), d.join("z"));
        let mut r = Resolver::new(&d);
        assert_eq!(r.resolve("/a/link/x"), d.join("etc/x"));
        assert_eq!(r.resolve("/up/y"), d.join("y"));
        assert_eq!(r.resolve("/a/link"), d.join("etc"));
        assert_eq!(r.resolve_fresh_mount("/a"), d.join("a"));
        // Below a new file system the rootfs's own entries are hidden: not followed.
        assert_eq!(r.resolve("/a/link/x"), d.join("a/link/x"));
        assert_eq!(r.resolve("/a/../up/z"), d.join("z"));
        // A link to itself (etc -> /etc, as a host-like rootfs has): never the link, never the host's /etc.
        let _ = std::os::unix::fs::symlink("/etc", d.join("etc"));
        assert_eq!(secure_join(&d, "/etc/x"), Path::new(LOOP_TARGET));
        assert!(Resolver::new(&d).resolve("/etc/x").starts_with(LOOP_TARGET));
        assert!(Resolver::new(&d).resolve("/a/../etc/x").starts_with(LOOP_TARGET));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
