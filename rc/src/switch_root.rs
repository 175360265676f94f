//! Leaving the initramfs rootfs (which cannot be pivot_root'ed away) for a tmpfs.
//!
//! As LinuxKit's /init does: mount a tmpfs, move the tree into it file by file (copy, then unlink the source so
//! RAM use stays about 1x), `mount --move` it onto `/`, chroot, and exec init again; the new init finds a tmpfs
//! root and goes on. Mounts already under the old root (e.g. /dev) are moved along.

use crate::error::Error;
use crate::mountinfo;
use crate::sys;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the new root is assembled before it is moved onto `/`.
pub const NEW_ROOT: &str = "/.keel-newroot";

const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// If `/` is the initramfs rootfs, move its contents into a fresh tmpfs, make it `/` and re-exec
/// `/proc/self/exe`-equivalent init with the same argv. Returns Ok(false) if no switch was needed; on success it
/// execs. The caller says "switch root" in its message (the error names the call, path and errno).
pub fn maybe_switch() -> Result<bool, Error> {
    switch()
}

/// [`maybe_switch`]. Only returns Ok(false) or an error: on success it execs.
pub fn switch() -> Result<bool, Error> {
    // cheap early exit for disk/overlay/sandbox roots: no proc mount needed
    match sys::fs_type(Path::new("/")) {
        Ok(t) if t == RAMFS_MAGIC || t == TMPFS_MAGIC => {}
        _ => return Ok(false),
    }
    let proc = Path::new("/proc");
    let mounted_proc = if proc.join("self/mountinfo").exists() {
        false
    } else {
        crate::mounts::ensure_dir(proc, 0o555)?;
        sys::mount("proc", proc, "proc", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, "")?;
        true
    };
    let r = switch_with_proc(mounted_proc);
    // only reached when there was nothing to do or something failed
    if mounted_proc {
        let _ = sys::umount(proc, libc::MNT_DETACH);
    }
    r
}

fn switch_with_proc(mounted_proc: bool) -> Result<bool, Error> {
    let mounts = mountinfo::read()?;
    let Some(root) = mountinfo::at(&mounts, Path::new("/")) else { return Ok(false) };
    if root.fstype != "rootfs" {
        return Ok(false);
    }
    let root_id = root.id;
    // the path init was started as; it is copied to the same path in the new root
    let exe = std::fs::read_link("/proc/self/exe").map_err(|e| Error::io("readlink", "/proc/self/exe", &e))?;
    let args: Vec<OsString> = std::env::args_os().collect();
    let new = Path::new(NEW_ROOT);
    crate::mounts::ensure_dir(new, 0o755)?;
    // size: default tmpfs would cap at 50% of RAM, too little for a large image on a small VM
    sys::mount("rootfs", new, "tmpfs", 0, "mode=0755,size=90%")?;
    let skip = [new.to_path_buf()];
    let st = copy_tree(Path::new("/"), new, &skip, true)?;
    // init's stderr is the kernel's /dev/console here; the new init cannot be told, so say it now
    for e in st.errors.iter().take(10) {
        eprintln!("keel: switch root: not moved: {e}");
    }
    if st.errors.len() > 10 {
        eprintln!("keel: switch root: {} more entries not moved", st.errors.len() - 10);
    }
    // carry the other mounts of the old root along (not ours: NEW_ROOT, and proc if we mounted it)
    for m in mounts.iter().filter(|m| m.parent == root_id && m.id != root_id) {
        if m.mount_point == new || (mounted_proc && m.mount_point == Path::new("/proc")) {
            continue;
        }
        let rel = m.mount_point.strip_prefix("/").unwrap_or(&m.mount_point);
        let dst = new.join(rel);
        crate::mounts::ensure_dir(&dst, 0o755)?;
        move_mount(&m.mount_point, &dst)?;
    }
    if mounted_proc {
        sys::umount(Path::new("/proc"), libc::MNT_DETACH)?;
    }
    std::env::set_current_dir(new).map_err(|e| Error::io("chdir", new, &e))?;
    move_mount(Path::new("."), Path::new("/"))?;
    let dot = sys::cpath("chroot path", Path::new("."))?;
    // SAFETY: dot is a valid NUL-terminated string.
    if unsafe { libc::chroot(dot.as_ptr()) } != 0 {
        return Err(Error::last("chroot", new));
    }
    std::env::set_current_dir("/").map_err(|e| Error::io("chdir", "/", &e))?;
    exec(&exe, &args)
}

