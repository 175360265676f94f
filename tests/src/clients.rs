//! The podman and Docker matrices (tests/tests/podman.rs, tests/tests/docker.rs): the same cases run through a
//! real client with runc (the reference), keel-runc and, where present, crun; each case's outcome (exit code and
//! output) must be what runc gives, and the table of results is printed.
//!
//! A case passes for a runtime when its outcome satisfies the case's check *and* equals runc's outcome (exit code
//! and normalised output). Cases that fail with runc itself are reported and not asserted (an environment
//! problem, not keel's); the test fails when a case that passes with runc does not pass with keel-runc. crun is
//! informational (run in a private mount namespace with an empty /sys/fs/cgroup/unified/cgroup.controllers, the
//! trick crun 1.8 needs on hybrid cgroup hosts: crun_wrapper below).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use keel_image::testutil::{layer, Entry};

use crate::vm::{in_ci, root};

/// Skip (print SKIPPED and why, return None) outside CI; panic in CI. Tests never install packages: `make deps`
/// installs every client and tool they use.
pub fn skip<T>(test: &str, msg: &str) -> Option<T> {
    if in_ci() {
        panic!("{test}: {msg}");
    }
    // Not eprintln!: the test harness captures that and hides it when the test passes.
    let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("SKIPPED {test}: {msg}\n"));
    None
}

/// Whether `cmd` is on PATH (or an existing path).
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// keel-runc: $KEEL_RUNC, else `make build`'s build/bin/keel-runc (static musl), else the glibc release, else debug.
pub fn keel_runc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KEEL_RUNC") {
        return Some(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    // First what the image ships and hosts are told to use: `make build`'s static musl multi-call binary (musl is
    // where std's OpenOptions dropped O_PATH: the clients must drive that build).
    let candidates = [
        root().join("build/bin/keel-runc"),
        target.join("x86_64-unknown-linux-gnu/release/keel-runc"),
        target.join("debug/keel-runc"),
    ];
    candidates.iter().find(|p| p.is_file()).cloned()
}

/// Root, keel-runc, runc and /bin/busybox present; else skip (or panic in CI). Returns keel-runc's path.
pub fn common_prereqs(test: &str) -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip(test, "needs root");
    }
    let Some(keel) = keel_runc() else {
        return skip(test, "keel-runc not built (make build, or cargo build -p keel-runtime; or set KEEL_RUNC)");
    };
    if !have("runc") {
        return skip(test, "runc not installed (make deps)");
    }
    if !Path::new("/bin/busybox").is_file() {
        return skip(test, "/bin/busybox missing (make deps installs busybox-static)");
    }
    Some(keel)
}

