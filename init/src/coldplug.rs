//! Module coldplug in the background (machine mode): PID 1 forks a child that runs `keel_rc::modules::coldplug`
//! (walk /sys for modaliases, finit_module the matches: ~400 ms of guest time under TCG, most of it in the
//! kernel's probe routines) while the event loop already starts services. The child writes its lines to a pipe,
//! one per line as `I|W|E message`; PID 1 reads it non-blocking and shows them as keel lines. The one reaper
//! routes the child's pid here and feeds `Event::ColdplugDone` (see `crate::supervisor` for what waits on it).
//!
//! The child is a plain fork of the single-threaded PID 1 (no exec): it unblocks every signal and resets their
//! dispositions (so the kill-all at shutdown ends it like any process), replaces PID 1's panic hook (which would
//! loop forever) with an `_exit`, and ends with `_exit` (never returns into PID 1's code).

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use crate::supervisor::Level;
use crate::sys::{self, Io};

/// The child's nice value.
const COLDPLUG_NICE: i32 = 10;

/// Longest line kept from the child (longer ones are cut).
const MAX_LINE: usize = 1024;

/// The running coldplug child, as PID 1 sees it.
#[derive(Debug)]
pub struct Coldplug {
    pub pid: i32,
    /// Read end of the child's line pipe (non-blocking); None after EOF.
    pub rd: Option<OwnedFd>,
    buf: Vec<u8>,
}

/// Is there anything to coldplug (a modules directory for the running kernel)?
pub fn wanted() -> bool {
    keel_rc::modules::modules_dir().is_dir()
}

/// Fork the coldplug child. Err: why not (pipe or fork failed, with the errno); the caller then runs coldplug
/// in-line.
pub fn start() -> Result<Coldplug, crate::Error> {
    let (rd, wr) = sys::pipe().map_err(|e| crate::Error::sys("coldplug: pipe", "", e))?;
    // SAFETY: PID 1 is single-threaded, so the child gets a consistent copy of the whole process (allocator
    // included) and may run ordinary Rust code; it never returns from child_main.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(crate::Error::last("coldplug: fork", ""));
    }
    if pid == 0 {
        drop(rd);
        child_main(wr);
    }
    drop(wr);
    Ok(Coldplug { pid, rd: Some(rd), buf: Vec::new() })
}

/// The child: reset signals, run coldplug, write its lines and a summary, `_exit`.
fn child_main(wr: OwnedFd) -> ! {
    // A panic must not reach PID 1's hook (it would keep this copy alive as a second "PID 1" loop).
    std::panic::set_hook(Box::new(|_| {
        // SAFETY: _exit has no preconditions; it ends this child only.
        unsafe { libc::_exit(70) }
    }));
    // SAFETY: sigset_t is plain data; sigprocmask/signal only change this process's signal state.
    unsafe {
        for sig in 1..libc::SIGRTMIN() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_NAME, c"keel-coldplug".as_ptr() as libc::c_ulong, 0, 0, 0);
        // Yield the CPU to PID 1's spawns (one vCPU under TCG by default): coldplug gets what they leave, and
        // all of it while onboot waits for it, since PID 1 is then idle.
        libc::setpriority(libc::PRIO_PROCESS, 0, COLDPLUG_NICE);
    }
    let fd = wr.as_raw_fd();
    let t0 = Instant::now();
    let n = keel_rc::modules::coldplug(&mut |l, m| send(fd, l, m));
    let ms = t0.elapsed().as_millis();
    let s = if n == 1 { "" } else { "s" };
    send(fd, keel_rc::Level::Info, &format!("coldplug: {n} module{s} in {ms} ms"));
    // SAFETY: _exit ends this child without running PID 1's destructors or atexit handlers.
    unsafe { libc::_exit(0) }
}

