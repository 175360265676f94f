//! The optional pid-namespace reaper: when a bundle gets a new pid namespace and the caller asks for it, the
//! container's pid 1 is a reaper instead of the real process (like `docker run --init`, tini, catatonit). The kernel
//! gives a namespace's pid 1 no default signal actions and makes it the parent of every orphan; the reaper forwards
//! the usual stop/control signals to the real process, reaps everything, and exits with the real process's status
//! (exit code, or 128+signal).
//!
//! The setup child blocks every signal and forks: the child goes on to become the real process (it restores the
//! mask before exec), the parent execs keel-reaper (reaper/reaper.rs, built by build.rs: a freestanding program of
//! ~2 KiB, ~10-20 KiB RSS) from a sealed memfd the runtime fills once per process ([`prepare`]). An fd works after
//! pivot_root, where no host path is reachable. If there is no memfd (old kernel, vm.memfd_noexec=2, non-x86_64
//! build) or execveat fails, the forked setup child runs the same loop itself ([`fork_reaper`]; a copy of the
//! caller: ~590 KiB RSS when forked from keel's PID 1).

use crate::sys;

/// Signals forwarded to the real process (also by a foreground `keel-runc run`, with SIGALRM: cli/run.rs).
pub(crate) const FORWARD: [libc::c_int; 8] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
];

/// The keel-reaper program (see build.rs).
#[cfg(keel_exec_reaper)]
static PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/keel-reaper"));

/// The memfd holding keel-reaper, created on first use (parent side); -1 if it cannot be made.
#[cfg(keel_exec_reaper)]
static MEMFD: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

/// Parent side, before clone: the memfd (O_CLOEXEC, sealed) holding keel-reaper, or -1 (the child then uses the
/// fork-only reaper). Made once per process and kept open for later spawns.
pub fn prepare() -> i32 {
    #[cfg(keel_exec_reaper)]
    {
        *MEMFD.get_or_init(|| make_memfd().unwrap_or(-1))
    }
    #[cfg(not(keel_exec_reaper))]
    {
        -1
    }
}

#[cfg(keel_exec_reaper)]
fn make_memfd() -> Option<i32> {
    // MFD_EXEC (Linux 6.3+) says we mean to exec it, which vm.memfd_noexec=1 otherwise refuses; older kernels reject
    // the unknown flag with EINVAL: retry without it.
    const MFD_EXEC: libc::c_uint = 0x10;
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: valid C string name; memfd_create only creates an fd.
    let mut fd = unsafe { libc::memfd_create(c"keel-reaper".as_ptr(), flags | MFD_EXEC) };
    if fd < 0 && sys::errno() == libc::EINVAL {
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(c"keel-reaper".as_ptr(), flags) };
    }
    if fd < 0 {
        return None;
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: our fresh fd; fcntl with integer arguments.
    if !sys::write_all(fd, PROGRAM) || unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } != 0 {
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        return None;
    }
    Some(fd)
}

/// Child side. Block every signal (so none is lost before the reaper waits for it: a pid 1 drops signals it has no
/// handler for), then fork: returns in the child (the real process, which goes on with setup and restores the mask
/// before exec). The parent becomes the reaper and never returns: it execs keel-reaper from `memfd` (when >= 0),
/// else, or if that fails, loops here. `status_fd` is reported to on fork failure.
pub fn fork_reaper(status_fd: i32, memfd: i32) {
    // SAFETY: plain sigset manipulation on a zeroed sigset_t.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
    // SAFETY: fork-like clone in a single-threaded process.
    let child = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0) } as i32;
    if child < 0 {
        sys::fail(status_fd, "fork pid namespace reaper", "", sys::errno());
    }
    if child == 0 {
        return;
    }
    if memfd >= 0 {
        let mut num = [0u8; 24];
        let digits = sys::itoa(child as i64, &mut num);
        let mut arg1 = [0u8; 24];
        arg1[..digits.len()].copy_from_slice(digits);
        let argv: [*const libc::c_char; 3] = [c"keel-reaper".as_ptr(), arg1.as_ptr().cast(), std::ptr::null()];
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];
        // SAFETY: memfd is our fd; argv/envp are NULL-terminated arrays of NUL-terminated strings on our stack.
        // Returns only on failure; then fall through to the in-process loop.
        unsafe {
            libc::syscall(libc::SYS_execveat, memfd, c"".as_ptr(), argv.as_ptr(), envp.as_ptr(), libc::AT_EMPTY_PATH)
        };
    }
    reap_loop(child)
}

/// The fallback reaper: the same protocol as keel-reaper, in this (forked) process.
fn reap_loop(child: i32) -> ! {
    // Hold nothing open (the real process keeps the status pipe and stdio).
    sys::close_fds_from(0, &[]);
    // SAFETY: plain sigset manipulation on a zeroed sigset_t.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: info is a valid out-parameter.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: all is initialised; info is a valid out-parameter.
        let sig = unsafe { libc::sigwaitinfo(&all, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            if FORWARD.contains(&sig) {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(child, sig) };
            }
            continue;
        }
        loop {
            let mut st = 0;
            // SAFETY: reaping children of this process.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                let code = if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) } else { 128 + libc::WTERMSIG(st) };
                // Exiting kills the rest of the namespace; the kernel reaps them.
                // SAFETY: _exit is always safe.
                unsafe { libc::_exit(code) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(keel_exec_reaper)]
    #[test]
    fn program_is_a_small_static_elf() {
        let p = super::PROGRAM;
        assert_eq!(&p[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([p[16], p[17]]), 2, "ET_EXEC: static, non-PIE");
        assert!(p.len() < 8192, "keel-reaper is {} bytes", p.len());
    }
}
