//! The console: keel's main user interface. A non-blocking writer to /dev/console and to every other `console=`
//! device of the kernel command line (the last `console=` *is* /dev/console, so it is not opened twice).
//!
//! Writes to a console can block (flow control, slow serial: systemd #29095), so every device is opened
//! O_WRONLY|O_NONBLOCK|O_NOCTTY and has a bounded queue; a line that does not fit is dropped and counted, and once
//! there is room again the device gets "keel: N console lines dropped".
//!
//! Line formats: keel's own `[   1.234] keel: starting web (pid 42)`, errors `[   1.234] keel: ERROR bundle web: ...`,
//! container lines `[   1.240] web   | hello` with the name padded to the longest unit name (at most 16).
//!
//! Control characters (C0 but tab, DEL, C1) never reach a console raw: a container printing `ESC [2J` or a bundle
//! directory named with an OSC title sequence must not clear or retitle the operator's terminal, move the cursor
//! over earlier lines, or forge a keel line with `\r`. They are shown as `\x1b`, `\x0d` ... ([`visible`]).

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::supervisor::Level;
use crate::sys::{self, Io};
use crate::time;

/// Bytes queued per device before lines are dropped.
pub const QUEUE_CAP: usize = 64 * 1024;
/// Widest name column for container lines.
pub const NAME_COL_MAX: usize = 16;

/// `s` with every control character but tab written as a visible `\xNN` escape (C1 controls included: U+009B is
/// CSI on many terminals). Borrowed when there is nothing to escape (the usual case).
pub fn visible(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(s);
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c.is_control() && c != '\t' {
            // Controls are U+0000..=U+009F: two hex digits.
            let b = u32::from(c) as usize & 0xff;
            out.push_str("\\x");
            out.push(char::from(HEX[b >> 4])); // ok: b >> 4 < 16
            out.push(char::from(HEX[b & 15])); // ok: b & 15 < 16
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The severity tag of keel's lines: "", "WARN ", "ERROR ".
pub fn level_tag(level: Level) -> &'static str {
    match level {
        Level::Info => "",
        Level::Warn => "WARN ",
        Level::Error => "ERROR ",
    }
}

/// keel's own line.
pub fn format_keel(ms: u64, level: Level, msg: &str) -> String {
    format!("{} keel: {}{}\n", time::stamp(ms), level_tag(level), visible(msg))
}

/// A container's line, name padded to `width`.
pub fn format_unit(ms: u64, name: &str, width: usize, line: &str) -> String {
    let (name, line) = (visible(name), visible(line));
    format!("{} {name:<width$} | {line}\n", time::stamp(ms))
}

/// The name column width for these unit names.
pub fn name_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(|n| n.chars().count()).max().unwrap_or(0).min(NAME_COL_MAX)
}

struct Device {
    fd: OwnedFd,
    path: String,
    queue: VecDeque<u8>,
    cap: usize,
    /// Lines dropped since the last "dropped" note.
    dropped: u64,
    /// A write failed hard (EIO on a hung-up tty...): we stop writing to it.
    dead: bool,
}

impl Device {
    /// Queue a line if it fits under `limit` bytes (container lines leave the last quarter of the queue to keel's
    /// own lines, so an error or a shutdown line is shown even while services flood the console).
    fn push(&mut self, line: &str, limit: usize) {
        if self.dead {
            return;
        }
        if self.dropped > 0 {
            let note = format_keel(time::boot_ms(), Level::Warn, &format!("{} console lines dropped", self.dropped));
            if self.queue.len() + note.len() + line.len() > limit.min(self.cap) {
                self.dropped += 1;
                return;
            }
            self.queue.extend(note.as_bytes());
            self.dropped = 0;
        }
        if self.queue.len() + line.len() > limit.min(self.cap) {
            self.dropped += 1;
            return;
        }
        self.queue.extend(line.as_bytes());
    }

    fn flush(&mut self) {
        while !self.queue.is_empty() && !self.dead {
            let (a, _) = self.queue.as_slices();
            match sys::write(self.fd.as_raw_fd(), a) {
                Io::Done(n) => {
                    self.queue.drain(..n);
                }
                Io::WouldBlock => return,
                Io::Closed | Io::Err(_) => {
                    self.dead = true;
                    self.queue.clear();
                }
            }
        }
    }
}

/// Every console device.
pub struct Console {
    devs: Vec<Device>,
    /// Name column width for container lines.
    pub name_width: usize,
}

