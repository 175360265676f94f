//! Shared harness of the root tests pid1.rs and hostile.rs: keel's `init` as PID 1 of a fresh pid+mount namespace
//! (`unshare --pid --fork --mount --mount-proc`, sandbox mode: KEEL_SANDBOX=1, bundles from KEEL_CONTAINERS,
//! control socket under KEEL_RUN) with busybox bundles, its captured console, keelctl calls and /proc probes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why the root tests cannot run here (root, unshare(1) and a static busybox are needed; `make deps` installs the
/// tools: tests never install anything).
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new("/usr/bin/unshare").exists() && !Path::new("/bin/unshare").exists() {
        return Some("no unshare(1) (make deps: util-linux)".into());
    }
    if busybox().is_none() {
        return Some("no static busybox (make deps: busybox-static)".into());
    }
    None
}

/// True when the running test cannot run here: it prints `SKIPPED test: why` (never a silent pass); under CI=true
/// (root, `make deps` done) that is a failure.
pub fn skip() -> bool {
    let Some(why) = skip_reason() else { return false };
    let t = std::thread::current().name().unwrap_or("test").to_string();
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{t}: {why} (CI=true: a test that cannot run is a failure)");
    }
    // Not eprintln!: the test harness captures that and hides it when the test passes.
    let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("SKIPPED {t}: {why}\n"));
    true
}

/// A statically linked busybox (a dynamic one cannot run in a bare rootfs).
pub fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| std::fs::read(p).is_ok_and(|b| !b.windows(15).any(|w| w == b"/lib64/ld-linux")))
}

/// A character device node at `path`.
pub fn mknod(path: &Path, major: u32, minor: u32) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mknod with a valid NUL-terminated path.
    unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(major, minor)) };
}

/// A busybox rootfs at `dir` with /dev/null (for containers without a /dev mount) and the applets `apps` in /bin.
pub fn make_rootfs(dir: &Path, apps: &[&str]) {
    for d in ["bin", "proc", "dev", "tmp", "run"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let bb = dir.join("bin/busybox");
    // A hard link, never a copy made while other test threads fork: a copy's write fd, inherited by a forked child
    // until its exec, makes exec of the file fail with ETXTBSY. Across file systems: one copy per process, made
    // once, beside the trees, then links to it.
    if std::fs::hard_link(busybox().unwrap(), &bb).is_err() {
        static TEMPLATE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        let t = TEMPLATE.get_or_init(|| {
            // The trees live in /var/tmp (rc's sandbox mounts a fresh /tmp): keep the template there, outside any
            // one tree (trees are removed when their test ends).
            let base = if dir.starts_with("/var/tmp") { Path::new("/var/tmp") } else { dir.parent().unwrap_or(dir) };
            let t = base.join(format!("keel-test-busybox-{}", std::process::id()));
            std::fs::copy(busybox().unwrap(), &t).unwrap();
            extern "C" fn remove_template() {
                let _ = std::fs::remove_file(format!("/var/tmp/keel-test-busybox-{}", std::process::id()));
            }
            // SAFETY: registering a plain extern "C" fn with no captured state.
            unsafe { libc::atexit(remove_template) };
            t
        });
        std::fs::hard_link(t, &bb).unwrap();
    }
    mknod(&dir.join("dev/null"), 1, 3);
    for app in apps {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(app)).unwrap();
    }
}

/// A temporary bundle tree: TMP/containers/{onboot,services,onshutdown}, TMP/rootfs shared by all bundles.
pub struct Tree {
    pub dir: PathBuf,
}

impl Tree {
    /// /var/tmp/keel-KIND-TAG-PID with its rootfs made by `rootfs` and an empty run/.
    pub fn new(kind: &str, tag: &str, rootfs: impl FnOnce(&Path)) -> Tree {
        // Not under /tmp: rc's sandbox mode mounts a fresh tmpfs on /tmp (and /run) inside the namespace.
        let dir = PathBuf::from("/var/tmp").join(format!("keel-{kind}-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        rootfs(&dir.join("rootfs"));
        std::fs::create_dir_all(dir.join("run")).unwrap();
        Tree { dir }
    }

    pub fn containers(&self) -> PathBuf {
        self.dir.join("containers")
    }

    pub fn rootfs(&self) -> String {
        self.dir.join("rootfs").display().to_string()
    }

    /// The config.json of a bundle running `sh -c SCRIPT`.
    pub fn config(&self, script: &str, annotations: &[(&str, &str)], pidns: bool, root: &str, mounts: &str) -> String {
        let ns = if pidns { r#"[{"type":"pid"},{"type":"mount"}]"# } else { r#"[{"type":"mount"}]"# };
        let ann: Vec<String> = annotations.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
        format!(
            r#"{{"ociVersion":"1.0.2","process":{{"args":["/bin/sh","-c",{script:?}],"cwd":"/","env":["PATH=/bin"]}},
"root":{{"path":{root:?}}},"mounts":{mounts},"linux":{{"namespaces":{ns}}},"annotations":{{{ann}}}}}"#,
            ann = ann.join(",")
        )
    }

    /// A bundle at containers/REL running `sh -c SCRIPT` in the shared rootfs.
    pub fn sh(&self, rel: &str, script: &str, annotations: &[(&str, &str)], pidns: bool) {
        let mounts = if pidns { r#"[{"destination":"/proc","type":"proc","source":"proc"}]"# } else { "[]" };
        self.raw(rel, self.config(script, annotations, pidns, &self.rootfs(), mounts));
    }

    /// A bundle at containers/REL with this config.json.
    pub fn raw(&self, rel: &str, config: impl AsRef<[u8]>) {
        let d = self.containers().join(rel);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), config).unwrap();
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads init's stdout into the shared lines (runs on its own thread).
pub type Reader = fn(ChildStdout, Arc<Mutex<Vec<String>>>);

/// UTF-8 lines, each echoed as `pid1> LINE`.
pub fn echo_lines(out: ChildStdout, lines: Arc<Mutex<Vec<String>>>) {
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        println!("pid1> {line}");
        lines.lock().unwrap().push(line);
    }
}

/// Raw byte lines, lossily decoded, at most 200 000 kept, not echoed.
pub fn raw_lines(out: ChildStdout, lines: Arc<Mutex<Vec<String>>>) {
    let mut r = BufReader::new(out);
    let mut buf = Vec::new();
    // Raw bytes: a raw ESC reaching the console is a failure the test must see, not a decoding error.
    while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
        let line = String::from_utf8_lossy(&buf).trim_end_matches('\n').to_string();
        buf.clear();
        let mut l = lines.lock().unwrap();
        if l.len() < 200_000 {
            l.push(line);
        }
    }
}

