//! Root tests: keel's `init` as PID 1 of a fresh pid+mount namespace (`unshare --pid --fork --mount
//! --mount-proc`, sandbox mode: KEEL_SANDBOX=1, bundles from KEEL_CONTAINERS, control socket under KEEL_RUN),
//! with busybox bundles. They skip (pass, saying why) when not root or without unshare/busybox.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{make_rootfs, processes, skip, vm_rss_kib, Pid1, Tree};

/// Busybox applets in the shared rootfs.
const APPS: [&str; 10] = ["sh", "echo", "sleep", "cat", "ls", "ps", "true", "false", "printf", "seq"];

/// A temporary bundle tree /var/tmp/keel-pid1-TAG-PID.
fn tree(tag: &str) -> Tree {
    Tree::new("pid1", tag, |d| make_rootfs(d, &APPS))
}

/// A container line: `[   1.234] NAME<pad> | TEXT...`.
fn unit_line(l: &str, name: &str, text: &str) -> bool {
    l.split_once("] ").is_some_and(|(_, r)| r.starts_with(&format!("{name} ")) && r.contains(&format!(" | {text}")))
}

#[test]
fn boots_onboot_services_broken_bundles_orphans_and_powers_off() {
    if skip() {
        return;
    }
    let t = tree("boot");
    t.sh("onboot/001-first", "echo first step; echo to stderr >&2", &[], true);
    t.sh("onboot/002-second", "echo second step; exit 3", &[], true);
    t.sh("services/ticker", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done", &[], true);
    // No pid namespace: the backgrounded sleep is orphaned to keel's PID 1, which must reap it.
    t.sh("services/orphaner", "(sleep 0.3 &) ; echo orphaner up; exec sleep 100", &[], false);
    t.raw("services/badjson", "{\n  \"process\": {\n    \"args\": [\"/bin/sh\"\n  }\n}");
    t.sh("services/norootfs", "true", &[], true);
    let nr = t.containers().join("services/norootfs/config.json");
    let c = std::fs::read_to_string(&nr)
        .unwrap()
        .replace(&t.dir.join("rootfs").display().to_string(), "/nonexistent/rootfs");
    std::fs::write(&nr, c).unwrap();
    t.raw(
        "services/nobinary",
        format!(
            r#"{{"process":{{"args":["/bin/no-such-binary"],"cwd":"/"}},"root":{{"path":{:?}}}}}"#,
            t.dir.join("rootfs").display().to_string()
        ),
    );
    t.sh("onshutdown/001-bye", "echo goodbye from onshutdown", &[], true);

    let t0 = Instant::now();
    let logdir = t.dir.join("log");
    std::fs::create_dir_all(&logdir).unwrap();
    let mut p = Pid1::start_with(&t, &[("KEEL_LOG_DIR", logdir.to_str().unwrap())]);
    let init = p.init_pid();
    p.wait_for("boot complete", Duration::from_secs(15));
    let booted = t0.elapsed();
    // Live output: the ticker's lines appear while it runs.
    p.wait_line(|l| unit_line(l, "ticker", "tick 2"), "ticker tick 2", Duration::from_secs(5));
    let rss = vm_rss_kib(init);
    println!("PID 1 VmRSS after boot: {rss} KiB; boot complete after {booted:?} wall");

    // Orphans: give the orphaned sleep time to exit, then no zombie may remain under PID 1.
    std::thread::sleep(Duration::from_millis(800));
    let zombies: Vec<_> = processes().into_iter().filter(|&(_, st, pp)| pp == init && st == 'Z').collect();
    assert!(zombies.is_empty(), "zombies under PID 1: {zombies:?}");

    let (code, list) = p.keelctl(&["list"]);
    println!("{list}");
    assert_eq!(code, 0);
    assert!(list.lines().next().unwrap().starts_with("NAME"), "{list}");
    assert!(list.lines().any(|l| l.starts_with("ticker") && l.contains("running")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("badjson") && l.contains("failed")), "{list}");
    // The multi-call binary's subcommand form gives the same answer.
    let out =
        Command::new(env!("CARGO_BIN_EXE_init")).args(["keelctl", "list"]).env("KEEL_RUN", &p.run).output().unwrap();
    assert!(out.status.success());
    let list2 = String::from_utf8_lossy(&out.stdout);
    assert_eq!(list2.lines().next(), list.lines().next());
    assert!(list2.lines().any(|l| l.starts_with("ticker") && l.contains("running")), "{list2}");
    let (code, logs) = p.keelctl(&["logs", "ticker"]);
    assert_eq!(code, 0);
    assert!(logs.contains("tick 1"), "{logs}");
    let file = std::fs::read_to_string(logdir.join("ticker.log")).unwrap();
    assert!(file.contains("] tick 1\n") && file.contains("keel: starting ticker"), "{file}");
    assert!(std::fs::read_to_string(logdir.join("first.log")).unwrap().contains("] first step\n"));

    p.signal(libc::SIGUSR2);
    let code = p.wait_exit(Duration::from_secs(20));
    let out = p.output();
    let text = out.join("\n");
    assert_eq!(code, 0, "exit code on power off\n{text}");

    // Banner, then onboot steps in name order with their output prefixed.
    let banner = out.iter().find(|l| l.contains("keel: keel ")).expect("banner");
    assert!(banner.contains("starting (kernel") && banner.contains("2 onboot, 5 services"), "{banner}");
    let pos = |pat: &str| out.iter().position(|l| l.contains(pat)).unwrap_or_else(|| panic!("no {pat:?} in\n{text}"));
    let upos = |name: &str, t: &str| {
        out.iter().position(|l| unit_line(l, name, t)).unwrap_or_else(|| panic!("no {name} | {t} in\n{text}"))
    };
    assert!(upos("first", "first step") < upos("second", "second step"), "{text}");
    assert!(upos("first", "to stderr") < upos("second", "second step"));
    assert!(out.iter().any(|l| l.contains("second") && l.contains("exit") && l.contains('3')), "{text}");
    // Broken bundles: exactly one line each, an error naming it; the rest booted.
    for name in ["badjson", "norootfs"] {
        let lines: Vec<_> = out.iter().filter(|l| l.contains(name)).collect();
        assert_eq!(lines.len(), 1, "{name}: {lines:?}");
        assert!(lines[0].contains("ERROR"), "{lines:?}");
    }
    // A missing binary is found by the runtime at exec: one ERROR line naming the cause and the bundle, no
    // warning, no restart (only the "starting" line before it).
    let nobin: Vec<_> =
        out.iter().filter(|l| l.contains("nobinary") && !l.contains("keel: starting nobinary")).collect();
    assert_eq!(nobin.len(), 1, "{nobin:?}");
    let bundle = format!("[bundle {}]", t.containers().join("services/nobinary").display());
    assert!(
        nobin[0].contains("keel: ERROR nobinary: cannot start: exec")
            && nobin[0].contains("stat /bin/no-such-binary: no such file or directory (errno 2)")
            && nobin[0].contains(&bundle)
            && nobin[0].contains("not restarting (keelctl start nobinary to retry)"),
        "{nobin:?}"
    );
    assert!(list.lines().any(|l| l.starts_with("nobinary") && l.contains("failed")), "{list}");
    // One clean line each: name, bundle path once, the cause with its place first.
    let services = t.containers().join("services");
    let badjson = format!(
        "keel: ERROR badjson: broken bundle {}: config.json line 4 column 3: expected `,` or `]`",
        services.join("badjson").display()
    );
    assert!(out.iter().any(|l| l.ends_with(&badjson)), "{text}");
    let norootfs = format!(
        "keel: ERROR norootfs: broken bundle {}: rootfs /nonexistent/rootfs: No such file or directory (errno 2)",
        services.join("norootfs").display()
    );
    assert!(out.iter().any(|l| l.ends_with(&norootfs)), "{text}");
    assert!(upos("orphaner", "orphaner up") > 0);
    // Service output came before the shutdown began; onshutdown ran after it, before the power off.
    assert!(upos("ticker", "tick 0") < pos("shutting down"));
    assert!(pos("shutting down") < upos("bye", "goodbye from onshutdown"));
    assert!(upos("bye", "goodbye from onshutdown") < pos("keel: power off"), "{text}");
    // keel's own lines carry the boot-time stamp.
    let stamped = |l: &str| {
        l.strip_prefix('[').and_then(|r| r.split_once("] ")).is_some_and(|(t, _)| {
            t.len() >= 8
                && t.trim_start().split_once('.').is_some_and(|(s, ms)| ms.len() == 3 && s.parse::<u64>().is_ok())
        })
    };
    assert!(out.iter().all(|l| stamped(l)), "{text}");
}

#[test]
fn per_service_start_cost_and_rss() {
    if skip() {
        return;
    }
    let n = 20;
    let t = tree("cost");
    for i in 0..n {
        t.sh(&format!("services/svc{i:02}"), "exec sleep 100", &[], true);
    }
    let mut p = Pid1::start(&t);
    let init = p.init_pid();
    p.wait_for("boot complete", Duration::from_secs(15));
    let (code, json) = p.keelctl(&["--json", "analyze"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let units = v["analyze"]["units"].as_array().unwrap();
    let spawned: Vec<u64> = units.iter().filter_map(|u| u["spawned_ms"].as_u64()).collect();
    assert_eq!(spawned.len(), n);
    let first = *spawned.iter().min().unwrap();
    let last = *spawned.iter().max().unwrap();
    let complete = v["analyze"]["complete_ms"].as_u64().unwrap();
    let rss = vm_rss_kib(init);
    let avg = v["analyze"]["spawn_avg_us"].as_u64().unwrap();
    let max = v["analyze"]["spawn_max_us"].as_u64().unwrap();
    println!(
        "{n} services: spawned {first}..{last} ms after PID 1 start, boot complete {complete} ms; spawn cost in \
         PID 1 {avg} µs avg, {max} µs max; PID 1 VmRSS {rss} KiB"
    );
    assert_eq!(v["analyze"]["spawns"].as_u64(), Some(n as u64));
    let (_, svg_out) = p.keelctl(&["analyze", "--svg", t.dir.join("boot.svg").to_str().unwrap()]);
    assert!(svg_out.contains("wrote"));
    assert!(std::fs::read_to_string(t.dir.join("boot.svg")).unwrap().ends_with("</svg>\n"));
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(Duration::from_secs(20)), 0);
    assert!(p.output().iter().any(|l| l.contains("keel: reboot")));
}

#[test]
fn restart_readiness_ordering_stop_timeout_and_keelctl() {
    if skip() {
        return;
    }
    let t = tree("sup");
    t.sh("services/crasher", "echo crash run; exit 1", &[], true);
    t.sh(
        "services/db",
        "sleep 0.3; echo signalling ready; echo ready >&3; exec sleep 100",
        &[("keel.ready", "fd:3")],
        true,
    );
    t.sh("services/web", "echo web up; exec sleep 100", &[("keel.after", "db")], true);
    // A shell that ignores SIGTERM (pid 2 of its namespace, behind keel's ns reaper): KILL after the stop timeout.
    t.sh(
        "services/stubborn",
        "trap '' TERM; echo stubborn up; while true; do sleep 0.1; done",
        &[("keel.stop-timeout", "1")],
        true,
    );
    // 1000 lines at once: the console shows the burst (200) and a count of the rest; the ring keeps the last 500.
    t.sh("services/flood", "seq 1 1000; exec sleep 100", &[], true);
    t.sh("services/chatty", "i=0; while true; do echo chat $i; i=$((i+1)); sleep 0.05; done", &[], true);
    let mut p = Pid1::start(&t);
    p.wait_for("boot complete", Duration::from_secs(15));
    // Ordering + readiness: web starts only after db said it is ready on fd 3.
    p.wait_line(|l| unit_line(l, "web", "web up"), "web up", Duration::from_secs(5));
    // Restart with backoff: 100, 200, 400 ms...
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.output().iter().filter(|l| unit_line(l, "crasher", "crash run")).count() < 3 {
        assert!(Instant::now() < deadline, "crasher not restarted:\n{}", p.output().join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, list) = p.keelctl(&["list"]);
    println!("{list}");
    let crasher = list.lines().find(|l| l.starts_with("crasher")).unwrap().to_string();
    let restarts: u32 = crasher.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(restarts >= 2, "{crasher}");
    assert!(list.lines().any(|l| l.starts_with("db") && l.contains("running") && l.ends_with("yes")), "{list}");

    // status, restart, logs -f.
    let (code, st) = p.keelctl(&["status", "db"]);
    assert_eq!(code, 0);
    assert!(st.contains("db (service): running") && st.contains("fd:3"), "{st}");
    let (code, _) = p.keelctl(&["status", "nosuch"]);
    assert_eq!(code, 1);
    let (code, msg) = p.keelctl(&["restart", "web"]);
    assert_eq!(code, 0, "{msg}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.output().iter().filter(|l| unit_line(l, "web", "web up")).count() < 2 {
        assert!(Instant::now() < deadline, "web not restarted:\n{}", p.output().join("\n"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut follow = Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .args(["logs", "chatty", "-f"])
        .env("KEEL_RUN", &p.run)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut r = BufReader::new(follow.stdout.take().unwrap());
    let mut seen = Vec::new();
    let t_follow = Instant::now();
    while seen.len() < 60 && t_follow.elapsed() < Duration::from_secs(5) {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap() == 0 {
            break;
        }
        seen.push(l);
    }
    let _ = follow.kill();
    let _ = follow.wait();
    // The ring's lines first, then new ones streamed live (the ring had fewer than 60 after ~1 s at 20/s).
    assert!(seen.len() >= 60, "logs -f got {} lines", seen.len());
    assert!(seen.iter().all(|l| l.contains("chat ") || l.contains("keel: ")), "{seen:?}");
    assert!(seen.iter().filter(|l| l.contains("chat ")).count() >= 55, "{seen:?}");

    let flood = p.wait_for("flood: ", Duration::from_secs(3));
    assert!(flood.contains("800 lines not shown (rate limit"), "{flood}");
    let shown = p.output().iter().filter(|l| l.contains("] flood ")).count();
    assert_eq!(shown, 200);
    let (_, logs) = p.keelctl(&["logs", "flood"]);
    let logs: Vec<&str> = logs.lines().filter(|l| !l.contains("keel: ")).collect();
    assert_eq!(logs.len(), 500, "{:?}", &logs[..3]); // the last 500 lines are kept
    assert!(logs[0].ends_with(" 501"));
    assert!(logs.last().unwrap().ends_with(" 1000"));

    let t_stop = Instant::now();
    p.signal(libc::SIGUSR1);
    assert_eq!(p.wait_exit(Duration::from_secs(20)), 0);
    let took = t_stop.elapsed();
    let out = p.output();
    let text = out.join("\n");
    let pos = |pat: &str| out.iter().position(|l| l.contains(pat)).unwrap_or_else(|| panic!("no {pat:?} in\n{text}"));
    let upos = |name: &str, s: &str| out.iter().position(|l| unit_line(l, name, s)).unwrap();
    assert!(upos("db", "signalling ready") < upos("web", "web up"), "{text}");
    assert!(pos("db ready after") < pos("starting web"), "{text}");
    assert!(out.iter().any(|l| l.contains("stubborn") && l.contains("SIGKILL")), "{text}");
    assert!(pos("keel: halt") > pos("shutting down"));
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
}

#[test]
fn required_onboot_failure_stops_the_boot_and_power_still_works() {
    if skip() {
        return;
    }
    let t = tree("emerg");
    t.sh("onboot/001-must", "echo cannot do it; exit 2", &[("keel.required", "true")], true);
    t.sh("onboot/002-later", "echo later step", &[], true);
    t.sh("services/web", "echo web up; exec sleep 100", &[], true);
    let mut p = Pid1::start(&t);
    p.wait_for("emergency", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    p.signal(libc::SIGPWR);
    assert_eq!(p.wait_exit(Duration::from_secs(10)), 0);
    let out = p.output();
    let text = out.join("\n");
    assert!(out.iter().any(|l| unit_line(l, "must", "cannot do it")), "{text}");
    assert!(!out.iter().any(|l| unit_line(l, "web", "web up")), "{text}");
    assert!(!out.iter().any(|l| unit_line(l, "later", "later step")), "{text}");
    assert!(out.iter().any(|l| l.contains("keel: power off")), "{text}");
}

#[test]
fn a_panic_is_reported_and_pid1_keeps_reaping_and_honours_power_signals() {
    if skip() {
        return;
    }
    let t = tree("panic");
    t.sh("services/web", "echo web up; exec sleep 100", &[], true);
    let mut p = Pid1::start_with(&t, &[("KEEL_TEST_PANIC", "1")]);
    p.wait_for("keel: ERROR PANIC", Duration::from_secs(10));
    p.wait_for("still reaping", Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(300));
    // Still alive (never returned, never aborted).
    assert!(p.child.try_wait().unwrap().is_none(), "init died after the panic");
    p.signal(libc::SIGUSR2);
    assert_eq!(p.wait_exit(Duration::from_secs(5)), 0);
}

/// Send one datagram to a NOTIFY_SOCKET address ("@abstract" or a path).
fn sd_notify(addr: &str, msg: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let sock = UnixDatagram::unbound().unwrap();
    let a = match addr.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).unwrap(),
        None => SocketAddr::from_pathname(addr).unwrap(),
    };
    sock.send_to_addr(msg.as_bytes(), &a).unwrap();
}

/// Send one datagram to an abstract or path address with SCM_CREDENTIALS naming `pid` (a pid in our namespace;
/// root may name any process): keel accepts notifications only from the unit's own processes.
fn sd_notify_as(addr: &str, msg: &str, pid: i32) {
    // SAFETY: sockaddr_un is plain old data; all-zero is valid.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let (bytes, off) = match addr.strip_prefix('@') {
        Some(n) => (n.as_bytes(), 1),
        None => (addr.as_bytes(), 0),
    };
    for (i, b) in bytes.iter().enumerate() {
        sa.sun_path[off + i] = *b as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + off + bytes.len() + (1 - off);
    let cred = libc::ucred { pid, uid: 0, gid: 0 };
    let mut cbuf = [0u64; 8];
    let mut iov = libc::iovec { iov_base: msg.as_ptr() as *mut libc::c_void, iov_len: msg.len() };
    // SAFETY: test-only plain socket calls; every pointer refers to a live local of the stated size.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let mut m: libc::msghdr = std::mem::zeroed();
        m.msg_name = (&mut sa as *mut libc::sockaddr_un).cast();
        m.msg_namelen = len as libc::socklen_t;
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        m.msg_control = cbuf.as_mut_ptr().cast();
        m.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::ucred>() as u32) as _;
        let c = libc::CMSG_FIRSTHDR(&m);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_CREDENTIALS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::ucred>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), cred);
        let n = libc::sendmsg(fd, &m, 0);
        assert_eq!(n, msg.len() as isize, "sendmsg {addr} as pid {pid}: {}", std::io::Error::last_os_error());
        libc::close(fd);
    }
}

/// The process under PID 1 `init` whose environment holds `needle` (e.g. its NOTIFY_SOCKET).
fn pid_with_env(init: i32, needle: &str) -> i32 {
    let procs = processes();
    let parent = |p: i32| procs.iter().find(|&&(q, _, _)| q == p).map(|&(_, _, pp)| pp);
    let under_init = |mut p: i32| {
        for _ in 0..64 {
            if p == init {
                return true;
            }
            match parent(p) {
                Some(pp) if pp > 1 => p = pp,
                _ => return false,
            }
        }
        false
    };
    let found: Vec<i32> = procs
        .iter()
        .map(|&(p, _, _)| p)
        .filter(|&p| p != init && under_init(p))
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|e| e.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
        })
        .collect();
    assert_eq!(found.len(), 1, "processes with {needle}: {found:?}");
    found[0]
}

