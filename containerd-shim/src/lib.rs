//! keel's OCI runtime ("containerd-shim" in the house plan).
//!
//! Knows the OCI runtime spec and Linux; knows nothing of PID 1, restart policies or the console.
//!
//! Public contract used by `init` (keep it stable; extend by adding fields with defaults):
//! - [`Bundle::load`] reads and validates `config.json` (+ optional LinuxKit `runtime.json`) of a bundle directory.
//! - [`spawn`] starts the bundle's process and returns at once with its pid and a status fd; it never waits for
//!   the container's setup unless the bundle needs a synchronous step (user namespace maps, createRuntime/prestart
//!   hooks), and then with a bounded timeout.
//! - [`Spawned::cleanup`] undoes what spawn set up outside the container (runtime.json mounts, cgroup, poststop
//!   hooks) once the process has been reaped by the caller. The runtime never calls `waitpid` on the container's pid:
//!   the caller owns reaping.

pub mod bundle;
pub mod caps;
mod child;
mod console;
pub mod devices;
pub mod hooks;
mod interfaces;
mod identity;
pub mod namespaces;
mod reaper;
pub mod rlimits;
pub mod rootfs;
mod sys;
pub mod cgroups;
pub mod cli;
pub mod error;
pub mod mounts;
pub mod runtime_json;
pub mod seccomp;
pub mod spawn;
pub mod spec;

pub use bundle::Bundle;
pub use error::Error;
pub use spawn::{spawn, SpawnOptions, Spawned, Status};
pub use hooks::run_poststart;
pub use runtime_json::RuntimeJson;
