//! PID 1's own code pages. The binary is one multi-call file (PID 1, keelctl, modprobe, keel-runc): most of its
//! text is code PID 1 runs once at boot (rc, the first spawns) or never (the CLIs). Two pieces of advice keep PID 1's
//! RSS to the code it keeps running:
//! - [`lean`] at start: MADV_RANDOM, no read-ahead of the text (kernels that honour it for fault-around map only
//!   the pages executed);
//! - [`shed`] once boot is complete: MADV_DONTNEED drops the mappings of every text page. The text is a private,
//!   read-only file mapping, so nothing is lost: a page PID 1 runs again is mapped again from the page cache (the
//!   initramfs file stays in memory either way; only what PID 1 maps counts in its RSS).

extern "C" {
    /// Start of the executable's mappings and end of its text (GNU ld / lld symbols).
    static __executable_start: u8;
    static etext: u8;
}

/// The page-aligned text range [start, end), or None if the linker symbols make no sense.
fn range() -> Option<(usize, usize)> {
    // Only the addresses of the linker-provided symbols are taken; they are never read.
    let (start, end) = (&raw const __executable_start as usize, &raw const etext as usize);
    let lo = start & !4095;
    (end > lo).then_some((lo, end))
}

/// MADV_RANDOM over the text. Best effort: advice changes no behaviour. Returns whether the kernel took it.
pub fn lean() -> bool {
    let Some((lo, end)) = range() else { return false };
    // SAFETY: advice over our own mapped text; MADV_RANDOM does not change memory contents.
    unsafe { libc::madvise(lo as *mut libc::c_void, end - lo, libc::MADV_RANDOM) == 0 }
}

/// MADV_DONTNEED over the text: unmap every code page; the ones still in use fault back in. PID 1's memory is
/// locked as it is touched (mlockall with MCL_ONFAULT, see pid1.rs), and the kernel refuses to drop locked pages: the
/// text is unlocked, dropped, then locked again on fault (mlock2 MLOCK_ONFAULT), so what faults back in stays
/// locked. Best effort. Returns whether the pages were dropped.
pub fn shed() -> bool {
    const MLOCK_ONFAULT: libc::c_uint = 1;
    let Some((lo, end)) = range() else { return false };
    let (addr, len) = (lo as *mut libc::c_void, end - lo);
    // SAFETY: munlock of our own text mapping changes no memory contents.
    let unlocked = unsafe { libc::munlock(addr, len) } == 0;
    // SAFETY: the range is this binary's text: a private, read-only file mapping with no private (written) pages,
    // so dropping its pages loses nothing; they are read again from the file when executed.
    let dropped = unsafe { libc::madvise(addr, len, libc::MADV_DONTNEED) } == 0;
    if unlocked {
        // SAFETY: mlock2 over our own text mapping; MLOCK_ONFAULT populates nothing.
        unsafe { libc::syscall(libc::SYS_mlock2, addr, len, MLOCK_ONFAULT) };
    }
    dropped
}
