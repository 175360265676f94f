//! Container output: per unit, a pipe PID 1 holds for the unit's whole life (the write end is the container's
//! stdout+stderr and survives restarts), split into lines (at most [`LINE_MAX`] bytes; longer ones are cut into
//! pieces, nothing is lost), kept in a bounded ring for `keelctl logs`, appended to /var/log/NAME.log (size cap,
//! one rotation to NAME.log.1), and sent to the console through a per-unit rate limit (burst, then a steady rate;
//! suppressed lines are counted and reported).

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::sys::{self, Io};

/// Longest line kept as one; longer output is cut into pieces of this size.
pub const LINE_MAX: usize = 2048;
/// Ring bounds per unit.
pub const RING_BYTES: usize = 64 * 1024;
pub const RING_LINES: usize = 500;
/// Log file size cap before rotation.
pub const FILE_CAP: u64 = 1024 * 1024;
/// Console rate limit per unit: a burst, then lines per second.
pub const RATE_BURST: u64 = 200;
pub const RATE_PER_SEC: u64 = 50;

/// Splits a byte stream into lines; keeps at most LINE_MAX bytes of an unfinished line.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Feed bytes; `out` gets every complete line (without '\n' and a trailing '\r').
    pub fn feed(&mut self, mut data: &[u8], out: &mut dyn FnMut(&str)) {
        while !data.is_empty() {
            let room = LINE_MAX - self.buf.len();
            let nl = data.iter().take(room).position(|&b| b == b'\n');
            match nl {
                Some(i) => {
                    // ok: i < data.len() (a position found in data)
                    self.buf.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    self.emit(out);
                }
                None => {
                    let take = room.min(data.len()); // ok: take <= data.len()
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.buf.len() >= LINE_MAX {
                        self.emit(out);
                    }
                }
            }
        }
    }

    /// Emit an unfinished line (when the writer is gone).
    pub fn finish(&mut self, out: &mut dyn FnMut(&str)) {
        if !self.buf.is_empty() {
            self.emit(out);
        }
    }

    fn emit(&mut self, out: &mut dyn FnMut(&str)) {
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        // Control characters made visible once here, for the console, the ring (keelctl logs) and the log file.
        out(&crate::console::visible(&String::from_utf8_lossy(&self.buf)));
        self.buf.clear();
    }
}

/// The last lines of a unit, bounded in lines and bytes.
#[derive(Debug)]
pub struct Ring {
    lines: VecDeque<(u64, String)>,
    bytes: usize,
    max_bytes: usize,
    max_lines: usize,
}

impl Default for Ring {
    fn default() -> Ring {
        Ring::new(RING_BYTES, RING_LINES)
    }
}

impl Ring {
    pub fn new(max_bytes: usize, max_lines: usize) -> Ring {
        Ring { lines: VecDeque::new(), bytes: 0, max_bytes, max_lines }
    }

    /// Add a line stamped `ms` (boot ms), dropping the oldest to stay in bounds.
    pub fn push(&mut self, ms: u64, line: &str) {
        let line = if line.len() > self.max_bytes { &line[..floor_char(line, self.max_bytes)] } else { line };
        self.push_owned(ms, line.to_string());
    }

