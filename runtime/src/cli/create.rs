//! `keel-runc create [--bundle|-b DIR] [--pid-file F] [--console-socket S] [--no-pivot] [--preserve-fds N] ID`:
//! set the container up and leave its process blocked before exec on `<state dir>/exec.fifo` until `start`.
//! keel-runc itself exits (the container is reparented to the caller's subreaper, as with runc).
//! Also holds the launch path shared with `run`.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::state_dir::{self, State};
use super::{Args, CliError, CliResult, Globals};
use crate::spawn::Status as SetupStatus;
use crate::{cgroups, spawn, Bundle, SpawnOptions, Spawned};

/// Flags common to create and run.
pub const LAUNCH_FLAGS: [&str; 6] =
    ["bundle|b=", "pid-file=", "console-socket=", "no-pivot", "preserve-fds=", "no-new-keyring"];

/// What create/run were asked for.
#[derive(Debug, Default, Clone)]
pub struct Launch {
    pub id: String,
    pub bundle: Option<String>,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: usize,
}

impl Launch {
    pub fn from_args(a: &Args, verb: &str) -> CliResult<Launch> {
        let preserve_fds = match a.get("preserve-fds") {
            Some(n) => {
                n.parse().map_err(|_| CliError::usage(format!("invalid value {n:?} for flag --preserve-fds")))?
            }
            None => 0,
        };
        Ok(Launch {
            id: a.id(verb)?,
            bundle: a.get("bundle").map(str::to_string),
            pid_file: a.get("pid-file").filter(|s| !s.is_empty()).map(PathBuf::from),
            console_socket: a.get("console-socket").filter(|s| !s.is_empty()).map(PathBuf::from),
            no_pivot: a.has("no-pivot"),
            preserve_fds,
        })
    }
}

/// A launched container: its state (saved), the spawn handle and the bundle.
pub struct Launched {
    pub state: State,
    pub spawned: Spawned,
    pub bundle: Bundle,
}

/// The spawn options keel-runc uses for container `id` (also what `delete` rebuilds cleanup from).
pub fn base_opts(id: &str) -> SpawnOptions {
    SpawnOptions {
        id: id.to_string(),
        cgroup_root: Some(cgroups::default_root()),
        default_cgroup: Some(id.to_string()),
        ..Default::default()
    }
}

/// Rebuild a [`Spawned`] for `cleanup` in a later keel-runc process.
pub fn rebuild_spawned(bundle: &Bundle, id: &str, pid: i32) -> CliResult<Spawned> {
    Spawned::rebuild(bundle, &base_opts(id), pid)
        .map_err(|e| CliError::io(format!("delete {id}: cleanup handle"), "", e))
}

/// Undo a launch that failed after spawn: kill and reap the process, undo spawn's setup, drop the state dir.
fn abort(g: &Globals, id: &str, spawned: &Spawned, bundle: &Bundle) {
    let _ = keel_sys::kill(spawned.pid, libc::SIGKILL);
    while keel_sys::waitpid(spawned.pid, 0) == Err(keel_sys::Errno::EINTR) {}
    for e in spawned.cleanup(bundle) {
        g.log("warning", &format!("cleanup of {id}: {e}"));
    }
    let _ = state_dir::remove(g, id);
}

