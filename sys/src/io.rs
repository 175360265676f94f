//! Calls on fds: pipes, socket pairs, open, non-blocking read and write, O_NONBLOCK, poll, epoll, signalfd, and
//! receiving an fd over a unix socket. Errors are the [`Errno`].

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::{cpath, cvt, cvt_r, Errno, Error};

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

/// One non-blocking read (retries EINTR).
pub fn read(fd: RawFd, buf: &mut [u8]) -> Io {
    // SAFETY: buf is a valid, writable slice of buf.len() bytes for the duration of the call.
    match cvt_r(|| unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }) {
        Ok(0) => Io::Closed,
        Ok(n) => Io::Done(n as usize),
        Err(Errno::EAGAIN) => Io::WouldBlock,
        Err(e) => Io::Err(e.0),
    }
}

/// One non-blocking write (retries EINTR).
pub fn write(fd: RawFd, buf: &[u8]) -> Io {
    if buf.is_empty() {
        return Io::Done(0);
    }
    // SAFETY: buf is a valid, readable slice of buf.len() bytes for the duration of the call.
    match cvt_r(|| unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }) {
        // Nothing taken from a non-empty buffer: treat as "try later", or a caller looping until the buffer drains
        // would spin forever.
        Ok(0) | Err(Errno::EAGAIN) => Io::WouldBlock,
        Ok(n) => Io::Done(n as usize),
        Err(e) if e.0 == libc::EPIPE => Io::Closed,
        Err(e) => Io::Err(e.0),
    }
}

/// send(2) of all of `buf` on a socket, without SIGPIPE (retries EINTR). A short send is EIO.
pub fn send(fd: RawFd, buf: &[u8]) -> Result<(), Errno> {
    // SAFETY: buf is a valid, readable slice of buf.len() bytes for the duration of the call.
    let n = cvt_r(|| unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) })?;
    if n as usize == buf.len() {
        Ok(())
    } else {
        Err(Errno::EIO)
    }
}

/// fcntl(F_GETFL/F_SETFL): set or clear O_NONBLOCK.
pub fn set_nonblock(fd: RawFd, on: bool) -> Result<(), Errno> {
    // SAFETY: F_GETFL on an fd only reads its status flags.
    let fl = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    let nfl = if on { fl | libc::O_NONBLOCK } else { fl & !libc::O_NONBLOCK };
    // SAFETY: F_SETFL on an fd only changes its status flags.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, nfl) }).map(drop)
}

/// pipe2(2) with `flags` (O_CLOEXEC, O_NONBLOCK, ...): (read end, write end).
pub fn pipe2(flags: libc::c_int) -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), flags) })?;
    // SAFETY: pipe2 succeeded: both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec pipe: (read end non-blocking, write end blocking). The write end is what a container gets as
/// stdout/stderr or as a readiness fd (the runtime dups it, which clears CLOEXEC on the copy).
pub fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let (r, w) = pipe2(libc::O_CLOEXEC)?;
    set_nonblock(r.as_raw_fd(), true)?;
    Ok((r, w))
}

/// socketpair(2) (close-on-exec).
pub fn socketpair(domain: libc::c_int, kind: libc::c_int) -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut sv = [0 as RawFd; 2];
    // SAFETY: socketpair writes two fds into the array we own.
    cvt(unsafe { libc::socketpair(domain, kind | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) })?;
    // SAFETY: socketpair succeeded: both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) })
}

/// open(2) with raw flags (O_CLOEXEC added), mode 0644 for a created file.
pub fn open(path: &str, flags: i32) -> Result<OwnedFd, Error> {
    open_path(std::path::Path::new(path), flags, 0o644)
}

/// open(2) of a path with raw flags (O_CLOEXEC added) and a creation mode.
pub fn open_path(path: &std::path::Path, flags: i32, mode: libc::mode_t) -> Result<OwnedFd, Error> {
    let c = cpath("open path", path)?;
    // SAFETY: c is a valid NUL-terminated string; open returns a new fd or -1.
    let fd = cvt_r(|| unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) })
        .map_err(|e| Error::sys("open", path, e))?;
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// fcntl(F_DUPFD_CLOEXEC): a close-on-exec duplicate of `fd` numbered `min` or above.
pub fn dup_cloexec(fd: RawFd, min: RawFd) -> Result<OwnedFd, Errno> {
    // SAFETY: duplicating an fd; the result is checked before it is owned.
    let n = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: n is a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// poll(2) for input on one fd, up to `timeout_ms` (-1: forever; EINTR retried): whether it is readable (or hung up).
pub fn poll_in(fd: RawFd, timeout_ms: i32) -> Result<bool, Errno> {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: p is a valid pollfd for the duration of the call.
    Ok(cvt_r(|| unsafe { libc::poll(&mut p, 1, timeout_ms) })? > 0)
}

/// recv(2) into `buf` (retries EINTR): the number of bytes, 0 at end of stream.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: buf is a valid, writable slice of buf.len() bytes for the duration of the call.
    cvt_r(|| unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) }).map(|n| n as usize)
}

/// Receive one fd passed with SCM_RIGHTS on a unix socket (the received fd is close-on-exec), with up to
/// `buf.len()` bytes of data: (bytes, fd if one came).
pub fn recv_fd(sock: RawFd, buf: &mut [u8]) -> Result<(usize, Option<OwnedFd>), Errno> {
    // Room for one cmsghdr with one int, aligned.
    let mut space = [0u64; 8];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain old data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&space) as _;
    // SAFETY: msg points at our iovec and control buffer, valid for the call.
    let n = cvt_r(|| unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) })?;
    let mut fd = None;
    // SAFETY: walking the control messages the kernel wrote into `space`, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS && fd.is_none() {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, fd))
}

/// An epoll instance. Tokens are u64s chosen by the caller.
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> Result<Epoll, Errno> {
        // SAFETY: epoll_create1 returns a new fd or -1.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fd was just created and is owned by nobody else.
        Ok(Epoll { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> Result<(), Errno> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Watch `fd` for input.
    pub fn add(&self, fd: RawFd, token: u64) -> Result<(), Errno> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, token)
    }

    /// Change what `fd` is watched for (input, plus output when `out`).
    pub fn modify(&self, fd: RawFd, token: u64, out: bool) -> Result<(), Errno> {
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
pub fn signalfd(signals: &[i32]) -> Result<OwnedFd, Errno> {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset only touch it.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    };
    // SAFETY: signalfd returns a new fd or -1.
    let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_read_end_is_nonblocking() -> Result<(), Box<dyn std::error::Error>> {
        let (r, w) = pipe()?;
        let mut b = [0u8; 8];
        assert_eq!(read(r.as_raw_fd(), &mut b), Io::WouldBlock);
        assert_eq!(write(w.as_raw_fd(), b"hi"), Io::Done(2));
        assert!(poll_in(r.as_raw_fd(), 0)?);
        assert_eq!(read(r.as_raw_fd(), &mut b), Io::Done(2));
        drop(w);
        assert_eq!(read(r.as_raw_fd(), &mut b), Io::Closed);
        Ok(())
    }
}
