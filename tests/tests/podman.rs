//! Root test: podman 4.3 (Debian's) drives keel-runc as it drives runc. The case matrix is in
//! keel_tests::clients (shared with docker.rs) plus podman's own `run --timeout`; each case runs with runc,
//! keel-runc and (informational) crun, and keel-runc must give runc's outcome.
//!
//! podman runs with a private storage root, run root and tmp dir under a temp dir (`--root --runroot --tmpdir`,
//! vfs storage, cgroupfs, file events, `--network none` unless a case asks for host): nothing of the host's podman
//! state is touched. The busybox image is `podman import`ed from a tarball the test builds (no registry).
//!
//! This sandbox lacks CAP_SYS_RESOURCE and caps RLIMIT_NOFILE/NPROC below podman's defaults (1048576), so
//! runc and every other runtime fail to apply podman's default rlimits: the test probes the limits the runtime
//! inherits from conmon and passes them as `--ulimit` (as `default_ulimits` in a private containers.conf).
//!
//! Not root, or podman/conmon missing (`make deps` installs them; tests never install anything): SKIPPED outside
//! CI, a failure in CI (env CI=true).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keel_tests::clients::{self, s, Case, Client, Outcome, Runtime};

const TEST: &str = "podman matrix";

struct Env {
    dir: PathBuf,
    client: Client,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.client.cmd(&s(&["rm", "-af", "-t", "0"]));
        clients::unmount_below(&self.dir);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("{TEST}: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// The hard NOFILE and NPROC limits a runtime started by podman/conmon has here (a wrapper runtime records them).
fn probe_limits(base: &[String], dir: &Path, image: &str) -> (u64, u64) {
    let probe = dir.join("probe-runtime");
    let out = dir.join("probe-limits");
    let body = format!("#!/bin/sh\ncat /proc/self/limits > {}\nexec runc \"$@\"\n", out.display());
    std::fs::write(&probe, body).unwrap_or_else(|e| panic!("write {}: {e}", probe.display()));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("chmod: {e}"));
    let _ = Command::new("timeout")
        .args(["-s", "KILL", "60"])
        .args(base)
        .args(["run", "--rm", "--network", "none", "--runtime"])
        .arg(&probe)
        .args([image, "true"])
        .stdin(Stdio::null())
        .output();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let hard = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l[25..].split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            .unwrap_or(1024)
    };
    (hard("Max open files"), hard("Max processes"))
}

fn setup() -> Option<(Env, PathBuf)> {
    let keel = clients::common_prereqs(TEST)?;
    let ok = || clients::have("podman") && clients::have("conmon") && clients::have("script");
    if !ok() {
        return clients::skip(
            TEST,
            "podman, conmon or script(1) not installed (make deps: podman conmon catatonit bsdutils)",
        );
    }
    let dir = std::env::temp_dir().join(format!("keel-podman-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let p = |x: &str| dir.join(x).to_string_lossy().into_owned();
    let base: Vec<String> = vec![
        "podman".into(),
        "--root".into(),
        p("root"),
        "--runroot".into(),
        p("runroot"),
        "--tmpdir".into(),
        p("tmp"),
        "--storage-driver".into(),
        "vfs".into(),
        "--cgroup-manager".into(),
        "cgroupfs".into(),
        "--events-backend".into(),
        "file".into(),
    ];
    let image = "localhost/keel-busybox:test".to_string();
    let mut env = Env {
        dir: dir.clone(),
        client: Client {
            name: "podman",
            base: base.clone(),
            run_flags: vec![],
            image: image.clone(),
            env: vec![("CONTAINERS_CONF".into(), p("containers.conf"))],
            scratch: dir.clone(),
        },
    };
    // A private containers.conf (no host config is read for what matters here).
    std::fs::write(dir.join("containers.conf"), "[engine]\nevents_logger = \"file\"\n")
        .unwrap_or_else(|e| panic!("write containers.conf: {e}"));
    let tar = dir.join("busybox.tar");
    clients::busybox_tar(&tar).unwrap_or_else(|e| panic!("{e}"));
    let o = env.client.cmd(&s(&["import", &tar.to_string_lossy(), &image]));
    assert_eq!(o.code, Some(0), "podman import: {}", o.err);
    let (nofile, nproc) = probe_limits(&base, &dir, &image);
    env.client.run_flags =
        s(&["--ulimit", &format!("nofile={nofile}:{nofile}"), "--ulimit", &format!("nproc={nproc}:{nproc}")]);
    Some((env, keel))
}

/// podman's own cases.
fn podman_cases() -> Vec<Case> {
    vec![Case::new(
        "podman run --timeout 2 sleep 100",
        |c: &Client, rt: &Runtime, n: &str| {
            let t = std::time::Instant::now();
            let o = c.run(rt, &["--name", n, "--timeout", "2"], &["sleep", "100"]);
            let secs = t.elapsed().as_secs();
            // Left "Up" when the runtime does not make the process a session leader (conmon kills itself).
            let st = c.cmd(&s(&["ps", "-a", "--filter", &format!("name={n}"), "--format", "{{.Status}}"]));
            c.force_rm(n);
            Outcome {
                code: o.code,
                out: format!("fast={} left={:?}", secs < 20, st.out.split_whitespace().next().unwrap_or("")),
                err: o.err,
            }
        },
        |o| if o.out == "fast=true left=\"\"" { Ok(()) } else { Err("want the container gone within 20 s".into()) },
    )]
}

#[test]
fn podman_runs_keel_runc_as_runc() {
    let Some((env, keel)) = setup() else { return };
    let mut runtimes = vec![
        Runtime { name: "runc", arg: "runc".into() },
        Runtime { name: "keel-runc", arg: keel.to_string_lossy().into_owned() },
    ];
    // podman wants a path (or a name from containers.conf): runc's full path.
    if let Ok(o) = Command::new("sh").args(["-c", "command -v runc"]).output() {
        runtimes[0].arg = String::from_utf8_lossy(&o.stdout).trim().to_string();
    }
    if let Some(w) = clients::crun_wrapper(&env.dir) {
        runtimes.push(Runtime { name: "crun", arg: w.to_string_lossy().into_owned() });
    }
    let mut cases = clients::common_cases();
    cases.extend(podman_cases());
    clients::run_matrix("podman", &env.client, &runtimes, &cases);
}