fn move_mount(from: &Path, to: &Path) -> Result<(), Error> {
    let f = sys::cpath("mount --move source", from)?;
    let t = sys::cpath("mount --move target", to)?;
    // SAFETY: both are valid NUL-terminated strings; fstype and data may be NULL for MS_MOVE.
    let r = unsafe { libc::mount(f.as_ptr(), t.as_ptr(), std::ptr::null(), libc::MS_MOVE, std::ptr::null()) };
    if r == 0 {
        Ok(())
    } else {
        Err(Error::last("mount --move", to))
    }
}

/// execv(exe, args); falls back to /init and /sbin/init. Returns only on failure.
fn exec(exe: &Path, args: &[OsString]) -> Result<bool, Error> {
    // An argument with a NUL byte is an error naming it (never dropped or stripped).
    let mut cargs = Vec::with_capacity(args.len().max(1));
    for (i, a) in args.iter().enumerate() {
        cargs.push(sys::cstring(&format!("switch_root argv[{i}]"), a.as_bytes())?);
    }
    if cargs.is_empty() {
        cargs.push(sys::cpath("switch_root init path", exe)?);
    }
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut last = Error::errno("exec", exe, libc::ENOENT);
    for cand in [exe, Path::new("/init"), Path::new("/sbin/init")] {
        let c = sys::cpath("switch_root init path", cand)?;
        // SAFETY: c and every argv entry are valid NUL-terminated strings kept alive by `cargs`; argv is
        // NULL-terminated.
        unsafe { libc::execv(c.as_ptr(), argv.as_ptr()) };
        last = Error::last("exec", cand);
    }
    Err(last)
}

/// What [`copy_tree`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: usize,
    pub dirs: usize,
    pub symlinks: usize,
    pub nodes: usize,
    pub bytes: u64,
    /// Directories on another filesystem (mount points): created empty, not descended into.
    pub mount_points: usize,
    /// Entries that could not be copied (left in place in the source); the rest of the tree still is.
    pub errors: Vec<Error>,
}

/// Copy the tree `src` into the existing directory `dst`, preserving modes, owners, symlinks, device nodes,
/// fifos and sockets (hard links become copies). With `unlink`, each source file is removed right after it is
/// copied and each emptied directory after its contents, so memory use stays about 1x. Paths in `skip` are left
/// out entirely; directories on another filesystem than `src` (mount points) are created empty and not
/// entered. An entry that cannot be copied is recorded in [`CopyStats::errors`] and left in the source; only
/// failing to read `src` itself is an error.
pub fn copy_tree(src: &Path, dst: &Path, skip: &[PathBuf], unlink: bool) -> Result<CopyStats, Error> {
    let md = std::fs::symlink_metadata(src).map_err(|e| Error::io("stat", src, &e))?;
    let mut st = CopyStats::default();
    copy_dir_contents(src, dst, md.dev(), skip, unlink, &mut st)?;
    set_owner_mode(dst, &md)?;
    Ok(st)
}

fn copy_dir_contents(
    src: &Path,
    dst: &Path,
    dev: u64,
    skip: &[PathBuf],
    unlink: bool,
    st: &mut CopyStats,
) -> Result<(), Error> {
    let rd = std::fs::read_dir(src).map_err(|e| Error::io("read dir", src, &e))?;
    for e in rd {
        let e = match e {
            Ok(e) => e,
            Err(x) => {
                st.errors.push(Error::io("read dir", src, &x));
                break;
            }
        };
        let s = e.path();
        if skip.contains(&s) {
            continue;
        }
        let d = dst.join(e.file_name());
        if let Err(x) = copy_entry(&s, &d, dev, skip, unlink, st) {
            st.errors.push(x);
        }
    }
    Ok(())
}