#[test]
fn notify_readiness_orders_dependents() {
    if skip() {
        return;
    }
    let t = tree("notify");
    // Shares our network namespace: an abstract NOTIFY_SOCKET.
    t.sh("services/n1", "echo \"sock=$NOTIFY_SOCKET\"; exec sleep 100", &[("keel.ready", "notify")], true);
    // Own network namespace: a socket file bind-mounted into the container.
    t.sh(
        "services/n2",
        "[ -S \"$NOTIFY_SOCKET\" ] && echo \"bound $NOTIFY_SOCKET\"; exec sleep 100",
        &[("keel.ready", "notify")],
        true,
    );
    let cfg = t.containers().join("services/n2/config.json");
    let c = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(r#"{"type":"mount"}]"#, r#"{"type":"mount"},{"type":"network"}]"#);
    std::fs::write(&cfg, c).unwrap();
    t.sh("services/after", "echo after up; exec sleep 100", &[("keel.after", "n1,n2")], true);
    let mut p = Pid1::start(&t);
    let line = p.wait_line(|l| unit_line(l, "n1", "sock="), "n1 sock=", Duration::from_secs(10));
    let addr = line.rsplit("sock=").next().unwrap().to_string();
    assert!(addr.starts_with('@') && addr.ends_with("/notify/n1"), "{addr}");
    p.wait_line(|l| unit_line(l, "n2", "bound /run/keel-notify.sock"), "n2 bound", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!p.output().iter().any(|l| unit_line(l, "after", "after up")), "after started before n1/n2 were ready");
    // Anyone in the host network namespace reaches the abstract address, but a sender that is not part of n1
    // (this test process) is ignored: n1 stays not ready, its status unset, one WARN line.
    sd_notify(&addr, "STATUS=forged");
    sd_notify(&addr, "READY=1");
    std::thread::sleep(Duration::from_millis(300));
    let (_, st) = p.keelctl(&["status", "n1"]);
    assert!(st.starts_with("n1 (service): starting") && !st.contains("forged"), "{st}");
    let warns: Vec<_> = p.output().into_iter().filter(|l| l.contains("ignored sd_notify message")).collect();
    assert!(warns.len() == 1 && warns[0].contains("WARN") && warns[0].contains("(not part of n1)"), "{warns:?}");
    // From n1's own process it counts.
    let init = p.init_pid();
    let n1 = pid_with_env(init, &format!("NOTIFY_SOCKET={addr}"));
    sd_notify_as(&addr, "STATUS=warming up", n1);
    sd_notify_as(&addr, "READY=1", n1);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!p.output().iter().any(|l| unit_line(l, "after", "after up")), "after started before n2 was ready");
    let n2 = pid_with_env(init, "NOTIFY_SOCKET=/run/keel-notify.sock");
    sd_notify_as(p.run.join("notify/n2").to_str().unwrap(), "STATUS=serving\nREADY=1", n2);
    p.wait_line(|l| unit_line(l, "after", "after up"), "after up", Duration::from_secs(5));
    let (_, st) = p.keelctl(&["status", "n2"]);
    assert!(st.contains("status     serving") && st.contains("ready      notify"), "{st}");
    let (_, st) = p.keelctl(&["status", "n1"]);
    assert!(st.contains("status     warming up"), "{st}");
    p.signal(libc::SIGUSR2);
    assert_eq!(p.wait_exit(Duration::from_secs(10)), 0);
}

