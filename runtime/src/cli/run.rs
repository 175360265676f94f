//! `keel-runc run [--bundle|-b DIR] [--detach|-d] [--pid-file F] [--no-pivot] [--preserve-fds N]
//! [--console-socket S] ID`: create and start in one step. In the foreground keel-runc forwards signals to the
//! container, waits for it, deletes it and exits with its exit code (128+signal if it was killed).

use std::sync::atomic::{AtomicI32, Ordering};

use keel_sys::{waitpid, Errno, WaitStatus};

use super::create::{self, Launch, LAUNCH_FLAGS};
use super::{Args, CliResult, Globals};

/// Pid the signal handler forwards to (0: none yet).
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Signals a foreground `run` passes on to the container (runc forwards all it can catch): the reaper's list
/// ([`crate::reaper::FORWARD`]) and SIGALRM.
const FORWARDED: [libc::c_int; 9] = {
    let mut all = [libc::SIGALRM; 9];
    let mut i = 0;
    while i < crate::reaper::FORWARD.len() {
        all[i] = crate::reaper::FORWARD[i];
        i += 1;
    }
    all
};

/// Install the forwarding handlers (the target is set with [`set_forward_target`]).
pub fn install_forwarding() {
    for sig in FORWARDED {
        // SAFETY: a zeroed sigaction with a plain handler that only calls kill(2); no SA_RESTART so waitpid
        // simply continues after EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Forward caught signals to `pid` from now on.
pub fn set_forward_target(pid: i32) {
    CHILD.store(pid, Ordering::Relaxed);
}

pub fn main(g: &Globals, argv: &[String]) -> CliResult<i32> {
    let mut flags: Vec<&str> = LAUNCH_FLAGS.to_vec();
    flags.extend(["detach|d", "keep", "no-subreaper"]);
    let a = Args::parse(argv, &flags)?;
    let l = Launch::from_args(&a, "run")?;
    let detach = a.has("detach");
    // Handlers first (the container gets default actions back at exec); the pid is set once known.
    if !detach {
        install_forwarding();
    }
    let launched = create::launch(g, &l, false, detach)?;
    let pid = launched.spawned.pid;
    CHILD.store(pid, Ordering::Relaxed);
    // launch returned once the process exec'd the user's program: poststart hooks now (before `run -d` returns).
    super::start::poststart(g, &launched.state, Some(&launched.bundle));
    if detach {
        return Ok(0);
    }
    let code = loop {
        match waitpid(pid, 0) {
            Ok(WaitStatus::Exited(c)) => break c,
            Ok(WaitStatus::Signaled(s)) => break 128 + s,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                g.log("warning", &format!("waitpid {pid}: {e}"));
                break 255;
            }
        }
    };
    CHILD.store(0, Ordering::Relaxed);
    if !a.has("keep") {
        super::delete::destroy(g, &launched.state)?;
    }
    Ok(code)
}