/// A running sandboxed init with its captured stdout.
pub struct Pid1 {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    pub run: PathBuf,
    /// What failure messages show of the output.
    dump: fn(&[String]) -> String,
    /// How long to let the reader thread catch up after init exited.
    settle: Duration,
}

fn join_lines(out: &[String]) -> String {
    out.join("\n")
}

impl Pid1 {
    pub fn start(tree: &Tree) -> Pid1 {
        Pid1::start_with(tree, &[])
    }

    /// Echoing its console; failure messages show all of it.
    pub fn start_with(tree: &Tree, env: &[(&str, &str)]) -> Pid1 {
        Pid1::spawn(tree, env, echo_lines, join_lines, Duration::from_millis(50))
    }

    pub fn spawn(
        tree: &Tree,
        env: &[(&str, &str)],
        reader: Reader,
        dump: fn(&[String]) -> String,
        settle: Duration,
    ) -> Pid1 {
        let run = tree.dir.join("run");
        let mut child = Command::new("unshare")
            .args(["--pid", "--fork", "--mount", "--mount-proc", "--kill-child"])
            // KEEL_TEST_INIT: run another build (e.g. the static release binary) for measurements.
            .arg(std::env::var("KEEL_TEST_INIT").unwrap_or_else(|_| env!("CARGO_BIN_EXE_init").to_string()))
            .env("KEEL_SANDBOX", "1")
            .env("KEEL_CONTAINERS", tree.containers())
            .env("KEEL_RUN", &run)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn unshare");
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        std::thread::spawn(move || reader(out, l2));
        Pid1 { child, lines, run, dump, settle }
    }

    /// Host pid of init (the child of unshare).
    pub fn init_pid(&self) -> i32 {
        let p = self.child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let kids = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
            if let Some(k) = kids.split_whitespace().next() {
                return k.parse().unwrap();
            }
            assert!(Instant::now() < deadline, "init did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn count(&self, f: impl Fn(&str) -> bool) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| f(l)).count()
    }

    pub fn wait_for(&self, pat: &str, timeout: Duration) -> String {
        self.wait_line(|l| l.contains(pat), pat, timeout)
    }

    /// The first line matching `f` (`what` names it in the failure message).
    pub fn wait_line(&self, f: impl Fn(&str) -> bool, what: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| f(l)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {what:?} within {timeout:?}; output:\n{}",
                (self.dump)(&self.output())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn keelctl(&self, args: &[&str]) -> (i32, String) {
        let (code, out, _) = self.keelctl_timed(args);
        (code, out)
    }

    /// keelctl's exit code, stdout and how long it took.
    pub fn keelctl_timed(&self, args: &[&str]) -> (i32, String, Duration) {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_keelctl"))
            .args(args)
            .env("KEEL_RUN", &self.run)
            .output()
            .expect("run keelctl");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), t.elapsed())
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(self.init_pid(), sig) };
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                std::thread::sleep(self.settle); // let the reader thread catch up
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("init did not exit within {timeout:?}; output:\n{}", (self.dump)(&self.output()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pid1 {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn vm_rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// (pid, state, ppid) of every process on the host.
pub fn processes() -> Vec<(i32, char, i32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(rp) = stat.rfind(')') else { continue };
        let f: Vec<&str> = stat[rp + 2..].split_whitespace().collect();
        if f.len() > 2 {
            out.push((pid, f[0].chars().next().unwrap_or('?'), f[1].parse().unwrap_or(0)));
        }
    }
    out
}

/// Zombie children of `pid`.
pub fn zombies_of(pid: i32) -> Vec<i32> {
    processes().into_iter().filter(|&(_, st, pp)| pp == pid && st == 'Z').map(|(p, _, _)| p).collect()
}
