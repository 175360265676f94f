//! Turning `Action::Spawn` into `keel_runtime::spawn`: the unit's wiring.
//!
//! - stdout and stderr: the write end of the unit's log pipe (one pipe per unit, created once, kept across
//!   restarts so output written by a dying process or its leftovers is never lost).
//! - `keel.ready=fd:N`: a fresh pipe per spawn; its write end becomes fd N in the container (fds 3..N-1 are
//!   /dev/null) through `preserve_fds`; a line on the read end means ready.
//! - `keel.ready=notify`: one SOCK_DGRAM unix socket per unit. When the container shares our network namespace
//!   the abstract address `@keel/notify/NAME` reaches it; otherwise the socket file $KEEL_RUN/notify/NAME is
//!   bind-mounted into the container at /run/keel-notify.sock. NOTIFY_SOCKET tells the service which.
//!   Anyone in the host network namespace can reach an abstract address, so (like systemd) the socket has
//!   SO_PASSCRED and a datagram counts only if the sender's pid (in PID 1's pid namespace) is the unit's main
//!   pid or one of its descendants; everything else is dropped and counted.
//! - `ns_reaper`: a tiny reaper as pid 1 of the container's pid namespace (forwards TERM, reaps orphans).
//! - cgroup `keel/NAME` (not in sandbox mode, where we must not touch the host's cgroup tree), with the unit's task
//!   limit (`crate::limits`).
//! - A failed spawn is classified ([`classify`]): an errno that can heal (EAGAIN, ENOMEM, EINTR...) is transient
//!   and retried by the supervisor; anything else is permanent.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use keel_runtime::spec::NamespaceType;
use keel_runtime::{Bundle, SpawnOptions, Spawned};

use crate::logs::UnitLog;
use crate::supervisor::Ready;
use crate::{sys, Error};

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
    /// sd_notify datagrams dropped because the sender was not part of the unit (or sent no credentials).
    pub notify_rejected: u64,
    /// The one WARN line about rejected sd_notify senders was logged.
    pub notify_warned: bool,
    /// Its task limit (`crate::limits`).
    pub tasks: crate::limits::TasksMax,
}

/// Does the container get its own network namespace (then abstract sockets do not reach us)?
pub fn own_netns(b: &Bundle) -> bool {
    b.spec.linux.as_ref().is_some_and(|l| l.namespaces.iter().any(|n| n.kind == NamespaceType::Network))
}

/// Create the unit's notify socket: abstract `{abstract_prefix}NAME` if the container shares our net ns, else a
/// file under `run_dir/notify/`.
pub fn notify_socket(name: &str, bundle: &Bundle, run_dir: &Path, abstract_prefix: &str) -> Result<Notify, Error> {
    // SAFETY: socket returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Error::last(format!("notify socket for {name}"), ""));
    }
    // SAFETY: fd was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (addr_str, env, bind) = if own_netns(bundle) {
        let dir = run_dir.join("notify");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("mkdir", &dir, &e))?;
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let s = path.to_string_lossy().into_owned();
        (s, NOTIFY_IN_CONTAINER.to_string(), Some((path, PathBuf::from(NOTIFY_IN_CONTAINER))))
    } else {
        let s = format!("{abstract_prefix}{name}");
        (s.clone(), s, None)
    };
    let (addr, len) = crate::control::sockaddr_un(addr_str.as_bytes())
        .ok_or_else(|| Error::invalid("notify address too long", addr_str.clone()))?;
    // SAFETY: addr is a valid sockaddr_un of `len` bytes.
    if unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) } != 0 {
        return Err(Error::last("bind notify socket", &addr_str));
    }
    let on: libc::c_int = 1;
    // SAFETY: fd is a valid socket; the option value is a c_int that lives across the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&on as *const libc::c_int).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(libc::socklen_t::MAX),
        )
    };
    if r != 0 {
        return Err(Error::last("SO_PASSCRED on notify socket", &addr_str));
    }
    if let Some((host, _)) = &bind {
        // Services running as another uid must be able to send to it (abstract sockets have no permissions).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(host, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| Error::io("chmod 0666 notify socket", host, &e))?;
    }
    Ok(Notify { fd, env, bind })
}

/// What one wake-up read from a notify socket.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NotifyRead {
    /// READY=1 seen in an accepted datagram.
    pub ready: bool,
    /// Last STATUS= of an accepted datagram.
    pub status: Option<String>,
    /// Datagrams dropped: no credentials, or the sender is not `main_pid` or a descendant of it.
    pub rejected: u32,
    /// Sender pid of the first dropped datagram (None: it carried no credentials).
    pub rejected_pid: Option<i32>,
}

