//! Processes and signals: kill, waitpid and reaping, signal names, this process's signal dispositions, mlockall.

use crate::{cvt, errno, Errno};

/// How `waitpid` found a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// WNOHANG and still running.
    StillAlive,
    /// Stopped or continued.
    Other,
}

/// waitpid(2) on one pid with `flags` (WNOHANG, __WALL, ...). EINTR is returned, not retried: a caller forwarding
/// signals relies on it.
pub fn waitpid(pid: i32, flags: libc::c_int) -> Result<WaitStatus, Errno> {
    let mut status = 0;
    // SAFETY: waitpid writes the status into our local int.
    let r = cvt(unsafe { libc::waitpid(pid, &mut status, flags) })?;
    Ok(if r == 0 {
        WaitStatus::StillAlive
    } else if libc::WIFEXITED(status) {
        WaitStatus::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        WaitStatus::Signaled(libc::WTERMSIG(status))
    } else {
        WaitStatus::Other
    })
}

/// A signal number by name, with or without "SIG" ("KILL", "SIGTERM", "RTMIN+3"); None if unknown.
pub fn signal_by_name(name: &str) -> Option<i32> {
    const NAMES: &[(&str, i32)] = &[
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ILL", libc::SIGILL),
        ("TRAP", libc::SIGTRAP),
        ("ABRT", libc::SIGABRT),
        ("IOT", libc::SIGIOT),
        ("BUS", libc::SIGBUS),
        ("FPE", libc::SIGFPE),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("SEGV", libc::SIGSEGV),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("STKFLT", libc::SIGSTKFLT),
        ("CHLD", libc::SIGCHLD),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("TSTP", libc::SIGTSTP),
        ("TTIN", libc::SIGTTIN),
        ("TTOU", libc::SIGTTOU),
        ("URG", libc::SIGURG),
        ("XCPU", libc::SIGXCPU),
        ("XFSZ", libc::SIGXFSZ),
        ("VTALRM", libc::SIGVTALRM),
        ("PROF", libc::SIGPROF),
        ("WINCH", libc::SIGWINCH),
        ("IO", libc::SIGIO),
        ("POLL", libc::SIGPOLL),
        ("PWR", libc::SIGPWR),
        ("SYS", libc::SIGSYS),
    ];
    let n = name.strip_prefix("SIG").unwrap_or(name);
    NAMES.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
}

/// How a reaped process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    Code(i32),
    Signal(i32),
}

/// One `waitpid(-1, WNOHANG)`: Some((pid, how)) for a reaped child, None when there is nothing (0 or ECHILD).
pub fn reap_one() -> Option<(i32, Reaped)> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into our local int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            let how = if libc::WIFEXITED(status) {
                Reaped::Code(libc::WEXITSTATUS(status))
            } else if libc::WIFSIGNALED(status) {
                Reaped::Signal(libc::WTERMSIG(status))
            } else {
                continue; // stopped/continued: not an exit (we never ask for those, but be safe)
            };
            return Some((pid, how));
        }
        if pid < 0 && errno() == libc::EINTR {
            continue;
        }
        return None;
    }
}

/// Whether PID 1 still has any child (zombie or running), without reaping it (waitid WNOWAIT).
pub fn has_children() -> bool {
    // SAFETY: siginfo_t is plain data; zeroed is a valid value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waitid writes only into `info`; WNOWAIT leaves any zombie for the reaper.
        let r = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
        if r == 0 {
            return true;
        }
        if errno() == libc::EINTR {
            continue;
        }
        return errno() != libc::ECHILD;
    }
}

/// mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT): every page this process has touched, and will touch, stays
/// resident (swap or a disk-backed root cannot take it away under memory pressure); pages never used are not
/// faulted in, so the RSS does not grow.
pub fn lock_memory() -> Result<(), Errno> {
    // SAFETY: mlockall has no memory effects visible to Rust.
    cvt(unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) }).map(drop)
}

/// kill(2); the errno on failure.
pub fn kill(pid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: kill has no memory effects.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Bit of `sig` in a signal mask word (bit `sig - 1`); 0 for numbers outside 1..=64.
pub fn sig_bit(sig: i32) -> u64 {
    if (1..=64).contains(&sig) {
        1u64 << (sig - 1)
    } else {
        0
    }
}

/// Parent side: the signals whose disposition is not SIG_DFL in this process (bit `sig - 1`), and whether SIGPIPE is
/// ignored. Queried once per process (64 rt_sigaction calls) and cached: the spawn child then resets only these
/// instead of every signal. A caller that changes dispositions after its first spawn must call
/// [`refresh_changed_signals`].
pub fn changed_signals() -> (u64, bool) {
    let cached = CHANGED_SIGNALS.load(std::sync::atomic::Ordering::Relaxed);
    if cached != u64::MAX {
        return (cached & !SIGPIPE_IGN_FLAG_MASK, cached & SIGPIPE_IGN_FLAG_MASK != 0);
    }
    refresh_changed_signals()
}

/// Query this process's signal dispositions again (see [`changed_signals`]).
pub fn refresh_changed_signals() -> (u64, bool) {
    let mut mask = 0u64;
    let mut pipe_ign = false;
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: a zeroed sigaction is a valid out-parameter; a null new action only queries.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            continue;
        }
        if old.sa_sigaction != libc::SIG_DFL {
            mask |= sig_bit(sig);
            if sig == libc::SIGPIPE && old.sa_sigaction == libc::SIG_IGN {
                pipe_ign = true;
            }
        }
    }
    // Bit 63 (signal 64) is SIGRTMAX, which the loop above never reports: reuse it as the SIGPIPE-ignored flag.
    let word = (mask & !SIGPIPE_IGN_FLAG_MASK) | if pipe_ign { SIGPIPE_IGN_FLAG_MASK } else { 0 };
    CHANGED_SIGNALS.store(word, std::sync::atomic::Ordering::Relaxed);
    (mask & !SIGPIPE_IGN_FLAG_MASK, pipe_ign)
}

const SIGPIPE_IGN_FLAG_MASK: u64 = 1 << 63;
static CHANGED_SIGNALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);
