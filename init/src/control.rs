//! The control socket: a root-only unix stream socket (default /run/keel/control.sock, directory 0700, socket
//! 0600, peer uid checked with SO_PEERCRED) speaking one JSON request per line, one JSON response per line.
//! `logs` with `follow` keeps the connection and streams `{"ok":true,"lines":[...]}` as lines arrive.
//!
//! Clients are non-blocking with bounded buffers: a request line longer than [`MAX_REQUEST`] closes the client; a
//! client that does not read its output is cut off (follow: lines are dropped) once [`MAX_PENDING`] is queued.
//!
//! The wire types live here so keelctl and PID 1 share them.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::sys::{self, Io};
use crate::Error;

pub const MAX_REQUEST: usize = 4096;
pub const MAX_PENDING: usize = 256 * 1024;
pub const MAX_CLIENTS: usize = 16;

/// Runtime directory (control socket, notify sockets): $KEEL_RUN or /run/keel.
pub fn run_dir() -> std::path::PathBuf {
    std::env::var_os("KEEL_RUN").map(Into::into).unwrap_or_else(|| "/run/keel".into())
}

/// A request from keelctl.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    List,
    Status {
        name: String,
    },
    Start {
        name: String,
    },
    Stop {
        name: String,
    },
    Restart {
        name: String,
    },
    Logs {
        name: String,
        #[serde(default)]
        follow: bool,
    },
    Poweroff,
    Reboot,
    Halt,
    Analyze,
}

/// One unit as keelctl sees it. Times are ms relative to PID 1's start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnitInfo {
    pub name: String,
    /// onboot | service | onshutdown
    pub kind: String,
    /// waiting | starting | running | stopping | backoff | exited | failed
    pub state: String,
    pub pid: Option<i32>,
    pub restarts: u32,
    pub uptime_ms: Option<u64>,
    /// None when the unit has no readiness protocol and is not running.
    pub ready: Option<bool>,
    pub last_exit: Option<String>,
    pub reason: Option<String>,
    /// STATUS= from sd_notify.
    pub status: Option<String>,
    pub restart: String,
    pub after: Vec<String>,
    pub readiness: String,
    pub spawned_ms: Option<u64>,
    pub ready_ms: Option<u64>,
    pub exited_ms: Option<u64>,
    /// Task limit of its cgroup (pids.max; None: no limit) and where it comes from.
    pub tasks_max: Option<u64>,
    pub tasks_max_source: String,
    /// Tasks in its cgroup now (pids.current), while it runs.
    pub tasks: Option<u64>,
    /// OOM kills since boot, and the last one ("OOM killer: memory limit 64 MiB reached").
    pub oom_kills: u64,
    pub last_oom: Option<String>,
}

/// `analyze`: the boot timeline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Analyze {
    /// PID 1's start, ms since boot (CLOCK_BOOTTIME).
    pub start_boot_ms: u64,
    /// Boot complete, ms after PID 1's start.
    pub complete_ms: Option<u64>,
    /// Spawns done by PID 1 so far, and the time each took inside PID 1 (keel_runtime::spawn), in µs.
    pub spawns: u64,
    pub spawn_avg_us: u64,
    pub spawn_max_us: u64,
    /// Where PID 1's time went since it started, in ms of wall time inside each part: container output (pipes,
    /// rings, log files), console writes, cleanups after exits (runtime.json mounts, cgroup removal), keelctl.
    pub time_log_ms: u64,
    pub time_console_ms: u64,
    pub time_cleanup_ms: u64,
    pub time_control_ms: u64,
    /// Loop wake-ups since start.
    pub wakeups: u64,
    pub units: Vec<UnitInfo>,
}

/// A response line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Response {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<UnitInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analyze: Option<Analyze>,
}

impl Response {
    pub fn err(msg: impl Into<String>) -> Response {
        Response { ok: false, error: Some(msg.into()), ..Default::default() }
    }
    pub fn msg(msg: impl Into<String>) -> Response {
        Response { ok: true, message: Some(msg.into()), ..Default::default() }
    }
}

