//! Root tests of keel-runc, the runc-compatible CLI, driving the built binary with busybox bundles:
//! create/start/state/kill/delete, run (foreground and detached), list, ps, exec, pause/resume, spec, features,
//! and that failures leave nothing behind (state dir, cgroup, mounts).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_keel-runc");

/// Container ids are unique per test process: they also name cgroups, which are global.
fn id(s: &str) -> String {
    format!("{s}-{}", std::process::id())
}

fn busybox() -> Option<PathBuf> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    // Tests never install packages (`make deps` does).
    None
}

/// A test sandbox: its own --root and bundle directory, removed on drop.
struct T {
    dir: PathBuf,
    root: PathBuf,
    bundle: PathBuf,
}

impl T {
    fn new(name: &str, args: &[&str]) -> Option<T> {
        if !common::is_root() {
            return None;
        }
        if busybox().is_none() {
            common::skipped("no busybox (make deps installs busybox-static)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("keel-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bundle = dir.join("bundle");
        let rootfs = bundle.join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        common::install_busybox(&rootfs.join("bin/busybox"));
        for l in ["sh", "true", "false", "sleep", "cat", "echo", "ls", "id", "mkdir", "grep", "kill"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(l)).unwrap();
        }
        let t = T { root: dir.join("state"), dir, bundle };
        t.config(args, |_| {});
        Some(t)
    }

    /// Write config.json: runc's default spec (from `keel-runc spec`), no terminal, writable root, `args`.
    fn config(&self, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) {
        let mut c: serde_json::Value = serde_json::from_str(keel_runtime::cli::spec::DEFAULT_CONFIG).unwrap();
        c["process"]["terminal"] = false.into();
        c["process"]["args"] = serde_json::json!(args);
        c["root"]["readonly"] = false.into();
        // runc's default lists ambient caps without inheritable ones; raising them needs inheritable.
        c["process"]["capabilities"]["inheritable"] = c["process"]["capabilities"]["ambient"].clone();
        edit(&mut c);
        std::fs::write(self.bundle.join("config.json"), serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(&self.root).args(args).current_dir(&self.bundle);
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        // Container output goes to a file: a detached container keeps its stdout open, a pipe would never EOF.
        // (stderr likewise: a container inherits it.)
        // Fresh files per call: a container keeps writing to the ones of the call that started it.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (out, err) = (self.dir.join(format!("out-{n}")), self.dir.join(format!("err-{n}")));
        let out_f = std::fs::File::create(&out).unwrap();
        let err_f = std::fs::File::create(&err).unwrap();
        let status = self.cmd(args).stdout(out_f).stderr(err_f).status().unwrap();
        let stdout = std::fs::read(&out).unwrap_or_default();
        let stderr = std::fs::read(&err).unwrap_or_default();
        Output { status, stdout, stderr }
    }

    /// Everything every container of this test wrote to stdout so far.
    fn all_output(&self) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("out-") {
                s.push_str(&String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default()));
            }
        }
        s
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "keel-runc {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn state(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.status(id) != want {
            assert!(Instant::now() < deadline, "{id} never became {want}: {}", self.status(id));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Nothing of container `id` is left: no state dir, no cgroup, no mount under the test dir.
    fn assert_clean(&self, id: &str) {
        assert!(!self.root.join(id).exists(), "state dir of {id} left behind");
        let cg = keel_runtime::cgroups::default_root().join(id);
        assert!(!cg.exists(), "cgroup {} left behind", cg.display());
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let d = self.dir.to_string_lossy().to_string();
        assert!(!mi.contains(&d), "mount under {d} left behind");
    }
}

