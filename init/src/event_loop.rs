//! PID 1's single-threaded event loop: one epoll over the signalfd, the control socket and its clients, every
//! unit's log pipe, status pipe, readiness pipe and notify socket; timers from a small heap (bounded: superseded
//! timers are pruned, since each unit has one timer and a newer one replaces the older).
//!
//! The ONE reaper lives here: on every SIGCHLD (and once right after start, since a child may die before the loop
//! exists) `waitpid(-1, WNOHANG)` runs until 0/ECHILD; each pid is routed through the pid -> unit table, unknown
//! pids (orphans reparented to us) are just reaped. Nothing else in PID 1 waits on a pid. The background
//! coldplug child (`crate::coldplug`) is routed like a unit: its exit feeds [`Event::ColdplugDone`], and its
//! pipe is read here and shown as keel lines.
//!
//! The supervisor decides, the loop does: every [`Event`] goes to `Supervisor::next`, and the returned [`Action`]s
//! are performed here (spawns, signals, timers, console lines, emergency shell, power).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use keel_runtime::spawn::Status;

use crate::console::{self, Console};
use crate::control::{Analyze, Incoming, Request, Response, Server, UnitInfo};
use crate::logs::{Ring, UnitLog};
use crate::spawner::{self, UnitRt};
use crate::supervisor::{
    signal_name, Action, Command, Event, Exit, Kind, Level, PowerAction, Ready, Restart, State, Supervisor, UnitId,
};
use crate::sys::{self, Io};
use crate::{emergency, shutdown, time};

const T_SIGNAL: u64 = 1 << 32;
const T_CONTROL: u64 = 2 << 32;
const T_CLIENT: u64 = 3 << 32;
const T_LOG: u64 = 4 << 32;
const T_STATUS: u64 = 5 << 32;
const T_READY: u64 = 6 << 32;
const T_NOTIFY: u64 = 7 << 32;
const T_COLDPLUG: u64 = 8 << 32;
const T_MASK: u64 = 0xffff_ffff << 32;

/// Bytes read from one log pipe per wake-up (fairness between chatty units).
const LOG_BUDGET: usize = 64 * 1024;
/// Log bytes a unit may send per second, and its burst (then its pipe is not read for a while: the writer
/// blocks, PID 1 does not spend its CPU on it). Like journald's default of 10000 lines per 30 s.
pub const LOG_BYTES_PER_SEC: u64 = 64 * 1024;
pub const LOG_BYTES_BURST: u64 = 256 * 1024;
/// A unit is loud while it has used more than half of this burst, refilled at this rate
/// ([`crate::logs::UnitLog::quiet`]): more than 4 KiB/s for a while. A heartbeat or an ordinary service never is.
pub const LOG_QUIET_BURST: u64 = 16 * 1024;
pub const LOG_QUIET_PER_SEC: u64 = 4 * 1024;
/// PID 1's time for container output, all loud units together: at most this much per [`LOG_CPU_WINDOW`] (5 %
/// of a CPU); then loud units' pipes wait for the next window. A quiet service's line is read at once however
/// loud the others are.
pub const LOG_CPU_BUDGET: Duration = Duration::from_millis(50);
pub const LOG_CPU_WINDOW: Duration = Duration::from_secs(1);
/// A loud unit's pipe is read at most this often (it fills meanwhile: one wake-up reads many lines).
const LOG_BATCH: Duration = Duration::from_millis(50);
/// Bytes read from a loud unit's pipe per wake-up.
const LOG_LOUD_BUDGET: usize = 16 * 1024;
/// How often paused log pipes are looked at again.
const LOG_RESUME: Duration = Duration::from_millis(50);
/// Container lines on the console, all units together (each unit also has its own limit, `crate::logs`): a
/// serial console at 115200 baud shows ~130 lines of 80 characters a second.
pub const CONSOLE_BURST: u64 = 400;
pub const CONSOLE_PER_SEC: u64 = 50;