fn copy_entry(s: &Path, d: &Path, dev: u64, skip: &[PathBuf], unlink: bool, st: &mut CopyStats) -> Result<(), Error> {
    let md = std::fs::symlink_metadata(s).map_err(|x| Error::io("stat", s, &x))?;
    let ft = md.file_type();
    if ft.is_dir() {
        std::fs::create_dir(d)
            .or_else(|x| if d.is_dir() { Ok(()) } else { Err(x) })
            .map_err(|x| Error::io("mkdir", d, &x))?;
        if md.dev() != dev {
            st.mount_points += 1;
        } else {
            copy_dir_contents(s, d, dev, skip, unlink, st)?;
            if unlink {
                // fails if something was skipped or failed inside: harmless
                let _ = std::fs::remove_dir(s);
            }
        }
        set_owner_mode(d, &md)?;
        st.dirs += 1;
        return Ok(());
    }
    if ft.is_symlink() {
        let t = std::fs::read_link(s).map_err(|x| Error::io("readlink", s, &x))?;
        std::os::unix::fs::symlink(&t, d).map_err(|x| Error::io("symlink", d, &x))?;
        sys::lchown(d, md.uid(), md.gid())?;
        st.symlinks += 1;
    } else if ft.is_file() {
        st.bytes += copy_file(s, d, &md)?;
        st.files += 1;
    } else {
        // char/block devices, fifos, sockets
        sys::mknod(d, md.mode(), md.rdev())?;
        set_owner_mode(d, &md)?;
        st.nodes += 1;
    }
    if unlink {
        std::fs::remove_file(s).map_err(|x| Error::io("unlink", s, &x))?;
    }
    Ok(())
}

fn copy_file(s: &Path, d: &Path, md: &std::fs::Metadata) -> Result<u64, Error> {
    let mut from = std::fs::File::open(s).map_err(|e| Error::io("open", s, &e))?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(d)
        .map_err(|e| Error::io("create", d, &e))?;
    // std's copy uses copy_file_range or sendfile (no copy through user space), falling back to read/write
    let n = std::io::copy(&mut from, &mut to).map_err(|e| Error::io("copy", d, &e))?;
    std::os::unix::fs::fchown(&to, Some(md.uid()), Some(md.gid())).map_err(|e| Error::io("chown", d, &e))?;
    // after chown, which clears set-id bits
    to.set_permissions(std::fs::Permissions::from_mode(md.mode() & 0o7777)).map_err(|e| Error::io("chmod", d, &e))?;
    Ok(n)
}

