//! The runtime's own binary, out of the container's reach (CVE-2019-5736 class).
//!
//! A container's setup process is a copy of the runtime until it execs the user's program, and a program whose
//! interpreter is `/proc/self/exe` makes the kernel run the runtime's binary inside the container. Whoever then
//! opens `/proc/PID/exe` holds the host's binary and can rewrite it once the process exits. So a process that spawns
//! containers (keel-runc create/run/exec, PID 1) first re-executes itself from a sealed memfd copy (as runc, crun
//! `ensure_cloned_binary` and youki's pentacle do): its `/proc/self/exe`, and that of every child it clones, is then
//! a memfd that cannot be written, grown or unsealed.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::sys;

/// F_SEAL_EXEC (Linux 6.3+): the exec bits can no longer change. Older kernels refuse it: it is optional.
const F_SEAL_EXEC: libc::c_int = 0x20;
const REQUIRED_SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Is this process running from a sealed copy?
pub fn is_sealed() -> bool {
    // SAFETY: valid C string; a new fd or -1.
    let fd = unsafe { libc::open(c"/proc/self/exe".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return false;
    }
    // SAFETY: fcntl on our fd; EINVAL for files that are not memfds.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    seals >= 0 && seals & REQUIRED_SEALS == REQUIRED_SEALS
}

/// Re-execute this process from a sealed memfd copy of its binary, with the same arguments and environment, unless
/// it already runs from one. Returns Ok(()) only when already sealed; on success it does not return. Call it first
/// thing in main, while the process is single-threaded.
pub fn ensure(args: &[OsString]) -> Result<(), String> {
    if is_sealed() {
        return Ok(());
    }
    let memfd = copy_self()?;
    let cstrings = |items: &mut dyn Iterator<Item = Vec<u8>>| -> Result<Vec<CString>, String> {
        items
            .map(|b| CString::new(b).map_err(|_| "argument or environment entry with a NUL byte".to_string()))
            .collect()
    };
    let argv = cstrings(&mut args.iter().map(|a| a.as_bytes().to_vec()))?;
    let envp = cstrings(&mut std::env::vars_os().map(|(k, v)| {
        let mut e = k.as_bytes().to_vec();
        e.push(b'=');
        e.extend_from_slice(v.as_bytes());
        e
    }))?;
    let mut argp: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argp.push(std::ptr::null());
    let mut envpp: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envpp.push(std::ptr::null());
    // SAFETY: memfd is our fd; argv/envp are NULL-terminated arrays of valid C strings that outlive the call.
    unsafe {
        libc::syscall(libc::SYS_execveat, memfd, c"".as_ptr(), argp.as_ptr(), envpp.as_ptr(), libc::AT_EMPTY_PATH)
    };
    let e = sys::errno();
    // SAFETY: our fd.
    unsafe { libc::close(memfd) };
    Err(format!("exec sealed copy of /proc/self/exe: {} (errno {e})", sys::strerror(e)))
}

/// A sealed, close-on-exec memfd holding a copy of /proc/self/exe.
fn copy_self() -> Result<i32, String> {
    let err = |what: &str| {
        let e = sys::errno();
        format!("{what}: {} (errno {e})", sys::strerror(e))
    };
    // SAFETY: valid C string; a new fd or -1.
    let src = unsafe { libc::open(c"/proc/self/exe".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if src < 0 {
        return Err(err("open /proc/self/exe"));
    }
    let close = |fd: i32| {
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
    };
    // MFD_EXEC (Linux 6.3+) says we mean to exec it, which vm.memfd_noexec=1 otherwise refuses; older kernels reject
    // the unknown flag with EINVAL: retry without it.
    const MFD_EXEC: libc::c_uint = 0x10;
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: valid C string name; memfd_create only creates an fd.
    let mut memfd = unsafe { libc::memfd_create(c"keel".as_ptr(), flags | MFD_EXEC) };
    if memfd < 0 && sys::errno() == libc::EINVAL {
        // SAFETY: as above.
        memfd = unsafe { libc::memfd_create(c"keel".as_ptr(), flags) };
    }
    if memfd < 0 {
        let e = err("memfd_create");
        close(src);
        return Err(e);
    }
    loop {
        // SAFETY: sendfile between our two fds with a null offset (the source's own position advances).
        let n = unsafe { libc::sendfile(memfd, src, std::ptr::null_mut(), 1 << 30) };
        if n > 0 {
            continue;
        }
        if n < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        if n < 0 {
            let e = err("copy /proc/self/exe into a memfd");
            close(src);
            close(memfd);
            return Err(e);
        }
        break;
    }
    close(src);
    // The optional seal first: F_SEAL_SEAL forbids adding any later.
    // SAFETY: fcntl with integer arguments on our memfd.
    unsafe { libc::fcntl(memfd, libc::F_ADD_SEALS, F_SEAL_EXEC) };
    // SAFETY: as above.
    if unsafe { libc::fcntl(memfd, libc::F_ADD_SEALS, REQUIRED_SEALS) } != 0 {
        let e = err("seal memfd copy of /proc/self/exe");
        close(memfd);
        return Err(e);
    }
    Ok(memfd)
}