/// One `L message\n` line to the (blocking) pipe; a failed write is dropped (PID 1 is gone or not reading).
fn send(fd: i32, level: keel_rc::Level, msg: &str) {
    let tag = match level {
        keel_rc::Level::Info => 'I',
        keel_rc::Level::Warn => 'W',
        keel_rc::Level::Error => 'E',
    };
    let line = format!("{tag} {}\n", msg.replace('\n', " "));
    let mut b = line.as_bytes();
    while !b.is_empty() {
        match sys::write(fd, b) {
            Io::Done(n) if n > 0 => b = b.get(n..).unwrap_or_default(),
            _ => return,
        }
    }
}

impl Coldplug {
    /// Read what the child wrote so far: complete lines, as (level, message). At EOF (`closed` true) the read
    /// end is dropped and a last partial line is returned too; the caller removes the fd from epoll first.
    pub fn read_lines(&mut self) -> (Vec<(Level, String)>, bool) {
        let mut out = Vec::new();
        let Some(fd) = self.rd.as_ref().map(|f| f.as_raw_fd()) else { return (out, false) };
        let mut chunk = [0u8; 4096];
        let mut closed = false;
        loop {
            match sys::read(fd, &mut chunk) {
                Io::Done(n) => {
                    self.buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    self.take_lines(&mut out);
                    if self.buf.len() > MAX_LINE {
                        let line = std::mem::take(&mut self.buf);
                        out.push(parse(line.get(..MAX_LINE).unwrap_or_default()));
                    }
                }
                Io::WouldBlock => break,
                Io::Closed | Io::Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            if !self.buf.is_empty() {
                let line = std::mem::take(&mut self.buf);
                out.push(parse(&line));
            }
            self.rd = None;
        }
        (out, closed)
    }

    fn take_lines(&mut self, out: &mut Vec<(Level, String)>) {
        while let Some(i) = self.buf.iter().position(|&c| c == b'\n') {
            let rest = self.buf.split_off(i + 1);
            let line = std::mem::replace(&mut self.buf, rest);
            out.push(parse(line.get(..i).unwrap_or_default()));
        }
    }
}

/// `W coldplug: module x for pci:...: ...` -> (Warn, "coldplug: module x ..."); no tag: Info.
fn parse(line: &[u8]) -> (Level, String) {
    let s = String::from_utf8_lossy(line);
    let (level, msg) = match s.split_at_checked(2) {
        Some(("I ", m)) => (Level::Info, m),
        Some(("W ", m)) => (Level::Warn, m),
        Some(("E ", m)) => (Level::Error, m),
        _ => (Level::Info, s.as_ref()),
    };
    (level, msg.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_from_the_child() {
        assert_eq!(parse(b"I coldplug: 9 modules in 380 ms"), (Level::Info, "coldplug: 9 modules in 380 ms".into()));
        assert_eq!(parse(b"W coldplug: module x: y"), (Level::Warn, "coldplug: module x: y".into()));
        assert_eq!(parse(b"E bad"), (Level::Error, "bad".into()));
        assert_eq!(parse(b"odd"), (Level::Info, "odd".into()));
    }

    /// A real pipe: split writes, a partial last line at EOF.
    #[test]
    fn pipe_reading() -> Result<(), Box<dyn std::error::Error>> {
        let (rd, wr) = sys::pipe()?;
        let mut c = Coldplug { pid: 0, rd: Some(rd), buf: Vec::new() };
        send(wr.as_raw_fd(), keel_rc::Level::Warn, "coldplug: module a: failed");
        let _ = sys::write(wr.as_raw_fd(), b"I coldplug: 2 mod");
        let (l, closed) = c.read_lines();
        assert_eq!(l, vec![(Level::Warn, "coldplug: module a: failed".to_string())]);
        assert!(!closed);
        let _ = sys::write(wr.as_raw_fd(), b"ules in 5 ms");
        drop(wr);
        let (l, closed) = c.read_lines();
        assert_eq!(l, vec![(Level::Info, "coldplug: 2 modules in 5 ms".to_string())]);
        assert!(closed && c.rd.is_none());
        Ok(())
    }
}
