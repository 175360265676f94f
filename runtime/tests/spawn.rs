//! Root tests of spawn: what the process inside a busybox container sees. Each test is the reaper of its spawns.

mod common;

use std::os::fd::AsRawFd;

use common::*;
use keel_runtime::{spawn, SpawnOptions, Status};
use serde_json::json;

#[test]
fn process_sees_its_config() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("basic");
    let mut c = config(&[
        "sh",
        "-c",
        "grep -E '^(CapEff|CapBnd|CapPrm|CapAmb|NoNewPrivs|Uid|Gid|Groups):' /proc/self/status; hostname; \
         echo nofile=$(ulimit -n); echo cwd=$(pwd); echo umask=$(umask); echo FOO=$FOO; \
         echo timers=[$(cat /proc/timer_list)]; echo masked=[$(ls /proc/acpi 2>&1)]; \
         echo 1 2>/dev/null >/proc/sys/kernel/shmmni || echo ro-ok; echo shm=$(cat /proc/sys/kernel/shmmni); \
         echo ppid1=$$; ls -l /dev/null /dev/ptmx /dev/fd | wc -l; echo oom=$(cat /proc/self/oom_score_adj); \
         cut -d' ' -f5 /proc/self/mountinfo | grep -cx /",
    ]);
    let p = c["process"].as_object_mut().unwrap();
    p.insert("user".into(), json!({"uid": 1000, "gid": 1001, "umask": 0o27, "additionalGids": [5, 7]}));
    p.insert("cwd".into(), json!("/tmp/made/by/runtime"));
    p.insert("env".into(), json!(["PATH=/bin", "FOO=bar"]));
    p.insert("noNewPrivileges".into(), json!(true));
    p.insert("oomScoreAdj".into(), json!(123));
    p.insert("rlimits".into(), json!([{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 400}]));
    p.insert(
        "capabilities".into(),
        json!({"bounding": ["CAP_NET_ADMIN", "CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_NET_ADMIN", "CAP_KILL"],
               "permitted": ["CAP_NET_ADMIN", "CAP_KILL"], "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]}),
    );
    let l = c["linux"].as_object_mut().unwrap();
    l.insert("maskedPaths".into(), json!(["/proc/kcore", "/proc/timer_list", "/proc/acpi", "/proc/nonexistent"]));
    l.insert("readonlyPaths".into(), json!(["/proc/sys"]));
    l.insert("sysctl".into(), json!({"kernel.shmmni": "1234"}));
    let b = tb.write(&c);
    let r = run(&b, SpawnOptions { ns_reaper: false, ..Default::default() });
    assert_eq!(r.status, Status::Started, "{}", r.out);
    assert_eq!(r.exit, 0, "{}", r.out);
    let o = &r.out;
    // CAP_KILL = bit 5, CAP_NET_ADMIN = bit 12, CAP_CHOWN = bit 0. A non-root process keeps across exec only its
    // ambient capabilities (capabilities(7)), so NET_ADMIN, permitted but not ambient, is gone after exec.
    assert!(o.contains("CapEff:\t0000000000000020"), "{o}");
    assert!(o.contains("CapPrm:\t0000000000000020"), "{o}");
    assert!(o.contains("CapBnd:\t0000000000001021"), "{o}");
    assert!(o.contains("CapAmb:\t0000000000000020"), "{o}");
    assert!(o.contains("NoNewPrivs:\t1"), "{o}");
    assert!(o.contains("Uid:\t1000\t1000\t1000\t1000"), "{o}");
    assert!(o.contains("Gid:\t1001\t1001\t1001\t1001"), "{o}");
    assert!(o.contains("Groups:\t5 7"), "{o}");
    assert!(o.contains("keeltest\n"), "{o}");
    assert!(o.contains("nofile=321\n"), "{o}");
    assert!(o.contains("cwd=/tmp/made/by/runtime\n"), "{o}");
    assert!(o.contains("umask=0027\n"), "{o}");
    assert!(o.contains("FOO=bar\n"), "{o}");
    assert!(o.contains("timers=[]\n"), "{o}");
    assert!(o.contains("masked=[]\n"), "{o}");
    assert!(o.contains("ro-ok\n"), "{o}");
    assert!(o.contains("shm=1234\n"), "{o}");
    assert!(o.contains("ppid1=1\n"), "{o}");
    assert!(o.contains("oom=123\n"), "{o}");
    assert!(o.contains("\n3\n"), "three /dev entries: {o}");
    assert!(o.ends_with("1\n"), "root is a mount: {o}");
    assert!(r.spawned.cleanup(&b).is_empty());
}

#[test]
fn mounts_binds_readonly_root_and_preserved_fds() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("mounts");
    let host = tb.dir.join("hostdata");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "from-host\n").unwrap();
    let mut c = config(&[
        "sh",
        "-c",
        "cat /data/f; echo x 2>/dev/null >/data/g || echo data-ro; echo x 2>/dev/null >/etc/y || echo root-ro; \
         echo x > /scratch/z && echo tmp-rw; echo via-fd3 >&3; cat /extra/f; grep -c ' /data ' /proc/self/mountinfo",
    ]);
    let m = c["mounts"].as_array_mut().unwrap();
    m.push(json!({"destination": "/data", "type": "bind", "source": host, "options": ["rbind", "ro", "nosuid"]}));
    m.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}));
    c["root"]["readonly"] = json!(true);
    let b = tb.write(&c);
    let (r3, w3) = pipe();
    let opts = SpawnOptions {
        preserve_fds: vec![w3.as_raw_fd()],
        binds: vec![(host.clone(), "/extra".into())],
        ..Default::default()
    };
    let r = run(&b, opts);
    drop(w3);
    let mut fd3 = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(r3), &mut fd3).unwrap();
    assert_eq!(r.status, Status::Started, "{}", r.out);
    assert_eq!(r.exit, 0, "{}", r.out);
    assert_eq!(r.out, "from-host\ndata-ro\nroot-ro\ntmp-rw\nfrom-host\n1\n");
    assert_eq!(fd3, "via-fd3\n");
}

