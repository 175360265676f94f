//! Turning `Action::Spawn` into `keel_shim::spawn`: the unit's wiring.
//!
//! - stdout and stderr: the write end of the unit's log pipe (one pipe per unit, created once, kept across
//!   restarts so output written by a dying process or its leftovers is never lost).
//! - `keel.ready=fd:N`: a fresh pipe per spawn; its write end becomes fd N in the container (fds 3..N-1 are
//!   /dev/null) through `preserve_fds`; a line on the read end means ready.
//! - `keel.ready=notify`: one SOCK_DGRAM unix socket per unit. When the container shares our network namespace
//!   the abstract address `@keel/notify/NAME` reaches it; otherwise the socket file $KEEL_RUN/notify/NAME is
//!   bind-mounted into the container at /run/keel-notify.sock. NOTIFY_SOCKET tells the service which.
//! - `ns_reaper`: a tiny reaper as pid 1 of the container's pid namespace (forwards TERM, reaps orphans).
//! - cgroup `keel/NAME` (not in sandbox mode, where we must not touch the host's cgroup tree).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use keel_shim::spec::NamespaceType;
use keel_shim::{Bundle, SpawnOptions, Spawned};

use crate::logs::UnitLog;
use crate::supervisor::Ready;
use crate::sys;

/// Inside-the-container path of a bind-mounted notify socket.
pub const NOTIFY_IN_CONTAINER: &str = "/run/keel-notify.sock";
/// Highest fd number accepted for keel.ready=fd:N.
pub const READY_FD_MAX: i32 = 255;

/// A unit's notify socket.
#[derive(Debug)]
pub struct Notify {
    pub fd: OwnedFd,
    /// NOTIFY_SOCKET value for the container.
    pub env: String,
    /// Bind mount (host socket file, path inside) when the address is a file.
    pub bind: Option<(PathBuf, PathBuf)>,
}

/// Everything PID 1 holds for one unit besides the supervisor's view.
#[derive(Debug, Default)]
pub struct UnitRt {
    pub bundle: Option<Bundle>,
    pub log: Option<UnitLog>,
    pub notify: Option<Notify>,
    /// Read end of this spawn's readiness pipe (fd:N).
    pub ready_rd: Option<OwnedFd>,
    pub spawned: Option<Spawned>,
    /// The status pipe is still watched.
    pub status_watch: bool,
    pub pid: Option<i32>,
    /// Last STATUS= from sd_notify.
    pub status_text: Option<String>,
}

/// Does the container get its own network namespace (then abstract sockets do not reach us)?
pub fn own_netns(b: &Bundle) -> bool {
    b.spec.linux.as_ref().is_some_and(|l| l.namespaces.iter().any(|n| n.kind == NamespaceType::Network))
}

/// Create the unit's notify socket: abstract `{abstract_prefix}NAME` if the container shares our net ns, else a
/// file under `run_dir/notify/`.
pub fn notify_socket(name: &str, bundle: &Bundle, run_dir: &Path, abstract_prefix: &str) -> Result<Notify, String> {
    // SAFETY: socket returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("notify socket for {name}: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (addr_str, env, bind) = if own_netns(bundle) {
        let dir = run_dir.join("notify");
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let s = path.to_string_lossy().into_owned();
        (s, NOTIFY_IN_CONTAINER.to_string(), Some((path, PathBuf::from(NOTIFY_IN_CONTAINER))))
    } else {
        let s = format!("{abstract_prefix}{name}");
        (s.clone(), s, None)
    };
    let (addr, len) = crate::control::sockaddr_un(addr_str.as_bytes())
        .ok_or_else(|| format!("notify address too long: {addr_str}"))?;
    // SAFETY: addr is a valid sockaddr_un of `len` bytes.
    if unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) } != 0 {
        return Err(format!("bind notify socket {addr_str}: {}", std::io::Error::last_os_error()));
    }
    if let Some((host, _)) = &bind {
        // Services running as another uid must be able to send to it (abstract sockets have no permissions).
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(host, std::fs::Permissions::from_mode(0o666));
    }
    Ok(Notify { fd, env, bind })
}

/// Read the pending datagrams, at most 64 per wake-up (a flood must not hold PID 1 here; epoll is level-triggered,
/// the rest comes on the next wake-up). Returns (ready, status) seen.
pub fn read_notify(fd: RawFd) -> (bool, Option<String>) {
    let mut ready = false;
    let mut status = None;
    let mut buf = [0u8; 4096];
    for _ in 0..64 {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        let (r, s) = parse_notify(&buf[..n as usize]);
        ready |= r;
        if s.is_some() {
            status = s;
        }
    }
    (ready, status)
}

/// sd_notify message: newline-separated KEY=VALUE.
pub fn parse_notify(msg: &[u8]) -> (bool, Option<String>) {
    let text = String::from_utf8_lossy(msg);
    let mut ready = false;
    let mut status = None;
    for l in text.lines() {
        if l == "READY=1" {
            ready = true;
        } else if let Some(s) = l.strip_prefix("STATUS=") {
            status = Some(s.chars().take(200).collect());
        }
    }
    (ready, status)
}

/// What a spawn gives back to the loop.
pub struct Started {
    pub spawned: Spawned,
    pub ready_rd: Option<OwnedFd>,
}