/// A tarball of a busybox root filesystem (every applet linked in /bin, /bin/noexec a 0644 script, /etc/passwd
/// and /etc/group with root only) at `path`, for `podman import` / `docker import` (no registry needed).
pub fn busybox_tar(path: &Path) -> Result<(), String> {
    let bb = std::fs::read("/bin/busybox").map_err(|e| format!("read /bin/busybox: {e}"))?;
    let list = Command::new("/bin/busybox").arg("--list").output().map_err(|e| format!("busybox --list: {e}"))?;
    let applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(|a| format!("bin/{a}"))
        .collect();
    let mut entries = vec![];
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root", "home", "run", "var", "var/tmp"] {
        entries.push(Entry::Dir(d));
    }
    entries.push(Entry::File("bin/busybox", &bb, 0o755));
    entries.push(Entry::File("bin/noexec", b"#!/bin/sh\necho should-not-run\n", 0o644));
    entries.push(Entry::File("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644));
    entries.push(Entry::File("etc/group", b"root:x:0:\n", 0o644));
    for a in &applets {
        entries.push(Entry::Symlink(a, "busybox"));
    }
    let mut data = layer(&entries);
    // `tmp` world-writable with the sticky bit, as in a real image.
    set_mode_in_tar(&mut data, "tmp", 0o1777);
    std::fs::write(path, data).map_err(|e| format!("write {}: {e}", path.display()))
}

/// Patch the mode of directory entry `name` in an uncompressed tar (header checksum recomputed).
fn set_mode_in_tar(data: &mut [u8], name: &str, mode: u32) {
    let mut off = 0;
    while off + 512 <= data.len() {
        let h = &data[off..off + 512];
        if h.iter().all(|&b| b == 0) {
            return;
        }
        let n = String::from_utf8_lossy(&h[..100]).trim_end_matches('\0').trim_end_matches('/').to_string();
        let size =
            u64::from_str_radix(String::from_utf8_lossy(&h[124..135]).trim_matches(|c| c == '\0' || c == ' '), 8)
                .unwrap_or(0);
        if n == name {
            let m = format!("{mode:07o}\0");
            data[off + 100..off + 108].copy_from_slice(m.as_bytes());
            data[off + 148..off + 156].copy_from_slice(b"        ");
            let sum: u32 = data[off..off + 512].iter().map(|&b| b as u32).sum();
            let c = format!("{sum:06o}\0 ");
            data[off + 148..off + 156].copy_from_slice(c.as_bytes());
        }
        off += 512 + size.div_ceil(512) as usize * 512;
    }
}

/// Shell-quote one word.
pub fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What a case observed: exit code (None: killed), normalised stdout, stderr (for reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub code: Option<i32>,
    pub out: String,
    pub err: String,
}

impl Outcome {
    pub fn from_output(o: &Output) -> Outcome {
        Outcome { code: o.status.code(), out: norm(&o.stdout), err: String::from_utf8_lossy(&o.stderr).into_owned() }
    }

    /// Same code and output (stderr is not compared: it carries each runtime's own error wording).
    pub fn same(&self, other: &Outcome) -> bool {
        self.code == other.code && self.out == other.out
    }

    fn short(&self) -> String {
        let code = self.code.map(|c| c.to_string()).unwrap_or_else(|| "killed".into());
        let mut out = self.out.replace('\n', "\\n");
        if out.len() > 120 {
            out.truncate(120);
            out.push('…');
        }
        let err = self.err.trim().lines().last().unwrap_or("").to_string();
        format!("exit {code}, stdout {out:?}, last stderr line {err:?}")
    }
}

/// Output without carriage returns and trailing blanks.
pub fn norm(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b).replace('\r', "");
    s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim_end().to_string()
}

/// One OCI runtime as the client names it.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Column name: "runc", "keel-runc", "crun".
    pub name: &'static str,
    /// What goes after the client's `--runtime`: a path (podman) or a registered name (Docker).
    pub arg: String,
}

/// The client under test: its base command line (global flags included).
pub struct Client {
    pub name: &'static str,
    /// argv of the client with its global flags, e.g. ["podman", "--root", ...].
    pub base: Vec<String>,
    /// Flags every `run`/`create` gets besides --runtime (podman: ulimits this sandbox allows).
    pub run_flags: Vec<String>,
    pub image: String,
    /// Environment for the client (DOCKER_HOST, ...).
    pub env: Vec<(String, String)>,
    pub scratch: PathBuf,
}

/// Commands are killed after this long.
const CMD_TIMEOUT: &str = "60";

impl Client {
    /// `CLIENT ARGS` (killed after 60 s), stdin null.
    pub fn cmd(&self, args: &[String]) -> Outcome {
        let mut c = Command::new("timeout");
        c.args(["-s", "KILL", CMD_TIMEOUT]).args(&self.base).args(args).stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let o = c.output().unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", self.name));
        Outcome::from_output(&o)
    }

    /// `CLIENT run --rm --runtime RT [--network none] OPTS IMAGE CMD`.
    pub fn run(&self, rt: &Runtime, opts: &[&str], cmd: &[&str]) -> Outcome {
        let args = self.run_args("run", rt, opts, true, cmd);
        self.cmd(&args)
    }

    /// argv for `VERB [--rm] --runtime RT [--network none] FLAGS OPTS IMAGE CMD`.
    pub fn run_args(&self, verb: &str, rt: &Runtime, opts: &[&str], rm: bool, cmd: &[&str]) -> Vec<String> {
        let mut a = vec![verb.to_string()];
        if rm {
            a.push("--rm".into());
        }
        a.extend(["--runtime".to_string(), rt.arg.clone()]);
        if !opts.iter().any(|o| o.starts_with("--network")) {
            a.extend(["--network".to_string(), "none".to_string()]);
        }
        a.extend(self.run_flags.iter().cloned());
        a.extend(opts.iter().map(|s| s.to_string()));
        a.push(self.image.clone());
        a.extend(cmd.iter().map(|s| s.to_string()));
        a
    }