#[test]
fn missing_binary_and_failing_mount_are_reported_and_leave_nothing() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("fail");
    // runtime.json mount that must be undone after the failure. Relative: inside the bundle's rootfs (an absolute
    // destination would be a host path).
    std::fs::write(
        tb.dir.join("runtime.json"),
        r#"{"mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "tmp", "options": ["size=1m"]}],
            "mkdir": ["var/x"]}"#,
    )
    .unwrap();
    let b = tb.write(&config(&["/bin/nope"]));
    let cg_root = std::path::PathBuf::from(if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup"
    } else {
        "/sys/fs/cgroup/unified"
    });
    let cg_rel = format!("keel-test-{}", std::process::id());
    let opts = SpawnOptions { default_cgroup: Some(cg_rel.clone()), ..Default::default() };
    let r = run(&b, opts.clone());
    assert_eq!(r.exit, 127);
    assert_eq!(
        r.status,
        Status::Failed("exec: \"/bin/nope\": stat /bin/nope: no such file or directory (errno 2)".into())
    );
    assert!(cg_root.join(&cg_rel).exists(), "the container ran in its cgroup");
    let mounted = || std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&*tb.dir.to_string_lossy());
    assert!(mounted(), "runtime.json tmpfs is mounted while the container lives");
    assert!(tb.dir.join("rootfs/var/x").is_dir());
    let errs = r.spawned.cleanup(&b);
    assert!(errs.is_empty(), "{errs:?}");
    assert!(!mounted(), "runtime.json mounts undone");
    assert!(!cg_root.join(&cg_rel).exists(), "cgroup removed");

    // PATH lookup failure names the program.
    let b = tb.write(&config(&["nosuchprog"]));
    let r = run(&b, SpawnOptions::default());
    assert_eq!(r.status, Status::Failed("exec: \"nosuchprog\": executable file not found in $PATH (errno 2)".into()));
    r.spawned.cleanup(&b);

    // A failing mount names its destination.
    let mut c = config(&["true"]);
    c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/broken", "type": "nosuchfs", "source": "x"}));
    let b = tb.write(&c);
    let r = run(&b, SpawnOptions::default());
    match &r.status {
        Status::Failed(m) => assert!(m.starts_with("mount /broken: No such device"), "{m}"),
        s => panic!("{s:?}"),
    }
    assert!(r.spawned.cleanup(&b).is_empty());
    assert!(!mounted());
}