fn set_owner_mode(p: &Path, md: &std::fs::Metadata) -> Result<(), Error> {
    sys::lchown(p, md.uid(), md.gid())?;
    Ok(sys::chmod(p, md.mode() & 0o7777)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        // SAFETY: no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn copies_and_unlinks_a_tree() -> Result<(), Box<dyn std::error::Error>> {
        let base = std::env::temp_dir().join(format!("keel-rc-copytree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (src, dst) = (base.join("src"), base.join("dst"));
        for d in ["bin", "etc/deep/er", "skipme", "empty"] {
            let _ = std::fs::create_dir_all(src.join(d));
        }
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let _ = std::fs::write(src.join("bin/tool"), &big);
        let _ = std::fs::set_permissions(src.join("bin/tool"), std::fs::Permissions::from_mode(0o4755));
        let _ = std::fs::write(src.join("etc/deep/er/conf"), "x=1\n");
        let _ = std::fs::set_permissions(src.join("etc/deep/er/conf"), std::fs::Permissions::from_mode(0o640));
        let _ = std::fs::set_permissions(src.join("etc/deep"), std::fs::Permissions::from_mode(0o710));
        let _ = std::fs::write(src.join("skipme/f"), "x");
        let _ = std::os::unix::fs::symlink("../bin/tool", src.join("etc/link"));
        let _ = std::os::unix::fs::symlink("/nonexistent", src.join("dangling"));
        let _ = std::fs::hard_link(src.join("bin/tool"), src.join("bin/hard"));
        let root = is_root();
        if root {
            let _ = std::os::unix::fs::lchown(src.join("etc/deep/er/conf"), Some(1234), Some(5678));
            let _ = std::os::unix::fs::lchown(src.join("etc/link"), Some(42), Some(43));
            sys::mknod(&src.join("null"), libc::S_IFCHR | 0o666, libc::makedev(1, 3))
                .map_err(|e| format!("mknod char: {e}"))?;
            sys::chmod(&src.join("null"), 0o666).map_err(|e| format!("chmod null: {e}"))?;
            sys::mknod(&src.join("fifo"), libc::S_IFIFO | 0o600, 0).map_err(|e| format!("mknod fifo: {e}"))?;
        }
        let _ = std::fs::create_dir_all(&dst);
        let st = copy_tree(&src, &dst, &[src.join("skipme")], true).map_err(|e| format!("copy_tree: {e}"))?;
        assert_eq!(std::fs::read(dst.join("bin/tool")).ok(), Some(big.clone()));
        assert_eq!(std::fs::read(dst.join("bin/hard")).ok(), Some(big), "hard link becomes a copy");
        let mode = |p: &str| std::fs::symlink_metadata(dst.join(p)).map(|m| m.mode() & 0o7777).unwrap_or(0);
        assert_eq!(mode("bin/tool"), 0o4755, "set-uid kept");
        assert_eq!(mode("etc/deep/er/conf"), 0o640);
        assert_eq!(mode("etc/deep"), 0o710);
        assert!(dst.join("empty").is_dir());
        assert_eq!(std::fs::read_link(dst.join("etc/link")).ok(), Some(PathBuf::from("../bin/tool")));
        assert_eq!(std::fs::read_link(dst.join("dangling")).ok(), Some(PathBuf::from("/nonexistent")));
        assert!(!dst.join("skipme").exists(), "skipped path left out");
        assert!(src.join("skipme/f").exists(), "skipped path left in place");
        // sources are gone, except the skipped subtree
        let left: Vec<_> =
            std::fs::read_dir(&src).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert_eq!(left, [OsString::from("skipme")]);
        assert_eq!(st.symlinks, 2);
        assert_eq!(st.files, 3);
        assert_eq!(st.bytes, 400_004);
        assert!(st.errors.is_empty(), "{:?}", st.errors);
        if root {
            let m = std::fs::symlink_metadata(dst.join("etc/deep/er/conf")).map_err(|e| format!("conf: {e}"))?;
            assert_eq!((m.uid(), m.gid()), (1234, 5678));
            let l = std::fs::symlink_metadata(dst.join("etc/link")).map_err(|e| format!("link: {e}"))?;
            assert_eq!((l.uid(), l.gid()), (42, 43), "symlink owner (lchown)");
            let n = std::fs::symlink_metadata(dst.join("null")).map_err(|e| format!("null: {e}"))?;
            assert!(std::os::unix::fs::FileTypeExt::is_char_device(&n.file_type()));
            assert_eq!(n.rdev(), libc::makedev(1, 3));
            assert_eq!(n.mode() & 0o7777, 0o666);
            let f = std::fs::symlink_metadata(dst.join("fifo")).map_err(|e| format!("fifo: {e}"))?;
            assert!(std::os::unix::fs::FileTypeExt::is_fifo(&f.file_type()));
            assert_eq!(st.nodes, 2);
        } else {
            eprintln!("device node and owner checks skipped: not root");
        }
        let _ = std::fs::remove_dir_all(&base);
        Ok(())
    }

    #[test]
    fn no_switch_on_a_non_initramfs_root() {
        // the test host's root is a disk or overlay: nothing to do, nothing mounted
        if sys::fs_type(Path::new("/")).is_ok_and(|t| t != RAMFS_MAGIC && t != TMPFS_MAGIC) {
            assert_eq!(maybe_switch(), Ok(false));
        }
    }
}
