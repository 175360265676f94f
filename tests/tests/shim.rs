//! Root test: containerd 1.6 runs containers through keel's own shim, `containerd-shim-keel-v1` (runtime type
//! `io.containerd.keel.v1`), with no runc and no separate runtime binary involved.
//!
//! Each test starts a private containerd (own root, state, socket and opt dir under a temp dir; CRI plugin off) whose
//! PATH starts with a directory holding the shim binary (containerd resolves `io.containerd.keel.v1` to
//! `containerd-shim-keel-v1` on PATH), then drives it with `ctr run --runtime io.containerd.keel.v1`:
//! - `ctr_tasks`: stdout through the FIFOs, exit codes (foreground, `--rm` and not), a detached task (RUNNING),
//!   exec (stdout and exit code), pids, pause/resume, metrics, SIGTERM reaching the process, delete reporting the exit
//!   code; then nothing is left behind: no shim process, no shim state, no containerd bundle, no cgroup, no mount.
//! - `image_rootfs`: a container from an image (busybox imported as an OCI archive): the shim mounts the snapshot
//!   (overlay) as the rootfs and unmounts it on delete.
//! - `grouping`: two containers with the same `io.containerd.runc.v2.group` annotation share one shim process, which
//!   exits once both are deleted.
//! - `containerd_restart`: a detached task survives a containerd restart: `ctr task ls` shows it RUNNING, exec works,
//!   and its exit event reaches the new containerd.
//! - `terminal`: `ctr run -t` and `ctr task exec -t` (under `script`): output and exit codes through the pty.
//! - `oom_event`: a container over its memory limit is OOM-killed: exit code 137 and a `/tasks/oom` event.
//! - `killed_shim`: after `kill -9` of the shim, containerd's cleanup (`containerd-shim-keel-v1 delete`) kills the
//!   container and removes its cgroup, its state and the dead shim's socket.
//!
//! The shim binary: $KEEL_SHIM, else the newest of `make build`'s (build/bin/, static musl; or the glibc release
//! build) and the debug build (`cargo build -p containerd-shim-keel-v1`). Not root, or containerd or the shim
//! missing: SKIPPED outside CI, a failure under CI=true (CI runs as root after `make deps`).

mod shim_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shim_common::*;

