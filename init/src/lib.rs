//! keel's PID 1: owns time and processes (event loop, the one reaper, supervisor, console and logs,
//! control socket, shutdown). Asks keel-shim to spawn and keel-rc to set up; never mounts or unshares itself.

pub mod supervisor;
pub mod units;
