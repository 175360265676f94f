//! Small syscall helpers for the child side of spawn, where nothing may allocate (the caller may have other threads
//! holding the allocator lock when we clone): a fixed stack buffer for messages, failing with a status line,
//! mkdir -p on a C path, and errno access.

use std::ffi::CStr;
use std::fmt::{self, Write};

/// errno of the last failed libc call.
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// The description of an errno, without allocating or locking (glibc's strerror may take the gettext lock, which
/// another thread of the caller could have held when we were cloned).
pub fn strerror(e: i32) -> &'static str {
    nix::errno::Errno::from_raw(e).desc()
}

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
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return false;
        }
        buf = &buf[n as usize..];
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
