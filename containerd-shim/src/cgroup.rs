//! What the task API asks of a container's cgroup beyond keel_runtime::cgroups: Stats (containerd's cgroup v2
//! metrics), Update (new limits for a running container) and OOM events.
//!
//! On a hybrid host (cgroup2 at /sys/fs/cgroup/unified, controllers in v1) each value is read or written where its
//! controller lives, as keel-runtime does on create.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use containerd_shim::protos::cgroups_v2::metrics::{CPUStat, MemoryStat, Metrics, PidsStat};
use containerd_shim::protos::events::task::TaskOOM;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::topics;
use keel_runtime::cgroups::{self, LinuxResources};

use crate::error::Error;
use crate::events::Publisher;

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn read_u64(p: &Path) -> Option<u64> {
    read(p)?.trim().parse().ok()
}

/// The v1 directory of `ctl` for the container whose v2 cgroup is `cg` (hybrid hosts), if any.
fn v1_dir(cg: &Path, ctl: &str) -> Option<PathBuf> {
    cgroups::v1_leaves(cg).into_iter().find(|d| {
        d.strip_prefix("/sys/fs/cgroup")
            .ok()
            .and_then(|r| r.components().next())
            .is_some_and(|c| c.as_os_str().to_string_lossy().split(',').any(|x| x == ctl))
    })
}

fn kv(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?, it.next()?.parse().ok()?))
        })
        .collect()
}

