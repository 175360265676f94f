//! Paths inside the container's root, resolved by fd at the moment of use (child side, never allocates).
//!
//! A path string inside a rootfs is a lie: the container (or another one sharing a volume) can plant or swap a
//! symlink at any time. So every target is opened with `openat2(root, path, RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` — symlinks are followed as if `root` were `/`, `..` stops at it, /proc magic links are
//! refused — and acted on through the fd it gives: `*at` calls relative to the parent directory fd, and mount(2)
//! onto `self/fd/N` of a verified procfs (see [`crate::procfs`]). Missing components are created one at a time with
//! `mkdirat` in an already resolved parent and then resolved again, so a link planted between two steps still
//! resolves inside the root (CVE-2021-30465 class).

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::sys;

const RESOLVE_NO_XDEV: u64 = 0x01;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// Resolution inside a container root.
pub const IN_ROOT: u64 = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
/// Resolution below a procfs fd that must not leave it or follow anything (sysctl writes: CVE-2019-16884,
/// CVE-2025-52881 class: a bind mount or symlink over /proc/sys/... redirects the write).
pub const STRICTLY_BENEATH: u64 = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
/// One step below a directory already resolved inside the root: no symlink, no `..` above it.
const ONE_STEP: u64 = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2) with `resolve`; O_CLOEXEC always. Retries EINTR and EAGAIN (openat2 answers EAGAIN when a rename
/// raced the lookup under RESOLVE_IN_ROOT/BENEATH). Returns the errno on failure.
pub fn openat2(dir: BorrowedFd, path: &CStr, flags: i32, resolve: u64) -> Result<OwnedFd, i32> {
    let how = OpenHow { flags: (flags | libc::O_CLOEXEC) as u64, mode: 0, resolve };
    for _ in 0..64 {
        // SAFETY: valid dirfd, C string and open_how of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a fresh fd we own.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        match sys::errno() {
            libc::EINTR | libc::EAGAIN => continue,
            e => return Err(e),
        }
    }
    Err(libc::EAGAIN)
}

/// Open `path` (leading `/` allowed) inside `root`.
pub fn open(root: BorrowedFd, path: &CStr, flags: i32) -> Result<OwnedFd, i32> {
    openat2(root, strip_slash(path), flags, IN_ROOT)
}

/// `path` without its leading slashes ("" means the root itself: openat2 wants "." then).
fn strip_slash(path: &CStr) -> &CStr {
    let b = path.to_bytes_with_nul();
    let n = b.iter().take_while(|&&c| c == b'/').count();
    if b.len() - n == 1 {
        return c".";
    }
    // A suffix of a CStr still ends with its NUL and has no interior NUL.
    CStr::from_bytes_with_nul(&b[n..]).unwrap_or(c".")
}