/// Wait until the child has exec'd (`fifo` false) or is blocked on the exec fifo (`fifo` true), or has failed (the
/// child's message in runc's wording).
fn wait_setup(spawned: &Spawned, fifo: bool) -> CliResult {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match spawned.poll_status() {
            SetupStatus::Failed(msg) => return Err(CliError::Process(runc_wording(&msg))),
            SetupStatus::Started if !fifo => return Ok(()),
            SetupStatus::Started => {
                // EOF before the fifo was opened: the process died during setup.
                if state_dir::blocked_on_fifo(spawned.pid) {
                    return Ok(());
                }
                return match keel_sys::waitpid(spawned.pid, libc::WNOHANG) {
                    Ok(keel_sys::WaitStatus::StillAlive) => {
                        std::thread::sleep(Duration::from_micros(200));
                        continue;
                    }
                    Ok(ws) => Err(CliError::Process(format!("container process ended during setup: {ws:?}"))),
                    Err(errno) => Err(crate::Error::Sys { what: format!("waitpid {}", spawned.pid), errno }.into()),
                };
            }
            SetupStatus::Pending => {}
        }
        if fifo && state_dir::blocked_on_fifo(spawned.pid) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CliError::Process("container setup did not finish within 60 s".into()));
        }
        let t = if fifo { 1 } else { 100 };
        // An error is seen by poll_status next round.
        let _ = keel_sys::io::poll_in(spawned.status.as_raw_fd(), t);
    }
}

/// Load the bundle, make the state dir, spawn, wait for setup, save state.json and the pid file.
/// With `fifo`, the process is left blocked before exec (create); otherwise it runs (run).
pub fn launch(g: &Globals, l: &Launch, fifo: bool, detached: bool) -> CliResult<Launched> {
    let bundle_dir = state_dir::bundle_path(l.bundle.as_deref())?;
    let bundle = Bundle::load(&bundle_dir)?;
    std::fs::create_dir_all(&g.root).map_err(|e| CliError::io("mkdir", &g.root, e))?;
    let dir = state_dir::dir(g, &l.id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {
            // runc's 0711: the container's process (any uid) reaches the exec fifo inside, nobody lists it.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
                .map_err(|e| CliError::io("chmod 0711", &dir, e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(CliError::state(format!("container with id exists: {}", l.id)))
        }
        Err(e) => return Err(CliError::io("mkdir", &dir, e)),
    }
    let r = launch_in(g, l, fifo, detached, bundle);
    if r.is_err() {
        let _ = state_dir::remove(g, &l.id);
    }
    r
}

/// The host uid and gid of the container's root: mapped through linux.uidMappings/gidMappings when the container
/// has a user namespace, else 0 (runc's HostRootUID/HostRootGID).
pub fn host_root_ids(bundle: &Bundle) -> (u32, u32) {
    let Some(linux) = bundle.spec.linux.as_ref() else { return (0, 0) };
    let map = |maps: &[crate::spec::IdMapping]| {
        maps.iter().find(|m| m.container_id == 0 && m.size > 0).map(|m| m.host_id).unwrap_or(0)
    };
    (map(&linux.uid_mappings), map(&linux.gid_mappings))
}

/// Make the exec fifo as runc does: mode 0622 whatever the umask (the container's process opens it for writing
/// after it has switched to the container's uid, e.g. `--user 1000`), owned by the container's root as mapped on
/// the host (a user-namespaced root can open it too).
pub fn make_exec_fifo(p: &std::path::Path, bundle: &Bundle) -> CliResult {
    use std::os::unix::fs::PermissionsExt;
    keel_sys::mkfifo(p, 0o622)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o622))
        .map_err(|e| CliError::io("chmod 0622", p, e))?;
    let (uid, gid) = host_root_ids(bundle);
    if (uid, gid) != (0, 0) {
        std::os::unix::fs::chown(p, Some(uid), Some(gid))
            .map_err(|e| CliError::io(format!("chown {} to {uid}:{gid}", p.display()), "", e))?;
    }
    Ok(())
}

/// runc's wording for a process that cannot be executed (Go's exec.LookPath errors, as runc's init reports them):
/// Docker's CLI and podman map "no such file or directory" / "executable file not found" to exit 127 and
/// "permission denied" to 126 by matching these lower-case words in the runtime's error. `msg` is the setup
/// failure as the child reports it ("exec PATH: Strerror (errno N)"); other messages are returned unchanged.
pub fn runc_wording(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("exec ") else { return msg.to_string() };
    let Some(open) = rest.rfind(" (errno ") else { return msg.to_string() };
    let Ok(errno) = rest[open + 8..].trim_end_matches(')').parse::<i32>() else { return msg.to_string() };
    let Some(colon) = rest[..open].rfind(": ") else { return msg.to_string() };
    let prog = &rest[..colon];
    let text = match errno {
        libc::ENOENT if !prog.contains('/') => "executable file not found in $PATH".to_string(),
        libc::ENOENT => format!("stat {prog}: no such file or directory"),
        libc::ENOTDIR => format!("stat {prog}: not a directory"),
        libc::EACCES => "permission denied".to_string(),
        _ => return msg.to_string(),
    };
    format!("exec: {prog:?}: {text} (errno {errno})")
}

