//! Resource limits PID 1 passes to everything it starts: RLIMIT_NOFILE soft raised to its hard limit.

use crate::error::Error;

/// Raise RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> Result<u64, Error> {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: l is a valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return Err(Error::last("getrlimit", "RLIMIT_NOFILE"));
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
