//! Attacks on the runtime, one per class of runc's published escapes, each asserting that the host-side effect did
//! not happen (on throwaway files and copies only). Root tests: without root each reports itself skipped.
//!
//! | class                                   | test                                                  |
//! |-----------------------------------------|-------------------------------------------------------|
//! | CVE-2019-5736 (runtime binary via exe)  | `runtime_binary_is_a_sealed_copy`                     |
//! | CVE-2016-9962 (setup process reachable) | `created_container_is_out_of_reach_of_its_neighbours` |
//! | CVE-2024-21626 (leaked fd as cwd)       | `leaked_fds_never_become_the_cwd`, `exec_*`           |
//! | CVE-2021-30465 (symlinked mount targets)| `symlinks_in_the_rootfs_never_reach_the_host`         |
//! | CVE-2019-16884/2023-27561/2025-52881    | `sysctls_and_proc_writes_never_follow_the_rootfs`     |
//! | CVE-2025-31133 (masks via /dev/null)    | `masks_use_the_real_null_device`                      |
//! | host cgroup tree in the container       | `cgroup_mount_shows_only_the_containers_own_cgroup`   |

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use keel_runtime::{SpawnOptions, Status};
use serde_json::json;

mod common;
use common::{config, is_root, run, TestBundle};

const BIN: &str = env!("CARGO_BIN_EXE_keel-runc");

fn skip() -> bool {
    !is_root()
}

/// A host directory the attacks aim at; removed on drop.
struct Victim(PathBuf);