/// poststart hooks run once the service's program runs, with the state (status "running", the pid) on stdin; a
/// failing one is a warning and the service keeps running.
#[test]
fn poststart_hooks_run_after_the_program_starts() {
    if skip() {
        return;
    }
    let t = tree("poststart");
    let marker = t.containers().join("poststart-state");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&t.config("echo web up; exec sleep 100", &[], true, &t.rootfs(), "[]")).unwrap();
    cfg["hooks"] = serde_json::json!({"poststart": [
        {"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", marker.display())]},
        {"path": "/bin/false"}
    ]});
    t.raw("services/web", cfg.to_string());
    let mut p = Pid1::start(&t);
    p.wait_for("poststart hook /bin/false", Duration::from_secs(10));
    let state = std::fs::read_to_string(&marker).unwrap_or_default();
    p.signal(libc::SIGPWR);
    assert_eq!(p.wait_exit(Duration::from_secs(10)), 0);
    assert!(state.contains("\"status\":\"running\"") && state.contains("\"pid\":"), "hook state: {state:?}");
    let text = p.output().join("\n");
    assert!(text.contains("keel: WARN") || text.contains("poststart hook /bin/false"), "{text}");
    assert!(p.output().iter().any(|l| unit_line(l, "web", "web up")), "{text}");
}