#[test]
fn ns_reaper_forwards_sigterm_and_reaps_orphans() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("reaper");
    // The shell leaves an orphan (a backgrounded subshell whose parent exits), then waits in sleep.
    let b = tb.write(&config(&["sh", "-c", "(sh -c 'sleep 0.2' &); echo up; exec sleep 100"]));
    let (r, w) = pipe();
    let opts = SpawnOptions { ns_reaper: true, stdout: Some(w.as_raw_fd()), id: "reaper".into(), ..Default::default() };
    let s = spawn(&b, &opts).unwrap();
    drop(w);
    let mut buf = [0u8; 3];
    std::io::Read::read_exact(&mut std::fs::File::from(r), &mut buf).unwrap();
    assert_eq!(&buf, b"up\n");
    std::thread::sleep(std::time::Duration::from_millis(400));
    // The orphan was reaped: no zombie left among the reaper's descendants.
    let children = std::fs::read_to_string(format!("/proc/{}/task/{}/children", s.pid, s.pid)).unwrap();
    let kids: Vec<&str> = children.split_whitespace().collect();
    assert_eq!(kids.len(), 1, "only the real process is left: {kids:?}");
    let st = std::fs::read_to_string(format!("/proc/{}/status", kids[0])).unwrap();
    assert!(st.contains("Name:\tsleep"), "{st}");
    // Memory of the reaper.
    let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", s.pid)).unwrap_or_default();
    let field = |k: &str| rollup.lines().find(|l| l.starts_with(k)).unwrap_or("").to_string();
    eprintln!("ns reaper memory: {} | {}", field("Rss:"), field("Pss:"));
    // SAFETY: signalling our child.
    unsafe { libc::kill(s.pid, libc::SIGTERM) };
    let st = wait(s.pid);
    assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 128 + libc::SIGTERM, "status {st:#x}");
    assert_eq!(s.poll_status(), Status::Started);
}

#[test]
fn ns_reaper_is_small_holds_no_fds_and_passes_exit_code() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("reapersize");
    let b = tb.write(&config(&["sh", "-c", "echo up; read x; exit 3"]));
    let (r, w) = pipe();
    let (in_r, in_w) = pipe();
    let opts = SpawnOptions {
        ns_reaper: true,
        stdin: Some(in_r.as_raw_fd()),
        stdout: Some(w.as_raw_fd()),
        preserve_fds: vec![w.as_raw_fd()],
        id: "reapersize".into(),
        ..Default::default()
    };
    let s = spawn(&b, &opts).unwrap();
    drop(w);
    drop(in_r);
    let mut buf = [0u8; 3];
    let mut out = std::fs::File::from(r);
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(&buf, b"up\n");
    // The reaper execs keel-reaper while the service starts: the service's "up" can come first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut status = std::fs::read_to_string(format!("/proc/{}/status", s.pid)).unwrap();
    while !status.starts_with("Name:\tkeel-reaper\n") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        status = std::fs::read_to_string(format!("/proc/{}/status", s.pid)).unwrap();
    }
    let kib = |k: &str| -> u64 {
        let l = status.lines().find(|l| l.starts_with(k)).unwrap_or_else(|| panic!("{k} in {status}"));
        l.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", s.pid)).unwrap_or_default();
    let pss = rollup.lines().find(|l| l.starts_with("Pss:")).unwrap_or("Pss: ?").to_string();
    eprintln!("ns reaper: VmRSS {} kB, {pss}", kib("VmRSS:"));
    assert!(kib("VmRSS:") < 100, "the ns reaper is keel-reaper, not a copy of the caller: {status}");
    assert!(status.starts_with("Name:\tkeel-reaper\n"), "{status}");
    // No fds: the reaper holds neither stdio nor preserved fds (a log pipe must close when the service exits).
    let fds: Vec<_> = std::fs::read_dir(format!("/proc/{}/fd", s.pid)).unwrap().collect();
    assert!(fds.is_empty(), "reaper fds: {fds:?}");
    drop(in_w);
    let st = wait(s.pid);
    assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 3, "status {st:#x}");
    // Everything in the container is gone: the pipe's last writer closed.
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut out, &mut rest).unwrap();
}