impl Console {
    /// No devices yet.
    pub fn empty() -> Console {
        Console { devs: Vec::new(), name_width: 8 }
    }

    /// /dev/console (or, if it cannot be opened, a non-blocking copy of our stdout).
    pub fn open_primary() -> Console {
        let mut c = Console::empty();
        if !c.add_path("/dev/console") {
            c.add_stdout();
        }
        c
    }

    /// Sandbox mode: the console is our stdout.
    pub fn stdout() -> Console {
        let mut c = Console::empty();
        c.add_stdout();
        c
    }

    /// The raw fd of the first device (for the panic hook).
    pub fn primary_fd(&self) -> Option<RawFd> {
        self.devs.first().map(|d| d.fd.as_raw_fd())
    }

    /// Add a device by path; false if it cannot be opened.
    pub fn add_path(&mut self, path: &str) -> bool {
        match sys::open(path, libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOCTTY) {
            Ok(fd) => self.add_fd(fd, path, QUEUE_CAP),
            Err(_) => false,
        }
    }

    /// Our stdout, re-opened through /proc/self/fd/1 so O_NONBLOCK does not leak to whoever shares the original
    /// open file; falls back to a dup.
    pub fn add_stdout(&mut self) {
        if self.add_path("/proc/self/fd/1") {
            return;
        }
        // SAFETY: dup returns a new fd or -1.
        let fd = unsafe { libc::dup(1) };
        if fd >= 0 {
            // SAFETY: fd was just returned by dup and is owned by nobody else.
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            self.add_fd(fd, "stdout", QUEUE_CAP);
        }
    }

    /// Add an already-open fd (made non-blocking) with a queue of `cap` bytes. An fd that cannot be made
    /// non-blocking is not used (a blocking console write could stall PID 1): false.
    pub fn add_fd(&mut self, fd: OwnedFd, path: &str, cap: usize) -> bool {
        if sys::set_nonblock(fd.as_raw_fd(), true).is_err() {
            return false;
        }
        // Allocated up front: a console flood needs no new memory.
        let queue = VecDeque::with_capacity(cap);
        self.devs.push(Device { fd, path: path.to_string(), queue, cap, dropped: 0, dead: false });
        true
    }

    /// Every `console=` device but the last (the last is /dev/console itself), opened as /dev/NAME.
    pub fn add_cmdline_consoles(&mut self, consoles: &[String]) -> Vec<String> {
        let mut failed = Vec::new();
        let n = consoles.len();
        for c in consoles.iter().take(n.saturating_sub(1)) {
            let path = if c.starts_with('/') { c.clone() } else { format!("/dev/{c}") };
            if self.devs.iter().any(|d| d.path == path) {
                continue;
            }
            if !self.add_path(&path) {
                failed.push(path);
            }
        }
        failed
    }

    /// Queue an already formatted line (ending in '\n') on every device and try to write it.
    pub fn raw(&mut self, line: &str) {
        for d in &mut self.devs {
            d.push(line, usize::MAX);
            d.flush();
        }
    }

    /// Like [`Console::raw`] for a container's line: it may fill at most 3/4 of a device's queue, and it is
    /// written by the next [`Console::flush`] (the loop's, once per wake-up: many lines, one write).
    fn raw_unit(&mut self, line: &str) {
        for d in &mut self.devs {
            let limit = d.cap / 4 * 3;
            d.push(line, limit);
        }
    }

    /// keel's own line.
    pub fn keel(&mut self, level: Level, msg: &str) {
        let line = format_keel(time::boot_ms(), level, msg);
        self.raw(&line);
    }

    /// A container's line.
    pub fn unit(&mut self, ms: u64, name: &str, line: &str) {
        let l = format_unit(ms, name, self.name_width, line);
        self.raw_unit(&l);
    }

    /// Write what can be written now. True if something is still queued.
    pub fn flush(&mut self) -> bool {
        let mut pending = false;
        for d in &mut self.devs {
            d.flush();
            pending |= !d.queue.is_empty() && !d.dead;
        }
        pending
    }