    /// `CLIENT ARGS` under a pseudo-terminal (`script -qec`), output normalised.
    pub fn tty(&self, args: &[String]) -> Outcome {
        let line: Vec<String> = self.base.iter().chain(args.iter()).map(|s| sq(s)).collect();
        let mut c = Command::new("timeout");
        c.args(["-s", "KILL", CMD_TIMEOUT, "script", "-qec", &line.join(" "), "/dev/null"]).stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let o = c.output().unwrap_or_else(|e| panic!("spawn script {args:?}: {e}"));
        let mut out = Outcome::from_output(&o);
        // script echoes the NUL it reads from its null stdin as "^@", at a time that varies.
        out.out = norm(out.out.replace("^@", "").as_bytes());
        out
    }

    /// A detached container `name` running `cmd`; returns the `run -d` outcome.
    pub fn detached(&self, rt: &Runtime, name: &str, opts: &[&str], cmd: &[&str]) -> Outcome {
        let mut o = vec!["--name", name];
        o.extend_from_slice(opts);
        let args = self.run_args("run", rt, &o, false, cmd);
        let mut a = args.clone();
        a.insert(1, "-d".into());
        self.cmd(&a)
    }

    /// Remove container `name` whatever its state (for cleanup between cases).
    pub fn force_rm(&self, name: &str) {
        // kill first: podman's `rm -f` would wait 10 s for a SIGTERM that a `sleep` as pid 1 ignores.
        let _ = self.cmd(&s(&["kill", name]));
        let _ = self.cmd(&s(&["rm", "-f", name]));
    }
}

/// Vec<String> from &strs.
pub fn s(a: &[&str]) -> Vec<String> {
    a.iter().map(|x| x.to_string()).collect()
}

type CaseFn = Box<dyn Fn(&Client, &Runtime, &str) -> Outcome>;
type Check = Box<dyn Fn(&Outcome) -> Result<(), String>>;

/// One row of the matrix.
pub struct Case {
    pub name: String,
    /// Runs the case with a runtime; the &str is a unique container name prefix for this run.
    pub run: CaseFn,
    /// What runc must give too (the correct behaviour).
    pub check: Check,
}

impl Case {
    pub fn new(
        name: &str,
        run: impl Fn(&Client, &Runtime, &str) -> Outcome + 'static,
        check: impl Fn(&Outcome) -> Result<(), String> + 'static,
    ) -> Case {
        Case { name: name.to_string(), run: Box::new(run), check: Box::new(check) }
    }
}

/// Checks.
pub fn code(want: i32) -> impl Fn(&Outcome) -> Result<(), String> {
    move |o| if o.code == Some(want) { Ok(()) } else { Err(format!("want exit {want}")) }
}

pub fn out_is(want: &'static str) -> impl Fn(&Outcome) -> Result<(), String> {
    move |o| {
        if o.code == Some(0) && o.out == want {
            Ok(())
        } else {
            Err(format!("want exit 0 and stdout {want:?}"))
        }
    }
}

pub fn out_has(parts: &'static [&'static str]) -> impl Fn(&Outcome) -> Result<(), String> {
    move |o| {
        if o.code == Some(0) && parts.iter().all(|p| o.out.contains(p)) {
            Ok(())
        } else {
            Err(format!("want exit 0 and stdout containing {parts:?}"))
        }
    }
}