#[test]
fn linuxkit_readonly_dev_is_built_then_made_readonly() {
    if !is_root() {
        return;
    }
    // What keel-image writes for `readonly: true` (images/tests/data/golden-sshd.json): a read-only root and `ro` on
    // the /dev tmpfs, with mqueue and devpts mounted beneath it.
    let tb = TestBundle::new("rodev");
    let mut c = config(&[
        "sh",
        "-c",
        "ls /dev/pts/ptmx /dev/null /dev/mqueue >/dev/null && echo tree-ok; echo x >/dev/null && echo null-ok; \
         touch /dev/new 2>/dev/null || echo dev-ro; touch /newfile 2>/dev/null || echo root-ro; \
         grep -E '^[^ ]+ [^ ]+ [^ ]+ [^ ]+ /dev ' /proc/self/mountinfo | cut -d' ' -f6",
    ]);
    c["root"] = json!({"path": "rootfs", "readonly": true});
    c["mounts"] = json!([
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k", "ro"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "nodev", "noexec", "relatime"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/var/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]}
    ]);
    let b = tb.write(&c);
    let r = run(&b, SpawnOptions::default());
    assert_eq!(r.status, Status::Started, "{}", r.out);
    assert_eq!(r.exit, 0, "{}", r.out);
    for want in ["tree-ok\n", "null-ok\n", "dev-ro\n", "root-ro\n"] {
        assert!(r.out.contains(want), "{want:?} in {}", r.out);
    }
    let dev_opts = r.out.lines().last().unwrap_or("");
    assert!(dev_opts.split(',').any(|o| o == "ro") && dev_opts.contains("nosuid"), "/dev options {dev_opts:?}");
    assert!(r.spawned.cleanup(&b).is_empty());
}

#[test]
fn without_reaper_pid1_shell_ignores_sigterm() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("noreaper");
    let b = tb.write(&config(&["sh", "-c", "echo up; while :; do sleep 0.05; done"]));
    let (r, w) = pipe();
    let s = spawn(&b, &SpawnOptions { stdout: Some(w.as_raw_fd()), ..Default::default() }).unwrap();
    drop(w);
    let mut buf = [0u8; 3];
    std::io::Read::read_exact(&mut std::fs::File::from(r), &mut buf).unwrap();
    // SAFETY: signalling our child.
    unsafe { libc::kill(s.pid, libc::SIGTERM) };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut st = 0;
    // SAFETY: our child.
    assert_eq!(unsafe { libc::waitpid(s.pid, &mut st, libc::WNOHANG) }, 0, "pid 1 without handler ignores TERM");
    // SAFETY: as above.
    unsafe { libc::kill(s.pid, libc::SIGKILL) };
    wait(s.pid);
}

