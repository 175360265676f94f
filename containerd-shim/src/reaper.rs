//! The optional pid-namespace reaper: when a bundle gets a new pid namespace and the caller asks for it, the
//! container's pid 1 is this loop instead of the real process (like `docker run --init`, tini, catatonit). The kernel
//! gives a namespace's pid 1 no default signal actions and makes it the parent of every orphan; this loop forwards
//! the usual stop/control signals to the real process, reaps everything, and exits with the real process's status
//! (exit code, or 128+signal). It is the forked setup child itself: no exec, no allocation, all fds closed.

use crate::sys;

/// Signals forwarded to the real process.
const FORWARD: [libc::c_int; 7] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH];

/// Fork: returns in the child (the real process, which goes on with setup). The parent becomes the reaper and never
/// returns. `status_fd` is reported to on fork failure.
pub fn fork_reaper(status_fd: i32) {
    // Block the signals we wait for before forking, so none is lost between fork and sigtimedwait (a pid 1 drops
    // signals it has no handler for unless they are blocked). The child restores its mask before exec.
    // SAFETY: plain sigset manipulation on a zeroed sigset_t.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in FORWARD {
            libc::sigaddset(&mut set, s);
        }
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    // SAFETY: fork-like clone in a single-threaded process.
    let child = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0) } as i32;
    if child < 0 {
        sys::fail(status_fd, "fork pid namespace reaper", "", sys::errno());
    }
    if child == 0 {
        return;
    }
    // Reaper: hold nothing open (the real process keeps the status pipe and stdio).
    sys::close_fds_from(0, &[]);
    // SAFETY: set is initialised; info is a valid out-parameter.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: as above.
        let sig = unsafe { libc::sigwaitinfo(&set, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child, sig) };
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
