//! `keel-runc start ID`: release a created container by opening its exec fifo for reading, then run the
//! poststart hooks once the user's program runs (runtime-spec: after the process is executed, before `start`
//! returns; a failing poststart hook is a warning).

use std::io::Read;
use std::time::{Duration, Instant};

use super::state_dir::{self, State, Status};
use super::{Args, CliError, CliResult, Globals};
use crate::{hooks, Bundle};

/// What /proc/PID/exe points to (None once the process is gone).
fn exe(pid: i32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Wait (at most `limit`) until the container's process has replaced the runtime's image with the user's program
/// (its exe link changes from `before`), or is gone.
pub fn wait_exec(st: &State, before: Option<&std::path::Path>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && state_dir::alive(st) {
        if exe(st.pid).as_deref() != before {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Run the poststart hooks of the container's bundle (failures are warnings; a bundle that no longer loads is one).
pub fn poststart(g: &Globals, st: &State, bundle: Option<&Bundle>) {
    let loaded;
    let bundle = match bundle {
        Some(b) => b,
        None => match Bundle::load(&st.bundle) {
            Ok(b) => {
                loaded = b;
                &loaded
            }
            Err(e) => {
                g.log("warning", &format!("container {}: poststart hooks not run: {e}", st.id));
                return;
            }
        },
    };
    let Some(h) = bundle.spec.hooks.as_ref() else { return };
    if h.poststart.is_empty() {
        return;
    }
    if let Err(e) = hooks::run_poststart_for(bundle, &st.id, st.pid) {
        g.log("warning", &format!("container {}: {e}", st.id));
        eprintln!("warning: container {}: {e}", st.id);
    }
}

pub fn main(g: &Globals, argv: &[String]) -> CliResult<i32> {
    let a = Args::parse(argv, &[])?;
    let id = a.id("start")?;
    let st = state_dir::load(g, &id)?;
    match state_dir::status(g, &st) {
        Status::Created => {}
        Status::Stopped => return Err(CliError::state("cannot start a container that has stopped")),
        s => return Err(CliError::state(format!("cannot start an already {} container", s.as_str()))),
    }
    let bundle = Bundle::load(&st.bundle).ok();
    let has_poststart = bundle.as_ref().is_some_and(|b| b.spec.hooks.as_ref().is_some_and(|h| !h.poststart.is_empty()));
    let before = exe(st.pid);
    let fifo = state_dir::fifo(g, &id);
    // The container process is blocked in open(fifo, O_WRONLY) (status() checked it is alive): this open
    // completes at once and unblocks it; read until it closes its end (just before exec, or if it dies).
    let mut f = std::fs::File::open(&fifo).map_err(|e| CliError::io("open exec fifo", &fifo, e))?;
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    drop(f);
    std::fs::remove_file(&fifo).map_err(|e| CliError::io("remove", &fifo, e))?;
    if has_poststart {
        // The fifo closes before startContainer hooks and execve: poststart waits for the program itself.
        wait_exec(&st, before.as_deref(), Duration::from_secs(10));
        poststart(g, &st, bundle.as_ref());
    }
    Ok(0)
}
