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
    /// Some unit has console lines held back by its rate limit, not yet reported.
    suppressed_pending: bool,
    /// The background coldplug child, until it is reaped.
    coldplug: Option<crate::coldplug::Coldplug>,
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
    ) -> Result<Loop, String> {
        keel_runtime::hooks::set_warning_sink(hook_warning);
        let ep = sys::Epoll::new().map_err(|e| format!("epoll_create1: {e}"))?;
        let sigfd = sys::signalfd(SIGNALS).map_err(|e| format!("signalfd: {e}"))?;
        ep.add(sigfd.as_raw_fd(), T_SIGNAL).map_err(|e| format!("epoll add signalfd: {e}"))?;
        let devnull = sys::open("/dev/null", libc::O_RDWR).map_err(|e| format!("open /dev/null: {e}"))?;
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
        let rt = bundles.into_iter().map(|bundle| UnitRt { bundle, ..Default::default() }).collect();
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
            pids: HashMap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            timer_gen: Vec::new(),
            killall_gen: 0,
            console,
            keel_ring,
            control,
            devnull,
            queue: VecDeque::new(),
            killall_pending: false,
            complete_ms: None,
            shutdown_requested: false,
            emergency: None,
            abstract_prefix,
            spawn_stats: (0, 0, 0),
            suppressed_pending: false,
            coldplug: None,
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
            let pending = self.console.flush();
            let timeout = self.timeout(pending);
            self.ep.wait(&mut evs, timeout);
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

    fn timeout(&self, console_pending: bool) -> i32 {
        let mut t: i64 = -1;
        let mut min = |ms: i64| {
            if t < 0 || ms < t {
                t = ms;
            }
        };
        if let Some(Reverse((at, _, _))) = self.timers.peek() {
            let d = at.saturating_duration_since(Instant::now());
            min(d.as_millis().min(i32::MAX as u128) as i64 + i64::from(d.subsec_nanos() % 1_000_000 != 0));
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
        t.min(i64::from(i32::MAX)) as i32
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
                if let Some(pid) = self.rt.get(unit).and_then(|r| r.pid) {
                    if let Err(e) = sys::kill(pid, signal) {
                        if e != libc::ESRCH {
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
                // We are PID 1 (of the machine or of the sandbox's pid namespace): -1 means everything but us.
                let _ = sys::kill(-1, signal);
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
            TimerItem::ShutdownDeadline | TimerItem::EmergencyRespawn | TimerItem::Coldplug => {}
        }
        self.seq += 1;
        self.timers.push(Reverse((at, self.seq, item)));
        if self.timers.len() > 2 * self.rt.len() + 8 {
            let (latest, killall) = (&self.timer_gen, self.killall_gen);
            self.timers.retain(|Reverse((_, _, it))| match *it {
                TimerItem::Unit { unit, gen } => latest.get(unit) == Some(&gen),
                TimerItem::KillAll { gen } => gen == killall,
                TimerItem::ShutdownDeadline | TimerItem::EmergencyRespawn | TimerItem::Coldplug => true,
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
            self.queue.push_back(Event::SpawnFailed { unit: u, error });
            return;
        };
        if rt.log.is_none() {
            match UnitLog::new(self.cfg.log_dir.as_deref(), &name) {
                Ok(l) => {
                    let _ = self.ep.add(l.rd.as_raw_fd(), T_LOG | u as u64);
                    rt.log = Some(l);
                }
                Err(e) => {
                    self.queue.push_back(Event::SpawnFailed { unit: u, error: format!("log pipe for {name}: {e}") });
                    return;
                }
            }
        }
        if cfg.ready == Ready::Notify && rt.notify.is_none() {
            match spawner::notify_socket(&name, bundle, &self.cfg.run_dir, &self.abstract_prefix) {
                Ok(n) => {
                    let _ = self.ep.add(n.fd.as_raw_fd(), T_NOTIFY | u as u64);
                    rt.notify = Some(n);
                }
                Err(e) => {
                    self.queue.push_back(Event::SpawnFailed { unit: u, error: e });
                    return;
                }
            }
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
        let us = t0.elapsed().as_micros() as u64;
        self.spawn_stats = (self.spawn_stats.0 + 1, self.spawn_stats.1 + us, self.spawn_stats.2.max(us));
        match res {
            Ok(st) => {
                let pid = st.spawned.pid;
                let _ = self.ep.add(st.spawned.status.as_raw_fd(), T_STATUS | u as u64);
                rt.status_watch = true;
                if let Some(r) = st.ready_rd {
                    let _ = self.ep.add(r.as_raw_fd(), T_READY | u as u64);
                    rt.ready_rd = Some(r);
                }
                rt.spawned = Some(st.spawned);
                rt.pid = Some(pid);
                self.pids.insert(pid, u);
                self.queue.push_back(Event::Spawned { unit: u, pid });
            }
            Err(error) => self.queue.push_back(Event::SpawnFailed { unit: u, error }),
        }
    }

    fn dispatch(&mut self, token: u64, events: u32) {
        let idx = (token & !T_MASK) as usize;
        match token & T_MASK {
            T_SIGNAL => self.signals(),
            T_CONTROL => self.accept(),
            T_CLIENT => {
                if events & (libc::EPOLLOUT as u32) != 0 {
                    if let Some(c) = self.control.as_mut() {
                        c.writable(idx);
                    }
                }
                if events & (libc::EPOLLIN as u32 | libc::EPOLLHUP as u32 | libc::EPOLLERR as u32) != 0 {
                    self.client_input(idx);
                }
            }
            T_LOG => self.log_input(idx),
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
        let errors = match (rt.spawned.take(), rt.bundle.as_ref()) {
            (Some(sp), Some(b)) => sp.cleanup(b),
            _ => Vec::new(),
        };
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
            Status::Failed(error) => Event::SpawnFailed { unit: u, error },
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
        let name = self.name(u);
        let Some(log) = self.rt.get_mut(u).and_then(|r| r.log.as_mut()) else { return };
        let lines = log.read_lines(LOG_BUDGET);
        for line in lines {
            let ms = time::boot_ms();
            let stamp = time::stamp(ms);
            log.ring.push(ms, &line);
            if let Some(f) = log.file.as_mut() {
                f.write(&stamp, &line);
            }
            if let Some(c) = self.control.as_mut().filter(|c| c.follows(u)) {
                c.broadcast(u, &format!("{stamp} {line}"));
            }
            match log.rate.allow(ms) {
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
        if !sys::has_children() || sys::kill(-1, 0) == Err(libc::ESRCH) {
            self.killall_pending = false;
            self.queue.push_back(Event::NoProcessesLeft);
        }
    }

    fn check_boot_complete(&mut self) {
        // The supervisor prints the "boot complete" line; we keep the time for `keelctl analyze`.
        if self.complete_ms.is_none() && self.sup.boot_complete() {
            self.complete_ms = Some(self.cfg.start.elapsed().as_millis() as u64);
        }
    }

    fn accept(&mut self) {
        let Some(c) = self.control.as_mut() else { return };
        for (i, fd) in c.accept() {
            let _ = self.ep.add(fd, T_CLIENT | i as u64);
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
        for (i, fd, out) in changed {
            let _ = self.ep.modify(fd, T_CLIENT | i as u64, out);
        }
        for fd in removed {
            self.ep.delete(fd);
        }
        c.close_removed();
    }

    fn find(&self, name: &str) -> Option<UnitId> {
        self.sup.find(Kind::Service, name).or_else(|| self.sup.units.iter().position(|u| u.config.name == name))
    }

    fn ms_since_start(&self, t: Option<Instant>) -> Option<u64> {
        t.map(|t| t.saturating_duration_since(self.cfg.start).as_millis() as u64)
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
            uptime_ms: if live { s.spawned_at.map(|t| t.elapsed().as_millis() as u64) } else { None },
            ready: match s.state {
                State::Running => Some(true),
                State::Starting => Some(false),
                _ => None,
            },
            last_exit: s.last_exit.map(|e| match e {
                Exit::Code(c) => format!("exit {c}"),
                Exit::Signal(sig) => signal_name(sig),
            }),
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

/// The note for lines a unit's console rate limit held back.
fn not_shown(name: &str, n: u64) -> String {
    format!("{name}: {n} lines not shown (rate limit; keelctl logs {name})")
}