#[test]
fn hooks_get_state_and_run_in_order() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("hooks");
    let log = tb.dir.join("hooks.log");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} $(cat) >> {}", log.display())]});
    let mut c = config(&["true"]);
    c["hooks"] = json!({
        "createRuntime": [hook("createRuntime")],
        "poststop": [hook("poststop")],
    });
    c["annotations"] = json!({"a": "b"});
    let b = tb.write(&c);
    let r = run(&b, SpawnOptions { id: "hk".into(), ..Default::default() });
    assert_eq!(r.status, Status::Started, "{}", r.out);
    keel_runtime::run_poststart(&b, r.spawned.pid).unwrap();
    assert!(r.spawned.cleanup(&b).is_empty());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with(r#"createRuntime {"ociVersion":"1.2.0","id":"hk","status":"created","pid":"#),
        "{text}"
    );
    assert!(lines[0].contains(r#""annotations":{"a":"b"}"#), "{text}");
    assert!(lines[1].starts_with(r#"poststop {"ociVersion":"1.2.0","id":"hk","status":"stopped""#), "{text}");

    // A failing createRuntime hook stops the container before exec.
    c["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    let b = tb.write(&c);
    let r = run(&b, SpawnOptions::default());
    assert_eq!(r.status, Status::Failed("createRuntime hook /bin/false: exited with status 1".into()));
}

#[test]
fn user_namespace_maps() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("userns");
    let mut c = config(&["sh", "-c", "cat /proc/self/uid_map; id -u; grep CapEff /proc/self/status"]);
    c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // sysfs cannot be mounted in a user namespace without a new net namespace: the host's /sys is bound instead.
    c["process"]["args"] =
        json!(["sh", "-c", "cat /proc/self/uid_map; id -u; grep CapEff /proc/self/status; ls -d /sys/kernel"]);
    c["process"]["capabilities"] =
        json!({"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"]});
    let b = tb.write(&c);
    let r = run(&b, SpawnOptions::default());
    assert_eq!(r.status, Status::Started, "{}", r.out);
    assert!(r.out.contains("0     100000      65536"), "{}", r.out);
    assert!(r.out.contains("\n0\n"), "{}", r.out);
    assert!(r.out.contains("CapEff:\t0000000000000001"), "{}", r.out);
    assert!(r.out.contains("/sys/kernel\n"), "{}", r.out);
}

#[test]
fn spawn_latency() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("latency");
    let mut minimal = config(&["/bin/true"]);
    minimal["mounts"] = json!([{"destination": "/proc", "type": "proc", "source": "proc"}]);
    minimal["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
    // LinuxKit-like: the default mount table, masked and readonly paths, default devices.
    let mut full = config(&["/bin/true"]);
    full["linux"]["maskedPaths"] = json!(["/proc/kcore", "/proc/timer_list", "/sys/firmware"]);
    full["linux"]["readonlyPaths"] = json!(["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"]);
    for (name, c) in [("minimal (pid+mount ns, proc)", minimal), ("LinuxKit-like (5 mounts, devices, masks)", full)] {
        let b = tb.write(&c);
        let (mut call, mut total) = (Vec::with_capacity(200), Vec::with_capacity(200));
        for _ in 0..200 {
            let t = std::time::Instant::now();
            let s = spawn(&b, &SpawnOptions::default()).unwrap();
            call.push(t.elapsed());
            let st = wait(s.pid);
            total.push(t.elapsed());
            assert!(
                libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
                "{name}: wait status {st:#x}, setup status {:?}",
                s.poll_status()
            );
        }
        call.sort();
        total.sort();
        eprintln!(
            "{name}: spawn() call median {:?} p90 {:?}; spawn+exec+exit of /bin/true median {:?} p90 {:?}",
            call[100], call[180], total[100], total[180]
        );
    }
}

#[test]
fn console_socket_gets_pty_master() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("console");
    let mut c = config(&["sh", "-c", "tty; echo term-ok"]);
    c["process"]["terminal"] = json!(true);
    c["process"]["consoleSize"] = json!({"height": 30, "width": 100});
    let b = tb.write(&c);
    let sock = tb.dir.join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let s = spawn(&b, &SpawnOptions { console_socket: Some(sock.clone()), ..Default::default() }).unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut name = [0u8; 64];
    let (_, master) = keel_sys::io::recv_fd(conn.as_raw_fd(), &mut name).unwrap();
    let mut f = std::fs::File::from(master.expect("no fd received"));
    let st = wait(s.pid);
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut f, &mut out); // EIO at the end of a pty is normal
    let out = String::from_utf8_lossy(&out);
    assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "{out}");
    assert!(out.contains("/dev/pts/0") && out.contains("term-ok"), "{out}");
}

