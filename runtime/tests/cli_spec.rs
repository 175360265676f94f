//! Root tests of keel-runc against runtime-spec points the OCI runtime-tools suite and real clients found:
//! poststart hooks run during `start`/`run` after the program is executed and before the command returns; failing
//! poststart/poststop hooks only warn (the others still run, `delete` succeeds); the exec fifo is 0622 whatever
//! the umask and owned by the container's root as mapped on the host (non-root and user-namespaced containers
//! start); runc's default `spec` (ambient caps without inheritable ones) runs; a missing or non-executable
//! program fails `create` in runc's words (what Docker maps to exit codes 127/126).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_keel-runc");

struct T {
    dir: PathBuf,
    root: PathBuf,
    bundle: PathBuf,
}

impl T {
    fn new(name: &str) -> Option<T> {
        if !common::is_root() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("keel-clispec-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bundle = dir.join("bundle");
        let rootfs = bundle.join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        common::install_busybox(&rootfs.join("bin/busybox"));
        for l in ["sh", "true", "false", "sleep", "cat", "echo", "id", "grep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(l)).unwrap();
        }
        std::fs::write(rootfs.join("bin/noexec"), "#!/bin/sh\necho no\n").unwrap();
        Some(T { root: dir.join("state"), dir, bundle })
    }

    /// keel-runc's own default `spec` (runc's: ambient caps, no inheritable set), with `args`, no terminal.
    fn config(&self, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) {
        let mut c: serde_json::Value = serde_json::from_str(keel_runtime::cli::spec::DEFAULT_CONFIG).unwrap();
        c["process"]["terminal"] = false.into();
        c["process"]["args"] = serde_json::json!(args);
        edit(&mut c);
        std::fs::write(self.bundle.join("config.json"), serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = std::fs::File::create(self.dir.join("out")).unwrap();
        let err = std::fs::File::create(self.dir.join("err")).unwrap();
        let status = Command::new(BIN)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .current_dir(&self.bundle)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .unwrap();
        Output {
            status,
            stdout: std::fs::read(self.dir.join("out")).unwrap_or_default(),
            stderr: std::fs::read(self.dir.join("err")).unwrap_or_default(),
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "keel-runc {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn hook(&self, script: &str) -> serde_json::Value {
        serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
    }
}

impl Drop for T {
    fn drop(&mut self) {
        for id in std::fs::read_dir(&self.root).into_iter().flatten().flatten() {
            let id = id.file_name().to_string_lossy().to_string();
            let _ = Command::new(BIN).arg("--root").arg(&self.root).args(["delete", "--force", &id]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn id(s: &str) -> String {
    format!("{s}-{}", std::process::id())
}

#[test]
fn default_spec_with_ambient_caps_runs() {
    let Some(t) = T::new("ambient") else { return };
    t.config(&["sh", "-c", "grep -E '^Cap(Inh|Amb)' /proc/self/status"], |_| {});
    let out = t.ok(&["run", &id("ambient")]);
    // As runc: the ambient caps the spec lists cannot be raised without inheritable ones, and are skipped.
    assert!(out.contains("CapAmb:\t0000000000000000"), "{out}");
}

#[test]
fn poststart_runs_in_start_after_exec_and_failures_warn() {
    let Some(t) = T::new("poststart") else { return };
    let log = t.dir.join("hooks.log");
    let l = log.display().to_string();
    // The hook sees the state on stdin and the program already running (its comm is sleep, not the runtime's).
    t.config(&["sleep", "30"], |c| {
        c["hooks"] = serde_json::json!({
            "poststart": [
                t.hook("exit 3"),
                t.hook(&format!("s=$(cat); p=${{s#*\\\"pid\\\":}}; p=${{p%%,*}}; echo poststart $(cat /proc/$p/comm) >> {l}")),
            ],
            "poststop": [
                t.hook("exit 4"),
                t.hook(&format!("echo poststop >> {l}")),
            ],
        });
    });
    let c = id("poststart");
    t.ok(&["create", &c]);
    assert!(!log.exists(), "poststart ran during create");
    let o = t.run(&["start", &c]);
    assert!(o.status.success(), "start with a failing poststart hook: {}", String::from_utf8_lossy(&o.stderr));
    // Before start returned: the second hook ran, after the program was executed.
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "poststart sleep\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("poststart hook"), "no warning for the failed hook");
    t.ok(&["kill", &c, "KILL"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !t.ok(&["state", &c]).contains("stopped") {
        assert!(Instant::now() < deadline, "not stopped after SIGKILL");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A failing poststop hook: a warning, the next hook runs, delete succeeds and removes the container.
    let o = t.run(&["delete", &c]);
    assert!(o.status.success(), "delete with a failing poststop hook: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "poststart sleep\npoststop\n");
    assert!(!t.root.join(&c).exists(), "state left after delete");
}

#[test]
fn run_runs_poststart_hooks() {
    let Some(t) = T::new("runpost") else { return };
    let log = t.dir.join("hooks.log");
    t.config(&["true"], |c| {
        c["hooks"] = serde_json::json!({"poststart": [t.hook(&format!("echo poststart >> {}", log.display()))]});
    });
    t.ok(&["run", &id("runpost")]);
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "poststart\n");
}

#[test]
fn exec_fifo_is_0622_and_non_root_users_start() {
    let Some(t) = T::new("fifo") else { return };
    t.config(&["id"], |c| {
        c["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [10]});
    });
    let c = id("fifo");
    // A umask that would make mkfifo's 0622 a 0600 (as under Docker and podman).
    // SAFETY: umask has no preconditions; keel-runc inherits it.
    let old = unsafe { libc::umask(0o077) };
    let o = t.run(&["create", &c]);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    assert!(o.status.success(), "create --user 1000: {}", String::from_utf8_lossy(&o.stderr));
    let m = std::fs::metadata(t.root.join(&c).join("exec.fifo")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o622, "exec fifo mode");
    t.ok(&["start", &c]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !t.ok(&["state", &c]).contains("stopped") {
        assert!(Instant::now() < deadline, "id did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    t.ok(&["delete", &c]);
    assert_eq!(std::fs::read_to_string(t.dir.join("out")).unwrap_or_default(), "");
}

#[test]
fn exec_fifo_is_owned_by_the_mapped_root() {
    let Some(t) = T::new("fifo-userns") else { return };
    t.config(&["true"], |c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.push(serde_json::json!({"type": "user"}));
        c["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    let c = id("fifo-userns");
    let o = t.run(&["create", &c]);
    assert!(o.status.success(), "create with a user namespace: {}", String::from_utf8_lossy(&o.stderr));
    let m = std::fs::metadata(t.root.join(&c).join("exec.fifo")).unwrap();
    assert_eq!((m.uid(), m.gid()), (100000, 100000), "exec fifo owner");
    t.ok(&["start", &c]);
}

#[test]
fn exec_failures_use_runcs_words() {
    let Some(t) = T::new("words") else { return };
    for (arg, want) in [
        ("/bin/nope", r#"exec: "/bin/nope": stat /bin/nope: no such file or directory"#),
        ("nope", r#"exec: "nope": executable file not found in $PATH"#),
        ("/bin/noexec", r#"exec: "/bin/noexec": permission denied"#),
    ] {
        t.config(&[arg], |_| {});
        let log = t.dir.join("log.json");
        let l = log.display().to_string();
        let o = t.run(&["--log", &l, "--log-format", "json", "create", &id("words")]);
        assert!(!o.status.success(), "create {arg} succeeded");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "create {arg}: stderr {err:?}, want {want:?}");
        // containerd's shim (and so Docker) reads the last error line of the JSON log.
        let last = std::fs::read_to_string(&log).unwrap_or_default();
        let line = last.lines().rev().find(|l| l.contains("\"error\"")).unwrap_or("");
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        assert!(v["msg"].as_str().unwrap_or("").contains(want), "log {line:?}");
        assert!(!t.root.join(id("words")).exists(), "state left after a failed create");
    }
}

/// Seccomp profiles older than openat2 (runtime-tools' default, Docker's before 20.10, many LinuxKit images) answer
/// it with EPERM. Without noNewPrivileges the filter is installed before the exec fifo is opened (as runc does), so
/// the runtime's own steps after it must not need openat2: runc opens the fifo with open(2) and passes. Today keel's
/// child reopens the fifo with openat2 and `create` fails ("open exec fifo ...: Operation not permitted").
#[test]
fn seccomp_profile_without_openat2_still_creates() {
    let Some(t) = T::new("no-openat2") else { return };
    t.config(&["true"], |c| {
        c["process"]["noNewPrivileges"] = false.into();
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["openat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
        });
    });
    let c = id("no-openat2");
    let o = t.run(&["create", &c]);
    assert!(o.status.success(), "create under a profile without openat2: {}", String::from_utf8_lossy(&o.stderr));
    t.ok(&["start", &c]);
}
