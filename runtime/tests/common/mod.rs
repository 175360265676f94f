//! Shared helpers for keel-runtime's root tests: a busybox rootfs in a temp dir, config.json writing, spawning with a
//! stdout pipe and reaping in the test (the test is the reaper).
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use keel_runtime::{spawn, Bundle, SpawnOptions, Spawned, Status};
use serde_json::{json, Value};

/// The running test's name (libtest names each test's thread after its test).
pub fn test_name() -> String {
    std::thread::current().name().unwrap_or("test").to_string()
}

/// A test that cannot run here for want of root or of a tool `make deps` installs: `SKIPPED test: why` on stderr
/// (never a silent pass); under CI=true (root, `make deps` done) a failure.
pub fn skipped(why: &str) {
    let t = test_name();
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{t}: {why} (CI=true: a test that cannot run is a failure)");
    }
    // Not eprintln!: the test harness captures that and hides it when the test passes.
    let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("SKIPPED {t}: {why}\n"));
}

/// A test about a host property this host does not have (a hybrid cgroup layout, a time namespace): `SKIPPED`
/// on stderr, not a failure even in CI (no package provides it).
pub fn not_applicable(why: &str) {
    // Not eprintln!: the test harness captures that and hides it when the test passes.
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!("SKIPPED {} (not applicable here): {why}\n", test_name()),
    );
}

/// True when root; otherwise SKIPPED (a failure under CI=true).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skipped("needs root");
        return false;
    }
    true
}

pub fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    // Tests never install packages (`make deps` does): say what is missing.
    panic!("busybox not found (/bin/busybox): run `make deps` (busybox-static)");
}

/// Put busybox at `dst` without ever holding it open for writing while other test threads fork: a file open for
/// writing in a forked child (between its fork and its exec or close_range) makes exec of that file fail with
/// ETXTBSY in another test. So: one copy per test process, made once (before this process's first spawn: every
/// test builds its bundle first), in the temp dir; every rootfs gets a hard link to it.
pub fn install_busybox(dst: &Path) {
    static TEMPLATE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        let t = std::env::temp_dir().join(format!("keel-runtime-test-busybox-{}", std::process::id()));
        std::fs::copy(busybox(), &t).unwrap();
        extern "C" fn remove_template() {
            let _ = std::fs::remove_file(
                std::env::temp_dir().join(format!("keel-runtime-test-busybox-{}", std::process::id())),
            );
        }
        // SAFETY: registering a plain extern "C" fn with no captured state.
        unsafe { libc::atexit(remove_template) };
        t
    });
    std::fs::hard_link(template, dst).unwrap();
}

const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "hostname", "ls", "sleep", "true", "false", "id", "touch", "env", "pwd", "grep", "head",
    "readlink", "stat", "mkdir", "kill", "ps", "wc", "cut", "tty",
];

/// A temp bundle dir with a busybox rootfs; removed on drop.
pub struct TestBundle {
    pub dir: PathBuf,
}

impl TestBundle {
    pub fn new(name: &str) -> TestBundle {
        let dir = std::env::temp_dir().join(format!("keel-runtime-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc", "ro", "data"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        install_busybox(&root.join("bin/busybox"));
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        std::fs::write(root.join("etc/secret"), "secret\n").unwrap();
        TestBundle { dir }
    }

    pub fn write(&self, config: &Value) -> Bundle {
        std::fs::write(self.dir.join("config.json"), serde_json::to_vec_pretty(config).unwrap()).unwrap();
        Bundle::load(&self.dir).unwrap()
    }
}

impl Drop for TestBundle {
    fn drop(&mut self) {
        // Whatever a failed test left mounted under the bundle (runtime.json mounts), deepest first.
        let prefix = self.dir.to_string_lossy().into_owned();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> =
            info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.starts_with(&prefix)).collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = keel_sys::umount(std::path::Path::new(p), libc::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A typical config: new pid/mount/uts/ipc namespaces, proc, tmpfs /dev with devpts and shm, sysfs.
pub fn config(args: &[&str]) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "HOME=/"],
            "cwd": "/",
        },
        "root": {"path": "rootfs"},
        "hostname": "keeltest",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]
        }
    })
}

pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: valid 2-int array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Wait for our child `pid`; returns the raw wait status.
pub fn wait(pid: i32) -> i32 {
    let mut st = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            return st;
        }
        assert!(r >= 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR), "waitpid failed");
    }
}

pub struct Ran {
    pub out: String,
    pub status: Status,
    pub exit: i32,
    pub spawned: Spawned,
}

/// Spawn with stdout+stderr to a pipe, read all output, reap, poll the status.
pub fn run(bundle: &Bundle, mut opts: SpawnOptions) -> Ran {
    let (r, w) = pipe();
    opts.stdout = Some(w.as_raw_fd());
    opts.stderr = Some(w.as_raw_fd());
    if opts.id.is_empty() {
        opts.id = bundle.name.clone();
    }
    let spawned = spawn(bundle, &opts).unwrap_or_else(|e| panic!("spawn: {e}"));
    drop(w);
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    let st = wait(spawned.pid);
    let status = spawned.wait_status(1000);
    let exit = if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) } else { 128 + libc::WTERMSIG(st) };
    Ran { out, status, exit, spawned }
}