#[test]
fn shared_rootfs_propagation_does_not_leak_mounts() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("shared");
    let mut c = config(&["sh", "-c", "echo up; sleep 0.3"]);
    c["linux"]["rootfsPropagation"] = json!("shared");
    let b = tb.write(&c);
    let (r, w) = pipe();
    let s = spawn(&b, &SpawnOptions { stdout: Some(w.as_raw_fd()), stderr: Some(w.as_raw_fd()), ..Default::default() })
        .unwrap();
    drop(w);
    let mut buf = [0u8; 3];
    let _ = std::io::Read::read_exact(&mut std::fs::File::from(r), &mut buf);
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let leaked = host.contains(&*tb.dir.to_string_lossy());
    let st = wait(s.pid);
    assert_eq!(s.poll_status(), Status::Started);
    assert_eq!(&buf, b"up\n");
    assert!(!leaked, "container mounts visible on the host");
    assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
}

#[test]
fn runtime_json_interfaces_and_bind_ns() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("ifaces");
    let n = std::process::id() % 100000;
    let (veth, peer) = (format!("kv{n}"), format!("kp{n}"));
    let netns = tb.dir.join("netns");
    std::fs::write(
        tb.dir.join("runtime.json"),
        // A veth pair created in the host with one end moved in, then the other (now an existing host link) moved too.
        json!({"interfaces": [{"name": veth, "peer": peer}, {"name": peer}],
               "bindNS": {"net": netns}})
        .to_string(),
    )
    .unwrap();
    let mut c = config(&["sh", "-c", "ls /sys/class/net"]);
    c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "network"}));
    let b = tb.write(&c);
    let r = run(&b, SpawnOptions::default());
    assert_eq!(r.status, Status::Started, "{}", r.out);
    let names: Vec<&str> = r.out.split_whitespace().collect();
    assert!(names.contains(&veth.as_str()) && names.contains(&peer.as_str()), "{names:?}");
    // The net namespace stays reachable through the bindNS file after the process is gone.
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(info.contains(&*netns.to_string_lossy()), "bindNS mount missing");
    let _ = keel_sys::umount(&netns, libc::MNT_DETACH);
    r.spawned.cleanup(&b);
}

#[test]
fn time_namespace_offsets() {
    if !is_root() {
        return;
    }
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        not_applicable("no time namespaces in this kernel (Linux >= 5.6)");
        return;
    }
    let tb = TestBundle::new("timens");
    let mut c = config(&["cat", "/proc/uptime"]);
    c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "time"}));
    c["linux"]["timeOffsets"] = json!({"boottime": {"secs": 86400000, "nanosecs": 0}});
    let b = tb.write(&c);
    // Offsets are written to /proc/self/timens_offsets, a per-process file: spawn from a single-threaded process
    // (a fork of this multi-threaded test), as init and keel-runc are.
    // SAFETY: glibc's fork keeps malloc usable in the child; the child only spawns, checks and _exits.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let r = run(&b, SpawnOptions::default());
        let up: f64 = r.out.split_whitespace().next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
        let ok = r.status == Status::Started && up > 86400000.0;
        if !ok {
            eprintln!("time namespace: {:?} {}", r.status, r.out);
        }
        // SAFETY: leaving the forked child without running the harness's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let st = wait(child);
    assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "uptime in the container did not have the offset");
    // The caller's own namespace is untouched.
    let host: f64 =
        std::fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(host < 86400000.0);
}

#[test]
fn linuxkit_writable_root_via_runtime_json_overlay() {
    if !is_root() {
        return;
    }
    // The layout `linuxkit build` writes for a container without `readonly: true`: the image in lower/, an empty
    // rootfs/ and tmp/, and a runtime.json that mounts a tmpfs on tmp/ (made private by a second remount entry)
    // and an overlay on rootfs/, all by absolute path.
    let tb = TestBundle::new("lkrw");
    let d = tb.dir.clone();
    std::fs::rename(d.join("rootfs"), d.join("lower")).unwrap();
    std::fs::create_dir_all(d.join("rootfs")).unwrap();
    std::fs::create_dir_all(d.join("tmp")).unwrap();
    let p = |s: &str| d.join(s).to_string_lossy().into_owned();
    std::fs::write(
        d.join("runtime.json"),
        json!({"mounts": [
            {"source": "tmpfs", "type": "tmpfs", "destination": p("tmp")},
            {"destination": p("tmp"), "options": ["remount", "private"]},
            {"source": "overlay", "type": "overlay", "destination": p("rootfs"),
             "options": [format!("lowerdir={}", p("lower")), format!("upperdir={}", p("tmp/upper")),
                         format!("workdir={}", p("tmp/work"))]}
        ], "mkdir": [], "interfaces": [], "bindNS": {}})
        .to_string(),
    )
    .unwrap();
    let b = tb.write(&config(&["sh", "-c", "echo written > /hello && cat /hello"]));
    let r = run(&b, SpawnOptions::default());
    assert_eq!(r.status, Status::Started, "{}", r.out);
    assert_eq!(r.out, "written\n");
    assert!(!d.join("lower/hello").exists(), "the image stays untouched");
    let errs = r.spawned.cleanup(&b);
    assert!(errs.is_empty(), "{errs:?}");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.contains(&*d.to_string_lossy()), "runtime.json mounts left behind");
}

