//! Time for console stamps: milliseconds since boot from CLOCK_BOOTTIME (what the kernel's own log uses, so
//! keel's lines line up with the kernel's), and the `[   1.234]` stamp format.

/// Milliseconds since boot (CLOCK_BOOTTIME; counts suspend, like the kernel log). 0 if the clock fails.
pub fn boot_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_BOOTTIME exists since Linux 2.6.39.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return 0;
    }
    // CLOCK_BOOTTIME is never negative; 0 if it were.
    u64::try_from(ts.tv_sec).unwrap_or(0).saturating_mul(1000) + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000
}

/// `[   1.234]`: seconds right-aligned in 4 columns (wider when needed), then milliseconds.
pub fn stamp(ms: u64) -> String {
    format!("[{:>4}.{:03}]", ms / 1000, ms % 1000)
}

/// A short human duration: `850ms`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub fn human(ms: u64) -> String {
    let s = ms / 1000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{}.{}s", s, (ms % 1000) / 100)
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86400, (s % 86400) / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_right_aligned() {
        assert_eq!(stamp(1234), "[   1.234]");
        assert_eq!(stamp(5), "[   0.005]");
        assert_eq!(stamp(12_345_678), "[12345.678]");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(850), "850ms");
        assert_eq!(human(12_345), "12.3s");
        assert_eq!(human(245_000), "4m05s");
        assert_eq!(human(7_380_000), "2h03m");
        assert_eq!(human(273_600_000), "3d04h");
    }

    #[test]
    fn boot_clock_moves() {
        let a = boot_ms();
        assert!(a > 0);
        assert!(boot_ms() >= a);
    }
}
