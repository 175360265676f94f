//! Processes of a task (the container's init and its execs): status, exit bookkeeping, stdio, and the exec path.
//!
//! Exec runs in-process like Create: `keel_runtime::exec` forks the new process from the shim, it joins the
//! container's namespaces and cgroup and goes through the runtime's one setup path; the shim is its parent and reaps
//! it (no runtime binary exec'd per operation).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;

use crate::error::Error;
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

/// What an exec needs of its container.
pub struct ExecJob<'a> {
    pub bundle: &'a keel_runtime::Bundle,
    /// The container's init pid (whose namespaces the process joins).
    pub init_pid: i32,
    pub cgroup: Option<&'a Path>,
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

/// A started exec: its pid, with a terminal its pty master, and the stdin pump guard.
pub type Started = (i32, Option<File>, Option<stdio::Pump>);

/// Start an exec in-process with `keel_runtime::exec`: returns once the process has exec'd its program (or its
/// setup failed: the error says what failed, with the errno). The shim's reaper reaps the process; a failed one
/// is reported as `Err((pid, error))` so the caller can forget its exit.
pub fn start_exec(job: &ExecJob<'_>) -> Result<Started, (i32, Error)> {
    let p = job.proc_;
    let (cid, eid) = (job.container, job.exec_id);
    let process: keel_runtime::spec::Process = serde_json::from_slice(&p.spec)
        .map_err(|e| (0, Error::Invalid(format!("exec process spec: {e}")).context(format!("{cid}/{eid}"))))?;
    let console = if p.terminal {
        Some(stdio::ConsoleSocket::new(exec_file(job.state_dir, eid, "sock")).map_err(|e| (0, e))?)
    } else {
        None
    };
    let mut io = if p.terminal {
        stdio::Stdio::default()
    } else {
        stdio::open(eid, &p.stdin, &p.stdout, &p.stderr).map_err(|e| (0, e))?
    };
    let pump = io.pump.take();
    let devnull = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| (0, Error::io("open", "/dev/null", e).context(format!("{cid}/{eid}"))))?;
    let (i, o, e) = io.raw();
    let null = devnull.as_raw_fd();
    let opts = keel_runtime::SpawnOptions {
        id: cid.to_string(),
        stdin: Some(i.unwrap_or(null)),
        stdout: Some(o.unwrap_or(null)),
        stderr: Some(e.unwrap_or(null)),
        console_socket: console.as_ref().map(|c| c.path.clone()),
        ..Default::default()
    };
    let spawned = keel_runtime::exec(job.bundle, job.init_pid, job.cgroup, &process, &opts).map_err(|e| {
        (0, Error::Runtime(e).context(format!("{cid}/{eid}: exec in container (pid {})", job.init_pid)))
    })?;
    // The process holds its own copies now.
    drop(io);
    drop(devnull);
    let pid = spawned.pid;
    match spawned.wait_status(60_000) {
        keel_runtime::Status::Started => {}
        keel_runtime::Status::Failed(msg) => {
            return Err((pid, Error::Process(format!("{cid}/{eid}: exec failed: {msg}"))))
        }
        keel_runtime::Status::Pending => {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err((
                pid,
                Error::Process(format!("{cid}/{eid}: exec setup (pid {pid}) did not finish within 60 s")),
            ));
        }
    }
    let master = match &console {
        Some(c) => Some(c.receive(5000).map_err(|e| (pid, e.context(format!("{cid}/{eid}"))))?),
        None => None,
    };
    Ok((pid, master, pump))
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
