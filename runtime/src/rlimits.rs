//! rlimit names (RLIMIT_*) -> resource numbers, and setting them in the child.

/// Resource number of an "RLIMIT_*" name.
pub fn resource(name: &str) -> Option<libc::c_int> {
    Some(match name {
        "RLIMIT_CPU" => 0,
        "RLIMIT_FSIZE" => 1,
        "RLIMIT_DATA" => 2,
        "RLIMIT_STACK" => 3,
        "RLIMIT_CORE" => 4,
        "RLIMIT_RSS" => 5,
        "RLIMIT_NPROC" => 6,
        "RLIMIT_NOFILE" => 7,
        "RLIMIT_MEMLOCK" => 8,
        "RLIMIT_AS" => 9,
        "RLIMIT_LOCKS" => 10,
        "RLIMIT_SIGPENDING" => 11,
        "RLIMIT_MSGQUEUE" => 12,
        "RLIMIT_NICE" => 13,
        "RLIMIT_RTPRIO" => 14,
        "RLIMIT_RTTIME" => 15,
        _ => return None,
    })
}

/// setrlimit for one resource; returns the errno on failure.
pub fn set(res: libc::c_int, soft: u64, hard: u64) -> Result<(), i32> {
    let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: lim is a valid rlimit; prlimit(0, ...) applies to this process only.
    // The resource argument is __rlimit_resource_t (u32) on glibc, c_int on musl: `as _` fits both.
    if unsafe { libc::prlimit(0, res as _, &lim, std::ptr::null_mut()) } != 0 {
        return Err(crate::sys::errno());
    }
    Ok(())
}