impl Drop for T {
    fn drop(&mut self) {
        for id in std::fs::read_dir(&self.root).into_iter().flatten().flatten() {
            let id = id.file_name().to_string_lossy().to_string();
            let _ = self.cmd(&["delete", "--force", &id]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn run_foreground_returns_exit_code_and_cleans_up() {
    let Some(t) = T::new("fg", &["/bin/sh", "-c", "echo out-$((6*7)); exit 7"]) else { return };
    let o = t.run(&["run", id("fg1").as_str()]);
    assert_eq!(o.status.code(), Some(7), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("out-42"));
    t.assert_clean(id("fg1").as_str());
    t.config(&["/bin/true"], |_| {});
    assert_eq!(t.run(&["run", "-b", t.bundle.to_str().unwrap(), id("fg2").as_str()]).status.code(), Some(0));
    t.assert_clean(id("fg2").as_str());
}

#[test]
fn create_start_state_kill_delete() {
    let Some(t) =
        T::new("life", &["/bin/sh", "-c", "trap 'exit 3' USR1; echo started; while true; do sleep 0.05; done"])
    else {
        return;
    };
    let pidfile = t.dir.join("pid");
    t.ok(&[
        "create",
        "--bundle",
        t.bundle.to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        id("c1").as_str(),
    ]);
    let st = t.state(id("c1").as_str());
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id("c1").as_str());
    assert_eq!(st["bundle"], t.bundle.canonicalize().unwrap().to_str().unwrap());
    let pid: i64 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert_eq!(st["pid"], pid);
    assert!(st["created"].as_str().unwrap().ends_with('Z'));
    // Not started yet: no output.
    assert!(!t.all_output().contains("started"));
    // A second create with the same id fails and does not disturb the first.
    let o = t.run(&["create", id("c1").as_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("container with id exists"));
    t.ok(&["start", id("c1").as_str()]);
    t.wait_status(id("c1").as_str(), "running");
    let o = t.run(&["start", id("c1").as_str()]);
    assert_eq!(o.status.code(), Some(1));
    // delete refuses a running container without --force
    let o = t.run(&["delete", id("c1").as_str()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not stopped"), "{o:?}");
    t.ok(&["kill", id("c1").as_str(), "SIGUSR1"]);
    t.wait_status(id("c1").as_str(), "stopped");
    assert_eq!(t.state(id("c1").as_str())["pid"], 0);
    let o = t.run(&["kill", id("c1").as_str(), "TERM"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("container not running"));
    t.ok(&["delete", id("c1").as_str()]);
    t.assert_clean(id("c1").as_str());
    let o = t.run(&["state", id("c1").as_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("container does not exist"));
}

#[test]
fn created_container_can_be_deleted() {
    let Some(t) = T::new("cdel", &["/bin/sh", "-c", "echo should-not-run"]) else { return };
    t.ok(&["create", id("cd1").as_str()]);
    assert_eq!(t.status(id("cd1").as_str()), "created");
    t.ok(&["delete", id("cd1").as_str()]);
    t.assert_clean(id("cd1").as_str());
    assert!(!t.all_output().contains("should-not-run"));
}

#[test]
fn detached_list_ps_exec_pause_resume_kill() {
    let Some(t) = T::new("det", &["/bin/sh", "-c", "while true; do sleep 0.05; done"]) else { return };
    t.ok(&["run", "-d", id("d1").as_str()]);
    assert_eq!(t.status(id("d1").as_str()), "running");
    let pid = t.state(id("d1").as_str())["pid"].as_i64().unwrap();

    let list = t.ok(&["list"]);
    assert!(list.starts_with("ID"), "{list}");
    assert!(list.lines().any(|l| l.starts_with(&format!("{} ", id("d1"))) && l.contains("running")), "{list}");
    assert_eq!(t.ok(&["list", "-q"]).trim(), id("d1").as_str());
    let j: serde_json::Value = serde_json::from_str(&t.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(j[0]["id"], id("d1").as_str());

    let pids: Vec<i64> = serde_json::from_str(&t.ok(&["ps", "--format", "json", id("d1").as_str()])).unwrap();
    assert!(pids.contains(&pid), "{pids:?}");
    let table = t.ok(&["ps", id("d1").as_str()]);
    assert!(table.lines().next().unwrap().contains("PID"));
    assert!(table.contains(&pid.to_string()), "{table}");

    // exec joins the container: pid namespace (sh is not pid 1 but sees pid 1), same cgroup, its root.
    let out =
        t.ok(&["exec", id("d1").as_str(), "/bin/sh", "-c", "echo ns-$$; cat /proc/1/cmdline; echo; ls /bin/busybox"]);
    assert!(out.contains("/bin/busybox"), "{out}");
    assert!(out.contains("while true"), "{out}");
    let o = t.run(&["exec", id("d1").as_str(), "sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    let o = t.run(&["exec", "--env", "FOO=bar", "--cwd", "/tmp", id("d1").as_str(), "sh", "-c", "echo $FOO $(pwd)"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("bar /tmp"), "{o:?}");
    let o = t.run(&["exec", id("d1").as_str(), "/no/such/binary"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exec failed"), "{o:?}");
    // The error names the path, as runc's does.
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("exec: \"/no/such/binary\": stat /no/such/binary: no such file or directory"),
        "{o:?}"
    );

    t.ok(&["pause", id("d1").as_str()]);
    assert_eq!(t.status(id("d1").as_str()), "paused");
    assert!(!t.run(&["pause", id("d1").as_str()]).status.success());
    t.ok(&["resume", id("d1").as_str()]);
    assert_eq!(t.status(id("d1").as_str()), "running");
    assert!(!t.run(&["resume", id("d1").as_str()]).status.success());

    t.ok(&["kill", "--all", id("d1").as_str(), "9"]);
    t.wait_status(id("d1").as_str(), "stopped");
    t.ok(&["delete", id("d1").as_str()]);
    t.assert_clean(id("d1").as_str());
}

#[test]
fn foreground_run_forwards_signals() {
    let Some(t) = T::new("sig", &["/bin/sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.05; done"]) else {
        return;
    };
    let mut child = t.cmd(&["run", id("s1").as_str()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let o = t.run(&["state", id("s1").as_str()]);
        if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("running") {
            break;
        }
        assert!(Instant::now() < deadline, "s1 never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100)); // let sh install its trap
    keel_sys::kill(child.id() as i32, libc::SIGTERM).unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(42));
    t.assert_clean(id("s1").as_str());
}

#[test]
fn failures_leave_nothing_behind() {
    let Some(t) = T::new("fail", &["/bin/no-such-binary"]) else { return };
    let o = t.run(&["run", id("f1").as_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-binary"), "{o:?}");
    t.assert_clean(id("f1").as_str());
    // create fails already, as runc's does (the binary is looked up before waiting for start), naming the path;
    // nothing is left.
    let o = t.run(&["create", id("f2").as_str()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("exec: \"/bin/no-such-binary\": stat /bin/no-such-binary: no such file or directory"),
        "{err}"
    );
    t.assert_clean(id("f2").as_str());

    // A failing mount.
    t.config(&["/bin/true"], |c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
            {"destination": "/mnt", "type": "bind", "source": "/no/such/source", "options": ["rbind"]}));
    });
    let o = t.run(&["run", id("f3").as_str()]);
    assert_eq!(o.status.code(), Some(1));
    t.assert_clean(id("f3").as_str());

    // Invalid JSON: the error names config.json; nothing is created.
    std::fs::write(t.bundle.join("config.json"), b"{ not json").unwrap();
    let log = t.dir.join("log.json");
    let o = t.run(&["--log", log.to_str().unwrap(), "--log-format", "json", "create", id("f4").as_str()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("config.json"), "{err}");
    t.assert_clean(id("f4").as_str());
    let line = std::fs::read_to_string(&log).unwrap();
    let j: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(j["level"], "error");
    assert!(j["msg"].as_str().unwrap().contains("config.json"));
    assert!(j["time"].as_str().is_some());

    // Bad ids and unknown containers.
    assert_eq!(t.run(&["state", "../x"]).status.code(), Some(1));
    assert_eq!(t.run(&["kill", "nope"]).status.code(), Some(1));
    assert!(t.run(&["delete", "--force", "nope"]).status.success());
    assert_eq!(t.run(&["bogus-verb"]).status.code(), Some(1));
    assert_eq!(t.run(&["kill", "--bogus", "x"]).status.code(), Some(1));
}

#[test]
fn spec_and_features() {
    let Some(t) = T::new("spec", &["/bin/true"]) else { return };
    let d = t.dir.join("newbundle");
    std::fs::create_dir_all(&d).unwrap();
    t.ok(&["spec", "--bundle", d.to_str().unwrap()]);
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("config.json")).unwrap()).unwrap();
    assert_eq!(c["process"]["args"][0], "sh");
    assert_eq!(c["root"]["path"], "rootfs");
    assert!(!t.run(&["spec", "--bundle", d.to_str().unwrap()]).status.success());
    let f: serde_json::Value = serde_json::from_str(&t.ok(&["features"])).unwrap();
    assert_eq!(f["linux"]["cgroup"]["v2"], true);
    assert!(f["linux"]["seccomp"]["operators"].as_array().unwrap().len() == 7);
}

#[test]
fn exec_with_process_file_user_and_seccomp() {
    let Some(t) = T::new("procfile", &["/bin/sh", "-c", "while true; do sleep 0.05; done"]) else { return };
    t.config(&["/bin/sh", "-c", "while true; do sleep 0.05; done"], |c| {
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
        });
    });
    let d = id("p1");
    t.ok(&["run", "-d", d.as_str()]);
    // The container's seccomp filter applies to exec'd processes too: mkdir fails with EACCES (13).
    let out = t.ok(&["exec", d.as_str(), "sh", "-c", "mkdir /tmp/x 2>&1; echo rc=$?; ls -d /tmp/x 2>&1; true"]);
    assert!(out.contains("rc=1"), "{out}");
    assert!(out.to_lowercase().contains("permission denied"), "{out}");
    // process.json: user, env, cwd, args from the file.
    let pj = t.dir.join("process.json");
    std::fs::write(
        &pj,
        serde_json::to_vec(&serde_json::json!({
            "terminal": false,
            "user": {"uid": 1234, "gid": 567, "additionalGids": [89]},
            "args": ["/bin/sh", "-c", "echo $(id -u):$(id -g):$(id -G) $HELLO $(pwd)"],
            "env": ["PATH=/bin", "HELLO=world"],
            "cwd": "/tmp"
        }))
        .unwrap(),
    )
    .unwrap();
    let pid_file = t.dir.join("exec.pid");
    let out = t.ok(&["exec", "--process", pj.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), d.as_str()]);
    assert!(out.contains("1234:567:") && out.contains("89"), "{out}");
    assert!(out.contains("world /tmp"), "{out}");
    assert!(std::fs::read_to_string(&pid_file).unwrap().trim().parse::<i32>().unwrap() > 0);
    t.ok(&["delete", "--force", d.as_str()]);
    t.assert_clean(&d);
}

#[test]
fn resources_are_written_to_the_container_cgroup() {
    let Some(t) = T::new("res", &["/bin/sh", "-c", "while true; do sleep 0.05; done"]) else { return };
    t.config(&["/bin/sh", "-c", "while true; do sleep 0.05; done"], |c| {
        c["linux"]["resources"] = serde_json::json!({"unified": {"cgroup.max.descendants": "3"}});
    });
    let d = id("r1");
    t.ok(&["run", "-d", d.as_str()]);
    let cg = keel_runtime::cgroups::default_root().join(&d);
    let pid = t.state(&d)["pid"].as_i64().unwrap() as i32;
    assert!(keel_runtime::cgroups::procs(&cg).contains(&pid), "container not in {}", cg.display());
    assert_eq!(std::fs::read_to_string(cg.join("cgroup.max.descendants")).unwrap().trim(), "3");
    t.ok(&["delete", "--force", d.as_str()]);
    t.assert_clean(&d);
}

#[test]
fn hybrid_host_v1_limits_and_membership() {
    let hs = keel_runtime::cgroups::v1::hierarchies();
    let v2 =
        std::fs::read_to_string(keel_runtime::cgroups::default_root().join("cgroup.controllers")).unwrap_or_default();
    let v1_of = |c: &str| keel_runtime::cgroups::v1::hierarchy_of(hs, c).map(|h| h.mount.clone());
    let (Some(cpu), Some(mem)) = (v1_of("cpu"), v1_of("memory")) else {
        common::not_applicable("not a hybrid host with v1 cpu and memory");
        return;
    };
    if v2.split_whitespace().any(|c| c == "cpu" || c == "memory") {
        common::not_applicable("cpu or memory is in cgroup v2 here");
        return;
    }
    let script = ["/bin/sh", "-c", "while true; do sleep 0.05; done"];
    let Some(t) = T::new("hyb", &script) else { return };
    t.config(&script, |c| {
        c["linux"]["resources"] = serde_json::json!({"cpu": {"shares": 1024}, "memory": {"limit": 67108864}});
    });
    let d = id("h1");
    t.ok(&["run", "-d", d.as_str()]);
    let pid = t.state(&d)["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(cpu.join(&d).join("cpu.shares")).unwrap().trim(), "1024");
    assert_eq!(std::fs::read_to_string(mem.join(&d).join("memory.limit_in_bytes")).unwrap().trim(), "67108864");
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for h in hs {
        let want = format!(":{}:/{d}\n", h.controllers.join(","));
        assert!(own.contains(&want), "not in {want:?}: {own}");
    }
    // exec'd processes join them too.
    let out = t.ok(&["exec", d.as_str(), "cat", "/proc/self/cgroup"]);
    assert!(out.contains(&format!(":cpu:/{d}\n")), "{out}");
    t.ok(&["delete", "--force", d.as_str()]);
    t.assert_clean(&d);
    for h in hs {
        assert!(!h.mount.join(&d).exists(), "{} left behind", h.mount.join(&d).display());
    }
}

#[test]
fn exec_tty_sends_pty_master_over_console_socket() {
    let Some(t) = T::new("tty", &["/bin/sh", "-c", "while true; do sleep 0.05; done"]) else { return };
    let d = id("t1");
    t.ok(&["run", "-d", d.as_str()]);
    let sock = t.dir.join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || accept_master(&listener));
    t.ok(&[
        "exec",
        "--tty",
        "--console-socket",
        sock.to_str().unwrap(),
        d.as_str(),
        "sh",
        "-c",
        "[ -t 0 ] && [ -t 1 ] && echo on-a-tty",
    ]);
    let out = read_pty(receiver.join().unwrap());
    assert!(out.contains("on-a-tty"), "{out:?}");
    t.ok(&["delete", "--force", d.as_str()]);
    t.assert_clean(&d);
}

/// The pty master keel-runc sends over a --console-socket connection.
fn accept_master(listener: &std::os::unix::net::UnixListener) -> std::os::fd::OwnedFd {
    use std::os::fd::AsRawFd;
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 64];
    let (_, fd) = keel_sys::io::recv_fd(conn.as_raw_fd(), &mut buf).unwrap();
    fd.expect("no fd received")
}

/// Everything written to the pty until the slave side closes (the pty then reports EIO).
fn read_pty(master: std::os::fd::OwnedFd) -> String {
    use std::io::Read;
    let mut f = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `process.terminal`: the container's stdio is a pty of its own devpts, also bound on /dev/console (as runc).
#[test]
fn terminal_container_has_its_pty_as_dev_console() {
    let Some(t) = T::new(
        "term",
        &["/bin/sh", "-c", "[ -t 0 ] && echo on-a-tty; cat /proc/self/stat >/dev/console && echo console-ok"],
    ) else {
        return;
    };
    t.config(&["/bin/sh", "-c", "[ -t 0 ] && echo on-a-tty; echo via-console >/dev/console"], |c| {
        c["process"]["terminal"] = true.into();
    });
    let sock = t.dir.join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || accept_master(&listener));
    let d = id("term");
    t.ok(&["run", "--console-socket", sock.to_str().unwrap(), d.as_str()]);
    let out = read_pty(receiver.join().unwrap());
    assert!(out.contains("on-a-tty") && out.contains("via-console"), "{out:?}");
    t.assert_clean(&d);
}