/// Signals PID 1 takes through its signalfd.
pub const SIGNALS: &[i32] =
    &[libc::SIGCHLD, libc::SIGUSR1, libc::SIGUSR2, libc::SIGPWR, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerItem {
    Unit { unit: UnitId, gen: u64 },
    KillAll { gen: u64 },
    ShutdownDeadline,
    EmergencyRespawn,
    Coldplug,
    LogResume,
}

/// How the loop was started.
pub struct Config {
    pub sandbox: bool,
    /// $KEEL_RUN or /run/keel: control socket, notify sockets.
    pub run_dir: PathBuf,
    /// Where NAME.log files go (None: no files).
    pub log_dir: Option<PathBuf>,
    /// PID 1's start.
    pub start: Instant,
    pub start_boot_ms: u64,
    /// Machine mode: the parent of the units' cgroups (`crate::limits::prepare_parent`), None in sandbox mode.
    pub cgroup_parent: Option<PathBuf>,
    /// Default task limit for units without their own (None: no limit), and how it was chosen.
    pub tasks_default: Option<u64>,
    pub tasks_what: String,
}

pub struct Loop {
    cfg: Config,
    ep: sys::Epoll,
    sigfd: OwnedFd,
    sup: Supervisor,
    rt: Vec<UnitRt>,
    pids: HashMap<i32, UnitId>,
    timers: BinaryHeap<Reverse<(Instant, u64, TimerItem)>>,
    seq: u64,
    /// Latest timer generation armed per unit, and for the kill-all timer (older ones are stale).
    timer_gen: Vec<u64>,
    killall_gen: u64,
    console: Console,
    /// keel's own lines, for `keelctl logs keel`.
    keel_ring: Ring,
    control: Option<Server>,
    devnull: OwnedFd,
    queue: VecDeque<Event>,
    killall_pending: bool,
    complete_ms: Option<u64>,
    shutdown_requested: bool,
    emergency: Option<emergency::Emergency>,
    abstract_prefix: String,
    /// Cost of keel_runtime::spawn calls (the time PID 1 spends per start): count, total and max in µs.
    spawn_stats: (u64, u64, u64),
    /// Time spent per part (µs): output, console, cleanup, control; and loop wake-ups.
    time_us: [u64; 4],
    wakeups: u64,
    /// Some unit has console lines held back by its rate limit, not yet reported.
    suppressed_pending: bool,
    /// The background coldplug child, until it is reaped.
    coldplug: Option<crate::coldplug::Coldplug>,
    /// Time spent on loud units' output in the current [`LOG_CPU_WINDOW`], and when that window began.
    log_cpu: Duration,
    log_window: Instant,
    /// Units whose log pipe is not watched for now (their bytes ran out); a LogResume timer is armed meanwhile.
    log_paused: Vec<UnitId>,
    log_resume_armed: bool,
    /// The console's limit on container lines, all units together.
    console_rate: crate::logs::RateLimit,
    /// Problems already reported once (epoll, cgroup writes): (what, errno).
    reported: Vec<(&'static str, i32)>,
}

/// Hook warnings from the runtime (it reports them through a plain fn sink), drained by the loop.
static HOOK_WARNINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn hook_warning(msg: &str) {
    if let Ok(mut w) = HOOK_WARNINGS.lock() {
        if w.len() < 64 {
            w.push(msg.to_string());
        }
    }
}

impl Loop {
    /// Set up epoll, the signalfd and the control socket. Failures here are reported and survived where possible.
    pub fn new(
        cfg: Config,
        sup: Supervisor,
        bundles: Vec<Option<keel_runtime::Bundle>>,
        mut console: Console,
        keel_ring: Ring,
    ) -> Result<Loop, crate::Error> {
        keel_runtime::hooks::set_warning_sink(hook_warning);
        let ep = sys::Epoll::new().map_err(|e| crate::Error::sys("epoll_create1", "", e))?;
        let sigfd = sys::signalfd(SIGNALS).map_err(|e| crate::Error::sys("signalfd", "", e))?;
        ep.add(sigfd.as_raw_fd(), T_SIGNAL).map_err(|e| crate::Error::sys("epoll add signalfd", "", e))?;
        let devnull = sys::open("/dev/null", libc::O_RDWR)?;
        let control = match Server::bind(&cfg.run_dir) {
            Ok(s) => {
                if let Err(e) = ep.add(s.listener_fd(), T_CONTROL) {
                    console.keel(Level::Warn, &format!("control socket: epoll add: {e}"));
                }
                Some(s)
            }
            Err(e) => {
                console.keel(Level::Warn, &format!("control socket: {e}; keelctl will not work"));
                None
            }
        };
        let rt: Vec<UnitRt> = bundles
            .into_iter()
            .map(|mut bundle| {
                let tasks = match bundle.as_mut() {
                    Some(b) if cfg.cgroup_parent.is_some() => {
                        crate::limits::apply_tasks_max(b, cfg.tasks_default, &cfg.tasks_what)
                    }
                    _ if cfg.sandbox => crate::limits::TasksMax { limit: None, source: "none (sandbox)".into() },
                    _ => crate::limits::TasksMax { limit: None, source: "none (no cgroup)".into() },
                };
                UnitRt { bundle, tasks, ..Default::default() }
            })
            .collect();
        let n = rt.len();
        let abstract_prefix = if cfg.sandbox {
            // Parallel sandboxes share the host's network namespace: make abstract names unique per run dir.
            let h =
                cfg.run_dir.as_os_str().as_encoded_bytes().iter().fold(5381u64, |h, &b| h.wrapping_mul(33) ^ b as u64);
            format!("@keel-{h:x}/notify/")
        } else {
            "@keel/notify/".to_string()
        };
        Ok(Loop {
            cfg,
            ep,
            sigfd,
            sup,
            rt,
            // Allocated up front, so a storm (all units restarting, keelctl clients) needs no new memory here.
            pids: HashMap::with_capacity(2 * n + 8),
            timers: BinaryHeap::with_capacity(2 * n + 16),
            seq: 0,
            timer_gen: vec![0; n],
            killall_gen: 0,
            console,
            keel_ring,
            control,
            devnull,
            queue: VecDeque::with_capacity(4 * n + 16),
            killall_pending: false,
            complete_ms: None,
            shutdown_requested: false,
            emergency: None,
            abstract_prefix,
            spawn_stats: (0, 0, 0),
            time_us: [0; 4],
            wakeups: 0,
            suppressed_pending: false,
            coldplug: None,
            log_cpu: Duration::ZERO,
            log_window: Instant::now(),
            log_paused: Vec::with_capacity(n),
            log_resume_armed: false,
            console_rate: crate::logs::RateLimit::new(CONSOLE_BURST, CONSOLE_PER_SEC),
            reported: Vec::with_capacity(16),
        })
    }

    /// Take charge of the background coldplug child (before [`Loop::run`]): read its pipe, route its pid, and
    /// hold onboot until it ends (see `crate::supervisor`).
    pub fn set_coldplug(&mut self, c: crate::coldplug::Coldplug) {
        if let Some(fd) = c.rd.as_ref() {
            if let Err(e) = self.ep.add(fd.as_raw_fd(), T_COLDPLUG) {
                self.keel_line(Level::Warn, &format!("coldplug: epoll add: {e}; its lines show when it ends"));
            }
        }
        self.sup.set_coldplug_running(true);
        self.coldplug = Some(c);
    }

    /// Run forever (leaves only through Action::Power).
    pub fn run(&mut self) -> ! {
        self.reap();
        self.feed(Event::Boot);
        let mut evs = Vec::with_capacity(32);
        loop {
            self.drain();
            self.check_boot_complete();
            let t = Instant::now();
            let pending = self.console.flush();
            self.spent(1, t);
            let timeout = self.timeout(pending);
            self.ep.wait(&mut evs, timeout);
            self.wakeups += 1;
            for &(token, events) in &evs {
                self.dispatch(token, events);
            }
            self.fire_timers();
            self.report_suppressed();
            if self.killall_pending {
                self.check_no_processes();
            }
            self.sweep_clients();
        }
    }

    /// Add the time since `t` to part `i` of [`Loop::time_us`].
    fn spent(&mut self, i: usize, t: Instant) {
        if let Some(v) = self.time_us.get_mut(i) {
            *v = v.saturating_add(micros(t.elapsed()));
        }
    }

    fn timeout(&self, console_pending: bool) -> i32 {
        let mut t: i64 = -1;
        let mut min = |ms: i64| {
            if t < 0 || ms < t {
                t = ms;
            }
        };
        if let Some(Reverse((at, _, _))) = self.timers.peek() {
            let d = at.saturating_duration_since(Instant::now());
            min(i64::try_from(d.as_millis()).unwrap_or(i64::MAX).min(i64::from(i32::MAX))
                + i64::from(d.subsec_nanos() % 1_000_000 != 0));
        }
        if console_pending {
            min(20);
        }
        if self.killall_pending || self.suppressed_pending {
            min(100);
        }
        if !self.queue.is_empty() {
            min(0);
        }
        // t is -1 (no timeout) or a non-negative count of ms: after the clamp it fits in i32.
        i32::try_from(t.min(i64::from(i32::MAX))).unwrap_or(-1)
    }

    fn feed(&mut self, ev: Event) {
        self.queue.push_back(ev);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(ev) = self.queue.pop_front() {
            let actions = self.sup.next(Instant::now(), ev);
            for a in actions {
                self.perform(a);
            }
        }
    }

    /// Warnings the runtime reported for failed poststart/poststop hooks, as console lines.
    fn hook_warnings(&mut self) {
        let taken = match HOOK_WARNINGS.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(_) => return,
        };
        for w in taken {
            self.keel_line(Level::Warn, &w);
        }
    }

    fn keel_line(&mut self, level: Level, msg: &str) {
        self.console.keel(level, msg);
        self.keel_ring.push(time::boot_ms(), &format!("{}{msg}", console::level_tag(level)));
    }

    fn name(&self, u: UnitId) -> String {
        self.sup.units.get(u).map(|s| s.config.name.clone()).unwrap_or_else(|| format!("unit#{u}"))
    }

    fn perform(&mut self, a: Action) {
        match a {
            Action::Spawn(u) => self.spawn(u),
            Action::Signal { unit, signal } => {
                if signal == libc::SIGKILL && self.kill_unit_cgroup(unit) {
                    return;
                }
                if let Some(pid) = self.rt.get(unit).and_then(|r| r.pid) {
                    if let Err(e) = sys::kill(pid, signal) {
                        if e.0 != libc::ESRCH {
                            let n = self.name(unit);
                            self.keel_line(
                                Level::Warn,
                                &format!("kill {n} (pid {pid}) {}: errno {e}", signal_name(signal)),
                            );
                        }
                    }
                }
            }
            Action::Timer { unit, gen, at } => self.arm(at, TimerItem::Unit { unit, gen }),
            Action::KillAllTimer { gen, at } => self.arm(at, TimerItem::KillAll { gen }),
            Action::ShutdownDeadlineTimer { at } => self.arm(at, TimerItem::ShutdownDeadline),
            Action::ColdplugTimer { at } => self.arm(at, TimerItem::Coldplug),
            Action::KillAll { signal } => {
                if signal == libc::SIGKILL {
                    self.kill_all_cgroups();
                }
                // We are PID 1 (of the machine or of the sandbox's pid namespace): -1 means everything but us.
                if let Err(e) = sys::kill(-1, signal) {
                    if e.0 != libc::ESRCH {
                        self.keel_line(Level::Warn, &format!("kill(-1, {}): errno {e}", signal_name(signal)));
                    }
                }
                self.killall_pending = true;
                self.reap();
                self.check_no_processes();
            }
            Action::Log { unit, level, msg } => {
                self.keel_line(level, &msg);
                if let Some(u) = unit {
                    let ms = time::boot_ms();
                    let line = format!("keel: {msg}");
                    if let Some(log) = self.rt.get_mut(u).and_then(|r| r.log.as_mut()) {
                        log.ring.push(ms, &line);
                        if let Some(f) = log.file.as_mut() {
                            f.write(&time::stamp(ms), &line);
                        }
                    }
                    if let Some(c) = self.control.as_mut() {
                        c.broadcast(u, &format!("{} {line}", time::stamp(ms)));
                    }
                }
            }
            // The supervisor already said why ("boot stopped: ..."); we say what we could do about it.
            Action::Emergency { reason } => self.start_emergency(reason),
            Action::Power(p) => shutdown::power(p, self.cfg.sandbox, &mut self.console),
        }
    }

    fn arm(&mut self, at: Instant, item: TimerItem) {
        match item {
            TimerItem::Unit { unit, gen } => {
                if self.timer_gen.len() <= unit {
                    self.timer_gen.resize(unit + 1, 0);
                }
                if let Some(g) = self.timer_gen.get_mut(unit) {
                    *g = gen;
                }
            }
            TimerItem::KillAll { gen } => self.killall_gen = gen,
            TimerItem::ShutdownDeadline | TimerItem::EmergencyRespawn | TimerItem::Coldplug | TimerItem::LogResume => {}
        }
        self.seq += 1;
        self.timers.push(Reverse((at, self.seq, item)));
        if self.timers.len() > 2 * self.rt.len() + 8 {
            let (latest, killall) = (&self.timer_gen, self.killall_gen);
            self.timers.retain(|Reverse((_, _, it))| match *it {
                TimerItem::Unit { unit, gen } => latest.get(unit) == Some(&gen),
                TimerItem::KillAll { gen } => gen == killall,
                TimerItem::ShutdownDeadline
                | TimerItem::EmergencyRespawn
                | TimerItem::Coldplug
                | TimerItem::LogResume => true,
            });
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _, item))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match item {
                TimerItem::Unit { unit, gen } => self.queue.push_back(Event::Timer { unit, gen }),
                TimerItem::KillAll { gen } => self.queue.push_back(Event::KillAllTimer { gen }),
                TimerItem::ShutdownDeadline => self.queue.push_back(Event::ShutdownDeadline),
                TimerItem::Coldplug => self.queue.push_back(Event::ColdplugTimer),
                TimerItem::LogResume => {
                    self.log_resume_armed = false;
                    self.resume_logs();
                }
                TimerItem::EmergencyRespawn => {
                    if let Some(e) = self.emergency.as_ref() {
                        let reason = e.reason.clone();
                        self.start_emergency(reason);
                    }
                }
            }
        }
        self.drain();
    }

    fn start_emergency(&mut self, reason: String) {
        if self.cfg.sandbox {
            self.keel_line(Level::Error, "no emergency shell in sandbox mode; waiting for a power signal");
            self.emergency = Some(emergency::Emergency { pid: None, reason, started: Instant::now() });
            return;
        }
        match emergency::start_shell() {
            Ok(pid) => {
                self.keel_line(Level::Info, &format!("emergency shell on the console (pid {pid})"));
                self.emergency = Some(emergency::Emergency { pid: Some(pid), reason, started: Instant::now() });
            }
            Err(e) => {
                self.keel_line(Level::Error, &format!("no emergency shell: {e}; waiting for a power signal"));
                self.emergency = Some(emergency::Emergency { pid: None, reason, started: Instant::now() });
            }
        }
    }

    fn spawn(&mut self, u: UnitId) {
        let Some(state) = self.sup.units.get(u) else { return };
        let cfg = state.config.clone();
        let name = cfg.name.clone();
        let Some(rt) = self.rt.get_mut(u) else { return };
        let Some(bundle) = rt.bundle.as_ref() else {
            let error = cfg.broken.clone().unwrap_or_else(|| format!("bundle {name}: not loaded"));
            self.queue.push_back(Event::SpawnFailed { unit: u, error, transient: false });
            return;
        };
        // Every fd PID 1 must watch for this unit is registered before the spawn: a pipe nobody reads would block
        // the service silently. A failed registration fails the start (ENOMEM/ENOSPC...: retried with backoff).
        if rt.log.is_none() {
            let l = match UnitLog::new(self.cfg.log_dir.as_deref(), &name) {
                Ok(l) => l,
                Err(e) => {
                    let e = crate::Error::io(format!("log pipe for {name}"), "", &e);
                    self.queue.push_back(Event::SpawnFailed {
                        unit: u,
                        error: e.to_string(),
                        transient: e.transient(),
                    });
                    return;
                }
            };
            if let Err(e) = self.ep.add(l.rd.as_raw_fd(), T_LOG | u as u64) {
                let e = epoll_failure(&format!("log pipe of {name}"), &e);
                self.queue.push_back(Event::SpawnFailed { unit: u, error: e.to_string(), transient: e.transient() });
                return;
            }
            rt.log = Some(l);
        }
        if cfg.ready == Ready::Notify && rt.notify.is_none() {
            let n = match spawner::notify_socket(&name, bundle, &self.cfg.run_dir, &self.abstract_prefix) {
                Ok(n) => n,
                Err(e) => {
                    let (error, transient) = (e.to_string(), e.transient());
                    self.queue.push_back(Event::SpawnFailed { unit: u, error, transient });
                    return;
                }
            };
            if let Err(e) = self.ep.add(n.fd.as_raw_fd(), T_NOTIFY | u as u64) {
                let e = epoll_failure(&format!("notify socket of {name}"), &e);
                self.queue.push_back(Event::SpawnFailed { unit: u, error: e.to_string(), transient: e.transient() });
                return;
            }
            rt.notify = Some(n);
        }
        if let Some(old) = rt.ready_rd.take() {
            self.ep.delete(old.as_raw_fd());
        }
        let Some(log) = rt.log.as_ref() else { return };
        let t0 = Instant::now();
        let res = spawner::spawn(
            &name,
            cfg.ready,
            bundle,
            log,
            rt.notify.as_ref(),
            self.devnull.as_raw_fd(),
            self.cfg.sandbox,
        );
        let us = micros(t0.elapsed());
        self.spawn_stats = (self.spawn_stats.0 + 1, self.spawn_stats.1 + us, self.spawn_stats.2.max(us));
        match res {
            Ok(st) => {
                let pid = st.spawned.pid;
                rt.spawned = Some(st.spawned);
                rt.pid = Some(pid);
                self.pids.insert(pid, u);
                self.queue.push_back(Event::Spawned { unit: u, pid });
                // The status pipe (exec or setup error) and the readiness pipe must be watched, or the start never
                // completes: if epoll cannot take them, the process is killed and the start failed.
                let mut failed = None;
                if let Some(sp) = rt.spawned.as_ref() {
                    match self.ep.add(sp.status.as_raw_fd(), T_STATUS | u as u64) {
                        Ok(()) => rt.status_watch = true,
                        Err(e) => failed = Some(epoll_failure(&format!("status pipe of {name}"), &e)),
                    }
                }
                if let Some(r) = st.ready_rd {
                    match self.ep.add(r.as_raw_fd(), T_READY | u as u64) {
                        Ok(()) => rt.ready_rd = Some(r),
                        Err(e) => failed = failed.or(Some(epoll_failure(&format!("readiness pipe of {name}"), &e))),
                    }
                }
                if let Some(e) = failed {
                    let (error, transient) = (e.to_string(), e.transient());
                    // The SpawnFailed is kept until the Exited the kill brings (the supervisor's rule).
                    self.queue.push_back(Event::SpawnFailed { unit: u, error, transient });
                    if !self.kill_unit_cgroup(u) {
                        if let Err(e) = sys::kill(pid, libc::SIGKILL) {
                            self.keel_line(Level::Warn, &format!("kill {name} (pid {pid}) SIGKILL: errno {e}"));
                        }
                    }
                }
            }
            Err(e) => {
                self.queue.push_back(Event::SpawnFailed { unit: u, error: e.to_string(), transient: e.transient() })
            }
        }
    }

    fn dispatch(&mut self, token: u64, events: u32) {
        let idx = (token & !T_MASK) as usize;
        match token & T_MASK {
            T_SIGNAL => self.signals(),
            T_CONTROL => {
                let t = Instant::now();
                self.accept();
                self.spent(3, t);
            }
            T_CLIENT => {
                let t = Instant::now();
                if events & (libc::EPOLLOUT as u32) != 0 {
                    if let Some(c) = self.control.as_mut() {
                        c.writable(idx);
                    }
                }
                if events & (libc::EPOLLIN as u32 | libc::EPOLLHUP as u32 | libc::EPOLLERR as u32) != 0 {
                    self.client_input(idx);
                }
                self.spent(3, t);
            }
            T_LOG => {
                let t = Instant::now();
                self.log_input(idx);
                self.spent(0, t);
            }
            T_STATUS => self.status_input(idx),
            T_READY => self.ready_input(idx),
            T_NOTIFY => self.notify_input(idx),
            T_COLDPLUG => self.coldplug_input(),
            _ => {}
        }
        self.drain();
    }

    fn signals(&mut self) {
        while let Some(sig) = sys::read_signal(self.sigfd.as_raw_fd()) {
            let power = match sig {
                libc::SIGCHLD => {
                    self.reap();
                    None
                }
                libc::SIGUSR2 | libc::SIGPWR => Some(PowerAction::PowerOff),
                libc::SIGTERM | libc::SIGINT => Some(PowerAction::Reboot),
                libc::SIGUSR1 => Some(PowerAction::Halt),
                _ => None, // SIGHUP: ignored
            };
            if let Some(p) = power {
                self.request_shutdown(p, &signal_name(sig));
            }
        }
    }

    fn request_shutdown(&mut self, p: PowerAction, why: &str) {
        // The supervisor prints "shutting down (...)"; the cause goes to keel's ring only.
        self.keel_ring.push(time::boot_ms(), &format!("{why}: {} requested", shutdown::what(p)));
        self.shutdown_requested = true;
        self.queue.push_back(Event::Shutdown(p));
    }

    /// The one reaper.
    fn reap(&mut self) {
        while let Some((pid, how)) = sys::reap_one() {
            if let Some(e) = self.emergency.as_mut() {
                if e.pid == Some(pid) {
                    e.pid = None;
                    let at = (e.started + Duration::from_secs(1)).max(Instant::now());
                    self.console.keel(Level::Warn, "emergency shell exited; starting it again");
                    self.arm(at, TimerItem::EmergencyRespawn);
                    continue;
                }
            }
            if self.coldplug.as_ref().is_some_and(|c| c.pid == pid) {
                self.coldplug_exited(how);
                continue;
            }
            if let Some(u) = self.pids.remove(&pid) {
                self.unit_exited(u, how);
            }
            // Otherwise an orphan reparented to PID 1: reaped, nothing else to do.
        }
    }

    /// Show the coldplug child's lines so far (all of them at EOF).
    fn coldplug_input(&mut self) {
        let Some(c) = self.coldplug.as_mut() else { return };
        let fd = c.rd.as_ref().map(|f| f.as_raw_fd());
        let (lines, closed) = c.read_lines();
        if closed {
            if let Some(fd) = fd {
                self.ep.delete(fd);
            }
        }
        for (level, msg) in lines {
            self.keel_line(level, &msg);
        }
    }

    /// The coldplug child was reaped: its last lines, a line if it did not end well, then ColdplugDone.
    fn coldplug_exited(&mut self, how: sys::Reaped) {
        self.coldplug_input();
        if let Some(fd) = self.coldplug.take().and_then(|c| c.rd) {
            self.ep.delete(fd.as_raw_fd()); // no EOF seen yet (a grandchild holding the pipe?): stop watching it
        }
        match how {
            sys::Reaped::Code(0) => {}
            _ if self.shutdown_requested => {} // the kill-all took it: expected
            sys::Reaped::Code(c) => self.keel_line(Level::Warn, &format!("coldplug: exited {c}")),
            sys::Reaped::Signal(s) => self.keel_line(Level::Warn, &format!("coldplug: killed by {}", signal_name(s))),
        }
        self.queue.push_back(Event::ColdplugDone);
    }

    fn unit_exited(&mut self, u: UnitId, how: sys::Reaped) {
        // Status first (a setup error explains the exit), then the last output, then the exit itself.
        self.status_input(u);
        self.log_input(u);
        let Some(rt) = self.rt.get_mut(u) else { return };
        if rt.status_watch {
            rt.status_watch = false;
            if let Some(sp) = rt.spawned.as_ref() {
                self.ep.delete(sp.status.as_raw_fd());
            }
        }
        rt.pid = None;
        // Before the cgroup goes: did the OOM killer take something of this run, and under which limit?
        if let Some(oom) = rt.spawned.as_ref().and_then(|sp| sp.cgroup()).and_then(crate::limits::oom_info) {
            if oom.kills > 0 {
                self.queue.push_back(Event::OomKilled { unit: u, kills: oom.kills, limit: oom.limit });
            }
        }
        let t = Instant::now();
        let errors = match (rt.spawned.take(), rt.bundle.as_ref()) {
            (Some(sp), Some(b)) => sp.cleanup(b),
            _ => Vec::new(),
        };
        self.spent(2, t);
        let name = self.name(u);
        for e in errors {
            self.keel_line(Level::Warn, &format!("cleanup {name}: {e}"));
        }
        self.hook_warnings();
        let exit = match how {
            sys::Reaped::Code(c) => Exit::Code(c),
            sys::Reaped::Signal(s) => Exit::Signal(s),
        };
        self.queue.push_back(Event::Exited { unit: u, exit });
    }

    fn status_input(&mut self, u: UnitId) {
        let Some(rt) = self.rt.get_mut(u) else { return };
        if !rt.status_watch {
            return;
        }
        let Some(sp) = rt.spawned.as_ref() else { return };
        let ev = match sp.poll_status() {
            Status::Pending => return,
            Status::Started => Event::Execd { unit: u },
            Status::Failed(error) => {
                let transient = spawner::classify_status(&error);
                Event::SpawnFailed { unit: u, error, transient }
            }
        };
        self.ep.delete(sp.status.as_raw_fd());
        rt.status_watch = false;
        // poststart hooks, once the program runs (runtime-spec; each bounded by its timeout, at most 5 s in PID 1).
        // A failing one is a warning (the runtime reports it through the sink): the process is already running.
        if let (Event::Execd { .. }, Some(b), Some(pid)) = (&ev, rt.bundle.as_ref(), rt.pid) {
            if b.spec.hooks.as_ref().is_some_and(|h| !h.poststart.is_empty()) {
                if let Err(e) = keel_runtime::run_poststart(b, pid) {
                    let name = self.name(u);
                    self.keel_line(Level::Warn, &format!("{name}: poststart hook: {e}"));
                }
            }
        }
        self.hook_warnings();
        self.queue.push_back(ev);
    }

    fn log_input(&mut self, u: UnitId) {
        let t0 = Instant::now();
        self.roll_log_window(t0);
        let name = self.name(u);
        let now_ms = time::boot_ms();
        let cpu_left = self.log_cpu < LOG_CPU_BUDGET;
        let Some(log) = self.rt.get_mut(u).and_then(|r| r.log.as_mut()) else { return };
        let own = log.bytes.tokens_now(now_ms);
        // A loud unit is read in batches, within PID 1's budget. A quiet one is read at once, but never more than
        // its quiet allowance (it is loud after that): so nothing escapes the budget for long.
        let quiet_left = log.quiet.tokens_now(now_ms);
        let loud = quiet_left < LOG_QUIET_BURST / 2;
        let recent = log.last_read.is_some_and(|t| t0.saturating_duration_since(t) < LOG_BATCH);
        let budget = match loud {
            true if recent || !cpu_left => 0,
            true => usize::try_from((LOG_LOUD_BUDGET as u64).min(own)).unwrap_or(usize::MAX),
            false => usize::try_from((LOG_BUDGET as u64).min(own).min(quiet_left)).unwrap_or(usize::MAX),
        };
        let (lines, read) = if budget > 0 { log.read_lines(budget) } else { (Vec::new(), 0) };
        log.bytes.take(read as u64);
        log.quiet.take(read as u64);
        if read > 0 {
            log.last_read = Some(t0);
        }
        let pause = budget == 0 || (loud && read >= budget);
        let fd = log.rd.as_raw_fd();
        // One write to the log file for everything read now (not one per line).
        let mut file_text = String::new();
        // One time stamp for the batch (they were read at the same moment; a clock read can be a slow syscall).
        let ms = now_ms;
        let stamp = time::stamp(ms);
        for line in lines {
            let Some(log) = self.rt.get_mut(u).and_then(|r| r.log.as_mut()) else { return };
            if log.file.is_some() {
                file_text.push_str(&stamp);
                file_text.push(' ');
                file_text.push_str(&line);
                file_text.push('\n');
            }
            if let Some(c) = self.control.as_mut().filter(|c| c.follows(u)) {
                c.broadcast(u, &format!("{stamp} {line}"));
            }
            // A unit that is not loud itself (first half of its own burst left) is never held by the console's
            // global budget: a heartbeat shows however loud the others are.
            let quiet = log.rate.quiet();
            match log.rate.allow(ms) {
                Some(_) if self.console_rate.allow(ms).is_none() && !quiet => {
                    // The console as a whole is full: counted as this unit's, reported in its own note.
                    log.rate.suppressed += 1;
                    self.suppressed_pending = true;
                }
                Some(suppressed) => {
                    if suppressed > 0 {
                        self.console.keel(Level::Warn, &not_shown(&name, suppressed));
                    }
                    self.console.unit(ms, &name, &line);
                    // A report held back (one per second at most) is still owed.
                    self.suppressed_pending |= log.rate.suppressed > 0;
                }
                None => self.suppressed_pending = true,
            }
            log.ring.push_owned(ms, line);
        }
        if let Some(f) = self.rt.get_mut(u).and_then(|r| r.log.as_mut()).and_then(|l| l.file.as_mut()) {
            f.write_text(&file_text);
        }
        // Every unit's output counts towards the budget; only loud units are held back by it.
        self.log_cpu += t0.elapsed();
        if pause && !self.log_paused.contains(&u) {
            // Stop reading this pipe for a while: the writer blocks on a full pipe instead of PID 1 spending its CPU.
            self.ep.delete(fd);
            self.log_paused.push(u);
            let first = self.rt.get_mut(u).and_then(|r| r.log.as_mut()).is_some_and(|l| {
                l.throttled += 1;
                l.throttled == 1
            });
            if first {
                let msg = format!(
                    "{name} is flooding its output: read in batches within PID 1's budget, at most {} KiB/s \
                     (its writes wait meanwhile; keelctl logs {name})",
                    LOG_BYTES_PER_SEC / 1024
                );
                self.keel_line(Level::Warn, &msg);
            }
            if !self.log_resume_armed {
                self.log_resume_armed = true;
                self.arm(Instant::now() + LOG_RESUME, TimerItem::LogResume);
            }
        }
    }

    fn roll_log_window(&mut self, now: Instant) {
        if now.saturating_duration_since(self.log_window) >= LOG_CPU_WINDOW {
            self.log_window = now;
            self.log_cpu = Duration::ZERO;
        }
    }

    /// Watch paused log pipes again once they may be read; re-arm while some stay paused.
    fn resume_logs(&mut self) {
        let now = Instant::now();
        self.roll_log_window(now);
        let now_ms = time::boot_ms();
        let cpu_left = self.log_cpu < LOG_CPU_BUDGET;
        let paused = std::mem::take(&mut self.log_paused);
        let mut still = Vec::with_capacity(paused.len());
        let mut failed = Vec::new();
        for u in paused {
            let Some(log) = self.rt.get_mut(u).and_then(|r| r.log.as_mut()) else { continue };
            let own = log.bytes.tokens_now(now_ms);
            let loud = log.quiet.tokens_now(now_ms) < LOG_QUIET_BURST / 2;
            let recent = log.last_read.is_some_and(|t| now.saturating_duration_since(t) < LOG_BATCH);
            if own == 0 || (loud && (recent || !cpu_left)) {
                still.push(u);
                continue;
            }
            match self.ep.add(log.rd.as_raw_fd(), T_LOG | u as u64) {
                Ok(()) => {}
                Err(e) => {
                    failed.push(e.0);
                    still.push(u);
                }
            }
        }
        self.log_paused = still;
        for errno in failed {
            self.report_once("log pipe: epoll add", errno, "retrying every 50 ms");
        }
        if !self.log_paused.is_empty() && !self.log_resume_armed {
            self.log_resume_armed = true;
            self.arm(Instant::now() + LOG_RESUME, TimerItem::LogResume);
        }
    }

    /// One WARN line per (what, errno) for the life of PID 1: a problem that repeats in a storm is said once.
    fn report_once(&mut self, what: &'static str, errno: i32, then: &str) {
        if self.reported.contains(&(what, errno)) {
            return;
        }
        if self.reported.len() < self.reported.capacity() {
            self.reported.push((what, errno));
        }
        let desc = std::io::Error::from_raw_os_error(errno).to_string();
        let desc = desc.split(" (os error").next().unwrap_or("").to_string();
        self.keel_line(Level::Warn, &format!("{what}: {desc} (errno {errno}); {then}"));
    }

    /// SIGKILL a whole unit through its cgroup's cgroup.kill (whatever it forks meanwhile dies too). False if
    /// the unit has no cgroup or the kernel has no cgroup.kill (the caller then signals the pid).
    fn kill_unit_cgroup(&mut self, u: UnitId) -> bool {
        let Some(cg) = self.rt.get(u).and_then(|r| r.spawned.as_ref()).and_then(|sp| sp.cgroup()) else {
            return false;
        };
        match crate::limits::kill_cgroup(cg) {
            Ok(()) => true,
            Err(libc::ENOENT) => false,
            Err(e) => {
                let msg = format!("kill {} via {}/cgroup.kill: errno {e}", self.name(u), cg.display());
                self.keel_line(Level::Warn, &msg);
                false
            }
        }
    }

    /// Shutdown's SIGKILL: every service cgroup at once (one write to keel/cgroup.kill), frozen first so that
    /// nothing in them runs, forks or writes meanwhile.
    fn kill_all_cgroups(&mut self) {
        let Some(parent) = self.cfg.cgroup_parent.clone() else { return };
        if let Err(e) = crate::limits::freeze_cgroup(&parent, true) {
            if e != libc::ENOENT {
                self.keel_line(Level::Warn, &format!("freeze {}: errno {e}", parent.display()));
            }
        }
        if let Err(e) = crate::limits::kill_cgroup(&parent) {
            if e != libc::ENOENT {
                self.keel_line(Level::Warn, &format!("kill {} via cgroup.kill: errno {e}", parent.display()));
            }
        }
    }

    /// Say how many lines a unit's rate limit held back once it has room again, even if the unit went quiet.
    fn report_suppressed(&mut self) {
        if !self.suppressed_pending {
            return;
        }
        let now = time::boot_ms();
        let mut pending = false;
        for u in 0..self.rt.len() {
            let Some(log) = self.rt.get_mut(u).and_then(|r| r.log.as_mut()) else { continue };
            if let Some(n) = log.rate.take_report(now) {
                let name = self.name(u);
                self.console.keel(Level::Warn, &not_shown(&name, n));
            } else if let Some(log) = self.rt.get(u).and_then(|r| r.log.as_ref()) {
                pending |= log.rate.suppressed > 0;
            }
        }
        self.suppressed_pending = pending;
    }

    fn ready_input(&mut self, u: UnitId) {
        let Some(rt) = self.rt.get_mut(u) else { return };
        let Some(fd) = rt.ready_rd.as_ref() else { return };
        let mut buf = [0u8; 256];
        let mut done = false;
        let mut ready = false;
        // At most 16 KiB per wake-up: a writer that keeps the fd full must not hold PID 1 here (epoll is
        // level-triggered: the rest comes on the next wake-up).
        for _ in 0..64 {
            match sys::read(fd.as_raw_fd(), &mut buf) {
                Io::Done(n) => {
                    if buf[..n].contains(&b'\n') {
                        ready = true;
                        done = true;
                        break;
                    }
                }
                Io::WouldBlock => break,
                Io::Closed | Io::Err(_) => {
                    done = true;
                    break;
                }
            }
        }
        if done {
            self.ep.delete(fd.as_raw_fd());
            rt.ready_rd = None;
        }
        if ready {
            self.queue.push_back(Event::Ready { unit: u });
        }
    }

    fn notify_input(&mut self, u: UnitId) {
        let Some(rt) = self.rt.get_mut(u) else { return };
        let Some(n) = rt.notify.as_ref() else { return };
        // Only the unit's main process and its descendants may speak for it (see spawner::read_notify).
        let got = spawner::read_notify(n.fd.as_raw_fd(), rt.pid);
        if got.status.is_some() {
            rt.status_text = got.status;
        }
        if got.ready && rt.pid.is_some() {
            self.queue.push_back(Event::Ready { unit: u });
        }
        if got.rejected > 0 {
            rt.notify_rejected += u64::from(got.rejected);
            if !rt.notify_warned {
                rt.notify_warned = true;
                let from =
                    got.rejected_pid.map_or_else(|| "a sender without credentials".to_string(), |p| format!("pid {p}"));
                let n = self.name(u);
                self.keel_line(Level::Warn, &format!("{n}: ignored sd_notify message from {from} (not part of {n})"));
            }
        }
    }

    fn check_no_processes(&mut self) {
        // kill(-1, 0) alone never says ESRCH on a real machine: kernel threads count as signalable. But every
        // user process is a descendant of PID 1 (orphans are reparented here), so "no children" means "none left".
        if !sys::has_children() || sys::kill(-1, 0) == Err(sys::Errno::ESRCH) {
            self.killall_pending = false;
            self.queue.push_back(Event::NoProcessesLeft);
        }
    }

    fn check_boot_complete(&mut self) {
        // The supervisor prints the "boot complete" line; we keep the time for `keelctl analyze`.
        if self.complete_ms.is_none() && self.sup.boot_complete() {
            self.complete_ms = Some(millis(self.cfg.start.elapsed()));
            // Boot code (rc, first spawns) is done with: PID 1's RSS is to hold only the code it keeps running.
            // Best effort: the advice changes no behaviour.
            let _shed = crate::text::shed();
        }
    }

    fn accept(&mut self) {
        let Some(c) = self.control.as_mut() else { return };
        let mut failed = Vec::new();
        for (i, fd) in c.accept() {
            if let Err(e) = self.ep.add(fd, T_CLIENT | i as u64) {
                // Never answered otherwise: close it (keelctl sees the connection end) and say so once per errno.
                c.drop_client(i);
                failed.push(e.0);
            }
        }
        for errno in failed {
            self.report_once("control client: epoll add", errno, "the client was disconnected");
        }
    }

    fn client_input(&mut self, i: usize) {
        let Some(c) = self.control.as_mut() else { return };
        let incoming = c.read(i);
        for inc in incoming {
            match inc {
                Incoming::Bad(i, e) => {
                    if let Some(c) = self.control.as_mut() {
                        c.reply(i, &Response::err(e), true);
                    }
                }
                Incoming::Request(i, req) => {
                    let (resp, close, follow) = self.handle(req);
                    if let Some(c) = self.control.as_mut() {
                        if let Some(u) = follow {
                            c.set_follow(i, u);
                        }
                        c.reply(i, &resp, close);
                    }
                }
            }
        }
    }

    fn sweep_clients(&mut self) {
        let Some(c) = self.control.as_mut() else { return };
        let (changed, removed) = c.sweep();
        let mut failed = Vec::new();
        for (i, fd, out) in changed {
            if let Err(e) = self.ep.modify(fd, T_CLIENT | i as u64, out) {
                // Its output would never be flushed: drop it now rather than leave it hanging.
                self.ep.delete(fd);
                c.drop_client(i);
                failed.push(e.0);
            }
        }
        for fd in removed {
            self.ep.delete(fd);
        }
        c.close_removed();
        for errno in failed {
            self.report_once("control client: epoll modify", errno, "the client was disconnected");
        }
    }

    fn find(&self, name: &str) -> Option<UnitId> {
        self.sup.find(Kind::Service, name).or_else(|| self.sup.units.iter().position(|u| u.config.name == name))
    }

    fn ms_since_start(&self, t: Option<Instant>) -> Option<u64> {
        t.map(|t| millis(t.saturating_duration_since(self.cfg.start)))
    }

    fn info(&self, u: UnitId) -> UnitInfo {
        let s = &self.sup.units[u]; // ok: callers pass ids from 0..units.len()
        let rt = self.rt.get(u);
        let live = matches!(s.state, State::Starting | State::Running | State::Stopping);
        UnitInfo {
            name: s.config.name.clone(),
            kind: kind_str(s.config.kind).into(),
            state: state_str(s.state).into(),
            pid: if live { s.pid.or(rt.and_then(|r| r.pid)) } else { None },
            restarts: s.restarts,
            uptime_ms: if live { s.spawned_at.map(|t| millis(t.elapsed())) } else { None },
            ready: match s.state {
                State::Running => Some(true),
                State::Starting => Some(false),
                _ => None,
            },
            last_exit: s.last_exit.map(|e| match e {
                Exit::Code(c) => format!("exit {c}"),
                Exit::Signal(sig) => signal_name(sig),
            }),
            // (an OOM kill of the last run shows in `reason`/`last_oom`)
            reason: s.reason.clone().or(s.config.broken.clone()),
            status: rt.and_then(|r| r.status_text.clone()),
            restart: match s.config.restart {
                Restart::No => "no",
                Restart::OnFailure => "on-failure",
                Restart::Always => "always",
            }
            .into(),
            after: s.config.after.clone(),
            readiness: match s.config.ready {
                Ready::Started => "started".into(),
                Ready::Fd(n) => format!("fd:{n}"),
                Ready::Notify => "notify".into(),
            },
            spawned_ms: self.ms_since_start(s.spawned_at),
            ready_ms: self.ms_since_start(s.ready_at),
            exited_ms: self.ms_since_start(s.exited_at),
            tasks_max: rt.and_then(|r| r.tasks.limit),
            tasks_max_source: rt.map(|r| r.tasks.source.clone()).unwrap_or_default(),
            tasks: rt
                .and_then(|r| r.spawned.as_ref())
                .and_then(|sp| sp.cgroup())
                .filter(|_| live)
                .and_then(crate::limits::tasks_current),
            oom_kills: s.oom_kills,
            last_oom: s.last_oom.clone(),
        }
    }

    /// Answer a control request: (response, close after, follow unit).
    fn handle(&mut self, req: Request) -> (Response, bool, Option<UnitId>) {
        let unknown = |n: &str| Response::err(format!("no unit named {n}"));
        match req {
            Request::List => {
                let units = (0..self.sup.units.len()).map(|u| self.info(u)).collect();
                (Response { ok: true, units, ..Default::default() }, true, None)
            }
            Request::Status { name } => match self.find(&name) {
                Some(u) => {
                    let lines = self.ring_lines(Some(u), 10);
                    (Response { ok: true, units: vec![self.info(u)], lines, ..Default::default() }, true, None)
                }
                None => (unknown(&name), true, None),
            },
            Request::Start { name } | Request::Stop { name } | Request::Restart { name }
                if self.find(&name).is_none() =>
            {
                (unknown(&name), true, None)
            }
            Request::Start { name } => self.command(Command::Start, &name, "start"),
            Request::Stop { name } => self.command(Command::Stop, &name, "stop"),
            Request::Restart { name } => self.command(Command::Restart, &name, "restart"),
            Request::Logs { name, follow } => {
                let unit = if name == "keel" { None } else { self.find(&name) };
                if name != "keel" && unit.is_none() {
                    return (unknown(&name), true, None);
                }
                let lines = self.ring_lines(unit, usize::MAX);
                let follow = if follow { unit } else { None };
                (Response { ok: true, lines, ..Default::default() }, follow.is_none(), follow)
            }
            Request::Poweroff | Request::Reboot | Request::Halt => {
                let (p, what) = match req {
                    Request::Reboot => (PowerAction::Reboot, "reboot"),
                    Request::Halt => (PowerAction::Halt, "halt"),
                    _ => (PowerAction::PowerOff, "power off"),
                };
                self.request_shutdown(p, "keelctl");
                (Response::msg(format!("{what} requested")), true, None)
            }
            Request::Analyze => {
                let units = (0..self.sup.units.len()).map(|u| self.info(u)).collect();
                let (n, total, max) = self.spawn_stats;
                let a = Analyze {
                    start_boot_ms: self.cfg.start_boot_ms,
                    complete_ms: self.complete_ms,
                    spawns: n,
                    spawn_avg_us: total.checked_div(n).unwrap_or(0),
                    spawn_max_us: max,
                    time_log_ms: self.time_us[0] / 1000,
                    time_console_ms: self.time_us[1] / 1000,
                    time_cleanup_ms: self.time_us[2] / 1000,
                    time_control_ms: self.time_us[3] / 1000,
                    wakeups: self.wakeups,
                    units,
                };
                (Response { ok: true, analyze: Some(a), ..Default::default() }, true, None)
            }
        }
    }

    fn command(&mut self, cmd: fn(UnitId) -> Command, name: &str, what: &str) -> (Response, bool, Option<UnitId>) {
        match self.find(name) {
            Some(u) => {
                self.queue.push_back(Event::Control(cmd(u)));
                (Response::msg(format!("{what} {name}: requested")), true, None)
            }
            None => (Response::err(format!("no unit named {name}")), true, None),
        }
    }

    fn ring_lines(&self, unit: Option<UnitId>, max: usize) -> Vec<String> {
        let ring = match unit {
            None => Some(&self.keel_ring),
            Some(u) => self.rt.get(u).and_then(|r| r.log.as_ref()).map(|l| &l.ring),
        };
        let Some(ring) = ring else { return Vec::new() };
        let skip = ring.len().saturating_sub(max);
        ring.iter().skip(skip).map(|(ms, l)| format!("{} {l}", time::stamp(*ms))).collect()
    }
}

pub fn kind_str(k: Kind) -> &'static str {
    match k {
        Kind::Onboot => "onboot",
        Kind::Service => "service",
        Kind::Onshutdown => "onshutdown",
    }
}

pub fn state_str(s: State) -> &'static str {
    match s {
        State::Waiting => "waiting",
        State::Starting => "starting",
        State::Running => "running",
        State::Stopping => "stopping",
        State::Backoff => "backoff",
        State::Exited => "exited",
        State::Failed => "failed",
    }
}

/// "epoll add log pipe of web: Cannot allocate memory (errno 12)", and whether it may heal.
fn epoll_failure(what: &str, e: &sys::Errno) -> crate::Error {
    crate::Error::sys(format!("epoll add {what}"), "", *e)
}

/// The note for lines a unit's console rate limit held back.
fn not_shown(name: &str, n: u64) -> String {
    format!("{name}: {n} lines not shown (rate limit; keelctl logs {name})")
}

/// Whole milliseconds of `d`, saturating (u64 milliseconds are 584 million years).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whole microseconds of `d`, saturating.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
