//! Shared by the shim tests (shim.rs), the CRI test (cri.rs) and the runc-shim test (containerd.rs): a private
//! containerd 1.6 whose PATH finds containerd-shim-keel-v1, ctr helpers, a busybox rootfs and OCI image archives built locally, and the checks that
//! nothing is left behind.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use keel_tests::vm::{in_ci, root};

pub const RUNTIME: &str = "io.containerd.keel.v1";
pub const SHIM: &str = "containerd-shim-keel-v1";
/// The shim's state root (per namespace below it).
pub const SHIM_ROOT: &str = "/run/containerd/keel";

/// Print SKIPPED with the reason and return None outside CI; panic in CI.
pub fn skip<T>(msg: &str) -> Option<T> {
    if in_ci() {
        panic!("shim test: {msg}");
    }
    // Not eprintln!: the test harness captures that and hides it when the test passes.
    let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("SKIPPED shim test: {msg}\n"));
    None
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn ensure_containerd() -> Option<()> {
    let ok = || have("containerd") && have("ctr");
    if ok() {
        return Some(());
    }
    skip("containerd/ctr not installed (make deps: containerd)")
}

pub fn shim_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KEEL_SHIM") {
        return Some(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    let candidates = [
        root().join("build/bin").join(SHIM),
        target.join("x86_64-unknown-linux-gnu/release").join(SHIM),
        target.join("debug").join(SHIM),
    ];
    // The newest build wins (a stale release binary must not hide a fresh debug one).
    candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p.clone())
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A private containerd that finds the keel shim on its PATH. Dropping it removes the test's containers, stops
/// containerd and deletes the temp dir.
pub struct Containerd {
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub ns: String,
    child: Option<Child>,
    /// How many times containerd was started (each start logs to containerd-N.log).
    starts: usize,
    pub ids: Vec<String>,
}

