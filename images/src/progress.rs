//! Pull progress on stderr: per blob, bytes of total. On a terminal one bar redrawn in place; otherwise plain lines
//! (start, every quarter, done), so CI logs stay readable.

use std::io::Write;
use std::time::{Duration, Instant};

/// Progress of one blob download.
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    tty: bool,
    quiet: bool,
    last_draw: Instant,
    last_quarter: u64,
}

fn stderr_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(2) == 1 }
}

fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

impl Progress {
    /// Start reporting `what` (e.g. `docker.io/x:1 layer sha256:0123456789ab`) of `total` bytes.
    pub fn start(what: String, total: u64, quiet: bool) -> Progress {
        let tty = stderr_is_tty();
        let p = Progress {
            label: what,
            total,
            done: 0,
            tty,
            quiet,
            last_draw: Instant::now() - Duration::from_secs(1),
            last_quarter: 0,
        };
        if !quiet && !tty {
            eprintln!("keel-image: pull {}: 0 of {} bytes", p.label, p.total);
        }
        p
    }

    /// `n` more bytes arrived.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        if self.quiet {
            return;
        }
        if self.tty {
            if self.last_draw.elapsed() >= Duration::from_millis(100) {
                self.draw();
            }
        } else if let Some(q) = (self.done * 4).checked_div(self.total) {
            if q > self.last_quarter && q < 4 {
                self.last_quarter = q;
                eprintln!("keel-image: pull {}: {} of {} bytes", self.label, self.done, self.total);
            }
        }
    }

    fn draw(&mut self) {
        self.last_draw = Instant::now();
        let width = 30u64;
        let filled = (self.done.min(self.total) * width).checked_div(self.total).unwrap_or(width);
        let bar: String = (0..width).map(|i| if i < filled { '#' } else { '.' }).collect();
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[K{} [{bar}] {} / {}", self.label, human(self.done), human(self.total));
        let _ = e.flush();
    }

    /// The blob is complete (`ok`) or failed.
    pub fn finish(mut self, ok: bool) {
        if self.quiet {
            return;
        }
        if self.tty {
            self.draw();
            eprintln!("{}", if ok { "" } else { " failed" });
        } else {
            eprintln!(
                "keel-image: pull {}: {} of {} bytes{}",
                self.label,
                self.done,
                self.total,
                if ok { ", done" } else { ", failed" }
            );
        }
    }
}
