//! `keel-runc exec`: run another process in a running container (placeholder until the full version lands).

use super::{CliResult, Globals};
use crate::cli_err;

pub fn main(_g: &Globals, _argv: &[String]) -> CliResult<i32> {
    Err(cli_err!("exec: not implemented yet"))
}
