//! containerd-shim-keel-v1: containerd's shim v2 (runtime type `io.containerd.keel.v1`) over keel's runtime library.
//!
//! containerd starts this binary as runc-v2's: `start` (cwd = the bundle) forks the long-lived shim server (one per
//! sandbox grouping) and prints its ttrpc address; the server answers containerd's task API (`service.rs`) and
//! runs every container in-process through `keel_runtime::spawn` and every Exec through `keel_runtime::exec` (no
//! runtime binary per operation); `delete` cleans up after a shim that died (`shim.rs`).
//!
//! Layout: `shim.rs` (the containerd_shim::Shim bootstrap: start, delete, wait), `service.rs` (the Task service),
//! `process.rs` (init and exec processes: spawn, stdio, exit bookkeeping), `stdio.rs` (containerd's FIFOs, the
//! console socket and pty copying), `events.rs` (publishing task events, reconnecting after a containerd restart),
//! `state.rs` (the on-disk state, keel-runc compatible), `cgroup.rs` (stats, update, OOM watch), `logger.rs`.

mod cgroup;
mod error;
mod events;
mod logger;
mod process;
mod service;
mod shim;
mod state;
mod stdio;

/// The runtime type containerd resolves to this binary's name.
pub const RUNTIME_ID: &str = "io.containerd.keel.v1";

fn main() {
    let mut args = std::env::args_os();
    let argv0 = args.next();
    let rest: Vec<_> = args.collect();
    if rest.iter().any(|a| a == "-v" || a == "--version" || a == "-version") {
        println!(
            "{}:\n  Version: {}\n  Runtime: {RUNTIME_ID}",
            argv0.map(|a| a.to_string_lossy().into_owned()).unwrap_or_default(),
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    containerd_shim::run::<shim::KeelShim>(
        RUNTIME_ID,
        Some(containerd_shim::Config {
            // containerd_shim's reaper reaps every child (keel_runtime never waits); exits arrive through its monitor.
            no_reaper: false,
            // Our own logger (logger.rs): containerd_shim's loops on SIGPIPE once the log FIFO's reader is gone.
            no_setup_logger: true,
            ..Default::default()
        }),
    );
}