#[test]
fn ctr_tasks() {
    let t0 = Instant::now();
    let Some(mut cd) = setup("tasks", false) else { return };
    let p = std::process::id();

    // 1. stdout through the FIFOs; --rm.
    let o = cd.run(&["--rm"], None, &format!("hello-{p}"), &["/bin/echo", "hello"]);
    cd.check("ctr run --rm echo hello", &o);
    assert_eq!(text(&o.stdout), "hello\n", "stdout of echo hello; stderr: {}", text(&o.stderr));

    // 2. exit codes, with and without --rm; stderr too.
    let o = cd.run(&["--rm"], None, &format!("exit3-{p}"), &["/bin/sh", "-c", "echo oops >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "exit code of sh -c 'exit 3'; stderr: {}\n{}", text(&o.stderr), cd.log());
    assert!(text(&o.stderr).contains("oops"), "stderr of the container: {}", text(&o.stderr));
    let id = format!("fg-{p}");
    let o = cd.run(&[], None, &id, &["/bin/sh", "-c", "exit 42"]);
    assert_eq!(o.status.code(), Some(42), "exit code of a foreground run; stderr: {}", text(&o.stderr));
    // ctr run (foreground) deletes the task itself; the container stays until `ctr container delete`.
    assert_eq!(cd.status(&id), None, "task of a finished foreground run");
    cd.check("ctr container delete", &cd.ctr(&["container", "delete", &id]));

    // 3. A detached task: RUNNING, exec, pids, pause/resume, metrics, SIGTERM, delete.
    let id = format!("detached-{p}");
    let o = cd.run(&["-d"], None, &id, &["/bin/sh", "-c", "trap 'exit 7' TERM; while :; do sleep 0.1; done"]);
    cd.check("ctr run -d", &o);
    let (pid, status) = cd.task(&id).unwrap_or_default();
    assert_eq!(status, "RUNNING", "ctr task ls after run -d:\n{}", cd.log());

    let o = cd.exec(&id, "x", &["/bin/echo", "in-exec"]);
    cd.check("ctr task exec echo in-exec", &o);
    assert_eq!(text(&o.stdout), "in-exec\n", "exec stdout; stderr: {}", text(&o.stderr));
    let o = cd.exec(&id, "y", &["/bin/sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5), "exit code of exec sh -c 'exit 5'; stderr: {}", text(&o.stderr));
    let o = cd.exec(&id, "z", &["/bin/nope"]);
    assert!(!o.status.success(), "exec of a missing binary succeeded");

    let o = cd.ctr(&["task", "ps", &id]);
    cd.check("ctr task ps", &o);
    let ps: Vec<i32> =
        text(&o.stdout).lines().skip(1).filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
    assert!(ps.contains(&pid), "ctr task ps lists the init pid {pid}: {ps:?}");

    cd.check("ctr task pause", &cd.ctr(&["task", "pause", &id]));
    assert_eq!(cd.status(&id).as_deref(), Some("PAUSED"), "ctr task ls after pause");
    cd.check("ctr task resume", &cd.ctr(&["task", "resume", &id]));
    assert_eq!(cd.status(&id).as_deref(), Some("RUNNING"), "ctr task ls after resume");

    let o = cd.ctr(&["task", "metrics", &id]);
    cd.check("ctr task metrics", &o);
    assert!(text(&o.stdout).contains("pids.current"), "ctr task metrics: {}", text(&o.stdout));

    cd.check("ctr task kill", &cd.ctr(&["task", "kill", &id])); // SIGTERM, ctr's default
    cd.wait_status(&id, Some("STOPPED"), Duration::from_secs(10));
    let o = cd.ctr(&["task", "delete", &id]);
    cd.check("ctr task delete", &o);
    // The trap ran: the status is 7 (not 143, not 137).
    assert!(text(&o.stderr).contains("exit code 7"), "ctr task delete: {}", text(&o.stderr));
    cd.check("ctr container delete", &cd.ctr(&["container", "delete", &id]));
    assert_eq!(cd.status(&id), None, "task still listed after delete");

    // 4. Nothing left behind.
    for id in [format!("hello-{p}"), format!("exit3-{p}"), format!("fg-{p}"), id] {
        cd.assert_clean(&id);
    }
    assert_no_shims(&cd);
    let o = cd.ctr(&["container", "ls", "-q"]);
    assert_eq!(text(&o.stdout).trim(), "", "containers left after the test");
    eprintln!("shim test ctr_tasks: all passed in {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn image_rootfs() {
    let Some(mut cd) = setup("image", false) else { return };
    let p = std::process::id();
    let img = "keel.test/busybox:1";
    let archive = busybox_image(&cd.dir, &cd.dir.join("rootfs"), img, &["/bin/sh"]);
    let o = cd.ctr(&["image", "import", &archive.to_string_lossy()]);
    cd.check("ctr image import", &o);

    let o = cd.run(&["--rm"], Some(img), &format!("img-{p}"), &["/bin/sh", "-c", "echo from-image; exit 4"]);
    assert_eq!(o.status.code(), Some(4), "exit code; stderr: {}\n{}", text(&o.stderr), cd.log());
    assert_eq!(text(&o.stdout), "from-image\n");

    // A detached task runs on the snapshot mounted by the shim at <bundle>/rootfs.
    let id = format!("imgd-{p}");
    let o = cd.run(&["-d"], Some(img), &id, &["/bin/sleep", "1000"]);
    cd.check("ctr run -d image", &o);
    let rootfs = cd.dir.join("state/io.containerd.runtime.v2.task").join(&cd.ns).join(&id).join("rootfs");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(
        mounts.lines().any(|l| l.split_whitespace().nth(4) == Some(&*rootfs.to_string_lossy())),
        "no mount on {} while the task runs",
        rootfs.display()
    );
    let o = cd.exec(&id, "w", &["/bin/sh", "-c", "echo written > /tmp/f && cat /tmp/f"]);
    cd.check("exec writing into the snapshot", &o);
    assert_eq!(text(&o.stdout), "written\n");
    cd.check("kill", &cd.ctr(&["task", "kill", "-s", "SIGKILL", &id]));
    cd.wait_status(&id, Some("STOPPED"), Duration::from_secs(10));
    cd.check("delete", &cd.ctr(&["task", "delete", &id]));
    cd.check("container delete", &cd.ctr(&["container", "delete", &id]));
    cd.assert_clean(&id);
    cd.assert_clean(&format!("img-{p}"));
    assert_no_shims(&cd);
}

/// A terminal (`ctr run -t`, `ctr task exec -t`): the pty master comes over the console socket, output and exit
/// codes come back. ctr needs a terminal itself: it runs under `script` (util-linux).
#[test]
fn terminal() {
    if !have("script") {
        let _ = skip::<()>("`script` (util-linux) missing: ctr -t needs a terminal");
        return;
    }
    let Some(mut cd) = setup("tty", false) else { return };
    let p = std::process::id();
    let ctr = format!("ctr --address {} -n {}", cd.sock.display(), cd.ns);
    let fifo = cd.dir.join("fifo");
    let rootfs = cd.dir.join("rootfs");
    let id = format!("tty-{p}");
    cd.ids.push(id.clone());
    let run = format!(
        "{ctr} run --rm -t --runtime {RUNTIME} --fifo-dir {} --rootfs {} {id} /bin/sh -c 'tty; echo on-tty; exit 6'",
        fifo.display(),
        rootfs.display()
    );
    let o = Command::new("timeout").args(["60", "script", "-qec", &run, "/dev/null"]).stdin(Stdio::null()).output();
    let o = o.unwrap_or_else(|e| panic!("script: {e}"));
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(6), "exit code of ctr run -t; output {out:?}\n{}", cd.log());
    assert!(out.contains("/dev/pts/") && out.contains("on-tty"), "ctr run -t output: {out:?}");

    let id = format!("ttyx-{p}");
    let o = cd.run(&["-d"], None, &id, &["/bin/sleep", "1000"]);
    cd.check("ctr run -d", &o);
    let exec = format!(
        "{ctr} task exec -t --fifo-dir {} --exec-id t {id} /bin/sh -c 'echo in-exec-tty; exit 4'",
        fifo.display()
    );
    let o = Command::new("timeout").args(["60", "script", "-qec", &exec, "/dev/null"]).stdin(Stdio::null()).output();
    let o = o.unwrap_or_else(|e| panic!("script: {e}"));
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(4), "exit code of ctr task exec -t; output {out:?}\n{}", cd.log());
    assert!(out.contains("in-exec-tty"), "ctr task exec -t output: {out:?}");
    cd.check("kill", &cd.ctr(&["task", "kill", "-s", "SIGKILL", &id]));
    cd.wait_status(&id, Some("STOPPED"), Duration::from_secs(10));
    cd.check("delete", &cd.ctr(&["task", "delete", &id]));
    cd.check("container delete", &cd.ctr(&["container", "delete", &id]));
    cd.assert_clean(&id);
    assert_no_shims(&cd);
}

/// A container killed by the kernel's OOM killer: exit code 137 and a `/tasks/oom` event.
#[test]
fn oom_event() {
    let Some(mut cd) = setup("oom", false) else { return };
    for a in ["tr", "head"] {
        let _ = std::os::unix::fs::symlink("busybox", cd.dir.join("rootfs/bin").join(a));
    }
    let id = format!("oom-{}", std::process::id());
    let o = cd.run(
        &["--rm", "--memory-limit", "16777216"],
        None,
        &id,
        &["/bin/sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"],
    );
    assert_eq!(
        o.status.code(),
        Some(137),
        "exit code of a container over its memory limit; stdout {}",
        text(&o.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cd.raw_log().lines().any(|l| l.contains("topic=/tasks/oom")) {
        assert!(Instant::now() < deadline, "no /tasks/oom event in containerd's log:\n{}", cd.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    cd.assert_clean(&id);
}

#[test]
fn grouping() {
    let Some(mut cd) = setup("group", false) else { return };
    let p = std::process::id();
    let (a, b) = (format!("ga-{p}"), format!("gb-{p}"));
    let group = format!("io.containerd.runc.v2.group=g{p}");
    for id in [&a, &b] {
        let o = cd.run(&["-d", "--annotation", &group], None, id, &["/bin/sleep", "1000"]);
        cd.check("ctr run -d --annotation group", &o);
    }
    let shims = cd.shims();
    assert_eq!(shims.len(), 1, "one shim for two containers of one group: {shims:?}");
    // Both tasks are children of that shim.
    for id in [&a, &b] {
        let pid = cd.task(id).map(|t| t.0).unwrap_or(0);
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PPid:").map(|v| v.trim().parse::<i32>().unwrap_or(0)))
            .unwrap_or(0);
        assert_eq!(ppid, shims[0], "parent of {id}'s process {pid}");
    }
    // Deleting the first container (whose bundle the shim was started in) leaves the second one served.
    cd.check("kill a", &cd.ctr(&["task", "kill", "-s", "SIGKILL", &a]));
    cd.wait_status(&a, Some("STOPPED"), Duration::from_secs(10));
    cd.check("delete a", &cd.ctr(&["task", "delete", &a]));
    cd.check("container delete a", &cd.ctr(&["container", "delete", &a]));
    let o = cd.exec(&b, "e", &["/bin/echo", "still-here"]);
    cd.check("exec in b after a's delete", &o);
    assert_eq!(text(&o.stdout), "still-here\n");
    assert_eq!(cd.shims(), shims, "the shim lives on while b exists");
    cd.check("kill b", &cd.ctr(&["task", "kill", "-s", "SIGKILL", &b]));
    cd.wait_status(&b, Some("STOPPED"), Duration::from_secs(10));
    cd.check("delete b", &cd.ctr(&["task", "delete", &b]));
    cd.check("container delete b", &cd.ctr(&["container", "delete", &b]));
    cd.assert_clean(&a);
    cd.assert_clean(&b);
    assert_no_shims(&cd);
}

#[test]
fn containerd_restart() {
    let Some(mut cd) = setup("restart", false) else { return };
    let id = format!("survivor-{}", std::process::id());
    let o = cd.run(&["-d"], None, &id, &["/bin/sh", "-c", "trap 'exit 9' TERM; while :; do sleep 0.1; done"]);
    cd.check("ctr run -d", &o);
    let (pid, _) = cd.task(&id).unwrap_or_default();
    let shims = cd.shims();

    cd.stop();
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "the container died with containerd");
    assert_eq!(cd.shims(), shims, "the shim died with containerd");
    cd.launch().unwrap_or_else(|e| panic!("restart containerd: {e}"));

    assert_eq!(
        cd.task(&id),
        Some((pid, "RUNNING".to_string())),
        "ctr task ls after a containerd restart\n{}",
        cd.log()
    );
    let o = cd.exec(&id, "after", &["/bin/echo", "after-restart"]);
    cd.check("exec after restart", &o);
    assert_eq!(text(&o.stdout), "after-restart\n");
    cd.check("ctr task kill", &cd.ctr(&["task", "kill", &id]));
    cd.wait_status(&id, Some("STOPPED"), Duration::from_secs(10));
    // The exit event reached the new containerd (the shim reconnected to publish it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cd.raw_log().lines().any(|l| l.contains("topic=/tasks/exit")) {
        assert!(Instant::now() < deadline, "no /tasks/exit event in the restarted containerd's log:\n{}", cd.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = cd.ctr(&["task", "delete", &id]);
    cd.check("ctr task delete", &o);
    assert!(text(&o.stderr).contains("exit code 9"), "ctr task delete: {}", text(&o.stderr));
    cd.check("ctr container delete", &cd.ctr(&["container", "delete", &id]));
    cd.assert_clean(&id);
    assert_no_shims(&cd);
}

#[test]
fn killed_shim() {
    let Some(mut cd) = setup("killed", false) else { return };
    let id = format!("orphan-{}", std::process::id());
    let o = cd.run(&["-d"], None, &id, &["/bin/sleep", "1000"]);
    cd.check("ctr run -d", &o);
    let (pid, _) = cd.task(&id).unwrap_or_default();
    let shims = cd.shims();
    assert_eq!(shims.len(), 1, "one shim: {shims:?}");
    let st = Path::new(SHIM_ROOT).join(&cd.ns).join(&id).join("state.json");
    assert!(st.is_file(), "shim state {} on disk while running", st.display());
    let bundle = cd.dir.join("state/io.containerd.runtime.v2.task").join(&cd.ns).join(&id);
    let address = std::fs::read_to_string(bundle.join("address")).unwrap_or_default();
    let socket = address.trim().trim_start_matches("unix://").to_string();
    assert!(Path::new(&socket).exists(), "shim socket {socket:?} (from {}/address)", bundle.display());
    // SAFETY: kill(2) on the shim's pid, just read from /proc.
    unsafe { libc::kill(shims[0], libc::SIGKILL) };

    // containerd notices, runs `containerd-shim-keel-v1 delete`: the container is killed and cleaned up.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
        let listed = cd.status(&id);
        if !alive && listed.as_deref() != Some("RUNNING") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "15 s after kill -9 of the shim: process alive {alive}, task {listed:?}\n{}",
            cd.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while st.exists() {
        assert!(Instant::now() < deadline, "shim state {} not removed by delete", st.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&socket).exists() {
        assert!(Instant::now() < deadline, "the dead shim's socket {socket} was not removed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = cd.ctr(&["task", "delete", &id]);
    cd.check("ctr container delete", &cd.ctr(&["container", "delete", &id]));
    cd.assert_clean(&id);
}
