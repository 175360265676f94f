//! `keel-runc start ID`: release a created container by opening its exec fifo for reading.

use std::io::Read;

use super::state_dir::{self, Status};
use super::{Args, CliResult, Globals};
use crate::cli_err;

pub fn main(g: &Globals, argv: &[String]) -> CliResult<i32> {
    let a = Args::parse(argv, &[])?;
    let id = a.id("start")?;
    let st = state_dir::load(g, &id)?;
    match state_dir::status(g, &st) {
        Status::Created => {}
        Status::Stopped => return Err(cli_err!("cannot start a container that has stopped")),
        s => return Err(cli_err!("cannot start an already {} container", s.as_str())),
    }
    let fifo = state_dir::fifo(g, &id);
    // The container process is blocked in open(fifo, O_WRONLY) (status() checked it is alive): this open
    // completes at once and unblocks it; read until it closes its end (at exec, or if it dies).
    let mut f = std::fs::File::open(&fifo).map_err(|e| cli_err!("open exec fifo {}: {e}", fifo.display()))?;
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    drop(f);
    std::fs::remove_file(&fifo).map_err(|e| cli_err!("remove {}: {e}", fifo.display()))?;
    Ok(0)
}
