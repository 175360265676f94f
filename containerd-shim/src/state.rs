//! The shim's state on disk, so that a shim that dies loses no container: per container
//! `<root>/<namespace>/<id>/state.json`, in keel-runc's format (so `keel-runc --root <root>/<namespace> list|ps|state`
//! sees the containers). runc-v2 keeps the same under
//! /run/containerd/runc/<namespace>. The exec fifo of a created container lives there too.

use std::path::{Path, PathBuf};

use keel_runtime::cli::state_dir::{self, State};
use keel_runtime::cli::Globals;

use crate::error::Error;

/// Default state root (containerd's runc-v2 uses /run/containerd/runc).
pub const DEFAULT_ROOT: &str = "/run/containerd/keel";

/// keel-runc globals for the state root of `ns` under `root`.
pub fn globals(root: &Path, ns: &str) -> Globals {
    Globals { root: root.join(ns), log: None, log_json: false, debug: false }
}

/// The state directory of container `id`.
pub fn dir(g: &Globals, id: &str) -> PathBuf {
    state_dir::dir(g, id)
}

/// Create the state directory of `id` (and the namespace root); an existing one is an error (duplicate id).
pub fn create_dir(g: &Globals, id: &str) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(&g.root).map_err(|e| Error::io("mkdir", &g.root, e).context(format!("container {id}")))?;
    let d = dir(g, id);
    // runc's 0711 (as keel-runc's): the container's process, whatever its uid, reaches the exec fifo inside.
    let chmod = |d: PathBuf| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| Error::io("chmod 0711", &d, e).context(format!("container {id}")))?;
        Ok(d)
    };
    match std::fs::create_dir(&d) {
        Ok(()) => chmod(d),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Left over from a container of the same id that was never deleted: reuse only if nothing runs.
            match state_dir::load(g, id) {
                Ok(st) if state_dir::alive(&st) => Err(Error::Invalid(format!(
                    "container {id}: state {} exists and its process {} is alive",
                    d.display(),
                    st.pid
                ))),
                _ => {
                    std::fs::remove_dir_all(&d)
                        .map_err(|e| Error::io("remove", &d, e).context(format!("container {id}")))?;
                    std::fs::create_dir(&d)
                        .map_err(|e| Error::io("mkdir", &d, e).context(format!("container {id}")))?;
                    chmod(d)
                }
            }
        }
        Err(e) => Err(Error::io("mkdir", &d, e).context(format!("container {id}"))),
    }
}

/// Save `st` atomically.
pub fn save(g: &Globals, st: &State) -> Result<(), Error> {
    state_dir::save(g, st).map_err(|e| Error::State(e).context(format!("container {}: save state", st.id)))
}

/// Load the state of `id`.
pub fn load(g: &Globals, id: &str) -> Result<State, Error> {
    state_dir::load(g, id)
        .map_err(|e| Error::State(e).context(format!("container {id}: load state from {}", dir(g, id).display())))
}

/// Remove the state directory of `id` and, once empty, the namespace root.
pub fn remove(g: &Globals, id: &str) -> Result<(), Error> {
    let r = state_dir::remove(g, id).map_err(|e| Error::State(e).context(format!("container {id}")));
    let _ = std::fs::remove_dir(&g.root);
    r
}

/// A new state record for a container just created.
pub fn new_state(id: &str, pid: i32, bundle: &keel_runtime::Bundle, cgroup: Option<&Path>) -> State {
    State {
        id: id.to_string(),
        pid,
        pid_start_time: state_dir::proc_stat(pid).map(|s| s.1).unwrap_or(0),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: state_dir::rfc3339_now(),
        cgroup: cgroup.map(Path::to_path_buf).unwrap_or_default(),
        annotations: bundle.spec.annotations.clone(),
        oci_version: bundle.spec.oci_version.clone(),
        detached: true,
    }
}