/// The cases both clients share (Docker and podman take the same flags for all of them).
pub fn common_cases() -> Vec<Case> {
    let mut v = vec![
        Case::new("run echo", |c, rt, _| c.run(rt, &[], &["echo", "hello"]), out_is("hello")),
        Case::new("exit code 3", |c, rt, _| c.run(rt, &[], &["sh", "-c", "exit 3"]), code(3)),
        Case::new("missing command: 127", |c, rt, _| c.run(rt, &[], &["/bin/nope"]), code(127)),
        Case::new("missing command in PATH: 127", |c, rt, _| c.run(rt, &[], &["nope"]), code(127)),
        Case::new("non-executable: 126", |c, rt, _| c.run(rt, &[], &["/bin/noexec"]), code(126)),
        Case::new("--user 1000", |c, rt, _| c.run(rt, &["--user", "1000"], &["id"]), out_has(&["uid=1000"])),
        Case::new(
            "--user 1000:1000 --group-add 10",
            |c, rt, _| c.run(rt, &["--user", "1000:1000", "--group-add", "10"], &["id", "-G"]),
            out_is("1000 10"),
        ),
        Case::new(
            "-e env",
            |c, rt, _| c.run(rt, &["-e", "FOO=bar baz"], &["sh", "-c", "echo $FOO"]),
            out_is("bar baz"),
        ),
        Case::new("-w workdir", |c, rt, _| c.run(rt, &["-w", "/tmp"], &["pwd"]), out_is("/tmp")),
        Case::new(
            "--read-only",
            |c, rt, _| {
                c.run(rt, &["--read-only"], &["sh", "-c", "touch /x 2>/dev/null && echo root-rw || echo root-ro"])
            },
            out_is("root-ro"),
        ),
        Case::new(
            "--cap-drop CHOWN",
            |c, rt, _| {
                c.run(
                    rt,
                    &["--cap-drop", "CHOWN"],
                    &["sh", "-c", "grep CapEff /proc/self/status; chown 1 /tmp && echo chown-ok || echo chown-denied"],
                )
            },
            out_has(&["chown-denied"]),
        ),
        Case::new(
            "--cap-add SYS_ADMIN",
            |c, rt, _| {
                c.run(rt, &["--cap-add", "SYS_ADMIN"], &["sh", "-c", "grep -E 'Cap(Eff|Bnd|Amb)' /proc/self/status"])
            },
            |o| {
                let eff = o.out.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim).unwrap_or("");
                match u64::from_str_radix(eff, 16) {
                    Ok(m) if o.code == Some(0) && m & (1 << 21) != 0 => Ok(()),
                    _ => Err("want exit 0 and CAP_SYS_ADMIN (bit 21) in CapEff".into()),
                }
            },
        ),
        Case::new(
            "--memory 64m (own cgroup, read-only)",
            |c, rt, _| {
                let sh = "m=/sys/fs/cgroup/memory; [ -f $m/memory.limit_in_bytes ] || m=/sys/fs/cgroup; \
                          f=$m/memory.limit_in_bytes; [ -f $f ] || f=$m/memory.max; cat $f; \
                          (echo 100000000 > $f) 2>/dev/null && echo limit-writable || echo limit-ro; cat $f; \
                          echo subdirs=$(find $m -mindepth 1 -maxdepth 1 -type d | wc -l)";
                c.run(rt, &["--memory", "64m"], &["sh", "-c", sh])
            },
            out_is("67108864\nlimit-ro\n67108864\nsubdirs=0"),
        ),
        Case::new(
            "--pids-limit 20",
            |c, rt, _| {
                let sh = "f=/sys/fs/cgroup/pids/pids.max; [ -f $f ] || f=/sys/fs/cgroup/pids.max; cat $f";
                c.run(rt, &["--pids-limit", "20"], &["sh", "-c", sh])
            },
            out_is("20"),
        ),
        Case::new(
            "-d, exec, stop, rm",
            |c, rt, n| {
                let mut parts = vec![];
                let r = c.detached(rt, n, &[], &["sleep", "100"]);
                parts.push(format!("run-d={:?}", r.code));
                let e = c.cmd(&s(&["exec", n, "echo", "in-exec"]));
                parts.push(format!("exec={:?}:{}", e.code, e.out));
                let e = c.cmd(&s(&["exec", n, "sh", "-c", "exit 5"]));
                parts.push(format!("exec-exit={:?}", e.code));
                let e = c.cmd(&s(&["stop", "-t", "1", n]));
                parts.push(format!("stop={:?}", e.code));
                let e = c.cmd(&s(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", n]));
                parts.push(format!("state={}", e.out));
                let e = c.cmd(&s(&["rm", n]));
                parts.push(format!("rm={:?}", e.code));
                c.force_rm(n);
                Outcome { code: Some(0), out: parts.join(" "), err: r.err }
            },
            |o| {
                let want =
                    ["run-d=Some(0)", "exec=Some(0):in-exec", "exec-exit=Some(5)", "stop=Some(0)", "137", "rm=Some(0)"];
                if want.iter().all(|w| o.out.contains(w)) {
                    Ok(())
                } else {
                    Err(format!("want all of {want:?}"))
                }
            },
        ),
        Case::new(
            "-d, kill, rm",
            |c, rt, n| {
                let mut parts = vec![];
                let r = c.detached(rt, n, &[], &["sh", "-c", "trap 'exit 7' USR1; while :; do sleep 0.1; done"]);
                parts.push(format!("run-d={:?}", r.code));
                std::thread::sleep(Duration::from_millis(300));
                let e = c.cmd(&s(&["kill", "-s", "USR1", n]));
                parts.push(format!("kill={:?}", e.code));
                let e = c.cmd(&s(&["wait", n]));
                parts.push(format!("wait={:?}:{}", e.code, e.out));
                let e = c.cmd(&s(&["rm", n]));
                parts.push(format!("rm={:?}", e.code));
                c.force_rm(n);
                Outcome { code: Some(0), out: parts.join(" "), err: r.err }
            },
            out_has(&["run-d=Some(0)", "kill=Some(0)", "wait=Some(0):7", "rm=Some(0)"]),
        ),
        Case::new(
            "exec -it (pty)",
            |c, rt, n| {
                let r = c.detached(rt, n, &[], &["sleep", "100"]);
                let e = c.tty(&s(&["exec", "-it", n, "sh", "-c", "tty; echo ok"]));
                c.force_rm(n);
                Outcome { code: e.code, out: format!("run-d={:?} {}", r.code, e.out.replace('\n', " ")), err: e.err }
            },
            out_is("run-d=Some(0) /dev/pts/0 ok"),
        ),
        Case::new(
            "run -t (pty, /dev/console)",
            |c, rt, _| {
                let sh = "tty; [ -c /dev/console ] && echo console-ok; echo done";
                c.tty(&c.run_args("run", rt, &["-t"], true, &["sh", "-c", sh]))
            },
            out_is("/dev/pts/0\nconsole-ok\ndone"),
        ),
        Case::new(
            "exec with 300 args and 600 env",
            |c, rt, n| {
                let r = c.detached(rt, n, &[], &["sleep", "100"]);
                let mut a = s(&["exec"]);
                for i in 0..600 {
                    a.extend(["-e".to_string(), format!("E{i}=v{i}")]);
                }
                a.extend(s(&[n, "sh", "-c", "echo $#; env | grep -c '^E[0-9]'; echo $E599", "sh"]));
                a.extend((0..300).map(|i| format!("a{i}")));
                let e = c.cmd(&a);
                c.force_rm(n);
                Outcome { code: e.code, out: format!("run-d={:?} {}", r.code, e.out.replace('\n', " ")), err: e.err }
            },
            out_is("run-d=Some(0) 300 600 v599"),
        ),
        Case::new(
            "--init",
            |c, rt, _| c.run(rt, &["--init"], &["sh", "-c", "cat /proc/1/comm; [ $$ != 1 ] && echo sh-not-pid1"]),
            |o| {
                if o.code == Some(0) && !o.out.starts_with("sh\n") && o.out.ends_with("\nsh-not-pid1") {
                    Ok(())
                } else {
                    Err("want an init process as pid 1 and sh not pid 1".into())
                }
            },
        ),
        Case::new(
            "--device /dev/null:/dev/mynull",
            |c, rt, _| {
                let sh = "echo x > /dev/mynull && echo write-ok; ls -l /dev/mynull | cut -c1";
                c.run(rt, &["--device", "/dev/null:/dev/mynull"], &["sh", "-c", sh])
            },
            out_is("write-ok\nc"),
        ),
        Case::new(
            "--network none",
            |c, rt, _| c.run(rt, &["--network", "none"], &["ls", "/sys/class/net"]),
            out_is("lo"),
        ),
        Case::new(
            "--network host",
            |c, rt, _| c.run(rt, &["--network", "host"], &["sh", "-c", "ls /sys/class/net | wc -l"]),
            |o| {
                let host = std::fs::read_dir("/sys/class/net").map(|r| r.count()).unwrap_or(0);
                if o.code == Some(0) && o.out == host.to_string() {
                    Ok(())
                } else {
                    Err(format!("want the host's {host} interfaces"))
                }
            },
        ),
    ];
    v.shrink_to_fit();
    v
}

/// One cell of the table.
#[derive(Debug, Clone)]
enum Cell {
    Pass,
    Fail(String),
}

/// Run every case with every runtime (runc first: the reference), print the table and a report of the failures,
/// and panic if a case that passes with runc does not pass with keel-runc.
pub fn run_matrix(test: &str, client: &Client, runtimes: &[Runtime], cases: &[Case]) {
    let t0 = Instant::now();
    assert_eq!(runtimes.first().map(|r| r.name), Some("runc"), "runc is the reference: first column");
    let mut rows: Vec<(String, Vec<Cell>)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut runc_broken: Vec<String> = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        let mut cells = Vec::new();
        let mut reference: Option<Outcome> = None;
        for rt in runtimes {
            let name = format!("keeltest-{}-{ci}-{}", std::process::id(), rt.name);
            let t = Instant::now();
            let o = (case.run)(client, rt, &name);
            let secs = t.elapsed().as_secs_f64();
            let checked = (case.check)(&o);
            let cell = match (&reference, checked) {
                (_, Err(why)) => Cell::Fail(format!("{why}; got {}", o.short())),
                (Some(r), Ok(())) if !o.same(r) => {
                    Cell::Fail(format!("differs from runc: got {}; runc {}", o.short(), r.short()))
                }
                _ => Cell::Pass,
            };
            eprintln!(
                "{test}: {:<36} {:<10} {} ({secs:.1} s)",
                case.name,
                rt.name,
                match &cell {
                    Cell::Pass => "pass".to_string(),
                    Cell::Fail(w) => format!("FAIL: {w}"),
                }
            );
            if rt.name == "runc" {
                if let Cell::Fail(w) = &cell {
                    runc_broken.push(format!("{}: {w}", case.name));
                }
                reference = Some(o);
            } else if rt.name == "keel-runc" {
                if let (Cell::Fail(w), true) = (&cell, matches!(cells.first(), Some(Cell::Pass))) {
                    failures.push(format!("{}: {w}", case.name));
                }
            }
            cells.push(cell);
        }
        rows.push((case.name.clone(), cells));
    }
    let mut table = format!("\n{test} matrix ({} cases, {:.0} s)\n| case |", cases.len(), t0.elapsed().as_secs_f64());
    for rt in runtimes {
        table.push_str(&format!(" {} |", rt.name));
    }
    table.push_str("\n|---|");
    for _ in runtimes {
        table.push_str("---|");
    }
    for (name, cells) in &rows {
        table.push_str(&format!("\n| {name} |"));
        for c in cells {
            table.push_str(match c {
                Cell::Pass => " pass |",
                Cell::Fail(_) => " FAIL |",
            });
        }
    }
    eprintln!("{table}\n");
    if !runc_broken.is_empty() {
        eprintln!("{test}: cases failing with runc itself (not asserted):\n  {}", runc_broken.join("\n  "));
    }
    if let Some(dir) = std::env::var_os("KEEL_MATRIX_OUT") {
        let p = PathBuf::from(dir).join(format!("{test}.md"));
        let _ = std::fs::write(&p, &table);
    }
    assert!(
        failures.is_empty(),
        "{test}: {} case(s) pass with runc but not with keel-runc:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// Lazily unmount every mount at or below `dir` (deepest first), as a client may leave some after a failure.
pub fn unmount_below(dir: &Path) {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let d = dir.to_string_lossy().to_string();
    let mut points: Vec<String> = mi
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|p| p == &d || p.starts_with(&format!("{d}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p) {
            // SAFETY: umount2 with a valid C string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// A wrapper runtime that runs crun in a private mount namespace where the cgroup2 mount of this hybrid host
/// shows no controllers (crun 1.8 refuses hybrid layouts otherwise). None if crun or unshare is missing.
pub fn crun_wrapper(dir: &Path) -> Option<PathBuf> {
    if !have("crun") || !have("unshare") {
        return None;
    }
    let unified = Path::new("/sys/fs/cgroup/unified/cgroup.controllers");
    let script = dir.join("crun-hybrid");
    let empty = dir.join("empty-controllers");
    std::fs::write(&empty, "").ok()?;
    let body = if unified.exists() {
        format!(
            "#!/bin/sh\nexec unshare -m sh -c 'mount --bind {e} {u} && exec crun \"$@\"' crun \"$@\"\n",
            e = empty.display(),
            u = unified.display()
        )
    } else {
        "#!/bin/sh\nexec crun \"$@\"\n".to_string()
    };
    std::fs::write(&script, body).ok()?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).ok()?;
    Some(script)
}