/// Read the pending datagrams, at most 64 per wake-up (a flood must not hold PID 1 here; epoll is level-triggered,
/// the rest comes on the next wake-up). Only datagrams whose sender is `main_pid` or one of its descendants count.
pub fn read_notify(fd: RawFd, main_pid: Option<i32>) -> NotifyRead {
    let mut out = NotifyRead::default();
    let mut buf = [0u8; 4096];
    for _ in 0..64 {
        let (n, pid) = match recv_with_pid(fd, &mut buf) {
            Ok(x) => x,
            Err(e) if e == libc::EINTR => continue,
            Err(_) => break,
        };
        let ok = match (pid, main_pid) {
            (Some(p), Some(m)) if p > 0 => is_descendant(p, m, proc_ppid),
            _ => false,
        };
        if !ok {
            if out.rejected == 0 {
                out.rejected_pid = pid;
            }
            out.rejected += 1;
            continue;
        }
        let (r, s) = parse_notify(buf.get(..n).unwrap_or(&[]));
        out.ready |= r;
        if s.is_some() {
            out.status = s;
        }
    }
    out
}

/// One datagram into `buf` with the sender's pid from SCM_CREDENTIALS (None if none came). Err: errno.
/// File descriptors passed along (SCM_RIGHTS) are closed at once.
fn recv_with_pid(fd: RawFd, buf: &mut [u8]) -> Result<(usize, Option<i32>), i32> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // u64 elements: the control buffer must be aligned for cmsghdr.
    let mut cbuf = [0u64; 32];
    // SAFETY: msghdr is plain old data; all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    // SAFETY: msg points at iov (-> buf) and cbuf, both live and writable for the lengths given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
    }
    let mut pid = None;
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within msg_control/msg_controllen.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: c is non-null and points at a cmsghdr inside cbuf (checked by the CMSG macros).
        let h = unsafe { &*c };
        let len = h.cmsg_len as usize;
        // SAFETY: CMSG_LEN is pure arithmetic.
        let hdr = unsafe { libc::CMSG_LEN(0) } as usize;
        let data_len = len.saturating_sub(hdr);
        if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_CREDENTIALS {
            if data_len >= std::mem::size_of::<libc::ucred>() {
                // SAFETY: the data holds at least one ucred (length checked); read_unaligned needs no alignment.
                let cred: libc::ucred = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast()) };
                pid = Some(cred.pid);
            }
        } else if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
            let count = data_len / std::mem::size_of::<libc::c_int>();
            for i in 0..count {
                // SAFETY: i < count ints lie within this cmsg's data; read_unaligned needs no alignment.
                let passed: libc::c_int =
                    unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>().add(i)) };
                // SAFETY: the kernel just installed this fd for us and nobody else knows it.
                unsafe { libc::close(passed) };
            }
        }
        // SAFETY: msg and c are as above.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    // n >= 0: recvmsg succeeded above.
    Ok((usize::try_from(n).unwrap_or(0), pid))
}

/// Is `pid` the process `root` or one of its descendants? Walks the parent chain through `ppid_of` (at most 64
/// hops; stops at pid 1 or 0 or an unknown pid). A `root` of 0 or 1 never matches.
pub fn is_descendant(pid: i32, root: i32, ppid_of: impl Fn(i32) -> Option<i32>) -> bool {
    if root <= 1 {
        return false;
    }
    let mut cur = pid;
    for _ in 0..64 {
        if cur == root {
            return true;
        }
        if cur <= 1 {
            return false;
        }
        match ppid_of(cur) {
            Some(p) => cur = p,
            None => return false,
        }
    }
    false
}

/// Parent pid of `pid` from /proc/PID/stat (in the pid namespace of our /proc).
fn proc_ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (comm) STATE PPID ..."; comm may hold spaces and parentheses: split after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(1)?.parse().ok()
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
) -> Result<Started, Error> {
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
            let (r, w) = sys::pipe().map_err(|e| Error::sys(format!("readiness pipe for {name}"), "", e))?;
            opts.preserve_fds = std::iter::repeat_n(devnull, usize::try_from(n - 3).unwrap_or(0)).collect();
            opts.preserve_fds.push(w.as_raw_fd());
            ready_pipe = Some((r, w));
        }
        Ready::Fd(n) => {
            return Err(Error::invalid(format!("keel.ready=fd:{n}"), format!("fd must be 3..{READY_FD_MAX}")))
        }
        Ready::Notify => {
            let n = notify.ok_or_else(|| Error::invalid("", format!("no notify socket for {name}")))?;
            opts.env.push(format!("NOTIFY_SOCKET={}", n.env));
            opts.binds.extend(n.bind.clone());
        }
        Ready::Started => {}
    }
    let spawned =
        keel_runtime::spawn(bundle, &opts).map_err(|source| Error::Runtime { unit: name.to_string(), source })?;
    // Our copy of the readiness write end closes here: EOF on the read end then means the container closed it.
    let ready_rd = ready_pipe.map(|(r, _w)| r);
    Ok(Started { spawned, ready_rd })
}