#[test]
fn personality_linux32_and_flags() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("pers");
    let mut c = config(&["sh", "-c", "uname -m; cat /proc/self/personality"]);
    c["linux"]["personality"] = json!({"domain": "LINUX32", "flags": ["ADDR_NO_RANDOMIZE"]});
    let b = tb.write(&c);
    let r = run(&b, SpawnOptions::default());
    assert_eq!(r.exit, 0, "{}", r.out);
    assert!(r.out.starts_with("i686\n"), "{}", r.out);
    // /proc/PID/personality: PER_LINUX32 (0x8) | ADDR_NO_RANDOMIZE (0x40000).
    assert!(r.out.ends_with("00040008\n"), "{}", r.out);
    assert!(r.spawned.cleanup(&b).is_empty());

    c["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["NOPE"]});
    let b = tb.write(&c);
    let Err(e) = spawn(&b, &SpawnOptions::default()) else { panic!("an unknown flag must be an error") };
    assert!(e.to_string().contains("linux.personality.flags"), "{e}");
}

/// LinuxKit's mount/format packages: `rootfsPropagation: shared` and an `rshared` bind make a mount done inside the
/// container appear on the host.
#[test]
fn shared_propagation_reaches_the_host() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("propagation");
    let host = tb.dir.join("hostmnt");
    std::fs::create_dir_all(&host).unwrap();
    let h = host.to_str().unwrap();
    let sh =
        |cmd: &str| assert!(std::process::Command::new("sh").args(["-c", cmd]).status().unwrap().success(), "{cmd}");
    sh(&format!("mount --bind {h} {h} && mount --make-shared {h}"));
    let mut c = config(&[
        "sh",
        "-c",
        "mkdir -p /mnt/sub && mount -t tmpfs tmpfs /mnt/sub && echo hi > /mnt/sub/x && echo mounted",
    ]);
    c["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/mnt", "type": "bind", "source": h, "options": ["rbind", "rshared"]}));
    c["linux"]["rootfsPropagation"] = json!("shared");
    let caps = json!(["CAP_SYS_ADMIN"]);
    c["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    let r = run(&tb.write(&c), SpawnOptions::default());
    let seen = std::fs::read_to_string(host.join("sub/x"));
    let _ = std::process::Command::new("umount").args(["-R", "-l", h]).status();
    assert_eq!(r.status, Status::Started, "{}", r.out);
    assert!(r.out.contains("mounted"), "{}", r.out);
    assert_eq!(seen.ok().as_deref(), Some("hi\n"), "the container's mount did not reach the host: {}", r.out);
}

/// `binds: /sys:/sys` (31 of LinuxKit's 33 examples) with a cgroup mount below it: the cgroup view is made on top of
/// the bound sysfs (on a cgroup2-only host the fresh mount meets the host's cgroup2 there: EBUSY, and falls back to
/// a bind of the container's own cgroup, as runc does).
#[test]
fn cgroup_mount_below_a_bind_of_sys() {
    if !is_root() {
        return;
    }
    let tb = TestBundle::new("sysbind");
    let mut c = config(&["sh", "-c", "ls /sys/fs/cgroup | head -3; echo listed"]);
    let m = c["mounts"].as_array_mut().unwrap();
    m.retain(|m| m["destination"] != "/sys");
    m.push(json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "rw"]}));
    m.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]}));
    let r = run(
        &tb.write(&c),
        SpawnOptions {
            default_cgroup: Some(format!("keel-test-sysbind-{}", std::process::id())),
            ..Default::default()
        },
    );
    assert_eq!(r.status, Status::Started, "{}", r.out);
    assert!(r.out.contains("listed"), "{}", r.out);
    let errs = r.spawned.cleanup(&tb.write(&c));
    assert!(errs.is_empty(), "cleanup: {errs:?}");
}