/// What to create at the end of a path that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// Open `path` inside `root` as an O_PATH fd, creating what is missing: directories on the way (0755), and the last
/// component as `kind` (a directory, or an empty 0644 file for a file bind mount).
pub fn open_or_create(root: BorrowedFd, path: &CStr, kind: Kind) -> Result<OwnedFd, i32> {
    let dir_flag = if kind == Kind::Dir { libc::O_DIRECTORY } else { 0 };
    match open(root, path, libc::O_PATH | dir_flag) {
        Ok(fd) => return Ok(fd),
        Err(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let rel = strip_slash(path).to_bytes();
    let mut buf = [0u8; libc::PATH_MAX as usize + 1];
    if rel.len() >= buf.len() {
        return Err(libc::ENAMETOOLONG);
    }
    buf[..rel.len()].copy_from_slice(rel);
    let mut len = rel.len();
    let mut parent = open(root, c".", libc::O_PATH | libc::O_DIRECTORY)?;
    let mut start = 0;
    let mut hops = 0;
    while start < len {
        let end = buf[start..len].iter().position(|&c| c == b'/').map_or(len, |i| start + i);
        if end == start || &buf[start..end] == b"." {
            start = end + 1;
            continue;
        }
        let last = buf[end..len].iter().all(|&c| c == b'/');
        let saved = buf[end];
        buf[end] = 0;
        let want_dir = !last || kind == Kind::Dir;
        let flags = libc::O_PATH | if want_dir { libc::O_DIRECTORY } else { 0 };
        // Fast step: the one component below `parent` (itself resolved inside the root), with no symlink and nothing
        // above `parent`, so what it opens is inside the root too. A missing one is made there. Anything else (a
        // symlink: ELOOP; `..`: EXDEV) takes the slow step below, resolved from the root.
        let name = CStr::from_bytes_until_nul(&buf[start..=end]).map_err(|_| libc::EINVAL)?;
        let mut fast = openat2(parent.as_fd(), name, flags, ONE_STEP);
        if matches!(fast, Err(libc::ENOENT)) {
            create_in(parent.as_fd(), name, want_dir)?;
            fast = openat2(parent.as_fd(), name, flags, ONE_STEP);
        }
        if let Ok(fd) = fast {
            parent = fd;
            buf[end] = saved;
            start = end + 1;
            continue;
        }
        let prefix = CStr::from_bytes_until_nul(&buf[..=end]).map_err(|_| libc::EINVAL)?;
        match openat2(root, prefix, flags, IN_ROOT) {
            Ok(fd) => parent = fd,
            Err(libc::ENOENT) => {
                let name = CStr::from_bytes_until_nul(&buf[start..=end]).map_err(|_| libc::EINVAL)?;
                create_in(parent.as_fd(), name, want_dir)?;
                // Resolve again from the root: whatever is there now (even a link raced in) stays inside it.
                match openat2(root, prefix, flags, IN_ROOT) {
                    Ok(fd) => parent = fd,
                    Err(libc::ENOENT) => {
                        // A dangling symlink (var/run -> /run with no /run yet): create its target, inside the root,
                        // by going on with the path spelled through the link.
                        hops += 1;
                        if hops > 40 {
                            return Err(libc::ELOOP);
                        }
                        buf[end] = saved;
                        len = respell_through_link(&mut buf, len, start, end, parent.as_fd())?;
                        parent = open(root, c".", libc::O_PATH | libc::O_DIRECTORY)?;
                        start = 0;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        buf[end] = saved;
        start = end + 1;
    }
    Ok(parent)
}

/// `buf[..len]` with the component `buf[start..end]` (a symlink in the directory `dir`) replaced by its target:
/// "a/link/rest" becomes "/target/rest" or "a/target/rest". Returns the new length.
fn respell_through_link(
    buf: &mut [u8; libc::PATH_MAX as usize + 1],
    len: usize,
    start: usize,
    end: usize,
    dir: BorrowedFd,
) -> Result<usize, i32> {
    let mut name = [0u8; 256];
    let n = end - start;
    if n >= name.len() {
        return Err(libc::ENAMETOOLONG);
    }
    name[..n].copy_from_slice(&buf[start..end]);
    let mut target = [0u8; libc::PATH_MAX as usize];
    // SAFETY: valid dirfd, NUL-terminated name, and a buffer of the length passed.
    let t =
        unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr().cast(), target.as_mut_ptr().cast(), target.len()) };
    if t <= 0 {
        return Err(libc::ENOENT);
    }
    let t = t as usize;
    let keep = if target[0] == b'/' { 0 } else { start };
    let rest = &buf[end..len];
    let new_len = keep + t + rest.len();
    if new_len >= buf.len() {
        return Err(libc::ENAMETOOLONG);
    }
    let mut out = [0u8; libc::PATH_MAX as usize + 1];
    out[..keep].copy_from_slice(&buf[..keep]);
    out[keep..keep + t].copy_from_slice(&target[..t]);
    out[keep + t..new_len].copy_from_slice(rest);
    buf[..new_len].copy_from_slice(&out[..new_len]);
    buf[new_len] = 0;
    Ok(new_len)
}

/// Create one entry `name` in the directory `dir`; an entry already there is fine (it is resolved next).
fn create_in(dir: BorrowedFd, name: &CStr, want_dir: bool) -> Result<(), i32> {
    if want_dir {
        // SAFETY: valid dirfd and C string; mkdirat never follows a final symlink.
        if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) } != 0 && sys::errno() != libc::EEXIST {
            return Err(sys::errno());
        }
        return Ok(());
    }
    // SAFETY: as above; O_EXCL|O_NOFOLLOW never follows or truncates anything already there.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return if sys::errno() == libc::EEXIST { Ok(()) } else { Err(sys::errno()) };
    }
    // SAFETY: our fresh fd.
    unsafe { libc::close(fd) };
    Ok(())
}

/// Split `path` into its parent directory and last component, in `buf` (both NUL-terminated there). "/dev/null" →
/// ("/dev", "null"); "null" → (".", "null").
pub fn split<'a>(path: &CStr, buf: &'a mut [u8; libc::PATH_MAX as usize + 2]) -> Result<(&'a CStr, &'a CStr), i32> {
    let b = path.to_bytes();
    let mut end = b.len();
    while end > 1 && b[end - 1] == b'/' {
        end -= 1;
    }
    if end + 2 > buf.len() {
        return Err(libc::ENAMETOOLONG);
    }
    let slash = b[..end].iter().rposition(|&c| c == b'/');
    let (dir_len, name_start) = match slash {
        Some(0) => (1, 1),
        Some(i) => (i, i + 1),
        None => (0, 0),
    };
    if name_start >= end {
        return Err(libc::EINVAL);
    }
    // Layout in buf: dir NUL name NUL.
    let (dir, rest) = buf.split_at_mut(if dir_len == 0 { 2 } else { dir_len + 1 });
    if dir_len == 0 {
        dir[0] = b'.';
        dir[1] = 0;
    } else {
        dir[..dir_len].copy_from_slice(&b[..dir_len]);
        dir[dir_len] = 0;
    }
    let n = end - name_start;
    rest[..n].copy_from_slice(&b[name_start..end]);
    rest[n] = 0;
    let d = CStr::from_bytes_until_nul(dir).map_err(|_| libc::EINVAL)?;
    let f = CStr::from_bytes_until_nul(rest).map_err(|_| libc::EINVAL)?;
    Ok((d, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_paths() {
        let mut b = [0u8; libc::PATH_MAX as usize + 2];
        assert_eq!(split(c"/dev/null", &mut b).unwrap(), (c"/dev", c"null"));
        assert_eq!(split(c"/null", &mut b).unwrap(), (c"/", c"null"));
        assert_eq!(split(c"null", &mut b).unwrap(), (c".", c"null"));
        assert_eq!(split(c"/a/b/", &mut b).unwrap(), (c"/a", c"b"));
        assert!(split(c"/", &mut b).is_err());
    }

    #[test]
    fn creates_inside_the_root_through_planted_links() {
        let d = std::env::temp_dir().join(format!("keel-inroot-{}", std::process::id()));
        let host = std::env::temp_dir().join(format!("keel-inroot-host-{}", std::process::id()));
        std::fs::create_dir_all(d.join("a")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::os::unix::fs::symlink(&host, d.join("a/link")).unwrap();
        std::os::unix::fs::symlink("../../..", d.join("up")).unwrap();
        let root = OwnedFd::from(std::fs::File::open(&d).unwrap());
        let fd = open_or_create(root.as_fd(), c"/a/link/x/y", Kind::Dir).unwrap();
        drop(fd);
        // The absolute link resolved inside the root (d + host path), never on the host.
        assert!(d.join(host.strip_prefix("/").unwrap()).join("x/y").is_dir());
        assert!(!host.join("x").exists());
        open_or_create(root.as_fd(), c"up/f", Kind::File).unwrap();
        assert!(d.join("f").is_file());
        // An absolute link to /proc/self/root is read inside the root (where there is no /proc): not the host's.
        std::os::unix::fs::symlink("/proc/self/root", d.join("magic")).unwrap();
        assert_eq!(open(root.as_fd(), c"/magic/etc", libc::O_PATH).unwrap_err(), libc::ENOENT);
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::remove_dir_all(&host).unwrap();
    }
}
