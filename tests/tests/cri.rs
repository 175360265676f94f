//! Root test: Kubernetes' way into keel. containerd 1.6's CRI plugin with a runtime handler `keel`
//! (`runtime_type = "io.containerd.keel.v1"`, what a RuntimeClass names) runs a pod through keel's shim, driven by a
//! CRI client (the `k8s-cri` crate, gRPC over containerd's socket) as the kubelet would:
//! RunPodSandbox (host network; the sandbox image is a local "pause" built from busybox), CreateContainer,
//! StartContainer, ExecSync, ContainerStatus, UpdateContainerResources, StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox.
//! Checks: the pod's sandbox and its container are served by one keel shim (grouping by sandbox id), exec output
//! and exit code come back, the container log has the container's output, the stop delivers SIGTERM, and nothing
//! is left behind.
//!
//! Skips (SKIPPED, or a failure under CI=true) as the shim tests do.

mod shim_common;

use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest, CreateContainerRequest,
    ExecSyncRequest, ImageSpec, ImageStatusRequest, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopContainerRequest, StopPodSandboxRequest, UpdateContainerResourcesRequest,
};
use shim_common::*;
use tonic::transport::{Channel, Endpoint, Uri};

async fn channel(sock: std::path::PathBuf) -> Channel {
    Endpoint::try_from("http://[::]:50051")
        .unwrap_or_else(|e| panic!("endpoint: {e}"))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(sock).await?))
            }
        }))
        .await
        .unwrap_or_else(|e| panic!("connect CRI: {e}"))
}

/// The memory limit of `pid`'s cgroup: cgroup v2 memory.max, or v1 memory.limit_in_bytes (hybrid hosts).
fn memory_limit(pid: i32) -> Option<u64> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for l in cg.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
        let file = match ctl {
            "" => format!("/sys/fs/cgroup{path}/memory.max"),
            c if c.split(',').any(|x| x == "memory") => format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"),
            _ => continue,
        };
        if let Some(v) = std::fs::read_to_string(&file).ok().and_then(|t| t.trim().parse().ok()) {
            return Some(v);
        }
    }
    None
}

fn host_ns() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

