//! keel's PID 1: owns time and processes (event loop, the one reaper, supervisor, console and logs,
//! control socket, shutdown). Asks keel-runtime to spawn and keel-rc to set up; never mounts or unshares itself.
//! Also the keelctl client (`client`), which shares the control protocol types.

// PID 1 must never panic: no unwrap/expect/panic! outside tests (enforced by clippy; CI runs it).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
// Numeric casts that may truncate, wrap or lose a sign are explicit conversions here (try_from with a stated
// fallback, or a byte reinterpretation), as in Firecracker. `make lint` turns these warnings into errors.
#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

pub mod client;
pub mod coldplug;
pub mod console;
pub mod control;
pub mod discover;
pub mod emergency;
pub mod error;
pub use error::Error;
pub mod event_loop;
pub mod limits;
pub mod logs;
pub mod pid1;
pub mod shutdown;
pub mod spawner;
pub mod supervisor;
pub mod text;
/// Every syscall goes through keel-sys (the one place of `unsafe` libc calls).
pub use keel_sys as sys;
pub mod time;
pub mod units;
