//! The emergency shell: when a required onboot step fails, keel starts /bin/sh from the root filesystem on
//! /dev/console (its own session, the console as controlling tty) so an operator can look around; it is started
//! again when it exits. Without a shell, keel prints the reason and keeps looping (reaping, honouring power
//! signals).

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

/// The emergency state.
#[derive(Debug)]
pub struct Emergency {
    /// The shell's pid while it runs.
    pub pid: Option<i32>,
    pub reason: String,
    pub started: Instant,
}

/// Start /bin/sh on /dev/console. The caller's reaper collects it (we never wait on it here).
pub fn start_shell() -> Result<i32, crate::Error> {
    let sh = "/bin/sh";
    if std::fs::metadata(sh).is_err() {
        return Err(crate::Error::invalid(sh, "not found"));
    }
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/console")
            .map_err(|e| crate::Error::io("open", "/dev/console", &e))
    };
    let (i, o, e) = (open()?, open()?, open()?);
    let mut cmd = Command::new(sh);
    cmd.stdin(Stdio::from(i))
        .stdout(Stdio::from(o))
        .stderr(Stdio::from(e))
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("TERM", "linux")
        .env("HOME", "/")
        .env("PS1", "keel-emergency# ");
    // SAFETY: the closure runs in the forked child before exec and only calls async-signal-safe setsid/ioctl.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 1);
            Ok(())
        });
    }
    // std restores the signal mask and SIGPIPE in the child. The Child handle is dropped without waiting: PID 1's
    // reaper collects the shell.
    let child = cmd.spawn().map_err(|e| crate::Error::io("spawn", sh, &e))?;
    i32::try_from(child.id()).map_err(|e| crate::Error::invalid(format!("pid of {sh}"), e.to_string()))
}
