//! keel's OCI runtime (`runtime/`, crate keel-runtime): the library every bundle runs through, and keel-runc.
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
//! - [`Spawned::poll_status`] (non-blocking) / [`Spawned::wait_status`] (bounded) read the setup outcome:
//!   Pending, Started, or Failed("what path: strerror (errno N)"), e.g.
//!   Failed("exec: \"/bin/x\": stat /bin/x: no such file or directory (errno 2)") (runc's wording).
//! - [`Spawned::rebuild`] recreates the cleanup handle in another process (keel-runc delete after create).
//! - [`run_poststart`] runs poststart hooks; prestart/createRuntime run inside spawn, createContainer/startContainer
//!   in the container, poststop in cleanup.
//! - `SpawnOptions::ns_reaper`: a tiny signal-forwarding reaper as pid 1 of a new pid namespace.
//!
//! Layout: bundle/spec/runtime_json (parsing, validation), spawn (parent side), child (setup sequence) with one
//! file per concern: namespaces, rootfs (mounts, masks, pivot_root), devices, caps, rlimits, identity, hooks,
//! console, interfaces (runtime.json links over rtnetlink), reaper, sys (allocation-free syscall helpers).

pub mod bundle;
pub mod caps;
pub mod cgroups;
mod child;
pub mod cli;
mod console;
pub mod devices;
pub mod error;
pub mod hooks;
mod identity;
pub mod inroot;
mod interfaces;
pub mod mounts;
pub mod namespaces;
mod plan;
pub mod procfs;
mod reaper;
pub mod rlimits;
pub mod rootfs;
pub mod runtime_json;
pub mod sealed;
pub mod seccomp;
pub mod spawn;
pub mod spec;
/// Every syscall wrapper, errno and C-string helper comes from keel-sys.
use keel_sys as sys;

pub use bundle::Bundle;
pub use error::Error;
pub use hooks::run_poststart;
pub use runtime_json::RuntimeJson;
pub use spawn::{exec, spawn, SpawnOptions, Spawned, Status};
/// spawn() reads the caller's signal dispositions once per process and resets only the changed ones in the child: a caller
/// that installs or ignores signals after its first spawn calls this.
pub use sys::refresh_changed_signals;
