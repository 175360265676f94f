//! Root test: Docker 20.10 (Debian's docker.io) drives keel-runc as it drives runc. The case matrix is in
//! keel_tests::clients (shared with podman.rs); each case runs with runc, keel-runc and (informational) crun, and
//! keel-runc must give runc's outcome.
//!
//! The test starts a private dockerd (own --data-root, --exec-root, socket, pidfile and config file under a temp
//! dir; its own managed containerd there too; --iptables=false --bridge=none, vfs storage, its containers under
//! the cgroup parent `keeltest-docker-PID`) with keel-runc and the crun wrapper registered by `--add-runtime`,
//! and stops it at the end, also on failure. The busybox image is `docker import`ed from a tarball the test
//! builds (no registry). The client is Debian's /usr/bin/docker (20.10), not another `docker` on PATH.
//!
//! Not root, or dockerd missing (`make deps` installs docker.io; tests never install anything): SKIPPED outside
//! CI, a failure in CI (env CI=true).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_tests::clients::{self, s, Case, Client, Runtime};

const TEST: &str = "docker matrix";
const DOCKER: &str = "/usr/bin/docker";

struct Daemon {
    dir: PathBuf,
    child: Option<Child>,
    client: Client,
    cgroup_parent: String,
}

impl Daemon {
    fn log(&self) -> String {
        let t = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = t.lines().filter(|l| !l.contains("level=debug")).collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let ids = self.client.cmd(&s(&["ps", "-aq"]));
        for id in ids.out.split_whitespace() {
            self.client.force_rm(id);
        }
        if let Some(mut ch) = self.child.take() {
            // SAFETY: kill(2) on our own child, not yet waited for.
            unsafe { libc::kill(ch.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(ch.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = ch.kill();
            let _ = ch.wait();
        }
        clients::unmount_below(&self.dir);
        for ctl in ["memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "systemd", "unified"] {
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(ctl).join(&self.cgroup_parent));
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&self.cgroup_parent));
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("{TEST}: cannot remove {}: {e}", self.dir.display());
        }
    }
}

fn start(dir: &Path, keel: &Path, crun: Option<&Path>) -> Result<Daemon, String> {
    let sock = dir.join("docker.sock");
    std::fs::write(dir.join("daemon.json"), "{}").map_err(|e| format!("write daemon.json: {e}"))?;
    let log = std::fs::File::create(dir.join("dockerd.log")).map_err(|e| format!("dockerd.log: {e}"))?;
    let log2 = log.try_clone().map_err(|e| format!("dockerd.log: {e}"))?;
    let cgroup_parent = format!("keeltest-docker-{}", std::process::id());
    let mut cmd = Command::new("dockerd");
    cmd.arg("--config-file")
        .arg(dir.join("daemon.json"))
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("docker.pid"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .args(["--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none", "--userland-proxy=false"])
        .args(["--storage-driver", "vfs", "--cgroup-parent", &cgroup_parent])
        .arg("--add-runtime")
        .arg(format!("keel={}", keel.display()));
    if let Some(c) = crun {
        cmd.arg("--add-runtime").arg(format!("crun={}", c.display()));
    }
    let child = cmd.stdin(Stdio::null()).stdout(log).stderr(log2).spawn().map_err(|e| format!("spawn dockerd: {e}"))?;
    let client = Client {
        name: "docker",
        base: vec![DOCKER.into()],
        run_flags: vec![],
        image: "keel-busybox:test".into(),
        env: vec![
            ("DOCKER_HOST".into(), format!("unix://{}", sock.display())),
            ("DOCKER_CONFIG".into(), dir.join("client").to_string_lossy().into_owned()),
        ],
        scratch: dir.to_path_buf(),
    };
    let mut d = Daemon { dir: dir.to_path_buf(), child: Some(child), client, cgroup_parent };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if d.client.cmd(&s(&["version"])).code == Some(0) {
            return Ok(d);
        }
        if let Some(ch) = d.child.as_mut() {
            if let Ok(Some(st)) = ch.try_wait() {
                return Err(format!("dockerd exited ({st}):\n{}", d.log()));
            }
        }
        if Instant::now() > deadline {
            return Err(format!("dockerd not answering on {} after 30 s:\n{}", sock.display(), d.log()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn docker_runs_keel_runc_as_runc() {
    let Some(keel) = clients::common_prereqs(TEST) else { return };
    let ok = || clients::have("dockerd") && Path::new(DOCKER).is_file() && clients::have("script");
    if !ok() {
        clients::skip::<()>(TEST, "dockerd, /usr/bin/docker or script(1) missing (make deps: docker.io, bsdutils)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("keel-docker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let crun = clients::crun_wrapper(&dir);
    let d = start(&dir, &keel, crun.as_deref()).unwrap_or_else(|e| panic!("{e}"));
    let tar = dir.join("busybox.tar");
    clients::busybox_tar(&tar).unwrap_or_else(|e| panic!("{e}"));
    let o = d.client.cmd(&s(&["import", &tar.to_string_lossy(), &d.client.image]));
    assert_eq!(o.code, Some(0), "docker import: {}\n{}", o.err, d.log());
    let mut runtimes =
        vec![Runtime { name: "runc", arg: "runc".into() }, Runtime { name: "keel-runc", arg: "keel".into() }];
    if crun.is_some() {
        runtimes.push(Runtime { name: "crun", arg: "crun".into() });
    }
    let mut cases = clients::common_cases();
    // Docker creates a missing working directory (podman refuses it, with every runtime).
    cases.push(Case::new(
        "-w new workdir",
        |c: &Client, rt: &Runtime, _: &str| c.run(rt, &["-w", "/made/by/runtime"], &["pwd"]),
        clients::out_is("/made/by/runtime"),
    ));
    clients::run_matrix("docker", &d.client, &runtimes, &cases);
}