/// containerd's `io.containerd.cgroups.v2.Metrics` for the container's cgroup.
pub fn stats(cg: &Path) -> Result<Any, Error> {
    let mut m = Metrics::new();
    // pids
    let (cur, max) = match read_u64(&cg.join("pids.current")) {
        Some(c) => (Some(c), read(&cg.join("pids.max"))),
        None => match v1_dir(cg, "pids") {
            Some(d) => (read_u64(&d.join("pids.current")), read(&d.join("pids.max"))),
            None => (Some(cgroups::procs_recursive(cg).len() as u64), None),
        },
    };
    m.pids = Some(PidsStat {
        current: cur.unwrap_or(0),
        limit: max.and_then(|s| s.trim().parse().ok()).unwrap_or(0),
        ..Default::default()
    })
    .into();
    // cpu: cpu.stat exists in every v2 cgroup
    if let Some(t) = read(&cg.join("cpu.stat")) {
        let s = kv(&t);
        let g = |k: &str| s.get(k).copied().unwrap_or(0);
        m.cpu = Some(CPUStat {
            usage_usec: g("usage_usec"),
            user_usec: g("user_usec"),
            system_usec: g("system_usec"),
            nr_periods: g("nr_periods"),
            nr_throttled: g("nr_throttled"),
            throttled_usec: g("throttled_usec"),
            ..Default::default()
        })
        .into();
    }
    // memory
    let mut mem = MemoryStat::new();
    if let Some(cur) = read_u64(&cg.join("memory.current")) {
        mem.usage = cur;
        mem.usage_limit = read_u64(&cg.join("memory.max")).unwrap_or(u64::MAX);
        mem.swap_usage = read_u64(&cg.join("memory.swap.current")).unwrap_or(0);
        mem.max_usage = read_u64(&cg.join("memory.peak")).unwrap_or(0);
        if let Some(t) = read(&cg.join("memory.stat")) {
            let s = kv(&t);
            let g = |k: &str| s.get(k).copied().unwrap_or(0);
            mem.anon = g("anon");
            mem.file = g("file");
            mem.kernel_stack = g("kernel_stack");
            mem.slab = g("slab");
            mem.sock = g("sock");
            mem.shmem = g("shmem");
            mem.file_mapped = g("file_mapped");
            mem.active_anon = g("active_anon");
            mem.inactive_anon = g("inactive_anon");
            mem.active_file = g("active_file");
            mem.inactive_file = g("inactive_file");
            mem.pgfault = g("pgfault");
            mem.pgmajfault = g("pgmajfault");
        }
    } else if let Some(d) = v1_dir(cg, "memory") {
        mem.usage = read_u64(&d.join("memory.usage_in_bytes")).unwrap_or(0);
        mem.usage_limit = read_u64(&d.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
        mem.max_usage = read_u64(&d.join("memory.max_usage_in_bytes")).unwrap_or(0);
        if let Some(t) = read(&d.join("memory.stat")) {
            let s = kv(&t);
            let g = |k: &str| s.get(k).copied().unwrap_or(0);
            mem.anon = g("rss");
            mem.file = g("cache");
            mem.shmem = g("shmem");
            mem.file_mapped = g("mapped_file");
            mem.active_anon = g("active_anon");
            mem.inactive_anon = g("inactive_anon");
            mem.active_file = g("active_file");
            mem.inactive_file = g("inactive_file");
            mem.pgfault = g("pgfault");
            mem.pgmajfault = g("pgmajfault");
        }
    }
    m.memory = Some(mem).into();
    let value = m.write_to_bytes().map_err(|e| Error::Invalid(format!("encode metrics: {e}")))?;
    Ok(Any { type_url: "io.containerd.cgroups.v2.Metrics".into(), value, ..Default::default() })
}

fn write(p: &Path, v: &str) -> Result<(), Error> {
    std::fs::write(p, v).map_err(|e| Error::io(format!("write {v:?} to"), p, e))
}

/// Apply new limits (containerd's UpdateTaskRequest.resources: the OCI LinuxResources as JSON) to a running
/// container: memory, cpu (shares, quota/period, cpus/mems) and pids, each where its controller lives.
pub fn update(cg: &Path, json: &[u8]) -> Result<(), Error> {
    let res: LinuxResources = serde_json::from_slice(json).map_err(|e| Error::Invalid(format!("resources: {e}")))?;
    let has = |f: &str| cg.join(f).exists();
    if let Some(mem) = &res.memory {
        if let Some(l) = mem.limit {
            let v = if l < 0 { "max".to_string() } else { l.to_string() };
            if has("memory.max") {
                write(&cg.join("memory.max"), &v)?;
            } else if let Some(d) = v1_dir(cg, "memory") {
                write(&d.join("memory.limit_in_bytes"), &if l < 0 { "-1".into() } else { l.to_string() })?;
            }
        }
    }
    if let Some(cpu) = &res.cpu {
        let v1 = if has("cpu.weight") { None } else { v1_dir(cg, "cpu") };
        if let Some(s) = cpu.shares.filter(|s| *s > 0) {
            match &v1 {
                None => write(&cg.join("cpu.weight"), &cgroups::shares_to_weight(s).to_string())?,
                Some(d) => write(&d.join("cpu.shares"), &s.to_string())?,
            }
        }
        if cpu.quota.is_some() || cpu.period.is_some() {
            let period = cpu.period.unwrap_or(100_000);
            match &v1 {
                None => {
                    let q = match cpu.quota {
                        Some(q) if q > 0 => q.to_string(),
                        _ => "max".into(),
                    };
                    write(&cg.join("cpu.max"), &format!("{q} {period}"))?;
                }
                Some(d) => {
                    write(&d.join("cpu.cfs_period_us"), &period.to_string())?;
                    write(&d.join("cpu.cfs_quota_us"), &cpu.quota.unwrap_or(-1).to_string())?;
                }
            }
        }
        for (field, val) in [("cpuset.cpus", &cpu.cpus), ("cpuset.mems", &cpu.mems)] {
            if let Some(v) = val.as_ref().filter(|v| !v.is_empty()) {
                if has(field) {
                    write(&cg.join(field), v)?;
                } else if let Some(d) = v1_dir(cg, "cpuset") {
                    write(&d.join(field), v)?;
                }
            }
        }
    }
    if let Some(p) = &res.pids {
        let v = if p.limit <= 0 { "max".to_string() } else { p.limit.to_string() };
        if has("pids.max") {
            write(&cg.join("pids.max"), &v)?;
        } else if let Some(d) = v1_dir(cg, "pids") {
            write(&d.join("pids.max"), &v)?;
        }
    }
    Ok(())
}

/// OOM events: one thread per shim, epoll over an inotify watch of each cgroup v2 `memory.events` (oom_kill count
/// changes) or, where memory is a v1 controller, an eventfd registered on `memory.oom_control`.
struct OomThread {
    epoll: OwnedFd,
    inotify: OwnedFd,
    /// watch descriptor (inotify) -> (container id, memory.events path, last oom_kill count)
    v2: Mutex<HashMap<i32, (String, PathBuf, u64)>>,
    /// eventfd -> (container id, eventfd)
    v1: Mutex<HashMap<RawFd, (String, OwnedFd)>>,
}

static OOM: OnceLock<Option<Arc<OomThread>>> = OnceLock::new();

fn oom_kills(events: &Path) -> u64 {
    read(events).map(|t| kv(&t).get("oom_kill").copied().unwrap_or(0)).unwrap_or(0)
}

fn oom_thread(events: &Arc<Publisher>) -> Option<Arc<OomThread>> {
    OOM.get_or_init(|| {
        // SAFETY: plain syscalls creating fds we then own.
        let (ep, ino) = unsafe { (libc::epoll_create1(libc::EPOLL_CLOEXEC), libc::inotify_init1(libc::IN_CLOEXEC)) };
        if ep < 0 || ino < 0 {
            containerd_shim::warn!("OOM events disabled: epoll/inotify: {}", std::io::Error::last_os_error());
            return None;
        }
        // SAFETY: fresh fds from the calls above.
        let (epoll, inotify) = unsafe { (OwnedFd::from_raw_fd(ep), OwnedFd::from_raw_fd(ino)) };
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: inotify.as_raw_fd() as u64 };
        // SAFETY: valid epoll and inotify fds, valid event pointer.
        unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, inotify.as_raw_fd(), &mut ev) };
        let t = Arc::new(OomThread { epoll, inotify, v2: Mutex::new(HashMap::new()), v1: Mutex::new(HashMap::new()) });
        let (t2, events) = (t.clone(), events.clone());
        let r =
            std::thread::Builder::new().name("oom".into()).stack_size(64 * 1024).spawn(move || oom_loop(&t2, &events));
        if let Err(e) = r {
            containerd_shim::warn!("OOM events disabled: thread: {e}");
            return None;
        }
        Some(t)
    })
    .clone()
}

