//! runc's --console-socket, child side: open a pty in the container's own devpts, send the master fd over the
//! caller's unix socket (SCM_RIGHTS, with the slave's name as payload, like runc), make the slave the controlling
//! terminal and stdin/stdout/stderr.

use std::fmt::Write;

use crate::sys::{self, StackBuf};

// ioctl's request argument is c_ulong on glibc and c_int on musl: requests are passed with `as _`.
const TIOCGPTPEER: libc::c_ulong = 0x5441;

/// Set up the console; `sock` is a connected unix socket. Returns (what, errno) on failure.
pub fn setup(sock: i32, rows: u16, cols: u16) -> Result<(), (&'static str, i32)> {
    // SAFETY: valid C string; new fd or -1.
    let master = unsafe { libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if master < 0 {
        return Err(("open /dev/ptmx", sys::errno()));
    }
    let mut unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    // SAFETY: ioctls on our pty master with valid pointers.
    let slave = unsafe {
        if libc::ioctl(master, libc::TIOCSPTLCK as _, &mut unlock) != 0 {
            return Err(("unlock pty", sys::errno()));
        }
        libc::ioctl(master, libc::TIOCGPTN as _, &mut n);
        libc::ioctl(master, TIOCGPTPEER as _, libc::O_RDWR | libc::O_NOCTTY)
    };
    if slave < 0 {
        return Err(("open pty slave", sys::errno()));
    }
    if rows > 0 || cols > 0 {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: valid winsize pointer.
        unsafe { libc::ioctl(slave, libc::TIOCSWINSZ as _, &ws) };
    }
    let mut name = StackBuf::new();
    let _ = write!(name, "/dev/pts/{n}");
    let mut iov =
        libc::iovec { iov_base: name.as_bytes().as_ptr() as *mut libc::c_void, iov_len: name.as_bytes().len() };
    // Control message with one fd: CMSG_SPACE(sizeof(int)) = 24 bytes on x86_64.
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain data; the cmsg helpers address inside cbuf, sized for one int.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        // msg_controllen and cmsg_len are size_t on glibc, socklen_t (u32) on musl.
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut i32, master);
        if libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(("send pty master over console socket", sys::errno()));
        }
    }
    // SAFETY: session/tty syscalls on this process and our fds.
    unsafe {
        libc::close(master);
        libc::close(sock);
        // The child made itself a session leader before (Plan::setsid); a second setsid would fail with EPERM.
        if libc::ioctl(slave, libc::TIOCSCTTY, 0) != 0 {
            return Err(("set controlling terminal", sys::errno()));
        }
        for fd in 0..3 {
            if libc::dup2(slave, fd) < 0 {
                return Err(("dup2 pty slave", sys::errno()));
            }
        }
        if slave > 2 {
            libc::close(slave);
        }
    }
    Ok(())
}
