//! The container process's identity, child side: supplementary groups, gid, uid (keeping capabilities across the
//! uid change with PR_SET_KEEPCAPS so capset can then set exactly the configured sets).

use crate::sys;

/// setgroups (when `groups` is Some), setresgid, setresuid with PR_SET_KEEPCAPS around the change.
/// Returns (what, errno).
pub fn set(uid: u32, gid: u32, groups: Option<&[libc::gid_t]>) -> Result<(), (&'static str, i32)> {
    // SAFETY: plain syscalls with valid pointers/lengths; they affect this process's credentials only.
    unsafe {
        if let Some(g) = groups {
            // An empty list may be refused in a user namespace whose setgroups is "deny": nothing to drop then.
            // Raw syscall: glibc's setgroups broadcasts to the threads it believes exist (setxid), which hangs in a
            // child cloned from a multi-threaded process.
            if libc::syscall(libc::SYS_setgroups, g.len(), g.as_ptr()) != 0
                && !(g.is_empty() && sys::errno() == libc::EPERM)
            {
                return Err(("setgroups", sys::errno()));
            }
        }
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(("prctl(PR_SET_KEEPCAPS)", sys::errno()));
        }
        // Raw syscalls for the same reason.
        if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
            return Err(("setresgid", sys::errno()));
        }
        if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
            return Err(("setresuid", sys::errno()));
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    Ok(())
}
