//! `keel-runc pause ID` / `keel-runc resume ID`: freeze or thaw the container's cgroup (cgroup.freeze).

use super::state_dir::{self, Status};
use super::{Args, CliError, CliResult, Globals};
use crate::cgroups;

pub fn main(g: &Globals, argv: &[String], pause: bool) -> CliResult<i32> {
    let verb = if pause { "pause" } else { "resume" };
    let a = Args::parse(argv, &[])?;
    let id = a.id(verb)?;
    let st = state_dir::load(g, &id)?;
    let status = state_dir::status(g, &st);
    match (pause, status) {
        (true, Status::Running | Status::Created) | (false, Status::Paused) => {}
        (true, Status::Paused) => return Err(CliError::state(format!("container {id} is already paused"))),
        (false, _) => return Err(CliError::state("container not paused")),
        (true, _) => return Err(CliError::state("container not running")),
    }
    if st.cgroup.as_os_str().is_empty() {
        return Err(CliError::state(format!("container {id} has no cgroup of its own: cannot {verb}")));
    }
    cgroups::freeze(&st.cgroup, pause)?;
    Ok(0)
}
