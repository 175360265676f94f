//! `keel-runc exec [--process|-p FILE] [--tty|-t] [--console-socket S] [--detach|-d] [--pid-file F]
//! [--env|-e K=V]... [--cwd DIR] [--user|-u UID[:GID]] [--additional-gids|-g GID]... [--cap|-c CAP]...
//! [--no-new-privs] [--preserve-fds N] ID [CMD ARGS...]`: run another process in a running container.
//!
//! The process goes through the runtime's one setup path ([`crate::spawn::exec`]): it joins the container's
//! namespaces and cgroup, every host fd but stdio and --preserve-fds is closed, a terminal is opened inside the
//! container, the working directory is checked to be inside the root, and it gets the identity, capabilities,
//! rlimits, no_new_privs and seccomp filter of process.json or, by default, of the container's own process (runc
//! semantics). Only a running container accepts exec.

use keel_sys::{waitpid, Errno, WaitStatus};

use super::state_dir::{self, Status};
use super::{Args, CliError, CliResult, Globals};
use crate::spec::Process;
use crate::{Bundle, SpawnOptions};

const FLAGS: [&str; 14] = [
    "process|p=",
    "tty|t",
    "console-socket=",
    "detach|d",
    "pid-file=",
    "env|e=",
    "cwd=",
    "user|u=",
    "additional-gids|g=",
    "cap|c=",
    "no-new-privs",
    "preserve-fds=",
    "apparmor=",
    "process-label=",
];

fn build_process(a: &Args, bundle: &Bundle) -> CliResult<Process> {
    if let Some(f) = a.get("process") {
        let text = std::fs::read(f).map_err(|e| CliError::io("read process file", f, e))?;
        return serde_json::from_slice(&text).map_err(|e| CliError::usage(format!("process file {f}: {e}")));
    }
    let mut p = bundle.spec.process.clone().unwrap_or_default();
    p.args = a.pos[1..].to_vec();
    if p.args.is_empty() {
        return Err(CliError::usage("exec: no command given (args or --process)"));
    }
    p.terminal = a.has("tty");
    for kv in a.all("env") {
        let key = kv.split('=').next().unwrap_or_default().to_string();
        p.env.retain(|e| e.split('=').next() != Some(key.as_str()));
        p.env.push(kv);
    }
    if let Some(c) = a.get("cwd") {
        p.cwd = c.to_string();
    }
    if let Some(u) = a.get("user") {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u, None),
        };
        p.user.uid = uid.parse().map_err(|_| CliError::usage(format!("--user {u:?}: numeric UID[:GID] expected")))?;
        p.user.gid = match gid {
            Some(g) => g.parse().map_err(|_| CliError::usage(format!("--user {u:?}: numeric UID[:GID] expected")))?,
            None => 0,
        };
    }
    for g in a.all("additional-gids") {
        p.user
            .additional_gids
            .push(g.parse().map_err(|_| CliError::usage(format!("--additional-gids {g:?}: not a number")))?);
    }
    if a.has("no-new-privs") {
        p.no_new_privileges = true;
    }
    let extra = a.all("cap");
    if !extra.is_empty() {
        let mut c = p.capabilities.clone().unwrap_or_default();
        // Inheritable too: an ambient capability can only be raised when it is permitted and inheritable.
        for set in [&mut c.bounding, &mut c.effective, &mut c.permitted, &mut c.inheritable, &mut c.ambient] {
            for cap in &extra {
                let up = cap.to_ascii_uppercase();
                let full = if up.starts_with("CAP_") { up } else { format!("CAP_{up}") };
                if crate::caps::from_name(&full).is_none() {
                    return Err(CliError::usage(format!("--cap: unknown capability {cap:?}")));
                }
                if !set.contains(&full) {
                    set.push(full);
                }
            }
        }
        p.capabilities = Some(c);
    }
    Ok(p)
}

pub fn main(g: &Globals, argv: &[String]) -> CliResult<i32> {
    let a = Args::parse(argv, &FLAGS)?;
    let id = a.id("exec")?;
    let st = state_dir::load(g, &id)?;
    // Never into a container that has not started: its process is still the runtime's setup child.
    match state_dir::status(g, &st) {
        Status::Running => {}
        s => return Err(CliError::state(format!("cannot exec in a {} container", s.as_str()))),
    }
    let bundle = Bundle::load(&st.bundle)?;
    let process = build_process(&a, &bundle)?;
    let preserve_fds: i32 = match a.get("preserve-fds") {
        Some(n) => n.parse().map_err(|_| CliError::usage(format!("invalid value {n:?} for flag --preserve-fds")))?,
        None => 0,
    };
    let opts = SpawnOptions {
        id: id.clone(),
        stdin: Some(0),
        preserve_fds: (3..3 + preserve_fds).collect(),
        console_socket: a.get("console-socket").filter(|s| !s.is_empty()).map(std::path::PathBuf::from),
        ..Default::default()
    };
    let cgroup = (!st.cgroup.as_os_str().is_empty()).then_some(st.cgroup.as_path());
    if !a.has("detach") {
        super::run::install_forwarding();
    }
    let spawned = crate::spawn::exec(&bundle, st.pid, cgroup, &process, &opts)?;
    let pid = spawned.pid;
    if let crate::Status::Failed(msg) = spawned.wait_status(60_000) {
        while waitpid(pid, 0) == Err(Errno::EINTR) {}
        return Err(CliError::Process(format!("exec failed: {msg}")));
    }
    if let Some(f) = a.get("pid-file").filter(|s| !s.is_empty()) {
        state_dir::write_pid_file(std::path::Path::new(f), pid)?;
    }
    if a.has("detach") {
        return Ok(0);
    }
    super::run::set_forward_target(pid);
    loop {
        match waitpid(pid, 0) {
            Ok(WaitStatus::Exited(c)) => return Ok(c),
            Ok(WaitStatus::Signaled(s)) => return Ok(128 + s),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(errno) => return Err(crate::Error::Sys { what: format!("waitpid {pid}"), errno }.into()),
        }
    }
}
