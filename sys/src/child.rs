//! Helpers for the child side of a spawn, where nothing may allocate (the caller may have other threads holding the
//! allocator lock when it cloned): a fixed stack buffer for messages, failing with a status line, mkdir -p on a C
//! path, closing fds, writing numbers.

use std::ffi::CStr;
use std::fmt::{self, Write};

use crate::{errno, strerror};

/// A fixed-size message buffer implementing `fmt::Write`; overlong text is truncated.
pub struct StackBuf {
    buf: [u8; 1024],
    len: usize,
}

impl StackBuf {
    pub const fn new() -> Self {
        StackBuf { buf: [0; 1024], len: 0 }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    /// Lower-case the ASCII letter at byte `i` (strerror's "No such file" → Go's "no such file").
    pub fn lowercase_at(&mut self, i: usize) {
        if i < self.len {
            self.buf[i] = self.buf[i].to_ascii_lowercase();
        }
    }
    pub fn push_bytes(&mut self, b: &[u8]) {
        let n = b.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
    }
}

impl Default for StackBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_bytes(s.as_bytes());
        Ok(())
    }
}

/// Lossy display of a C string (for messages).
pub fn show(c: &CStr) -> &str {
    c.to_str().unwrap_or("<non-utf8 path>")
}

/// Write all of `buf` to `fd`, retrying on EINTR and short writes. Returns false on error.
pub fn write_all(fd: i32, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: buf is a valid readable slice for its length.
        match crate::cvt_r(|| unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }) {
            Ok(n) => buf = buf.get(n as usize..).unwrap_or_default(),
            Err(_) => return false,
        }
    }
    true
}

/// Report "what path: strerror (errno N)" ("exec /bin/x: No such file or directory (errno 2)"), or
/// "what: strerror (errno N)" without a path, on the status fd and exit 127. Child side only.
pub fn fail(status_fd: i32, what: &str, path: &str, e: i32) -> ! {
    let mut m = StackBuf::new();
    let _ = if path.is_empty() {
        write!(m, "{what}: {} (errno {e})", strerror(e))
    } else {
        write!(m, "{what} {path}: {} (errno {e})", strerror(e))
    };
    fail_msg(status_fd, m.as_bytes())
}

/// Report a ready-made message on the status fd and exit 127. Child side only.
pub fn fail_msg(status_fd: i32, msg: &[u8]) -> ! {
    if status_fd >= 0 {
        write_all(status_fd, msg);
    }
    // SAFETY: _exit is always safe; it skips atexit handlers and stdio flushing of the parent's copied state.
    unsafe { libc::_exit(127) }
}

/// mkdir -p for a NUL-terminated path, without allocating. Existing components are fine. Returns the errno on error.
pub fn mkdir_p(path: &CStr, mode: libc::mode_t) -> Result<(), i32> {
    let bytes = path.to_bytes();
    let mut buf = [0u8; libc::PATH_MAX as usize + 1];
    if bytes.len() >= buf.len() {
        return Err(libc::ENAMETOOLONG);
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    // Fast path: the whole path already exists.
    // SAFETY: path is a valid C string.
    if unsafe { libc::mkdir(path.as_ptr(), mode) } == 0 || errno() == libc::EEXIST {
        return Ok(());
    }
    if errno() != libc::ENOENT {
        return Err(errno());
    }
    for i in 1..=bytes.len() {
        if i == bytes.len() || bytes[i] == b'/' {
            let saved = buf[i];
            buf[i] = 0;
            // SAFETY: buf is NUL-terminated at i.
            let r = unsafe { libc::mkdir(buf.as_ptr().cast(), mode) };
            if r != 0 && errno() != libc::EEXIST {
                return Err(errno());
            }
            buf[i] = saved;
        }
    }
    Ok(())
}

/// Close every fd >= `from` except those in `keep` (sorted or not).
pub fn close_fds_from(from: i32, keep: &[i32]) {
    let mut lo = from as u32;
    loop {
        // Next kept fd >= lo.
        let next = keep.iter().filter(|&&k| k >= 0 && k as u32 >= lo).min().copied();
        match next {
            Some(k) => {
                if (k as u32) > lo {
                    // SAFETY: close_range only closes fds of this process.
                    unsafe { libc::syscall(libc::SYS_close_range, lo, k as u32 - 1, 0) };
                }
                lo = k as u32 + 1;
            }
            None => {
                // SAFETY: as above.
                unsafe { libc::syscall(libc::SYS_close_range, lo, u32::MAX, 0) };
                return;
            }
        }
    }
}

/// Write a small decimal number into `out`, returning the used slice.
pub fn itoa(mut n: i64, out: &mut [u8; 24]) -> &[u8] {
    let neg = n < 0;
    let mut i = out.len();
    if n == 0 {
        i -= 1;
        out[i] = b'0';
    }
    while n != 0 {
        i -= 1;
        out[i] = b'0' + (n % 10).unsigned_abs() as u8;
        n /= 10;
    }
    if neg {
        i -= 1;
        out[i] = b'-';
    }
    &out[i..]
}