/// May this spawn error heal by itself (retry with backoff)? Decided by its errno ([`transient_errno`]): a
/// syscall or file error that says EAGAIN/ENOMEM/EINTR..., or a setup message from the child ending in such an
/// "(errno N)". A config that does not validate, a missing rootfs, a bad mount: never.
///
/// [`transient_errno`]: crate::supervisor::transient_errno
pub fn classify(e: &keel_runtime::Error) -> bool {
    use crate::supervisor::{errno_in, transient_errno};
    let errno = match e {
        keel_runtime::Error::Sys { errno, .. } => Some(errno.raw()),
        keel_runtime::Error::Io { err, .. } => err.raw_os_error(),
        keel_runtime::Error::Setup { msg, .. } => errno_in(msg),
        keel_runtime::Error::Rootfs { .. } | keel_runtime::Error::Json { .. } => None,
        // The cgroup of the previous run still holds processes (they are being killed): that heals.
        keel_runtime::Error::Invalid { msg, .. } if msg.contains("has processes") => Some(libc::EBUSY),
        keel_runtime::Error::Invalid { .. } => None,
    };
    errno.is_some_and(|n| n == libc::EBUSY || transient_errno(n))
}

/// A setup message from the status pipe ("what path: strerror (errno N)"): transient?
pub fn classify_status(msg: &str) -> bool {
    crate::supervisor::errno_in(msg).is_some_and(crate::supervisor::transient_errno)
}

/// The cause of a spawn error, without the "bundle NAME: " prefix (the console line names unit and bundle).
pub fn cause(e: &keel_runtime::Error) -> String {
    match e {
        keel_runtime::Error::Setup { msg, .. } => msg.clone(),
        keel_runtime::Error::Rootfs { path, err, .. } => {
            format!("rootfs {}: {}", path.display(), crate::discover::io_cause(err))
        }
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(netns: bool) -> Bundle {
        let mut spec = keel_runtime::spec::Spec::default();
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
            assert_eq!(usize::try_from(n).ok(), Some(msg.len()), "sendto {addr}: {}", std::io::Error::last_os_error());
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
        let me = Some(i32::try_from(std::process::id()).unwrap()); // ok: test
        assert_eq!(read_notify(n.fd.as_raw_fd(), me), NotifyRead::default());
        send(&n.env, b"STATUS=loading");
        send(&n.env, b"READY=1\nSTATUS=serving");
        let got = read_notify(n.fd.as_raw_fd(), me);
        assert_eq!((got.ready, got.status, got.rejected), (true, Some("serving".into()), 0));
        // From a process that is not part of the unit (we are not a descendant of this child): dropped.
        let mut child = std::process::Command::new("sleep").arg("10").spawn()?;
        send(&n.env, b"READY=1\nSTATUS=forged");
        send(&n.env, b"STATUS=forged again");
        let got = read_notify(n.fd.as_raw_fd(), Some(i32::try_from(child.id()).unwrap())); // ok: test
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(got, NotifyRead { ready: false, status: None, rejected: 2, rejected_pid: me });
        send(&n.env, b"READY=1");
        assert_eq!(read_notify(n.fd.as_raw_fd(), None).rejected, 1);

        let f = notify_socket("web", &bundle(true), &run, &prefix)?;
        assert_eq!(f.env, NOTIFY_IN_CONTAINER);
        let (host, inside) = f.bind.clone().ok_or("no bound notify file")?;
        assert_eq!(host, run.join("notify/web"));
        assert_eq!(inside, PathBuf::from(NOTIFY_IN_CONTAINER));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&host)?.permissions().mode() & 0o777, 0o666);
        send(host.to_str().ok_or("notify path is not UTF-8")?, b"READY=1");
        assert_eq!(read_notify(f.fd.as_raw_fd(), me), NotifyRead { ready: true, ..Default::default() });
        let _ = std::fs::remove_dir_all(&run);
        Ok(())
    }

    #[test]
    fn descendants_by_parent_chain() {
        // 10 <- 20 <- 30 <- 40; 50 is a child of 1; 60 has an unknown parent; 70 and 71 form a loop.
        let tree = |p: i32| match p {
            20 => Some(10),
            30 => Some(20),
            40 => Some(30),
            10 | 50 => Some(1),
            70 => Some(71),
            71 => Some(70),
            _ => None,
        };
        assert!(is_descendant(10, 10, tree));
        assert!(is_descendant(40, 10, tree));
        assert!(is_descendant(40, 30, tree));
        assert!(!is_descendant(20, 30, tree));
        assert!(!is_descendant(50, 10, tree));
        assert!(!is_descendant(60, 10, tree));
        assert!(!is_descendant(70, 10, tree));
        assert!(!is_descendant(40, 1, tree));
        assert!(!is_descendant(0, 10, tree));
        // A chain longer than 64 hops is not followed to the end.
        let long = |p: i32| if p > 1000 { Some(p - 1) } else { None };
        assert!(is_descendant(1050, 1000, long));
        assert!(!is_descendant(1100, 1000, long));
        assert_eq!(
            proc_ppid(i32::try_from(std::process::id()).unwrap()), // ok: test
            Some(i32::try_from(std::os::unix::process::parent_id()).unwrap())  // ok: test
        );
    }

    #[test]
    fn notify_messages() {
        assert_eq!(parse_notify(b"READY=1"), (true, None));
        assert_eq!(parse_notify(b"STATUS=warming up\nMAINPID=3"), (false, Some("warming up".into())));
        assert_eq!(parse_notify(b"STOPPING=1\nREADY=1\nSTATUS=ok\n"), (true, Some("ok".into())));
        assert_eq!(parse_notify(b"READY=0"), (false, None));
    }
}
