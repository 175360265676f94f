//! Processes of a task (the container's init and its execs): status, exit bookkeeping, stdio, and the exec path.
//!
//! TEMPORARY exec path: keel-runtime has no library call to start a process inside a running container yet
//! (keel-runc's `exec` lives in runtime/src/cli/exec.rs, private). Until it has one, Exec runs this very binary in
//! its keel-runc mode (`containerd-shim-keel-v1 --keel-runc --root R exec -d --pid-file P --process J ID`), which
//! joins the container and forks the process, then exits; the process is reparented to the shim (a subreaper).
//! The call the shim needs (see the report / README): `keel_runtime::exec(state: &ExecTarget, process: &Process,
//! opts: &ExecOptions{stdin, stdout, stderr, console_socket, preserve_fds}) -> Result<Spawned, Error>`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;

use crate::stdio;

/// Lifecycle of one process, as containerd's task API sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

/// One process of a task.
pub struct Proc {
    pub pid: i32,
    pub status: Status,
    pub exit_status: u32,
    pub exited_at: Option<Timestamp>,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
    /// pty master, with a terminal (ResizePty).
    pub console: Option<Arc<File>>,
    /// The stdin pump thread's guard, if stdin is pumped (see stdio.rs).
    pub pump: Option<stdio::Pump>,
    /// Exec only: the OCI process JSON (process.json of keel-runc exec).
    pub spec: Vec<u8>,
}

impl Proc {
    pub fn new(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Proc {
        Proc {
            pid: 0,
            status: Status::Created,
            exit_status: 0,
            exited_at: None,
            stdin: stdin.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
            terminal,
            console: None,
            pump: None,
            spec: Vec::new(),
        }
    }

    /// Record the exit (`code`: exit code, or 128 + signal).
    pub fn exited(&mut self, code: i32, at: Timestamp) {
        self.status = Status::Stopped;
        self.exit_status = code as u32;
        self.exited_at = Some(at);
        self.console = None;
        self.pump = None;
    }
}

/// What the exec helper needs.
pub struct ExecJob<'a> {
    pub shim_exe: &'a Path,
    pub root: &'a Path,
    pub state_dir: &'a Path,
    pub container: &'a str,
    pub exec_id: &'a str,
    pub proc_: &'a Proc,
}

/// Files of one exec in the container's state dir.
fn exec_file(dir: &Path, exec_id: &str, ext: &str) -> PathBuf {
    // exec ids are containerd-validated identifiers (no '/'); keep them safe anyway.
    let safe: String = exec_id.chars().map(|c| if c == '/' { '_' } else { c }).collect();
    dir.join(format!("exec-{safe}.{ext}"))
}

/// Start an exec through keel-runc's exec (temporary path). `wait` waits for the helper's exit code by pid (the
/// shim's reaper reaps it). Returns the process's pid and, with a terminal, its pty master.
pub fn start_exec(
    job: &ExecJob<'_>,
    wait: &dyn Fn(i32, Duration) -> Option<i32>,
) -> Result<(i32, Option<File>, Option<stdio::Pump>), String> {
    let p = job.proc_;
    let (cid, eid) = (job.container, job.exec_id);
    let spec_path = exec_file(job.state_dir, eid, "json");
    let pid_path = exec_file(job.state_dir, eid, "pid");
    let log_path = exec_file(job.state_dir, eid, "log");
    std::fs::write(&spec_path, &p.spec).map_err(|e| format!("{cid}/{eid}: write {}: {e}", spec_path.display()))?;
    let cleanup = || {
        for f in [&spec_path, &pid_path, &log_path] {
            let _ = std::fs::remove_file(f);
        }
    };
    let console =
        if p.terminal { Some(stdio::ConsoleSocket::new(exec_file(job.state_dir, eid, "sock"))?) } else { None };
    let mut io = if p.terminal { stdio::Stdio::default() } else { stdio::open(eid, &p.stdin, &p.stdout, &p.stderr)? };
    let pump = io.pump.take();
    let mut cmd = std::process::Command::new(job.shim_exe);
    cmd.arg(crate::KEEL_RUNC_ARG)
        .arg("--root")
        .arg(job.root)
        .arg("--log")
        .arg(&log_path)
        .args(["exec", "--detach", "--pid-file"])
        .arg(&pid_path)
        .arg("--process")
        .arg(&spec_path);
    if let Some(c) = &console {
        cmd.arg("--console-socket").arg(&c.path);
    }
    cmd.arg(cid);
    let null = || std::process::Stdio::null();
    let to_stdio = |f: Option<File>| f.map(std::process::Stdio::from).unwrap_or_else(null);
    cmd.stdin(to_stdio(io.stdin)).stdout(to_stdio(io.stdout)).stderr(to_stdio(io.stderr));
    let child = cmd.spawn().map_err(|e| {
        cleanup();
        format!("{cid}/{eid}: run {} {}: {e}", job.shim_exe.display(), crate::KEEL_RUNC_ARG)
    })?;
    let helper = child.id() as i32;
    drop(cmd);
    let code = wait(helper, Duration::from_secs(60));
    let r = (|| {
        match code {
            Some(0) => {}
            Some(c) => {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let msg = log
                    .lines()
                    .rev()
                    .find_map(|l| l.split("msg=").nth(1).map(|m| m.trim_matches('"').to_string()))
                    .unwrap_or_else(|| format!("exit status {c}"));
                return Err(format!("{cid}/{eid}: exec failed: {msg}"));
            }
            None => return Err(format!("{cid}/{eid}: exec helper (pid {helper}) did not finish within 60 s")),
        }
        let text =
            std::fs::read_to_string(&pid_path).map_err(|e| format!("{cid}/{eid}: read {}: {e}", pid_path.display()))?;
        let pid: i32 =
            text.trim().parse().map_err(|_| format!("{cid}/{eid}: bad pid {text:?} in {}", pid_path.display()))?;
        let master = match &console {
            Some(c) => Some(c.receive(5000).map_err(|e| format!("{cid}/{eid}: {e}"))?),
            None => None,
        };
        Ok((pid, master, pump))
    })();
    cleanup();
    r
}

/// Poll `f` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_micros(100);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}