impl Containerd {
    pub fn start(dir: &Path, ns: &str, cri: bool) -> Result<Containerd, String> {
        let sock = dir.join("containerd.sock");
        let mut disabled = vec![
            "io.containerd.internal.v1.tracing",
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.snapshotter.v1.devmapper",
        ];
        if !cri {
            disabled.push("io.containerd.grpc.v1.cri");
        }
        let disabled: Vec<String> = disabled.iter().map(|d| format!("{d:?}")).collect();
        let cri_cfg = if cri {
            format!(
                r#"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "keel.test/pause:1"
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni-bin"
    conf_dir = "{d}/cni-conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "keel"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.keel]
      runtime_type = "{RUNTIME}"
"#,
                d = dir.display()
            )
        } else {
            String::new()
        };
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [{disabled}]
[grpc]
  address = "{s}"
[ttrpc]
  address = "{s}.ttrpc"
[debug]
  level = "debug"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
{cri_cfg}"#,
            d = dir.display(),
            s = sock.display(),
            disabled = disabled.join(", ")
        );
        std::fs::write(dir.join("config.toml"), config).map_err(|e| format!("write config.toml: {e}"))?;
        let mut c =
            Containerd { dir: dir.to_path_buf(), sock, ns: ns.to_string(), child: None, starts: 0, ids: Vec::new() };
        c.launch()?;
        Ok(c)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("containerd-{}.log", self.starts))
    }

    pub fn launch(&mut self) -> Result<(), String> {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).map_err(|e| format!("containerd log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("containerd log: {e}"))?;
        let path = format!("{}:{}", self.dir.join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.dir.join("config.toml"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn containerd: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.ctr(&["version"]).status.success() {
                return Ok(());
            }
            if let Some(ch) = self.child.as_mut() {
                if let Ok(Some(st)) = ch.try_wait() {
                    return Err(format!("containerd exited ({st}):\n{}", self.log()));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("containerd not answering on {} after 20 s:\n{}", self.sock.display(), self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop containerd (SIGTERM; SIGKILL after 5 s). Shims keep running.
    pub fn stop(&mut self) {
        if let Some(mut ch) = self.child.take() {
            // SAFETY: kill(2) on the pid of our own child, not yet waited for (so not reused).
            unsafe { libc::kill(ch.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(ch.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = ch.kill();
            let _ = ch.wait();
        }
    }

    pub fn raw_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        let t = self.raw_log();
        let lines: Vec<&str> = t.lines().filter(|l| !l.contains("level=debug")).collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `ctr --address SOCK -n NS ARGS`, killed after 60 s.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["-s", "KILL", "60", "ctr", "--address"])
            .arg(&self.sock)
            .args(["-n", &self.ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawn ctr {args:?}: {e}"))
    }

    /// `ctr run --runtime io.containerd.keel.v1 EXTRA... --rootfs ROOTFS ID CMD...` (or IMAGE with `image`).
    pub fn run(&mut self, extra: &[&str], image: Option<&str>, id: &str, cmd: &[&str]) -> Output {
        self.ids.push(id.to_string());
        let rootfs = self.dir.join("rootfs");
        let fifo = self.dir.join("fifo");
        let (rootfs, fifo) = (rootfs.to_string_lossy(), fifo.to_string_lossy());
        let mut a = vec!["run", "--runtime", RUNTIME, "--fifo-dir", &fifo];
        a.extend_from_slice(extra);
        match image {
            Some(img) => a.push(img),
            None => a.extend_from_slice(&["--rootfs", &rootfs]),
        }
        a.push(id);
        a.extend_from_slice(cmd);
        self.ctr(&a)
    }

    pub fn exec(&self, id: &str, exec_id: &str, cmd: &[&str]) -> Output {
        let fifo = self.dir.join("fifo").to_string_lossy().into_owned();
        let mut a = vec!["task", "exec", "--fifo-dir", &fifo, "--exec-id", exec_id, id];
        a.extend_from_slice(cmd);
        self.ctr(&a)
    }

    /// `ctr task ls`: (pid, status) of ID, or None if not listed.
    pub fn task(&self, id: &str) -> Option<(i32, String)> {
        let o = self.ctr(&["task", "ls"]);
        text(&o.stdout).lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id))
                .then(|| (f.get(1).and_then(|p| p.parse().ok()).unwrap_or(0), f.get(2).unwrap_or(&"").to_string()))
        })
    }

    pub fn status(&self, id: &str) -> Option<String> {
        self.task(id).map(|t| t.1)
    }

    pub fn wait_status(&self, id: &str, want: Option<&str>, within: Duration) {
        let deadline = Instant::now() + within;
        while self.status(id).as_deref() != want {
            assert!(
                Instant::now() < deadline,
                "task {id}: status {:?}, want {want:?}\n{}",
                self.status(id),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn check(&self, what: &str, o: &Output) {
        assert!(
            o.status.success(),
            "{what} failed ({}):\nstdout: {}\nstderr: {}\ncontainerd log:\n{}",
            o.status,
            text(&o.stdout),
            text(&o.stderr),
            self.log()
        );
    }

    /// Pids of the keel shims serving this test's namespace.
    pub fn shims(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
            let args: Vec<String> = cmd.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            let is_shim = args.first().is_some_and(|a| a.ends_with(SHIM));
            let ours = args.windows(2).any(|w| w[0] == "-namespace" && w[1] == self.ns)
                && args.windows(2).any(|w| w[0] == "-address" && Path::new(&w[1]) == self.sock);
            if is_shim && ours {
                out.push(pid);
            }
        }
        out
    }

    /// Nothing of container ID left: shim state, containerd bundle, cgroups (v2 and v1), mounts.
    pub fn assert_clean(&self, id: &str) {
        let st = Path::new(SHIM_ROOT).join(&self.ns).join(id);
        assert!(!st.exists(), "shim state {} left behind", st.display());
        let bundle = self.dir.join("state/io.containerd.runtime.v2.task").join(&self.ns).join(id);
        assert!(!bundle.exists(), "bundle {} left behind", bundle.display());
        for base in cgroup_bases() {
            let cg = base.join(&self.ns).join(id);
            assert!(!cg.exists(), "cgroup {} left behind", cg.display());
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = self.dir.to_string_lossy().into_owned();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&dir) && l.contains(id)).collect();
        assert!(left.is_empty(), "mounts of {id} left behind:\n{}", left.join("\n"));
    }
}

pub fn cgroup_bases() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/sys/fs/cgroup"), PathBuf::from("/sys/fs/cgroup/unified")];
    for d in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        if d.path() != Path::new("/sys/fs/cgroup/unified") && d.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            v.push(d.path());
        }
    }
    v
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            for id in std::mem::take(&mut self.ids) {
                if self.status(&id).is_some() {
                    let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
                    let _ = self.ctr(&["task", "delete", "--force", &id]);
                }
                let _ = self.ctr(&["container", "delete", &id]);
            }
        }
        self.stop();
        // Shims of this test still running (a failed test): kill them, and the namespace's cgroup parents.
        for pid in self.shims() {
            // SAFETY: kill(2) with plain integers on a pid just read from /proc.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // Containers a killed shim left (a failed test): their processes, cgroups and shim state.
        let root = Path::new(SHIM_ROOT).join(&self.ns);
        for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let st: serde_json::Value = std::fs::read(e.path().join("state.json"))
                .ok()
                .and_then(|t| serde_json::from_slice(&t).ok())
                .unwrap_or_default();
            let pid = st["pid"].as_i64().unwrap_or(0);
            let start = st["pidStartTime"].as_u64().unwrap_or(0);
            if pid > 0 && start > 0 && start_time(pid) == Some(start) {
                // SAFETY: kill(2) with plain integers; the pid is the test's container process (same start time).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
            for base in cgroup_bases() {
                let _ = std::fs::remove_dir(base.join(&self.ns).join(e.file_name()));
            }
            let _ = std::fs::remove_dir_all(e.path());
        }
        for base in cgroup_bases() {
            let _ = std::fs::remove_dir(base.join(&self.ns));
        }
        let _ = std::fs::remove_dir(&root);
        // containerd-shim-runc-v2's state root of the namespace (containerd.rs), empty once its containers are gone.
        let _ = std::fs::remove_dir(Path::new("/run/containerd/runc").join(&self.ns));
        // Overlay mounts of a failed test (image tests).
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = self.dir.to_string_lossy().into_owned();
        for l in mounts.lines() {
            if let Some(mp) = l.split_whitespace().nth(4).filter(|m| m.starts_with(&dir)) {
                let _ = nix_umount(mp);
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("shim test: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// Field 22 (start time) of /proc/PID/stat.
pub fn start_time(pid: i64) -> Option<u64> {
    let t = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    t[t.rfind(')')? + 1..].split_whitespace().nth(19)?.parse().ok()
}

pub fn nix_umount(mp: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(mp) else { return false };
    // SAFETY: umount2 with a valid C string.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) == 0 }
}

pub fn busybox_rootfs(dir: &Path) -> Result<(), String> {
    let bin = dir.join("bin");
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc", "run"] {
        std::fs::create_dir_all(dir.join(d)).map_err(|e| format!("mkdir {}: {e}", dir.join(d).display()))?;
    }
    std::fs::copy("/bin/busybox", bin.join("busybox")).map_err(|e| format!("copy /bin/busybox: {e}"))?;
    for a in ["sh", "echo", "sleep", "true", "cat", "ls", "ps", "id"] {
        std::os::unix::fs::symlink("busybox", bin.join(a)).map_err(|e| format!("symlink bin/{a}: {e}"))?;
    }
    Ok(())
}

pub fn sha256_file(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap_or_else(|e| panic!("sha256sum {}: {e}", p.display()));
    text(&o.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// Write `data` as a blob of the OCI layout at `oci`; returns (digest, size).
pub fn blob(oci: &Path, data: &[u8]) -> (String, usize) {
    let tmp = oci.join("blob.tmp");
    std::fs::write(&tmp, data).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    let d = sha256_file(&tmp);
    std::fs::rename(&tmp, oci.join("blobs/sha256").join(&d)).unwrap_or_else(|e| panic!("rename blob: {e}"));
    (d, data.len())
}

/// An OCI image archive (for `ctr image import`) named NAME with one uncompressed layer made of the busybox rootfs
/// at `rootfs` and CMD as its command. Built with tar and sha256sum: no registry, no network.
pub fn busybox_image(dir: &Path, rootfs: &Path, name: &str, cmd: &[&str]) -> PathBuf {
    let oci = dir.join(format!("oci-{}", name.replace(['/', ':'], "_")));
    std::fs::create_dir_all(oci.join("blobs/sha256")).unwrap_or_else(|e| panic!("mkdir {}: {e}", oci.display()));
    let layer = oci.join("layer.tar");
    let st = Command::new("tar").arg("-C").arg(rootfs).arg("-cf").arg(&layer).arg(".").status();
    assert!(st.is_ok_and(|s| s.success()), "tar of {}", rootfs.display());
    let ld = sha256_file(&layer);
    let lsize = std::fs::metadata(&layer).map(|m| m.len()).unwrap_or(0);
    std::fs::rename(&layer, oci.join("blobs/sha256").join(&ld)).unwrap_or_else(|e| panic!("rename layer: {e}"));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{ld}")]}
    });
    let (cd, csize) = blob(&oci, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{cd}"), "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{ld}"), "size": lsize}]
    });
    let (md, msize) = blob(&oci, manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{md}"),
            "size": msize, "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(':').next().unwrap_or("latest")}}]
    });
    std::fs::write(oci.join("index.json"), index.to_string()).unwrap_or_else(|e| panic!("index.json: {e}"));
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .unwrap_or_else(|e| panic!("oci-layout: {e}"));
    let archive = dir.join(format!("{}.tar", oci.file_name().unwrap_or_default().to_string_lossy()));
    let st = Command::new("tar")
        .arg("-C")
        .arg(&oci)
        .arg("-cf")
        .arg(&archive)
        .args(["oci-layout", "index.json", "blobs"])
        .status();
    assert!(st.is_ok_and(|s| s.success()), "tar of {}", oci.display());
    archive
}

/// Root, containerd, the shim and busybox present (else SKIPPED, or a panic in CI); a busybox rootfs and a private
/// containerd (namespace `keelshim-TAG`) in a temp dir.
pub fn setup(tag: &str, cri: bool) -> Option<Containerd> {
    setup_ns(tag, cri, &format!("keelshim-{tag}"))
}

/// [`setup`] with the containerd namespace NS (CRI uses k8s.io).
pub fn setup_ns(tag: &str, cri: bool, ns: &str) -> Option<Containerd> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip(&format!("{tag}: needs root"));
    }
    ensure_containerd()?;
    let Some(shim) = shim_binary() else {
        return skip("containerd-shim-keel-v1 not built (make build, or cargo build -p containerd-shim-keel-v1; or set KEEL_SHIM)");
    };
    if !Path::new("/bin/busybox").is_file() {
        return skip("/bin/busybox missing (make deps installs busybox-static)");
    }
    let dir = std::env::temp_dir().join(format!("keel-shim-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin")).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    std::os::unix::fs::symlink(&shim, dir.join("bin").join(SHIM)).unwrap_or_else(|e| panic!("symlink shim: {e}"));
    busybox_rootfs(&dir.join("rootfs")).unwrap_or_else(|e| panic!("busybox rootfs: {e}"));
    eprintln!("shim test {tag}: shim {}", shim.display());
    let cd = Containerd::start(&dir, ns, cri).unwrap_or_else(|e| panic!("{e}"));
    Some(cd)
}

/// Wait until no shim of this test runs any more (each exits on Shutdown once its last container is deleted).
pub fn assert_no_shims(cd: &Containerd) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cd.shims().is_empty() {
        assert!(Instant::now() < deadline, "shims still running 10 s after the last delete: {:?}", cd.shims());
        std::thread::sleep(Duration::from_millis(50));
    }
}
