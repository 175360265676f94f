//! Resource limits PID 1 passes to everything it starts: RLIMIT_NOFILE raised (the kernel gives init 1024/4096,
//! too few for servers; Docker and containerd give containers 1048576).

use crate::error::Error;

/// The ceiling for RLIMIT_NOFILE: Docker's default, bounded by /proc/sys/fs/nr_open.
pub const NOFILE_TARGET: u64 = 1 << 20;

/// Raise RLIMIT_NOFILE: both limits to min([`NOFILE_TARGET`], fs.nr_open) when we may raise the hard limit
/// (root), else the soft limit to the hard one. Never lowers anything. Returns the new soft limit.
pub fn raise_nofile() -> Result<u64, Error> {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: l is a valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return Err(Error::last("getrlimit", "RLIMIT_NOFILE"));
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(NOFILE_TARGET);
    let want = NOFILE_TARGET.min(nr_open).max(l.rlim_max);
    let raised = libc::rlimit { rlim_cur: want, rlim_max: want };
    // SAFETY: raised is a valid rlimit.
    if want > l.rlim_max && unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return Ok(want);
    }
    if l.rlim_cur >= l.rlim_max {
        return Ok(l.rlim_cur);
    }
    l.rlim_cur = l.rlim_max;
    // SAFETY: l is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) } != 0 {
        return Err(Error::last("setrlimit", "RLIMIT_NOFILE"));
    }
    Ok(l.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_lowers() {
        let mut before = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: valid out pointer.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut before) };
        let soft = raise_nofile().unwrap_or(0);
        assert!(soft >= before.rlim_cur && soft >= before.rlim_max.min(NOFILE_TARGET), "{soft}");
    }
}