    /// [`Ring::push`] without copying the line.
    pub fn push_owned(&mut self, ms: u64, mut line: String) {
        if line.len() > self.max_bytes {
            line.truncate(floor_char(&line, self.max_bytes));
        }
        self.bytes += line.len();
        self.lines.push_back((ms, line));
        while self.lines.len() > self.max_lines || self.bytes > self.max_bytes {
            match self.lines.pop_front() {
                Some((_, l)) => self.bytes -= l.len(),
                None => break,
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &(u64, String)> {
        self.lines.iter()
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Token bucket, in thousandths of a line.
#[derive(Debug)]
pub struct RateLimit {
    burst: u64,
    per_sec: u64,
    tokens: u64,
    last_ms: u64,
    /// Lines held back since the last report.
    pub suppressed: u64,
    /// When the last "N lines not shown" was handed out: at most one per [`REPORT_EVERY_MS`], so a unit flooding
    /// without pause costs the console its steady rate of lines, not twice that (one note per line let through).
    last_report_ms: Option<u64>,
}

/// Least time between two "N lines not shown" notes of one unit.
pub const REPORT_EVERY_MS: u64 = 1000;

impl RateLimit {
    pub fn new(burst: u64, per_sec: u64) -> RateLimit {
        RateLimit { burst, per_sec, tokens: burst * 1000, last_ms: 0, suppressed: 0, last_report_ms: None }
    }

    /// Lines were suppressed and the bucket has room again: take the count to report it (costs one token).
    pub fn take_report(&mut self, now_ms: u64) -> Option<u64> {
        if self.suppressed == 0 {
            return None;
        }
        let dt = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + dt * self.per_sec).min(self.burst * 1000);
        if self.tokens >= 1000 && self.report_due(now_ms) {
            self.tokens -= 1000;
            self.last_report_ms = Some(now_ms);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            None
        }
    }

    /// More than half of the burst is left: this unit is not flooding (as of its last line).
    pub fn quiet(&self) -> bool {
        self.tokens >= self.burst * 1000 / 2
    }

    fn report_due(&self, now_ms: u64) -> bool {
        self.last_report_ms.is_none_or(|t| now_ms.saturating_sub(t) >= REPORT_EVERY_MS)
    }

    /// May a line go to the console at `now_ms`? `Some(n)`: yes, and n lines were suppressed before it (report
    /// them first; n is 0 while a report was made less than [`REPORT_EVERY_MS`] ago: the count keeps growing in
    /// `suppressed` until then); `None`: no (counted).
    pub fn allow(&mut self, now_ms: u64) -> Option<u64> {
        let dt = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + dt * self.per_sec).min(self.burst * 1000);
        if self.tokens >= 1000 {
            self.tokens -= 1000;
            if self.suppressed > 0 && self.report_due(now_ms) {
                self.last_report_ms = Some(now_ms);
                return Some(std::mem::take(&mut self.suppressed));
            }
            Some(0)
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// /var/log/NAME.log with a size cap and one rotation.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    fd: Option<OwnedFd>,
    size: u64,
    cap: u64,
}

impl LogFile {
    /// Open (append) `dir/NAME.log`; None if it cannot be opened (e.g. no /var/log).
    pub fn open(dir: &Path, name: &str, cap: u64) -> Option<LogFile> {
        let path = dir.join(format!("{name}.log"));
        let fd = sys::open(path.to_str()?, libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_NONBLOCK).ok()?;
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Some(LogFile { path, fd: Some(fd), size, cap })
    }

    /// Append one line (a '\n' is added).
    pub fn write(&mut self, stamp: &str, line: &str) {
        self.write_text(&format!("{stamp} {line}\n"));
    }

    /// Append already formatted lines with one write(2) (rotating first if they would pass the cap).
    pub fn write_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.size + text.len() as u64 > self.cap {
            self.rotate();
        }
        if let Some(fd) = &self.fd {
            if let Io::Done(n) = sys::write(fd.as_raw_fd(), text.as_bytes()) {
                self.size += n as u64;
            }
        }
    }

    fn rotate(&mut self) {
        self.fd = None;
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        let _ = std::fs::rename(&self.path, &old);
        self.size = 0;
        self.fd = self.path.to_str().and_then(|p| {
            sys::open(p, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND | libc::O_NONBLOCK).ok()
        });
    }
}

/// Everything about one unit's output.
#[derive(Debug)]
pub struct UnitLog {
    /// Read end (non-blocking), watched by the event loop.
    pub rd: OwnedFd,
    /// Write end: the container's stdout and stderr, kept across restarts.
    pub wr: OwnedFd,
    pub split: LineSplitter,
    pub ring: Ring,
    pub file: Option<LogFile>,
    pub rate: RateLimit,
    /// Bytes this unit may send now (see `crate::event_loop::LOG_BYTES_PER_SEC`).
    pub bytes: ByteBucket,
    /// Times its pipe was paused (loud: batches, PID 1's output budget, or its own byte budget).
    pub throttled: u64,
    /// When its pipe was last read with data.
    pub last_read: Option<std::time::Instant>,
    /// Empty: the unit is loud (it sent more than `crate::event_loop::LOG_QUIET_PER_SEC` for a while).
    pub quiet: ByteBucket,
}

/// A token bucket of bytes, refilled per millisecond.
#[derive(Debug)]
pub struct ByteBucket {
    burst: u64,
    per_sec: u64,
    tokens: u64,
    last_ms: u64,
}

impl ByteBucket {
    pub fn new(burst: u64, per_sec: u64) -> ByteBucket {
        ByteBucket { burst, per_sec, tokens: burst, last_ms: 0 }
    }

    /// Bytes available at `now_ms` (refills first).
    pub fn tokens_now(&mut self, now_ms: u64) -> u64 {
        let dt = now_ms.saturating_sub(self.last_ms);
        if dt > 0 {
            self.tokens = self.tokens.saturating_add(dt.saturating_mul(self.per_sec) / 1000).min(self.burst);
            self.last_ms = now_ms;
        }
        self.tokens
    }

    /// Spend `n` bytes (never below zero).
    pub fn take(&mut self, n: u64) {
        self.tokens = self.tokens.saturating_sub(n);
    }
}

impl UnitLog {
    pub fn new(log_dir: Option<&Path>, name: &str) -> std::io::Result<UnitLog> {
        let (rd, wr) = sys::pipe()?;
        Ok(UnitLog {
            rd,
            wr,
            split: LineSplitter::default(),
            ring: Ring::default(),
            file: log_dir.and_then(|d| LogFile::open(d, name, FILE_CAP)),
            rate: RateLimit::new(RATE_BURST, RATE_PER_SEC),
            bytes: ByteBucket::new(crate::event_loop::LOG_BYTES_BURST, crate::event_loop::LOG_BYTES_PER_SEC),
            throttled: 0,
            last_read: None,
            quiet: ByteBucket::new(crate::event_loop::LOG_QUIET_BURST, crate::event_loop::LOG_QUIET_PER_SEC),
        })
    }

    /// Read what the pipe holds now (at most `budget` bytes, for fairness). Returns the complete lines and the
    /// bytes read.
    pub fn read_lines(&mut self, budget: usize) -> (Vec<String>, usize) {
        let mut lines = Vec::new();
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < budget {
            let want = (budget - total).min(buf.len());
            let Some(chunk) = buf.get_mut(..want) else { break };
            match sys::read(self.rd.as_raw_fd(), chunk) {
                Io::Done(n) => {
                    total += n;
                    self.split.feed(chunk.get(..n).unwrap_or(&[]), &mut |l| lines.push(l.to_string()));
                }
                _ => break,
            }
        }
        (lines, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut |l| out.push(l.to_string()));
        }
        out
    }

    #[test]
    fn splits_across_partial_reads() {
        assert_eq!(split_all(&[b"hel", b"lo\nwor", b"ld\r\n", b"\n", b"tail"]), vec!["hello", "world", ""]);
    }

    #[test]
    fn long_lines_are_cut_not_lost() {
        let long = vec![b'a'; LINE_MAX * 2 + 10];
        let mut data = long.clone();
        data.extend_from_slice(b"\nnext\n");
        let out = split_all(&[&data[..100], &data[100..]]);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].len(), LINE_MAX);
        assert_eq!(out[1].len(), LINE_MAX);
        assert_eq!(out[2].len(), 10);
        assert_eq!(out[3], "next");
        let mut s = LineSplitter::default();
        let mut fin = Vec::new();
        s.feed(b"partial", &mut |_| panic!("no line yet"));
        s.finish(&mut |l| fin.push(l.to_string()));
        assert_eq!(fin, vec!["partial"]);
    }

    #[test]
    fn ring_is_bounded_in_lines_and_bytes() -> Result<(), Box<dyn std::error::Error>> {
        let mut r = Ring::new(1000, 10);
        for i in 0..100 {
            r.push(i, &format!("line {i}"));
        }
        assert_eq!(r.len(), 10);
        assert_eq!(r.iter().next().ok_or("ring is empty")?.1, "line 90");
        let mut r = Ring::new(1000, 500);
        for i in 0..100 {
            r.push(i, &"x".repeat(99));
        }
        assert!(r.bytes() <= 1000);
        assert_eq!(r.len(), 10);
        r.push(0, &"é".repeat(2000));
        assert!(r.bytes() <= 1000);
        assert_eq!(r.len(), 1);
        Ok(())
    }

    #[test]
    fn a_steady_flood_gets_one_report_per_second() {
        let mut rl = RateLimit::new(200, 50);
        let (mut shown, mut reports) = (0, 0);
        // 10 s of 10 000 lines a second, fed every millisecond.
        for ms in 0..10_000u64 {
            for _ in 0..10 {
                if let Some(n) = rl.allow(ms) {
                    shown += 1;
                    reports += u64::from(n > 0);
                }
            }
        }
        assert!((650..=705).contains(&shown), "{shown}");
        assert!((9..=10).contains(&reports), "{reports}");
    }

    #[test]
    fn rate_limit_bursts_then_throttles_and_reports() {
        let mut rl = RateLimit::new(200, 50);
        let mut allowed = 0;
        for _ in 0..1000 {
            if rl.allow(1000).is_some() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 200);
        assert_eq!(rl.suppressed, 800);
        // 100 ms later: 5 more lines; the first one reports the 800.
        assert_eq!(rl.allow(1100), Some(800));
        for _ in 0..4 {
            assert_eq!(rl.allow(1100), Some(0));
        }
        assert_eq!(rl.allow(1100), None);
        // A long pause refills only up to the burst.
        assert_eq!(rl.take_report(1100), None);
        rl.allow(1100);
        assert_eq!(rl.suppressed, 2);
        assert_eq!(rl.take_report(1110), None); // 0.5 token
        assert_eq!(rl.take_report(1120), None); // a token, but the last report was 20 ms ago
        assert_eq!(rl.take_report(2100), Some(2));
        assert_eq!(rl.take_report(5000), None);
        let mut n = 0;
        while rl.allow(100_000).is_some() {
            n += 1;
        }
        assert_eq!(n, 200);
    }

    #[test]
    fn byte_bucket_refills_up_to_its_burst() {
        let mut b = ByteBucket::new(1000, 500);
        assert_eq!(b.tokens_now(0), 1000);
        b.take(1200);
        assert_eq!(b.tokens_now(0), 0);
        assert_eq!(b.tokens_now(100), 50);
        assert_eq!(b.tokens_now(10_000), 1000);
    }

    #[test]
    fn log_file_rotates_once() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("keel-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut f = LogFile::open(&dir, "web", 100).ok_or("LogFile::open failed")?;
        for i in 0..10 {
            f.write("[   0.000]", &format!("line number {i}"));
        }
        let cur = std::fs::read_to_string(dir.join("web.log"))?;
        let old = std::fs::read_to_string(dir.join("web.log.1"))?;
        assert!(cur.len() <= 100 && old.len() <= 100);
        assert!(cur.ends_with("line number 9\n"));
        assert!(!dir.join("web.log.1.1").exists());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