fn oom_loop(t: &OomThread, events: &Publisher) {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    loop {
        // SAFETY: valid epoll fd and buffer.
        let n = unsafe { libc::epoll_wait(t.epoll.as_raw_fd(), evs.as_mut_ptr(), evs.len() as i32, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        let mut oom: Vec<String> = Vec::new();
        for ev in &evs[..n as usize] {
            let fd = ev.u64 as RawFd;
            if fd == t.inotify.as_raw_fd() {
                let mut buf = [0u8; 4096];
                // SAFETY: read into a valid buffer from our inotify fd.
                let len = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                let mut off = 0usize;
                while len > 0 && off + 16 <= len as usize {
                    let wd = i32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]);
                    let name_len =
                        u32::from_ne_bytes([buf[off + 12], buf[off + 13], buf[off + 14], buf[off + 15]]) as usize;
                    off += 16 + name_len;
                    if let Some((id, path, last)) = t.v2.lock().ok().as_mut().and_then(|m| m.get_mut(&wd)) {
                        let now = oom_kills(path);
                        if now > *last {
                            *last = now;
                            oom.push(id.clone());
                        }
                    }
                }
            } else if let Ok(m) = t.v1.lock() {
                if let Some((id, efd)) = m.get(&fd) {
                    let mut v = 0u64;
                    // SAFETY: 8-byte read from our eventfd.
                    unsafe { libc::read(efd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
                    oom.push(id.clone());
                }
            }
        }
        for id in oom {
            containerd_shim::info!("{id}: OOM");
            events.publish(topics::TASK_OOM_EVENT_TOPIC, &TaskOOM { container_id: id, ..Default::default() });
        }
    }
}

/// A container's registration with the OOM thread; dropping it unregisters.
pub struct OomWatch {
    t: Arc<OomThread>,
    wd: Option<i32>,
    efd: Option<RawFd>,
}

impl OomWatch {
    pub fn new(id: &str, cg: &Path, events: &Arc<Publisher>) -> Option<OomWatch> {
        let t = oom_thread(events)?;
        let me = cg.join("memory.events");
        if me.exists() {
            let c = std::ffi::CString::new(me.as_os_str().as_encoded_bytes()).ok()?;
            // SAFETY: valid inotify fd and C string.
            let wd = unsafe { libc::inotify_add_watch(t.inotify.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) };
            if wd < 0 {
                return None;
            }
            let last = oom_kills(&me);
            t.v2.lock().ok()?.insert(wd, (id.to_string(), me, last));
            return Some(OomWatch { t, wd: Some(wd), efd: None });
        }
        // v1: eventfd + "EFD FD" into cgroup.event_control.
        let d = v1_dir(cg, "memory")?;
        let ctl = std::fs::File::open(d.join("memory.oom_control")).ok()?;
        // SAFETY: creating an eventfd we then own.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return None;
        }
        // SAFETY: fresh fd.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        std::fs::write(d.join("cgroup.event_control"), format!("{} {}", efd.as_raw_fd(), ctl.as_raw_fd())).ok()?;
        let raw = efd.as_raw_fd();
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: raw as u64 };
        // SAFETY: valid fds and event pointer.
        if unsafe { libc::epoll_ctl(t.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, raw, &mut ev) } != 0 {
            return None;
        }
        t.v1.lock().ok()?.insert(raw, (id.to_string(), efd));
        Some(OomWatch { t, wd: None, efd: Some(raw) })
    }
}

impl Drop for OomWatch {
    fn drop(&mut self) {
        if let Some(wd) = self.wd {
            // SAFETY: removing our own watch descriptor.
            unsafe { libc::inotify_rm_watch(self.t.inotify.as_raw_fd(), wd) };
            if let Ok(mut m) = self.t.v2.lock() {
                m.remove(&wd);
            }
        }
        if let Some(fd) = self.efd {
            // SAFETY: removing our fd from our epoll set (before it is closed below).
            unsafe { libc::epoll_ctl(self.t.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
            if let Ok(mut m) = self.t.v1.lock() {
                m.remove(&fd);
            }
        }
    }
}