/// Encode a request or response as one line.
pub fn encode<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"ok\":false,\"error\":\"encode: {e}\"}}"));
    s.push('\n');
    s
}

/// Decode a request line.
pub fn decode_request(line: &[u8]) -> Result<Request, Error> {
    serde_json::from_slice(line).map_err(|e| Error::invalid("bad request", e.to_string()))
}

struct Client {
    fd: OwnedFd,
    rbuf: Vec<u8>,
    wbuf: VecDeque<u8>,
    /// Streaming this unit's new lines (`logs -f`).
    pub follow: Option<usize>,
    /// Close once wbuf is written.
    close_after: bool,
    /// Watching EPOLLOUT.
    want_out: bool,
    dead: bool,
}

/// The listening socket and its clients. The event loop owns the epoll; tokens are `base + index` for clients.
pub struct Server {
    listener: OwnedFd,
    clients: Vec<Option<Client>>,
}

/// What a client readiness event produced.
pub enum Incoming {
    Request(usize, Request),
    Bad(usize, String),
}

impl Server {
    /// Create the socket at `dir/control.sock` (dir made 0700, socket 0600; a stale socket file is replaced).
    pub fn bind(dir: &Path) -> Result<Server, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("mkdir", dir, &e))?;
        let _ = std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let path = dir.join("control.sock");
        let _ = std::fs::remove_file(&path);
        // SAFETY: socket returns a new fd or -1.
        let fd =
            unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Error::last("socket for", &path));
        }
        // SAFETY: fd was just created and is owned by nobody else.
        let listener = unsafe { OwnedFd::from_raw_fd(fd) };
        let (addr, len) = sockaddr_un(path.as_os_str().as_encoded_bytes())
            .ok_or_else(|| Error::invalid("socket path too long", path.display().to_string()))?;
        // SAFETY: addr is a valid sockaddr_un of `len` bytes.
        let rc = unsafe { libc::bind(listener.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) };
        if rc != 0 {
            return Err(Error::last("bind", &path));
        }
        let _ = std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
        // SAFETY: listen on our own bound socket.
        if unsafe { libc::listen(listener.as_raw_fd(), 8) } != 0 {
            return Err(Error::last("listen", &path));
        }
        Ok(Server { listener, clients: Vec::new() })
    }

    pub fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// Accept every pending connection. Returns (index, fd) of each new client for the loop to watch.
    pub fn accept(&mut self) -> Vec<(usize, RawFd)> {
        let mut new = Vec::new();
        loop {
            // SAFETY: accept4 with null address pointers returns a new fd or -1.
            let fd = unsafe {
                libc::accept4(
                    self.listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                break;
            }
            // SAFETY: fd was just returned by accept4 and is owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            if peer_uid(fd.as_raw_fd()) != Some(0) {
                let _ = sys::write(fd.as_raw_fd(), encode(&Response::err("permission denied: root only")).as_bytes());
                continue;
            }
            let slot = match self.clients.iter().position(Option::is_none) {
                Some(i) => i,
                None if self.clients.len() < MAX_CLIENTS => {
                    self.clients.push(None);
                    self.clients.len() - 1
                }
                None => {
                    let _ = sys::write(fd.as_raw_fd(), encode(&Response::err("too many clients")).as_bytes());
                    continue;
                }
            };
            let raw = fd.as_raw_fd();
            let Some(entry) = self.clients.get_mut(slot) else { continue };
            *entry = Some(Client {
                fd,
                rbuf: Vec::new(),
                wbuf: VecDeque::new(),
                follow: None,
                close_after: false,
                want_out: false,
                dead: false,
            });
            new.push((slot, raw));
        }
        new
    }

    /// The client is readable: read and parse complete request lines.
    pub fn read(&mut self, i: usize) -> Vec<Incoming> {
        let mut out = Vec::new();
        let Some(Some(c)) = self.clients.get_mut(i) else { return out };
        let mut buf = [0u8; 1024];
        // At most 64 KiB per wake-up and client (epoll is level-triggered: the rest comes on the next wake-up).
        for _ in 0..64 {
            match sys::read(c.fd.as_raw_fd(), &mut buf) {
                Io::Done(n) => {
                    c.rbuf.extend_from_slice(&buf[..n]);
                    while let Some(p) = c.rbuf.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = c.rbuf.drain(..=p).collect();
                        match decode_request(&line[..p]) {
                            Ok(r) => out.push(Incoming::Request(i, r)),
                            Err(e) => out.push(Incoming::Bad(i, e.to_string())),
                        }
                    }
                    if c.rbuf.len() > MAX_REQUEST {
                        c.dead = true;
                        break;
                    }
                }
                Io::WouldBlock => break,
                Io::Closed | Io::Err(_) => {
                    c.dead = true;
                    break;
                }
            }
        }
        out
    }

    /// Queue a response; `close` ends the connection once it is written.
    pub fn reply(&mut self, i: usize, resp: &Response, close: bool) {
        if let Some(Some(c)) = self.clients.get_mut(i) {
            let line = encode(resp);
            if c.wbuf.len() + line.len() <= MAX_PENDING {
                c.wbuf.extend(line.as_bytes());
            } else if c.follow.is_none() {
                c.dead = true; // a one-shot reply that does not fit: give up on this client
            }
            c.close_after |= close;
            flush_client(c);
        }
    }

    /// Mark a client as following a unit's new log lines.
    pub fn set_follow(&mut self, i: usize, unit: usize) {
        if let Some(Some(c)) = self.clients.get_mut(i) {
            c.follow = Some(unit);
        }
    }

    /// Send a new log line of `unit` to every follower.
    /// Whether any client follows `unit`'s log (so the caller formats a line only when someone reads it).
    pub fn follows(&self, unit: usize) -> bool {
        self.clients.iter().any(|c| c.as_ref().is_some_and(|c| c.follow == Some(unit)))
    }

    pub fn broadcast(&mut self, unit: usize, line: &str) {
        let followers: Vec<usize> = self
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(|c| c.follow == Some(unit)))
            .map(|(i, _)| i)
            .collect();
        if followers.is_empty() {
            return;
        }
        let resp = Response { ok: true, lines: vec![line.to_string()], ..Default::default() };
        for i in followers {
            self.reply(i, &resp, false);
        }
    }

    /// The client is writable.
    pub fn writable(&mut self, i: usize) {
        if let Some(Some(c)) = self.clients.get_mut(i) {
            flush_client(c);
        }
    }

    /// Drop finished or dead clients; returns (index, fd, want_out) of live ones whose interest changed, and the
    /// fds of removed ones (for the loop's epoll).
    pub fn sweep(&mut self) -> (Vec<(usize, RawFd, bool)>, Vec<RawFd>) {
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        for (i, slot) in self.clients.iter_mut().enumerate() {
            let Some(c) = slot else { continue };
            if c.dead || (c.close_after && c.wbuf.is_empty()) {
                removed.push(c.fd.as_raw_fd());
                // The fd is removed from epoll by the loop before it is closed here.
                continue;
            }
            let want = !c.wbuf.is_empty();
            if want != c.want_out {
                c.want_out = want;
                changed.push((i, c.fd.as_raw_fd(), want));
            }
        }
        (changed, removed)
    }

    /// Close a client at once (its fd is not, or no longer, in the loop's epoll).
    pub fn drop_client(&mut self, i: usize) {
        if let Some(slot) = self.clients.get_mut(i) {
            *slot = None;
        }
    }

    /// Close clients whose fds `sweep` returned as removed.
    pub fn close_removed(&mut self) {
        for slot in self.clients.iter_mut() {
            if slot.as_ref().is_some_and(|c| c.dead || (c.close_after && c.wbuf.is_empty())) {
                *slot = None;
            }
        }
    }
}