fn launch_in(g: &Globals, l: &Launch, fifo: bool, detached: bool, bundle: Bundle) -> CliResult<Launched> {
    let exec_fifo = if fifo {
        let p = state_dir::fifo(g, &l.id);
        make_exec_fifo(&p, &bundle)?;
        Some(p)
    } else {
        None
    };
    let cgroup_root = cgroups::default_root();
    let opts = SpawnOptions {
        stdin: Some(std::io::stdin().as_raw_fd()),
        preserve_fds: (3..3 + l.preserve_fds as i32).collect(),
        exec_fifo,
        no_pivot: l.no_pivot,
        console_socket: l.console_socket.clone(),
        ..base_opts(&l.id)
    };
    let spawned = spawn(&bundle, &opts)?;
    if let Err(e) = wait_setup(&spawned, fifo) {
        abort(g, &l.id, &spawned, &bundle);
        return Err(e);
    }
    let r = (|| {
        let pid_start_time = state_dir::proc_stat(spawned.pid).map(|s| s.1).unwrap_or(0);
        // Record the container's cgroup only if it is its own (never the caller's: delete removes it).
        let own = cgroups::of_pid(std::process::id() as i32);
        let cgroup = match cgroups::of_pid(spawned.pid) {
            Some(c) if Some(&c) != own.as_ref() && c != "/" => cgroup_root.join(c.trim_start_matches('/')),
            _ => PathBuf::new(),
        };
        let rootfs = bundle.spec.root.as_ref().map(|r| bundle.dir.join(&r.path)).unwrap_or_default();
        let state = State {
            id: l.id.clone(),
            pid: spawned.pid,
            pid_start_time,
            bundle: bundle.dir.clone(),
            rootfs,
            created: state_dir::rfc3339_now(),
            cgroup,
            annotations: bundle.spec.annotations.clone(),
            oci_version: bundle.spec.oci_version.clone(),
            detached,
        };
        state_dir::save(g, &state)?;
        if let Some(p) = &l.pid_file {
            state_dir::write_pid_file(p, spawned.pid)?;
        }
        Ok(state)
    })();
    match r {
        Ok(state) => Ok(Launched { state, spawned, bundle }),
        Err(e) => {
            abort(g, &l.id, &spawned, &bundle);
            Err(e)
        }
    }
}

pub fn main(g: &Globals, argv: &[String]) -> CliResult<i32> {
    let a = Args::parse(argv, &LAUNCH_FLAGS)?;
    let l = Launch::from_args(&a, "create")?;
    launch(g, &l, true, true)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::runc_wording;

    #[test]
    fn exec_failures_in_runc_words() {
        assert_eq!(
            runc_wording("exec /bin/nope: No such file or directory (errno 2)"),
            r#"exec: "/bin/nope": stat /bin/nope: no such file or directory (errno 2)"#
        );
        assert_eq!(
            runc_wording("exec nope: No such file or directory (errno 2)"),
            r#"exec: "nope": executable file not found in $PATH (errno 2)"#
        );
        assert_eq!(
            runc_wording("exec /etc/passwd: Permission denied (errno 13)"),
            r#"exec: "/etc/passwd": permission denied (errno 13)"#
        );
        for other in ["mount /proc: Operation not permitted (errno 1)", "exec /x: Exec format error (errno 8)", "x"] {
            assert_eq!(runc_wording(other), other);
        }
    }
}
