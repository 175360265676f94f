//! `keel-runc delete [--force|-f] ID`: remove a stopped (or created) container: undo spawn's setup (runtime.json
//! mounts, poststop hooks), remove its cgroup and its state dir. --force kills a running one first.

use std::time::{Duration, Instant};

use super::state_dir::{self, State, Status};
use super::{Args, CliError, CliResult, Globals};
use crate::{cgroups, Bundle};

/// Wait (bounded) until the container's process is gone or a zombie.
pub fn wait_gone(st: &State, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while state_dir::alive(st) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// SIGKILL everything of the container (its cgroup, or its pid) and wait for it.
pub fn kill_all(st: &State) {
    if !st.cgroup.as_os_str().is_empty() {
        let _ = cgroups::freeze(&st.cgroup, false);
        for pid in cgroups::procs_recursive(&st.cgroup) {
            // SAFETY: kill(2) with integer arguments.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    if state_dir::alive(st) {
        // SAFETY: as above; the start time check in alive() guards against a reused pid.
        unsafe { libc::kill(st.pid, libc::SIGKILL) };
    }
    wait_gone(st, Duration::from_secs(5));
}

/// Undo everything of a stopped container; errors are collected into one message.
pub fn destroy(g: &Globals, st: &State) -> CliResult {
    let mut errs = Vec::new();
    // The cgroup first (kills stragglers, retries while exits finish), so spawn's cleanup finds it gone.
    if !st.cgroup.as_os_str().is_empty() {
        if let Err(e) = cgroups::remove(&st.cgroup) {
            errs.push(e.into());
        }
    }
    match Bundle::load(&st.bundle) {
        Ok(bundle) => match super::create::rebuild_spawned(&bundle, &st.id, st.pid) {
            Ok(spawned) => errs.extend(spawned.cleanup(&bundle).into_iter().map(CliError::from)),
            Err(e) => errs.push(e),
        },
        Err(e) => g.log("warning", &format!("delete {}: cleanup skipped: {e}", st.id)),
    }
    state_dir::remove(g, &st.id)?;
    if errs.is_empty() {
        Ok(())
    } else {
        Err(CliError::Cleanup { id: st.id.clone(), errors: errs })
    }
}

pub fn main(g: &Globals, argv: &[String]) -> CliResult<i32> {
    let a = Args::parse(argv, &["force|f"])?;
    let id = a.id("delete")?;
    let force = a.has("force");
    let st = match state_dir::load(g, &id) {
        Ok(st) => st,
        Err(_) if force && !state_dir::dir(g, &id).join("state.json").exists() => {
            let _ = state_dir::remove(g, &id);
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    match state_dir::status(g, &st) {
        Status::Stopped => {}
        Status::Created => kill_all(&st),
        s if force => {
            let _ = s;
            kill_all(&st)
        }
        s => return Err(CliError::state(format!("cannot delete container {id} that is not stopped: {}", s.as_str()))),
    }
    destroy(g, &st)?;
    Ok(0)
}
