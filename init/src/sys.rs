//! Thin, checked wrappers over the few syscalls the event loop uses directly (epoll, signalfd, pipes, non-blocking
//! reads and writes, waitpid), so the rest of init holds no `unsafe`. Every error carries the errno.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Result of a non-blocking read or write.
#[derive(Debug, PartialEq, Eq)]
pub enum Io {
    /// n bytes moved (n > 0).
    Done(usize),
    /// Nothing now (EAGAIN).
    WouldBlock,
    /// Read: end of file. Write: the reader is gone (EPIPE).
    Closed,
    /// Any other error.
    Err(i32),
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// One non-blocking read (retries EINTR).
pub fn read(fd: RawFd, buf: &mut [u8]) -> Io {
    loop {
        // SAFETY: buf is a valid, writable slice of buf.len() bytes for the duration of the call.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            return Io::Done(n as usize);
        }
        if n == 0 {
            return Io::Closed;
        }
        match errno() {
            libc::EINTR => continue,
            libc::EAGAIN => return Io::WouldBlock,
            e => return Io::Err(e),
        }
    }
}

/// One non-blocking write (retries EINTR).
pub fn write(fd: RawFd, buf: &[u8]) -> Io {
    if buf.is_empty() {
        return Io::Done(0);
    }
    loop {
        // SAFETY: buf is a valid, readable slice of buf.len() bytes for the duration of the call.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n > 0 {
            return Io::Done(n as usize);
        }
        if n == 0 {
            // Nothing taken from a non-empty buffer: treat as "try later", or a caller looping until the buffer
            // drains would spin forever.
            return Io::WouldBlock;
        }
        match errno() {
            libc::EINTR => continue,
            libc::EAGAIN => return Io::WouldBlock,
            libc::EPIPE => return Io::Closed,
            e => return Io::Err(e),
        }
    }
}

/// Set or clear O_NONBLOCK.
pub fn set_nonblock(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on an fd only read and change its status flags.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 {
            return Err(io::Error::last_os_error());
        }
        let nfl = if on { fl | libc::O_NONBLOCK } else { fl & !libc::O_NONBLOCK };
        if libc::fcntl(fd, libc::F_SETFL, nfl) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A close-on-exec pipe: (read end non-blocking, write end blocking). The write end is what a container gets as
/// stdout/stderr or as a readiness fd (the runtime dups it, which clears CLOEXEC on the copy).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both fds are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    set_nonblock(r.as_raw_fd(), true)?;
    Ok((r, w))
}

/// Open a path with raw open(2) flags (O_CLOEXEC added).
pub fn open(path: &str, flags: i32) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: c is a valid NUL-terminated string; open returns a new fd or -1.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An epoll instance. Tokens are u64s chosen by the caller.
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 returns a new fd or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just created and is owned by nobody else.
        Ok(Epoll { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watch `fd` for input.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, token)
    }

    /// Change what `fd` is watched for (input, plus output when `out`).
    pub fn modify(&self, fd: RawFd, token: u64, out: bool) -> io::Result<()> {
        let ev = libc::EPOLLIN as u32 | if out { libc::EPOLLOUT as u32 } else { 0 };
        self.ctl(libc::EPOLL_CTL_MOD, fd, ev, token)
    }

    /// Stop watching `fd` (errors ignored: the fd may already be closed).
    pub fn delete(&self, fd: RawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    /// Wait up to `timeout_ms` (-1: forever); fills `out` with (token, events).
    pub fn wait(&self, out: &mut Vec<(u64, u32)>, timeout_ms: i32) {
        out.clear();
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 32];
        // SAFETY: evs is a writable array of 32 epoll_events.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), evs.as_mut_ptr(), 32, timeout_ms) };
        for ev in evs.iter().take(n.max(0) as usize) {
            let (t, e) = (ev.u64, ev.events);
            out.push((t, e));
        }
    }
}

/// Block every signal in this thread (PID 1 takes them through a signalfd). Returns the previous mask.
pub fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigfillset/sigprocmask only touch the sets we pass.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

/// A signalfd for `signals` (which must already be blocked), non-blocking.
pub fn signalfd(signals: &[i32]) -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; signalfd returns a new fd or -1.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Read one signal number from a signalfd; None when there is none pending.
pub fn read_signal(fd: RawFd) -> Option<i32> {
    let mut buf = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    match read(fd, &mut buf) {
        Io::Done(n) if n == buf.len() => {
            // ssi_signo is the first u32 of signalfd_siginfo.
            Some(u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as i32)
        }
        _ => None,
    }
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
pub fn lock_memory() -> io::Result<()> {
    // SAFETY: mlockall has no memory effects visible to Rust.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// kill(2); the errno on failure.
pub fn kill(pid: i32, sig: i32) -> Result<(), i32> {
    // SAFETY: kill has no memory effects.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_read_end_is_nonblocking() -> Result<(), Box<dyn std::error::Error>> {
        let (r, w) = pipe()?;
        let mut b = [0u8; 8];
        assert_eq!(read(r.as_raw_fd(), &mut b), Io::WouldBlock);
        assert_eq!(write(w.as_raw_fd(), b"hi"), Io::Done(2));
        assert_eq!(read(r.as_raw_fd(), &mut b), Io::Done(2));
        drop(w);
        assert_eq!(read(r.as_raw_fd(), &mut b), Io::Closed);
        Ok(())
    }
}