    /// Before power-off: keep flushing for at most `max`.
    pub fn flush_wait(&mut self, max: Duration) {
        let end = Instant::now() + max;
        while self.flush() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Lines dropped and not yet reported, summed over devices.
    pub fn dropped(&self) -> u64 {
        self.devs.iter().map(|d| d.dropped).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn control_characters_are_made_visible() {
        assert!(matches!(visible("plain\ttext é"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(visible("a\x1b[2Jb\rc\u{9b}d\x07\x00\x7f"), "a\\x1b[2Jb\\x0dc\\x9bd\\x07\\x00\\x7f");
        let l = format_unit(0, "ev\x1b]0;t\x07il", 4, "red\x1b[31m");
        assert!(l.contains("ev\\x1b]0;t\\x07il | red\\x1b[31m\n"), "{l:?}");
        let k = format_keel(0, Level::Error, "bad\rkeel: forged");
        assert!(k.ends_with("keel: ERROR bad\\x0dkeel: forged\n"), "{k:?}");
    }

    #[test]
    fn formats() {
        assert_eq!(format_keel(1234, Level::Info, "starting web (pid 42)"), "[   1.234] keel: starting web (pid 42)\n");
        assert_eq!(format_keel(1234, Level::Error, "bundle web: x"), "[   1.234] keel: ERROR bundle web: x\n");
        assert_eq!(format_unit(1240, "web", 5, "hello"), "[   1.240] web   | hello\n");
        assert_eq!(name_width(["a", "dhcpcd", "a-very-long-service-name"].into_iter()), 16);
        assert_eq!(name_width(["a", "dhcpcd"].into_iter()), 6);
    }

    fn read_all(fd: RawFd) -> String {
        let mut out = Vec::new();
        let mut b = [0u8; 4096];
        while let Io::Done(n) = sys::read(fd, &mut b) {
            out.extend_from_slice(&b[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn drops_and_reports_when_the_device_is_stuck() -> Result<(), Box<dyn std::error::Error>> {
        let (r, w) = sys::pipe()?;
        // Fill the pipe so writes would block.
        sys::set_nonblock(w.as_raw_fd(), true)?;
        let filler = vec![b'x'; 4096];
        while let Io::Done(_) = sys::write(w.as_raw_fd(), &filler) {}
        let mut c = Console::empty();
        c.add_fd(w, "test", 100);
        for i in 0..10 {
            c.raw(&format!("line {i:02} ..........\n")); // 20 bytes each: 5 fit
        }
        assert_eq!(c.dropped(), 5);
        assert!(c.flush());
        // Drain the pipe; now the queue flushes and the next line brings the note.
        let mut b = [0u8; 65536];
        while let Io::Done(_) = sys::read(r.as_raw_fd(), &mut b) {}
        assert!(!c.flush());
        let got = read_all(r.as_raw_fd());
        assert!(got.starts_with("line 00"));
        assert!(got.contains("line 04"));
        assert!(!got.contains("line 05"));
        c.raw("after\n");
        let got = read_all(r.as_raw_fd());
        assert!(got.contains("keel: WARN 5 console lines dropped\n"), "{got}");
        assert!(got.ends_with("after\n"));
        assert_eq!(c.dropped(), 0);
        Ok(())
    }

    #[test]
    fn keel_lines_keep_room_while_containers_flood() -> Result<(), Box<dyn std::error::Error>> {
        let (r, w) = sys::pipe()?;
        sys::set_nonblock(w.as_raw_fd(), true)?;
        let filler = vec![b'x'; 4096];
        while let Io::Done(_) = sys::write(w.as_raw_fd(), &filler) {}
        let mut c = Console::empty();
        c.add_fd(w, "test", 4000);
        for i in 0..200 {
            c.unit(0, "flood", &format!("line {i}"));
        }
        let dropped = c.dropped();
        assert!(dropped > 0);
        c.keel(Level::Error, "still shown");
        assert_eq!(c.dropped(), 0, "keel's own line (and the note on the {dropped} dropped) did not fit");
        let mut b = [0u8; 65536];
        while let Io::Done(_) = sys::read(r.as_raw_fd(), &mut b) {}
        c.flush();
        let got = read_all(r.as_raw_fd());
        assert!(got.contains(&format!("keel: WARN {dropped} console lines dropped\n")), "{got}");
        assert!(got.contains("keel: ERROR still shown"), "{got}");
        Ok(())
    }

    #[test]
    fn last_cmdline_console_is_not_opened_twice() {
        let mut c = Console::empty();
        let failed = c.add_cmdline_consoles(&["/nonexistent/ttyX".into(), "ttyS0".into()]);
        assert_eq!(failed, vec!["/nonexistent/ttyX".to_string()]);
    }
}