fn flush_client(c: &mut Client) {
    while !c.wbuf.is_empty() {
        let (a, _) = c.wbuf.as_slices();
        match sys::write(c.fd.as_raw_fd(), a) {
            Io::Done(n) => {
                c.wbuf.drain(..n);
            }
            Io::WouldBlock => return,
            _ => {
                c.dead = true;
                c.wbuf.clear();
                return;
            }
        }
    }
}

/// A sockaddr_un for a path (or an abstract name when it starts with '@', encoded with a leading NUL).
pub fn sockaddr_un(path: &[u8]) -> Option<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::sa_family_t::try_from(libc::AF_UNIX).ok()?;
    if path.len() >= addr.sun_path.len() {
        return None;
    }
    let abstract_ = path.first() == Some(&b'@');
    for (dst, (i, &b)) in addr.sun_path.iter_mut().zip(path.iter().enumerate()) {
        *dst = if abstract_ && i == 0 { 0 } else { libc::c_char::from_ne_bytes([b]) };
    }
    let base = std::mem::size_of::<libc::sa_family_t>();
    // Abstract names have no trailing NUL; paths get one.
    let len = base + path.len() + usize::from(!abstract_);
    Some((addr, libc::socklen_t::try_from(len).ok()?))
}

/// The uid of a connected unix socket's peer.
pub fn peer_uid(fd: RawFd) -> Option<u32> {
    let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: u32::MAX };
    // 12 bytes: always fits.
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>()).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: cred is a writable ucred of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len)
    };
    (rc == 0).then_some(cred.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() -> Result<(), Box<dyn std::error::Error>> {
        let reqs = [
            Request::List,
            Request::Status { name: "web".into() },
            Request::Restart { name: "web".into() },
            Request::Logs { name: "web".into(), follow: true },
            Request::Poweroff,
            Request::Analyze,
        ];
        for r in reqs {
            let line = encode(&r);
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(decode_request(line.trim_end().as_bytes())?, r);
        }
        assert_eq!(encode(&Request::Stop { name: "a".into() }), "{\"cmd\":\"stop\",\"name\":\"a\"}\n");
        assert_eq!(decode_request(br#"{"cmd":"logs","name":"x"}"#)?, Request::Logs { name: "x".into(), follow: false });
        assert!(decode_request(br#"{"cmd":"format-disk"}"#).unwrap_err().to_string().starts_with("bad request"));
        Ok(())
    }

    #[test]
    fn responses_round_trip_and_stay_small() -> Result<(), Box<dyn std::error::Error>> {
        let r = Response::msg("ok");
        assert_eq!(encode(&r), "{\"ok\":true,\"message\":\"ok\"}\n");
        let r = Response {
            ok: true,
            units: vec![UnitInfo { name: "web".into(), pid: Some(3), ..Default::default() }],
            ..Default::default()
        };
        let back: Response = serde_json::from_str(&encode(&r))?;
        assert_eq!(back, r);
        let e: Response = serde_json::from_str(&encode(&Response::err("no unit x")))?;
        assert_eq!(e.error.as_deref(), Some("no unit x"));
        Ok(())
    }

    #[test]
    fn abstract_and_path_addresses() -> Result<(), Box<dyn std::error::Error>> {
        let (a, len) = sockaddr_un(b"@keel/notify/web").ok_or("no address for @keel/notify/web")?;
        assert_eq!(a.sun_path[0], 0);
        assert_eq!(len as usize, 2 + 16);
        let (_, len) = sockaddr_un(b"/run/x").ok_or("no address for /run/x")?;
        assert_eq!(len as usize, 2 + 6 + 1);
        assert!(sockaddr_un(&[b'a'; 200]).is_none());
        Ok(())
    }
}