impl Victim {
    fn new(name: &str) -> Victim {
        let d = std::env::temp_dir().join(format!("keel-victim-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("file"), "original\n").unwrap();
        Victim(d)
    }

    /// The victim holds exactly its original file, unchanged.
    fn assert_untouched(&self) {
        let names: Vec<String> =
            std::fs::read_dir(&self.0).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
        assert_eq!(names, ["file"], "host directory {} was written to", self.0.display());
        let md = std::fs::symlink_metadata(self.0.join("file")).unwrap();
        assert!(md.file_type().is_file(), "host file replaced: {md:?}");
        assert_eq!(std::fs::read_to_string(self.0.join("file")).unwrap(), "original\n");
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rootfs(tb: &TestBundle) -> PathBuf {
    tb.dir.join("rootfs")
}

#[test]
fn symlinks_in_the_rootfs_never_reach_the_host() {
    if skip() {
        return;
    }
    let v = Victim::new("links");
    let tb = TestBundle::new("attack-links");
    let r = rootfs(&tb);
    // Absolute, relative-escaping and looping links, each aimed at the host victim.
    std::os::unix::fs::symlink(&v.0, r.join("abs")).unwrap();
    std::os::unix::fs::symlink(format!("../../../../../../../..{}", v.0.display()), r.join("rel")).unwrap();
    std::os::unix::fs::symlink(v.0.join("bindme"), r.join("filelink")).unwrap();
    std::os::unix::fs::symlink(v.0.join("newdir"), r.join("dangling")).unwrap();
    let mut c = config(&["sh", "-c", "echo started; ls /abs /rel /dangling; cat /filelink"]);
    let m = c["mounts"].as_array_mut().unwrap();
    m.push(json!({"destination": "/abs/mnt", "type": "tmpfs", "source": "tmpfs"}));
    m.push(json!({"destination": "/rel/deep/er", "type": "tmpfs", "source": "tmpfs"}));
    m.push(json!({"destination": "/dangling/x", "type": "tmpfs", "source": "tmpfs"}));
    m.push(json!({"destination": "/filelink", "type": "bind", "source": "/etc/hostname", "options": ["bind"]}));
    c["linux"]["devices"] = json!([
        {"path": "/abs/node", "type": "c", "major": 1, "minor": 3},
        {"path": "/abs/file", "type": "c", "major": 1, "minor": 5},
        {"path": "/rel/blk", "type": "b", "major": 7, "minor": 0}
    ]);
    let b = tb.write(&c);
    let out = run(&b, SpawnOptions::default());
    assert_eq!(out.status, Status::Started, "{}", out.out);
    assert!(out.out.contains("started"), "{}", out.out);
    v.assert_untouched();
    // What was asked was made inside the rootfs, where the links lead when read with the rootfs as "/".
    let inside = r.join(v.0.strip_prefix("/").unwrap());
    assert!(inside.join("mnt").is_dir() && inside.join("deep/er").is_dir(), "mount points inside the rootfs");
    assert!(inside.join("node").exists() && inside.join("blk").exists(), "device nodes inside the rootfs");
    assert!(inside.join("newdir/x").is_dir(), "dangling link's target made inside the rootfs");
    assert!(inside.join("bindme").is_file(), "file bind target made inside the rootfs");
}

#[test]
fn sysctls_and_proc_writes_never_follow_the_rootfs() {
    if skip() {
        return;
    }
    let v = Victim::new("proc");
    std::fs::create_dir_all(v.0.join("sys/kernel")).unwrap();
    std::fs::write(v.0.join("sys/kernel/domainname"), "host-file\n").unwrap();
    let tb = TestBundle::new("attack-proc");
    let r = rootfs(&tb);
    // /proc in the rootfs is a link to a host directory shaped like /proc, and a volume covers /proc/sys.
    std::fs::remove_dir(r.join("proc")).unwrap();
    std::os::unix::fs::symlink(&v.0, r.join("proc")).unwrap();
    let mut c = config(&["sh", "-c", "echo domain=$(cat /proc/sys/kernel/domainname)"]);
    c["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/proc/sys", "type": "bind", "source": v.0.join("sys"), "options": ["rbind"]}));
    c["linux"]["sysctl"] = json!({"kernel.domainname": "written-by-keel"});
    let b = tb.write(&c);
    let out = run(&b, SpawnOptions::default());
    assert_eq!(out.status, Status::Started, "{}", out.out);
    assert_eq!(
        std::fs::read_to_string(v.0.join("sys/kernel/domainname")).unwrap(),
        "host-file\n",
        "the sysctl was written through the container's /proc"
    );
    std::fs::remove_dir_all(v.0.join("sys")).unwrap();
    v.assert_untouched();
    // And it reached the container's own UTS namespace: the real sysctl, not a file.
    let mut c = config(&["sh", "-c", "echo domain=$(cat /proc/sys/kernel/domainname)"]);
    c["linux"]["sysctl"] = json!({"kernel.domainname": "written-by-keel"});
    let tb2 = TestBundle::new("attack-proc-ok");
    let out = run(&tb2.write(&c), SpawnOptions::default());
    assert!(out.out.contains("domain=written-by-keel"), "{}", out.out);
}

#[test]
fn masks_use_the_real_null_device() {
    if skip() {
        return;
    }
    let v = Victim::new("mask");
    let tb = TestBundle::new("attack-mask");
    let r = rootfs(&tb);
    // No /dev tmpfs: the rootfs's own /dev/null is a link to a host file.
    std::os::unix::fs::symlink(v.0.join("file"), r.join("dev/null")).unwrap();
    let mut c = config(&["sh", "-c", "stat -c type=%F:%t:%T /etc/secret; echo x > /etc/secret; cat /etc/secret"]);
    c["mounts"].as_array_mut().unwrap().retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
    c["linux"]["maskedPaths"] = json!(["/etc/secret"]);
    let b = tb.write(&c);
    let out = run(&b, SpawnOptions::default());
    assert_eq!(out.status, Status::Started, "{}", out.out);
    assert!(out.out.contains("type=character special file:1:3"), "mask is not the null device: {}", out.out);
    v.assert_untouched();
}

#[test]
fn leaked_fds_never_become_the_cwd() {
    if skip() {
        return;
    }
    let v = Victim::new("cwd");
    // A host directory open in the runtime's process without close-on-exec, as a careless caller might leave it.
    let dir = std::fs::File::open(&v.0).unwrap();
    // SAFETY: dup of our fd without O_CLOEXEC.
    let leaked = unsafe { libc::dup(dir.as_raw_fd()) };
    assert!(leaked > 2);
    let tb = TestBundle::new("attack-cwd");
    for n in 3..=(leaked + 3) {
        let mut c = config(&["sh", "-c", "echo cwd=$(pwd); echo pwned > here"]);
        c["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        let out = run(&tb.write(&c), SpawnOptions::default());
        // Either refused, or (an fd of the runtime's own that is the container's root) started inside the root.
        match &out.status {
            Status::Failed(msg) => assert!(msg.contains("chdir"), "{msg}"),
            Status::Started => assert!(out.out.starts_with("cwd=/\n"), "cwd /proc/self/fd/{n}: {}", out.out),
            s => panic!("{s:?}"),
        }
    }
    // SAFETY: our fd.
    unsafe { libc::close(leaked) };
    v.assert_untouched();
}

/// keel-runc with its own state root, in a bundle of its own.
struct Cli {
    root: PathBuf,
    tb: TestBundle,
}

impl Cli {
    fn new(name: &str, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) -> Cli {
        let tb = TestBundle::new(name);
        let mut c = config(args);
        edit(&mut c);
        tb.write(&c);
        Cli { root: tb.dir.join("state"), tb }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(&self.root).args(args).current_dir(&self.tb.dir);
        c.stdin(Stdio::null());
        c
    }

    /// Output through files: a created or detached container keeps the stdio it was given, so a pipe would
    /// never reach EOF.
    fn out(&self, args: &[&str]) -> Output {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (o, e) = (self.tb.dir.join(format!("out-{n}")), self.tb.dir.join(format!("err-{n}")));
        let mut cmd = self.cmd(args);
        cmd.stdout(std::fs::File::create(&o).unwrap()).stderr(std::fs::File::create(&e).unwrap());
        let status = cmd.status().unwrap();
        Output { status, stdout: std::fs::read(&o).unwrap_or_default(), stderr: std::fs::read(&e).unwrap_or_default() }
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(o.status.success(), "keel-runc {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn pid(&self, id: &str) -> i32 {
        let s: serde_json::Value = serde_json::from_str(&self.ok(&["state", id])).unwrap();
        s["pid"].as_i64().unwrap() as i32
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        for id in ["exe", "exe2", "neigh", "neigh2", "exec", "cg"] {
            let _ = self.out(&["delete", "--force", &format!("{id}-{}", std::process::id())]);
        }
    }
}

/// A container id unique to this test process and call site.
fn id(s: &str) -> String {
    format!("{s}-{}", std::process::id())
}

#[test]
fn runtime_binary_is_a_sealed_copy() {
    if skip() {
        return;
    }
    let t = Cli::new("attack-exe", &["sh", "-c", "sleep 30"], |_| {});
    t.ok(&["create", &id("exe")]);
    let pid = t.pid(&id("exe"));
    // The created container's process is still the runtime (blocked before exec): its exe is a copy nobody can
    // write, never the host's keel-runc: the binary on a private overlayfs with no upper layer (EROFS, on a mount
    // that is in no mount table), or else a sealed memfd.
    let exe = std::fs::File::open(format!("/proc/{pid}/exe")).unwrap();
    // SAFETY: zeroed out-parameter filled by fstatfs on our fd.
    let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::fstatfs(exe.as_raw_fd(), &mut sf) }, 0);
    let w = std::fs::OpenOptions::new().write(true).open(format!("/proc/{pid}/exe"));
    if sf.f_type as i64 == 0x794c_7630 {
        assert_eq!(w.map(drop).map_err(|e| e.raw_os_error()), Err(Some(libc::EROFS)), "write the setup process's exe");
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", exe.as_raw_fd())).unwrap();
        let id = info.lines().find_map(|l| l.strip_prefix("mnt_id:")).unwrap().trim().to_string();
        for table in [format!("/proc/{pid}/mountinfo"), "/proc/self/mountinfo".to_string()] {
            let t = std::fs::read_to_string(&table).unwrap();
            assert!(!t.lines().any(|l| l.split(' ').next() == Some(&id)), "the exe's mount {id} is in {table}");
        }
    } else {
        let link = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert!(link.to_string_lossy().starts_with("/memfd:"), "exe of the setup process: {link:?}");
        // SAFETY: fcntl on our fd.
        let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
        assert!(seals & libc::F_SEAL_WRITE != 0, "seals {seals:#x}");
        assert!(w.is_err(), "exe writable");
    }
    // The host's binary itself is not the one running.
    let host = std::fs::metadata(BIN).unwrap();
    let running = std::fs::metadata(format!("/proc/{pid}/exe")).unwrap();
    assert!((host.dev(), host.ino()) != (running.dev(), running.ino()), "the setup process runs the host's binary");
    // A program whose interpreter is /proc/self/exe runs that sealed copy, not the host binary.
    let t2 = Cli::new("attack-exe2", &["/evil"], |_| {});
    std::fs::write(t2.tb.dir.join("rootfs/evil"), "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(t2.tb.dir.join("rootfs/evil"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let before = std::fs::read(BIN).unwrap();
    let _ = t2.out(&["run", &id("exe2")]);
    assert!(std::fs::read(BIN).unwrap() == before, "host keel-runc changed");
}

#[test]
fn created_container_is_out_of_reach_of_its_neighbours() {
    if skip() {
        return;
    }
    let t = Cli::new("attack-neigh", &["sh", "-c", "sleep 30"], |_| {});
    t.ok(&["create", &id("neigh")]);
    let pid = t.pid(&id("neigh"));
    // Exec into a container that has not started is refused: its process is still the runtime's.
    let o = t.out(&["exec", &id("neigh"), "sh", "-c", "ls -l /proc/1/fd"]);
    assert!(!o.status.success(), "exec into a created container: {}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stderr).contains("created"), "{o:?}");
    // A second container in the same pid namespace (root, runc's default capabilities) tries the setup process's
    // /proc entries.
    let n = Cli::new("attack-neigh2", &["sh", "-c", "
        for f in exe cwd root; do readlink /proc/1/$f >/dev/null 2>&1 && echo REACHED-$f; done
        for f in /proc/1/fd/*; do readlink $f >/dev/null 2>&1 && echo REACHED-$f; ls $f/ >/dev/null 2>&1 && echo REACHED-dir-$f; done
        cat /proc/1/environ >/dev/null 2>&1 && echo REACHED-environ
        echo probed"], |c| {
        c["linux"]["namespaces"] = json!([
            {"type": "pid", "path": format!("/proc/{pid}/ns/pid")}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}
        ]);
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"],
            "effective": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"],
            "permitted": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"]
        });
    });
    let o = n.out(&["run", &id("neigh2")]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("probed"), "{o:?}");
    assert!(!out.contains("REACHED"), "the setup process was reachable: {out}");
    // The setup process holds no directory of the host: its stdio, the status pipe, the fifo (O_PATH) and its
    // private procfs (a detached mount of the container's pid namespace), nothing else.
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let target = std::fs::read_link(e.path()).unwrap_or_default();
        if !std::fs::metadata(e.path()).map(|m| m.is_dir()).unwrap_or(false) {
            continue;
        }
        let c = std::ffi::CString::new(e.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: zeroed out-parameter, valid C string.
        let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut sf) }, 0);
        assert_eq!(sf.f_type, 0x9fa0, "setup process holds a directory: fd {:?} -> {target:?}", e.file_name());
    }
}

#[test]
fn exec_passes_no_caller_fds_and_checks_cwd() {
    if skip() {
        return;
    }
    let v = Victim::new("exec");
    let t = Cli::new("attack-exec", &["sh", "-c", "sleep 30"], |_| {});
    t.ok(&["run", "--detach", &id("exec")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.out(&["state", &id("exec")]).stdout.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // The caller leaks a host directory (no close-on-exec) into keel-runc exec.
    let dir = std::fs::File::open(&v.0).unwrap();
    // SAFETY: dup without O_CLOEXEC.
    let leaked = unsafe { libc::dup(dir.as_raw_fd()) };
    let o = t.out(&["exec", &id("exec"), "sh", "-c", "ls /proc/self/fd; echo done"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("done"), "{o:?}");
    let fds: Vec<&str> = out.lines().filter(|l| l.chars().all(|c| c.is_ascii_digit())).collect();
    // 0, 1, 2 and the fd ls uses to read the directory.
    assert!(fds.len() <= 4 && !fds.contains(&leaked.to_string().as_str()), "fds in the exec'd process: {fds:?}");
    for n in 3..=(leaked + 2) {
        let o = t.out(&["exec", "--cwd", &format!("/proc/self/fd/{n}"), &id("exec"), "sh", "-c", "touch pwned; pwd"]);
        assert!(!o.status.success(), "exec with cwd /proc/self/fd/{n} ran: {o:?}");
    }
    // SAFETY: our fd.
    unsafe { libc::close(leaked) };
    v.assert_untouched();
}

#[test]
fn cgroup_mount_shows_only_the_containers_own_cgroup() {
    if skip() {
        return;
    }
    let script = "
        n=$(find /sys/fs/cgroup -name cgroup.procs | wc -l); echo cgroup-dirs=$n
        for f in $(find /sys/fs/cgroup -name cgroup.procs); do cat $f; done | wc -l | sed 's/^/pids=/'
        echo 1 > /sys/fs/cgroup/pids.max 2>/dev/null && echo WROTE-v2
        for d in /sys/fs/cgroup/*/; do echo 1 > $d/cgroup.procs 2>/dev/null && echo WROTE-$d; done
        echo checked";
    let t = Cli::new("attack-cgroup", &["sh", "-c", script], |c| {
        c["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid"]}),
        );
        c["linux"]["resources"] = json!({"pids": {"limit": 100}});
    });
    let o = t.out(&["run", &id("cg")]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("checked"), "{o:?}");
    assert!(!out.contains("WROTE"), "the container wrote to its cgroup view: {out}");
    // Only the container's own cgroup (one per hierarchy on a hybrid host), holding only its own processes.
    let dirs: usize = out.lines().find_map(|l| l.strip_prefix("cgroup-dirs=")).unwrap().trim().parse().unwrap();
    assert!((1..=16).contains(&dirs), "the container sees {dirs} cgroup directories: {out}");
    let pids: usize = out.lines().find_map(|l| l.strip_prefix("pids=")).unwrap().trim().parse().unwrap();
    assert!(pids <= 8 * dirs, "the container sees {pids} pids: {out}");
}

#[test]
fn runtime_paths_are_checked_in_the_library_too() {
    // The plan refuses NUL bytes in strings instead of cutting them (a cut string names another path).
    if skip() {
        return;
    }
    let tb = TestBundle::new("attack-nul");
    let mut c = config(&["sh", "-c", "true"]);
    c["process"]["env"] = json!(["A=b\u{0}c"]);
    let b = tb.write(&c);
    match keel_runtime::spawn(&b, &SpawnOptions::default()) {
        Err(e) => assert!(e.to_string().contains("process.env[0]"), "{e}"),
        Ok(s) => {
            common::wait(s.pid);
            panic!("spawned with a NUL in the environment");
        }
    }
    let _ = Path::new("/");
}
