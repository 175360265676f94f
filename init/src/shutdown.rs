//! The end: `Action::Power`. Print what we do and flush the console (bounded), sync in a child with a 10 s
//! timeout (sync can hang on broken storage: systemd and Talos do the same), unmount everything
//! (keel_rc::shutdown::unmount_all, bounded), then reboot(2). In sandbox mode "power off" is exit(0) (for every
//! action: poweroff, reboot and halt all exit 0 after printing which it was). Never returns.

use std::time::{Duration, Instant};

use crate::console::Console;
use crate::supervisor::{Level, PowerAction};

/// How long sync may take.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long unmounting may take.
pub const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn what(p: PowerAction) -> &'static str {
    match p {
        PowerAction::PowerOff => "power off",
        PowerAction::Reboot => "reboot",
        PowerAction::Halt => "halt",
    }
}

/// Finish: never returns.
pub fn power(p: PowerAction, sandbox: bool, console: &mut Console) -> ! {
    console.keel(Level::Info, what(p));
    console.flush_wait(Duration::from_millis(500));
    if sandbox {
        std::process::exit(0);
    }
    if !sync_bounded(SYNC_TIMEOUT) {
        console.keel(Level::Warn, &format!("sync did not finish within {} s", SYNC_TIMEOUT.as_secs()));
    }
    let left = keel_rc::shutdown::unmount_all(Instant::now() + UNMOUNT_TIMEOUT);
    if !left.is_empty() {
        console.keel(Level::Warn, &format!("still mounted: {}", left.join(" ")));
    }
    // Data written after the unmount attempt (e.g. to a still-mounted fs) is synced by the kernel's reboot path
    // only for the emergency remount; do one more bounded sync.
    sync_bounded(Duration::from_secs(2));
    console.flush_wait(Duration::from_millis(300));
    let cmd = match p {
        PowerAction::PowerOff => libc::LINUX_REBOOT_CMD_POWER_OFF,
        PowerAction::Reboot => libc::LINUX_REBOOT_CMD_RESTART,
        PowerAction::Halt => libc::LINUX_REBOOT_CMD_HALT,
    };
    // SAFETY: reboot(2) has no memory effects; on success it does not return.
    let rc = unsafe { libc::reboot(cmd) };
    let err = if rc != 0 { std::io::Error::last_os_error().to_string() } else { "returned".into() };
    console.keel(Level::Error, &format!("reboot(2) for {}: {err}", what(p)));
    loop {
        // Never return from PID 1: keep reaping.
        while crate::sys::reap_one().is_some() {}
        console.flush();
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// sync() in a forked child, waited at most `timeout`. True if it finished. Reaps anything else meanwhile (we
/// are the only reaper and the loop has stopped).
pub fn sync_bounded(timeout: Duration) -> bool {
    // SAFETY: PID 1 is single-threaded; the child only calls sync and _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child: async-signal-safe calls only.
        unsafe {
            libc::sync();
            libc::_exit(0);
        }
    }
    if pid < 0 {
        // No child: sync here (may hang, but there is nothing better).
        // SAFETY: sync has no memory effects.
        unsafe { libc::sync() };
        return true;
    }
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        while let Some((p, _)) = crate::sys::reap_one() {
            if p == pid {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
