//! The shim's life cycle, as containerd_shim's `Shim` trait: `start` (find or fork the server of this container's
//! sandbox grouping and print its address), the server's `wait`, and `delete` (cleanup after a shim that died).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use containerd_shim::api::DeleteResponse;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{info, warn, Config, ExitSignal, Flags, StartOpts};
use keel_runtime::cli::state_dir;

use crate::events::{now, Publisher};
use crate::service::{unmount_all, Service};
use crate::state;

/// Annotations that group containers into one shim (runc-v2's list, plus keel's own key).
const GROUP_LABELS: [&str; 3] =
    ["io.containerd.keel.v1.group", "io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"];

pub struct KeelShim {
    id: String,
    namespace: String,
    bundle: String,
    socket: String,
    exit: Arc<ExitSignal>,
}

fn err(msg: String) -> containerd_shim::Error {
    containerd_shim::Error::Other(msg)
}

/// The grouping of the bundle in the current directory: the sandbox id for a Kubernetes pod, else the container id.
fn grouping(id: &str) -> String {
    grouping_of(id, std::fs::read("config.json").ok().as_deref())
}

/// The grouping named by the annotations of `config` (config.json's text), else `id`.
fn grouping_of(id: &str, config: Option<&[u8]>) -> String {
    let Some(v) = config.and_then(|t| serde_json::from_slice::<serde_json::Value>(t).ok()) else {
        return id.to_string();
    };
    let ann = &v["annotations"];
    GROUP_LABELS
        .iter()
        .find_map(|k| ann[k].as_str().filter(|s| !s.is_empty()).map(str::to_string))
        .unwrap_or_else(|| id.to_string())
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

fn can_connect(address: &str) -> bool {
    std::os::unix::net::UnixStream::connect(socket_path(address)).is_ok()
}

impl containerd_shim::Shim for KeelShim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        if !args.socket.is_empty() && args.action.is_empty() {
            // The server (not `start` or `delete`): log into the bundle's log FIFO.
            crate::logger::init(args.debug);
        }
        KeelShim {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            bundle: args.bundle.clone(),
            socket: args.socket.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let group = grouping(&opts.id);
        let address = containerd_shim::socket_address(&opts.address, &opts.namespace, &group);
        // Another container of the same grouping: its shim serves this one too.
        if group != opts.id && can_connect(&address) {
            containerd_shim::util::write_address(&address)?;
            return Ok(address);
        }
        let (_, address) = containerd_shim::spawn(opts, &group, Vec::new())?;
        containerd_shim::util::write_address(&address)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = if self.bundle.is_empty() {
            std::env::current_dir().map_err(|e| err(format!("{}: current dir: {e}", self.id)))?
        } else {
            PathBuf::from(&self.bundle)
        };
        cleanup_dead(&self.namespace, &self.id, &bundle).map_err(|e| err(e.to_string()))
    }

    fn wait(&mut self) {
        self.exit.wait();
        // containerd_shim removes the socket named in the bundle's `address` file; that bundle may be gone already
        // (the grouping's first container deleted): remove ours here.
        let _ = std::fs::remove_file(socket_path(&self.socket));
        info!("shim {} exiting", self.id);
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        // Our own publisher reconnects after a containerd restart; the bootstrap's one does not.
        drop(publisher);
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        let events = Arc::new(Publisher::start(address, self.namespace.clone()));
        Service::new(self.namespace.clone(), events, self.exit.clone())
    }
}

/// `delete` after the shim died: kill what is left of the container, undo its cgroup and mounts, drop its state and
/// the dead shim's socket, and report it as killed (128 + SIGKILL, as runc-v2 does).
pub fn cleanup_dead(ns: &str, id: &str, bundle: &Path) -> Result<DeleteResponse, crate::error::Error> {
    let g = state::globals(Path::new(state::DEFAULT_ROOT), ns);
    let mut pid = 0;
    match state::load(&g, id) {
        Ok(st) => {
            pid = st.pid;
            if state_dir::alive(&st) {
                // SAFETY: kill(2) with plain integers; the start time check above guards against pid reuse.
                unsafe { libc::kill(st.pid, libc::SIGKILL) };
                crate::process::wait_until(Duration::from_secs(5), || !state_dir::alive(&st));
            }
            if !st.cgroup.as_os_str().is_empty() {
                if let Err(e) = keel_runtime::cgroups::remove(&st.cgroup) {
                    warn!("{id}: remove cgroup {}: {e}", st.cgroup.display());
                }
            }
        }
        Err(e) => warn!("{e}"),
    }
    unmount_all(&bundle.join("rootfs"));
    let _ = state::remove(&g, id);
    // The dead shim's socket, unless a shim still answers on it (another container of the grouping keeps it).
    if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
        let address = address.trim();
        if !address.is_empty() && !can_connect(address) {
            let _ = std::fs::remove_file(socket_path(address));
        }
    }
    Ok(DeleteResponse {
        pid: pid.max(0) as u32,
        exit_status: 128 + 9,
        exited_at: Some(now()).into(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_by_annotation() {
        assert_eq!(grouping_of("c1", None), "c1");
        assert_eq!(grouping_of("c1", Some(b"not json")), "c1");
        assert_eq!(grouping_of("c1", Some(br#"{"annotations": {}}"#)), "c1");
        let cri = br#"{"annotations": {"io.kubernetes.cri.sandbox-id": "pod1", "io.kubernetes.cri.container-type": "container"}}"#;
        assert_eq!(grouping_of("c1", Some(cri)), "pod1");
        let both = br#"{"annotations": {"io.kubernetes.cri.sandbox-id": "pod1", "io.containerd.runc.v2.group": "g"}}"#;
        assert_eq!(grouping_of("c1", Some(both)), "g", "runc-v2's own key wins, as in runc-v2");
        assert_eq!(grouping_of("c1", Some(br#"{"annotations": {"io.containerd.runc.v2.group": ""}}"#)), "c1");
    }

    #[test]
    fn socket_paths() {
        assert_eq!(socket_path("unix:///run/containerd/s/abc"), "/run/containerd/s/abc");
        assert_eq!(socket_path("/run/x"), "/run/x");
    }
}