/// Spawn the unit's bundle. `log` and (for notify) `notify` must exist already.
pub fn spawn(
    name: &str,
    ready: Ready,
    bundle: &Bundle,
    log: &UnitLog,
    notify: Option<&Notify>,
    devnull: RawFd,
    sandbox: bool,
) -> Result<Started, String> {
    let mut opts = SpawnOptions {
        id: name.to_string(),
        stdout: Some(log.wr.as_raw_fd()),
        stderr: Some(log.wr.as_raw_fd()),
        ns_reaper: true,
        default_cgroup: if sandbox { None } else { Some(format!("keel/{name}")) },
        ..Default::default()
    };
    let mut ready_pipe = None;
    match ready {
        Ready::Fd(n) if (3..=READY_FD_MAX).contains(&n) => {
            let (r, w) = sys::pipe().map_err(|e| format!("readiness pipe for {name}: {e}"))?;
            opts.preserve_fds = std::iter::repeat_n(devnull, (n - 3) as usize).collect();
            opts.preserve_fds.push(w.as_raw_fd());
            ready_pipe = Some((r, w));
        }
        Ready::Fd(n) => return Err(format!("keel.ready=fd:{n}: fd must be 3..{READY_FD_MAX}")),
        Ready::Notify => {
            let n = notify.ok_or_else(|| format!("no notify socket for {name}"))?;
            opts.env.push(format!("NOTIFY_SOCKET={}", n.env));
            opts.binds.extend(n.bind.clone());
        }
        Ready::Started => {}
    }
    let spawned = keel_shim::spawn(bundle, &opts).map_err(|e| cause(&e))?;
    // Our copy of the readiness write end closes here: EOF on the read end then means the container closed it.
    let ready_rd = ready_pipe.map(|(r, _w)| r);
    Ok(Started { spawned, ready_rd })
}

/// The cause of a spawn error, without the "bundle NAME: " prefix (the console line names unit and bundle).
pub fn cause(e: &keel_shim::Error) -> String {
    match e {
        keel_shim::Error::Setup { msg, .. } => msg.clone(),
        keel_shim::Error::Rootfs { path, err, .. } => {
            format!("rootfs {}: {}", path.display(), crate::discover::io_cause(err))
        }
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(netns: bool) -> Bundle {
        let mut spec = keel_shim::spec::Spec::default();
        if netns {
            let json = r#"{"namespaces":[{"type":"network"}]}"#;
            spec.linux = Some(serde_json::from_str(json).unwrap_or_else(|e| panic!("linux spec {json}: {e}")));
        }
        Bundle { dir: "/x".into(), name: "web".into(), spec, runtime: None, rootfs: "/x/rootfs".into() }
    }

    fn send(addr: &str, msg: &[u8]) {
        // SAFETY: plain socket calls on a fresh fd with a valid address.
        unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            let (a, len) =
                crate::control::sockaddr_un(addr.as_bytes()).unwrap_or_else(|| panic!("no address for {addr}"));
            let n = libc::sendto(fd, msg.as_ptr().cast(), msg.len(), 0, (&a as *const libc::sockaddr_un).cast(), len);
            assert_eq!(n, msg.len() as isize, "sendto {addr}: {}", std::io::Error::last_os_error());
            libc::close(fd);
        }
    }

    #[test]
    fn notify_socket_abstract_when_sharing_the_net_ns_else_a_bound_file() -> Result<(), Box<dyn std::error::Error>> {
        let run = std::env::temp_dir().join(format!("keel-notify-{}", std::process::id()));
        let prefix = format!("@keel-test-{}/notify/", std::process::id());
        let n = notify_socket("web", &bundle(false), &run, &prefix)?;
        assert_eq!(n.env, format!("{prefix}web"));
        assert!(n.bind.is_none());
        assert_eq!(read_notify(n.fd.as_raw_fd()), (false, None));
        send(&n.env, b"STATUS=loading");
        send(&n.env, b"READY=1\nSTATUS=serving");
        assert_eq!(read_notify(n.fd.as_raw_fd()), (true, Some("serving".into())));

        let f = notify_socket("web", &bundle(true), &run, &prefix)?;
        assert_eq!(f.env, NOTIFY_IN_CONTAINER);
        let (host, inside) = f.bind.clone().ok_or("no bound notify file")?;
        assert_eq!(host, run.join("notify/web"));
        assert_eq!(inside, PathBuf::from(NOTIFY_IN_CONTAINER));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&host)?.permissions().mode() & 0o777, 0o666);
        send(host.to_str().ok_or("notify path is not UTF-8")?, b"READY=1");
        assert_eq!(read_notify(f.fd.as_raw_fd()), (true, None));
        let _ = std::fs::remove_dir_all(&run);
        Ok(())
    }

    #[test]
    fn notify_messages() {
        assert_eq!(parse_notify(b"READY=1"), (true, None));
        assert_eq!(parse_notify(b"STATUS=warming up\nMAINPID=3"), (false, Some("warming up".into())));
        assert_eq!(parse_notify(b"STOPPING=1\nREADY=1\nSTATUS=ok\n"), (true, Some("ok".into())));
        assert_eq!(parse_notify(b"READY=0"), (false, None));
    }
}