/// Create as containerd's shim does it (containerd-shim-keel-v1's spawn_init): stdio on FIFOs, an exec fifo, the
/// default cgroup `NAMESPACE/ID`. spawn returns at once (the exec fifo is opened O_PATH: issue 13, where a musl
/// build opened it O_RDONLY and blocked forever before clone), the process waits on the fifo before exec, and
/// opening the fifo for reading (start) lets it run.
#[test]
fn create_then_start_with_the_shims_options() {
    if !is_root() {
        return;
    }
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    use std::time::{Duration, Instant};
    let tb = TestBundle::new("shimopts");
    let b = tb.write(&config(&["sh", "-c", "echo started; echo err >&2"]));
    let fifo = tb.dir.join("exec.fifo");
    let out = tb.dir.join("stdout");
    for p in [&fifo, &out] {
        keel_sys::fs::mkfifo(p.as_path(), 0o622).unwrap();
    }
    // The reader of the stdout FIFO first (containerd's side), then the shim's write end.
    let reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&out).unwrap();
    let writer = std::fs::OpenOptions::new().write(true).open(&out).unwrap();
    let null = std::fs::File::options().read(true).write(true).open("/dev/null").unwrap();
    let id = format!("shimopts-{}", std::process::id());
    let opts = SpawnOptions {
        id: id.clone(),
        stdin: Some(null.as_raw_fd()),
        stdout: Some(writer.as_raw_fd()),
        stderr: Some(writer.as_raw_fd()),
        exec_fifo: Some(fifo.clone()),
        cgroup_root: Some(keel_runtime::cgroups::default_root()),
        default_cgroup: Some(format!("keeltest-ns/{id}")),
        ..Default::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let (b2, o2) = (b.clone(), opts.clone());
    std::thread::spawn(move || {
        let _ = tx.send(spawn(&b2, &o2).map_err(|e| e.to_string()));
    });
    let spawned = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(r) => r.unwrap_or_else(|e| panic!("spawn: {e}")),
        Err(_) => {
            // Unblock the stuck open so the test can end.
            let _ = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo);
            panic!("spawn with an exec fifo did not return within 10 s (blocked opening the fifo?)");
        }
    };
    drop(writer);
    drop(null);
    // Created: blocked on the fifo, setup not failed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !keel_runtime::cli::state_dir::blocked_on_fifo(spawned.pid) {
        assert_ne!(
            std::mem::discriminant(&spawned.poll_status()),
            std::mem::discriminant(&Status::Failed(String::new())),
            "setup failed: {:?}",
            spawned.poll_status()
        );
        assert!(Instant::now() < deadline, "process {} not blocked on the exec fifo after 10 s", spawned.pid);
        std::thread::sleep(Duration::from_millis(5));
    }
    let cg = spawned.cgroup().map(|c| c.to_path_buf()).expect("the default cgroup");
    assert!(cg.ends_with(format!("keeltest-ns/{id}")), "cgroup {}", cg.display());
    // Start: open for reading, read to EOF (the process closes it at exec).
    let mut f = std::fs::OpenOptions::new().read(true).open(&fifo).unwrap();
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    let st = wait(spawned.pid);
    assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "wait status {st:#x}");
    assert_eq!(spawned.wait_status(1000), Status::Started);
    let mut text = String::new();
    let mut reader = reader;
    let _ = reader.read_to_string(&mut text);
    assert_eq!(text, "started\nerr\n");
    assert!(spawned.cleanup(&b).is_empty());
    let _ = std::fs::remove_dir(cg.parent().unwrap());
}