#[test]
fn cri_pod_through_keel_shim() {
    let Some(cd) = setup_ns("cri", true, "k8s.io") else { return };
    // Images: the sandbox's "pause" (busybox sleeping) and busybox, imported into containerd's k8s.io namespace.
    let rootfs = cd.dir.join("rootfs");
    for (name, cmd) in
        [("keel.test/pause:1", vec!["/bin/sleep", "2147483647"]), ("keel.test/busybox:1", vec!["/bin/sh"])]
    {
        let archive = busybox_image(&cd.dir, &rootfs, name, &cmd);
        let o = cd.ctr(&["image", "import", &archive.to_string_lossy()]);
        cd.check(&format!("ctr -n k8s.io image import {name}"), &o);
    }
    std::fs::create_dir_all(cd.dir.join("logs")).unwrap_or_else(|e| panic!("mkdir logs: {e}"));
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("tokio: {e}"));
    let t0 = Instant::now();
    rt.block_on(async {
        let ch = channel(cd.sock.clone()).await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        let mut is = ImageServiceClient::new(ch);
        let st = is
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec { image: "keel.test/busybox:1".into(), ..Default::default() }),
                verbose: false,
            })
            .await
            .unwrap_or_else(|e| panic!("ImageStatus: {e}\n{}", cd.log()));
        assert!(st.into_inner().image.is_some(), "CRI does not see the imported busybox image\n{}", cd.log());

        let uid = format!("uid-{}", std::process::id());
        let sandbox_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "keel-pod".into(),
                uid: uid.clone(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "keel-pod".into(),
            log_directory: cd.dir.join("logs").to_string_lossy().into_owned(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(host_ns()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = rs
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: "keel".into(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cd.log()))
            .into_inner()
            .pod_sandbox_id;
        let shims = cd.shims();
        assert_eq!(shims.len(), 1, "one keel shim for the pod sandbox: {shims:?}\n{}", cd.log());

        let config = ContainerConfig {
            metadata: Some(ContainerMetadata { name: "main".into(), attempt: 0 }),
            image: Some(ImageSpec { image: "keel.test/busybox:1".into(), ..Default::default() }),
            command: vec![
                "/bin/sh".into(),
                "-c".into(),
                "trap 'echo got TERM; exit 0' TERM; echo started; while :; do sleep 0.1; done".into(),
            ],
            log_path: "main.log".into(),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(host_ns()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cid = rs
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", cd.log()))
            .into_inner()
            .container_id;
        rs.start_container(StartContainerRequest { container_id: cid.clone() })
            .await
            .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", cd.log()));
        assert_eq!(cd.shims(), shims, "the container joined its sandbox's shim (grouping by sandbox id)");

        let status = |rs: &mut RuntimeServiceClient<Channel>| {
            let mut rs = rs.clone();
            let cid = cid.clone();
            async move {
                rs.container_status(ContainerStatusRequest { container_id: cid, verbose: false })
                    .await
                    .unwrap_or_else(|e| panic!("ContainerStatus: {e}"))
                    .into_inner()
                    .status
                    .unwrap_or_default()
            }
        };
        let s = status(&mut rs).await;
        assert_eq!(s.state, ContainerState::ContainerRunning as i32, "ContainerStatus after start: {s:?}");

        let r = rs
            .exec_sync(ExecSyncRequest {
                container_id: cid.clone(),
                cmd: vec!["/bin/sh".into(), "-c".into(), "echo exec-out; echo exec-err >&2; exit 3".into()],
                timeout: 20,
            })
            .await
            .unwrap_or_else(|e| panic!("ExecSync: {e}\n{}", cd.log()))
            .into_inner();
        assert_eq!(String::from_utf8_lossy(&r.stdout), "exec-out\n", "ExecSync stdout");
        assert_eq!(String::from_utf8_lossy(&r.stderr), "exec-err\n", "ExecSync stderr");
        assert_eq!(r.exit_code, 3, "ExecSync exit code");

        // UpdateContainerResources reaches the shim's Update: the memory limit lands in the container's cgroup.
        rs.update_container_resources(UpdateContainerResourcesRequest {
            container_id: cid.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                cpu_shares: 512,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}\n{}", cd.log()));
        let pid = cd.task(&cid).map(|t| t.0).unwrap_or(0);
        assert_eq!(memory_limit(pid), Some(64 << 20), "memory limit of the container's cgroup after the update");

        rs.stop_container(StopContainerRequest { container_id: cid.clone(), timeout: 10 })
            .await
            .unwrap_or_else(|e| panic!("StopContainer: {e}\n{}", cd.log()));
        let s = status(&mut rs).await;
        assert_eq!(s.state, ContainerState::ContainerExited as i32, "ContainerStatus after stop: {s:?}");
        assert_eq!(s.exit_code, 0, "the container's TERM trap ran (exit 0): {s:?}");
        let log = std::fs::read_to_string(cd.dir.join("logs/main.log")).unwrap_or_default();
        assert!(log.contains("started") && log.contains("got TERM"), "container log:\n{log}");

        rs.remove_container(RemoveContainerRequest { container_id: cid.clone() })
            .await
            .unwrap_or_else(|e| panic!("RemoveContainer: {e}\n{}", cd.log()));
        rs.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() })
            .await
            .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", cd.log()));
        rs.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.clone() })
            .await
            .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", cd.log()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cd.shims().is_empty() {
            assert!(Instant::now() < deadline, "keel shim still running after RemovePodSandbox: {:?}", cd.shims());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cd.assert_clean(&cid);
        cd.assert_clean(&pod);
    });
    eprintln!("cri test: pod ran through keel's shim in {:.1} s", t0.elapsed().as_secs_f64());
}
