//! Starting a bundle's process: parent side (clone, pipes, fds) and, in submodules, the child side
//! (namespaces -> mounts -> pivot_root -> ids -> caps -> seccomp -> exec).

use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;

use crate::{Bundle, Error};

/// How the caller wants the container's process wired up. `Default` gives runc-like behaviour.
#[derive(Debug, Default, Clone)]
pub struct SpawnOptions {
    /// Container id: names the default cgroup and appears in errors.
    pub id: String,
    /// fd to use as the container's stdin; `None` opens /dev/null.
    pub stdin: Option<RawFd>,
    /// fd to use as stdout; `None` inherits the caller's.
    pub stdout: Option<RawFd>,
    /// fd to use as stderr; `None` inherits the caller's.
    pub stderr: Option<RawFd>,
    /// fds passed to the container as 3, 4, ... in this order, close-on-exec cleared (runc --preserve-fds).
    pub preserve_fds: Vec<RawFd>,
    /// Extra `KEY=VALUE` environment entries; they override the same keys of process.env.
    pub env: Vec<String>,
    /// Extra bind mounts (host path, absolute path inside the container), made after the spec's mounts,
    /// e.g. a NOTIFY_SOCKET. The target is created (file or dir to match the source) if missing.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// When the bundle asks for a new pid namespace, run a tiny reaper as its pid 1 that forwards
    /// signals to the real process and reaps orphans (like `docker run --init`).
    pub ns_reaper: bool,
    /// Mount point of the cgroup v2 hierarchy (default: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
    pub cgroup_root: Option<PathBuf>,
    /// Cgroup used when config.json has no cgroupsPath, relative to the cgroup root (e.g. "keel/web").
    /// `None` leaves the process in the caller's cgroup unless cgroupsPath or resources ask otherwise.
    pub default_cgroup: Option<String>,
    /// runc `create`: the child blocks before exec until this fifo is opened for reading by `start`.
    pub exec_fifo: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (runc --no-pivot).
    pub no_pivot: bool,
    /// runc --console-socket: allocate a pty, send the master over this unix socket, use the slave as stdio.
    pub console_socket: Option<PathBuf>,
}

/// A started container process. The caller owns reaping `pid`.
#[derive(Debug)]
pub struct Spawned {
    /// Pid of the container's first process (the ns reaper if one was asked for), in the caller's pid namespace.
    pub pid: i32,
    /// Read end (O_NONBLOCK, O_CLOEXEC) of the setup status pipe: EOF with no data means the process exec'd;
    /// otherwise the child wrote one UTF-8 error line (what failed, path, errno) and exits 127.
    pub status: OwnedFd,
}

/// What [`Spawned::poll_status`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    /// Setup still running (no EOF yet).
    Pending,
    /// The process exec'd its binary.
    Started,
    /// Setup failed before exec; the message names what failed and the errno.
    Failed(String),
}

impl Spawned {
    /// Non-blocking read of the status pipe. Call it when the fd is readable (or polls as readable).
    pub fn poll_status(&self) -> Status {
        Status::Pending
    }

    /// Undo what spawn set up outside the container (runtime.json mounts, cgroup dir, poststop hooks).
    /// Call after the caller has reaped `pid`. Returns every error met; never panics.
    pub fn cleanup(&self, _bundle: &Bundle) -> Vec<Error> {
        Vec::new()
    }
}

/// Start `bundle`'s process as described by `opts`. Returns once the process exists; setup errors
/// after clone arrive through [`Spawned::status`].
pub fn spawn(bundle: &Bundle, opts: &SpawnOptions) -> Result<Spawned, Error> {
    let _ = opts;
    Err(Error::Invalid { path: bundle.dir.clone(), field: String::new(), msg: "spawn: not implemented yet".into() })
}
