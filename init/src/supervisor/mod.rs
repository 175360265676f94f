//! The supervisor: a pure state machine, `next(now, event) -> actions`, tested without processes.
//!
//! It owns every unit's state (onboot steps, services, onshutdown steps), the boot/shutdown phases,
//! restart policies and backoff, ordering (`keel.after`), readiness and the stop order. It never makes a
//! syscall and never reads a clock: the event loop (`crate::event_loop`) turns [`Action`]s into spawns, signals
//! and timers, and feeds back [`Event`]s with `now`.
//!
//! Phases ([`Phase`]): Onboot (steps one at a time, in name order, each to completion or timeout) -> Services
//! (all started, ordered by `after`/readiness, concurrently where independent) -> on a shutdown request:
//! Onshutdown (steps one at a time) -> Stopping (services in reverse dependency order: TERM, KILL after
//! stop-timeout) -> KillAll (TERM to every remaining process, then KILL) -> Done (the loop syncs, unmounts and
//! calls reboot(2)).
//!
//! Files: `boot.rs` (Boot event, onboot and the step logic shared with onshutdown), `graph.rs` (keel.after
//! names and cycles), `services.rs` (ordering, readiness, boot summary, keelctl), `restart.rs` (policy, backoff,
//! start limit), `shutdown.rs` (shutdown order, kill-all, power). Each documents its rules at the top.
//!
//! Coldplug (module loading by device modalias) runs in a child of PID 1 in parallel with the boot (machine mode;
//! the loop tells the supervisor with [`Supervisor::set_coldplug_running`]). Rule: if there is at least one onboot
//! step, the first one waits for [`Event::ColdplugDone`] (so e.g. a DHCP step finds its network interfaces, as
//! when coldplug ran before the loop), but at most [`COLDPLUG_WAIT`]: then one WARN line and onboot goes on. With
//! no onboot steps, services start at Boot, in parallel with coldplug (a service that needs a device module
//! gets it from the kernel's on-demand modprobe, or is ordered after an onboot step). Without coldplug (sandbox
//! mode, or it already ended) the boot is as if it had finished.
//!
//! Invariant (tested after every event): a unit that is Starting, Stopping or in Backoff always has a timer
//! armed, and so does the kill-all phase: no state waits for an event that may never come.
//! Memory per unit is fixed (counters and instants; no history).

use std::time::{Duration, Instant};

mod boot;
mod graph;
mod restart;
mod services;
mod shutdown;
#[cfg(test)]
mod tests;

/// Index of a unit in [`Supervisor::units`]; stable for the life of the supervisor.
pub type UnitId = usize;

/// Which directory a unit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Onboot,
    Service,
    Onshutdown,
}

/// `keel.restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    No,
    OnFailure,
    Always,
}

/// `keel.ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// No keel.ready: started = ready.
    Started,
    /// `fd:N`: a line written on fd N inside the container.
    Fd(i32),
    /// `notify`: READY=1 on NOTIFY_SOCKET.
    Notify,
}

/// What PID 1 does at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    PowerOff,
    Reboot,
    Halt,
}

/// A unit's configuration, from its bundle's annotations (parsed by `crate::units`).
#[derive(Debug, Clone)]
pub struct UnitConfig {
    /// Name shown on the console: the directory name without its `NNN-` prefix.
    pub name: String,
    pub kind: Kind,
    /// The bundle directory, named in error lines (empty if unknown).
    pub bundle: std::path::PathBuf,
    pub restart: Restart,
    /// `keel.after`: names of services that must be ready first.
    pub after: Vec<String>,
    pub ready: Ready,
    /// `keel.stop-timeout` (default 10 s).
    pub stop_timeout: Duration,
    /// `keel.timeout` for onboot/onshutdown steps (default 300 s).
    pub timeout: Duration,
    /// `keel.required=true`: an onboot step whose failure stops the boot (emergency shell).
    pub required: bool,
    /// The bundle could not be loaded (bad JSON, missing rootfs...): the one-line cause. Never started.
    pub broken: Option<String>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// A request from keelctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start(UnitId),
    Stop(UnitId),
    Restart(UnitId),
}

/// Something that happened, fed to [`Supervisor::next`] by the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The loop is up: begin the boot.
    Boot,
    /// A Spawn action succeeded: the process exists (setup may still fail: then SpawnFailed follows, then Exited).
    Spawned { unit: UnitId, pid: i32 },
    /// The process exec'd its binary (status pipe EOF).
    Execd { unit: UnitId },
    /// spawn() failed, or the child's setup failed before exec (message from the status pipe, e.g.
    /// `exec /bin/httpd: No such file or directory (errno 2)`). `transient` (the loop classifies the errno with
    /// [`transient_errno`]: EAGAIN, ENOMEM, EINTR...): the start is retried with the service's backoff, whatever
    /// its restart policy, and never trips the start limit. Otherwise the failure cannot heal by itself: the unit
    /// is Failed with this cause until `keelctl start`.
    SpawnFailed { unit: UnitId, error: String, transient: bool },
    /// The unit's cgroup counted `kills` OOM kills during the run that is ending (`memory.events` oom_kill), under
    /// the memory limit `limit` (None: none; the whole system ran out). Sent just before that run's Exited.
    OomKilled { unit: UnitId, kills: u64, limit: Option<u64> },
    /// The reaper collected the unit's process.
    Exited { unit: UnitId, exit: Exit },
    /// Readiness signalled (fd line or READY=1).
    Ready { unit: UnitId },
    /// A timer from [`Action::Timer`] fired (only the latest `gen` per unit counts; older ones are ignored).
    Timer { unit: UnitId, gen: u64 },
    /// The kill-all grace timer fired, or the loop found no processes left after a KillAll.
    KillAllTimer { gen: u64 },
    /// The loop found no process left besides PID 1 (kill(-1, 0) == ESRCH) during KillAll.
    NoProcessesLeft,
    /// keelctl start/stop/restart.
    Control(Command),
    /// A power signal or keelctl poweroff/reboot/halt.
    Shutdown(PowerAction),
    /// The timer from [`Action::ShutdownDeadlineTimer`] fired.
    ShutdownDeadline,
    /// The coldplug child ended (whatever its exit status): onboot steps may begin.
    ColdplugDone,
    /// The timer from [`Action::ColdplugTimer`] fired.
    ColdplugTimer,
}

/// Something the loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Spawn the unit's bundle (fresh spawn; the loop keeps the unit's log pipe across restarts).
    Spawn(UnitId),
    /// Send `signal` to the unit's current process.
    Signal { unit: UnitId, signal: i32 },
    /// Arm the unit's one timer (a newer one replaces the older).
    Timer { unit: UnitId, gen: u64, at: Instant },
    /// Arm the global kill-all timer.
    KillAllTimer { gen: u64, at: Instant },
    /// Arm the one overall shutdown deadline timer (once per boot, at the shutdown request).
    ShutdownDeadlineTimer { at: Instant },
    /// kill(-1, signal): every process but PID 1.
    KillAll { signal: i32 },
    /// Arm the one coldplug wait timer (at most once per boot): [`Event::ColdplugTimer`] at `at`.
    ColdplugTimer { at: Instant },
    /// A line for the console and the unit's log (unit None: keel's own line).
    Log { unit: Option<UnitId>, level: Level, msg: String },
    /// A required onboot step failed: start the emergency shell on the console.
    Emergency { reason: String },
    /// Everything is stopped: sync, unmount, reboot(2) with this action (or exit in sandbox mode).
    Power(PowerAction),
}

/// Console line severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Where a unit is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started yet (waiting for its turn, its `after` units, or a keelctl start).
    Waiting,
    /// Spawned, not yet ready.
    Starting,
    /// Running and ready.
    Running,
    /// TERM sent, waiting for exit (KILL at the deadline).
    Stopping,
    /// Exited; will restart at the backoff timer.
    Backoff,
    /// Ended and stays ended: onboot/onshutdown finished (see `last_exit`), service with restart=no/stopped.
    Exited,
    /// Gave up: broken bundle, setup failed before exec, start limit hit, dependency failed or unknown.
    Failed,
}

/// A unit's live state, read by the control socket.
#[derive(Debug, Clone)]
pub struct UnitState {
    pub config: UnitConfig,
    pub state: State,
    pub pid: Option<i32>,
    /// Restarts done by the restart policy since boot (not reset by `keelctl start`).
    pub restarts: u32,
    pub last_exit: Option<Exit>,
    /// Why it is Failed/Waiting, for `keelctl status`.
    pub reason: Option<String>,
    /// Timeline for `keelctl analyze`: when it was last spawned, became ready, exited.
    pub spawned_at: Option<Instant>,
    pub ready_at: Option<Instant>,
    pub exited_at: Option<Instant>,
    /// OOM kills reported since boot, and how the last one is described ("OOM killer: memory limit 64 MiB").
    pub oom_kills: u64,
    pub last_oom: Option<String>,
    /// Supervisor bookkeeping (timers, backoff, stop progress); private.
    rt: Rt,
}

/// Where the whole machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before [`Event::Boot`].
    Init,
    /// Onboot steps, one at a time.
    Onboot,
    /// Services supervised (boot may still be completing).
    Services,
    /// A required onboot step failed: services were not started; waiting for a shutdown request.
    Emergency,
    /// Shutdown requested: the running onboot step (if any) is stopped, then onshutdown steps run one at a time.
    Onshutdown,
    /// Services are stopped in reverse dependency order.
    Stopping,
    /// `kill(-1, SIGTERM)` sent; waiting for the kill-all timer or no processes left.
    KillTerm,
    /// `kill(-1, SIGKILL)` sent; waiting for the short timer or no processes left.
    KillKill,
    /// [`Action::Power`] was returned.
    Done,
}

/// What a unit's one timer means when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    /// An onboot/onshutdown step ran `keel.timeout`: TERM it.
    StepDeadline,
    /// A service did not become ready within `keel.timeout`: stop it (counts as a failure).
    ReadyDeadline,
    /// TERM was sent `grace` ago: KILL.
    Kill,
    /// KILL was sent [`LOST_AFTER`] ago and still no exit: stop waiting for it.
    Lost,
    /// Backoff over: spawn again.
    Backoff,
}

/// Why a unit is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopCause {
    /// A step ran past `keel.timeout`.
    Timeout,
    /// A service did not become ready in time.
    NotReady,
    /// keelctl stop/restart (`then_start`: restart).
    Control { then_start: bool },
    /// System shutdown.
    Shutdown,
}

/// How a unit's process ended, as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Exit(Exit),
    /// spawn() or the child's setup failed (the message from the runtime); `transient`: it may heal (retried).
    SpawnFailed {
        error: String,
        transient: bool,
    },
    /// Still no exit [`LOST_AFTER`] after SIGKILL: we stop waiting.
    Lost,
}

#[derive(Debug, Clone, Default)]
struct Rt {
    /// Resolved `keel.after` (known services only).
    deps: Vec<UnitId>,
    timer: Option<TimerKind>,
    timer_gen: u64,
    /// Restarts in a row without a run of [`BACKOFF_RESET`]; drives backoff and the start limit.
    streak: u32,
    /// When the current streak began (first spawn of it).
    streak_since: Option<Instant>,
    stop: Option<StopCause>,
    stop_at: Option<Instant>,
    /// Last signal sent while stopping (TERM or KILL), for the "stopped (SIGTERM) in 12 ms" line.
    stop_signal: i32,
    /// SpawnFailed arrived while a process exists: reported with the Exited that must follow (cause, transient).
    spawn_error: Option<(String, bool)>,
    /// OomKilled arrived: (kills, memory limit), reported with the Exited that follows.
    oom: Option<(u64, Option<u64>)>,
    /// Log the "starting"/"ready" lines for this start (first start at boot, keelctl start).
    announce: bool,
    /// Can never start (broken bundle, unknown name or cycle in keel.after).
    permanent: bool,
    /// The last run ended by itself with status 0 and no restart follows (a one-shot that did its job).
    finished: bool,
}

/// First restart delay; doubles per restart in a row.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A run at least this long resets the backoff and the start limit.
pub const BACKOFF_RESET: Duration = Duration::from_secs(10);
/// Start limit: after this many restarts in a row, each run shorter than [`BACKOFF_RESET`], the next failure
/// makes the service Failed. With the backoff above, 10 restarts take at least ~81 s, so a fixed "N in 60 s"
/// window could never trip; counting restarts in a row is what that window is meant to catch.
pub const START_LIMIT: u32 = 10;
/// An onboot/onshutdown step that timed out gets SIGKILL this long after SIGTERM.
pub const STEP_KILL_AFTER: Duration = Duration::from_secs(5);
/// How long after SIGKILL we still wait for an exit before giving up on the process (D state, lost event).
pub const LOST_AFTER: Duration = Duration::from_secs(5);
/// Grace between kill(-1, SIGTERM) and kill(-1, SIGKILL) at the end of shutdown.
pub const KILLALL_TERM_GRACE: Duration = Duration::from_secs(2);
/// Wait after kill(-1, SIGKILL) before Power (ended early by NoProcessesLeft).
pub const KILLALL_KILL_GRACE: Duration = Duration::from_secs(1);
/// Longest the first onboot step waits for coldplug (then a WARN line and onboot goes on without it).
pub const COLDPLUG_WAIT: Duration = Duration::from_secs(10);
/// The whole shutdown sequence's deadline (kernel command line `keel.shutdown_timeout=SECONDS`).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(90);

/// The supervisor.
#[derive(Debug)]
pub struct Supervisor {
    pub units: Vec<UnitState>,
    phase: Phase,
    power: Option<PowerAction>,
    /// Generation counter for timers (unit timers and the kill-all timer).
    gen: u64,
    killall_gen: u64,
    boot_at: Option<Instant>,
    shutdown_at: Option<Instant>,
    /// How long the whole shutdown may take ([`DEFAULT_SHUTDOWN_TIMEOUT`]).
    shutdown_timeout: Duration,
    /// When the shutdown deadline expires (set at the shutdown request; None again once it was acted on).
    deadline: Option<Instant>,
    /// Last onboot / onshutdown step started (the next one is the following unit of that kind).
    onboot_cursor: Option<UnitId>,
    onshutdown_cursor: Option<UnitId>,
    boot_reported: bool,
    /// A second shutdown request was already answered with a line.
    told_shutdown_again: bool,
    /// The coldplug child is running (set by the loop before Boot; cleared by [`Event::ColdplugDone`]).
    coldplug_running: bool,
    /// Onboot is held until coldplug ends or [`COLDPLUG_WAIT`] passes (the timer is armed meanwhile).
    coldplug_wait: bool,
    /// Actions produced by the event being handled.
    out: Vec<Action>,
}

impl Supervisor {
    /// Build from every unit found at boot, onboot and onshutdown each sorted by directory name.
    pub fn new(configs: Vec<UnitConfig>) -> Supervisor {
        let deps = graph::resolve(&configs);
        let units = configs
            .into_iter()
            .zip(deps)
            .map(|(config, deps)| UnitState {
                config,
                state: State::Waiting,
                pid: None,
                restarts: 0,
                last_exit: None,
                reason: None,
                spawned_at: None,
                ready_at: None,
                exited_at: None,
                oom_kills: 0,
                last_oom: None,
                rt: Rt { deps, ..Rt::default() },
            })
            .collect();
        Supervisor {
            units,
            phase: Phase::Init,
            power: None,
            gen: 0,
            killall_gen: 0,
            boot_at: None,
            shutdown_at: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            deadline: None,
            onboot_cursor: None,
            onshutdown_cursor: None,
            boot_reported: false,
            told_shutdown_again: false,
            coldplug_running: false,
            coldplug_wait: false,
            out: Vec::new(),
        }
    }

    /// Feed one event; get the actions to perform, in order.
    pub fn next(&mut self, now: Instant, event: Event) -> Vec<Action> {
        if let Some(id) = event_unit(&event) {
            if id >= self.units.len() {
                self.log(None, Level::Warn, format!("supervisor: {event:?} names no unit; ignored"));
                return std::mem::take(&mut self.out);
            }
        }
        // Whatever the event, a passed deadline comes first (so a unit timer due at the same instant, e.g. an
        // onshutdown step's capped timeout, does not act as if there were time left).
        if self.deadline.is_some_and(|d| now >= d) {
            self.deadline_reached(now);
        }
        match event {
            Event::Boot => self.on_boot(now),
            Event::Spawned { unit, pid } => self.on_spawned(unit, pid),
            Event::Execd { unit } => self.on_execd(now, unit),
            Event::SpawnFailed { unit, error, transient } => self.on_spawn_failed(now, unit, error, transient),
            Event::OomKilled { unit, kills, limit } => self.on_oom(unit, kills, limit),
            Event::Exited { unit, exit } => self.ended(now, unit, Outcome::Exit(exit)),
            Event::Ready { unit } => self.on_ready(now, unit),
            Event::Timer { unit, gen } => self.on_timer(now, unit, gen),
            Event::KillAllTimer { gen } => self.on_killall_timer(now, gen),
            Event::NoProcessesLeft => self.on_no_processes_left(now),
            Event::Control(cmd) => self.on_control(now, cmd),
            Event::Shutdown(action) => self.on_shutdown(now, action),
            Event::ShutdownDeadline => {} // handled above when due (a stale or early one does nothing)
            Event::ColdplugDone => self.on_coldplug_done(now),
            Event::ColdplugTimer => self.on_coldplug_timer(now),
        }
        self.settle(now);
        std::mem::take(&mut self.out)
    }

    /// Set the overall shutdown deadline (default [`DEFAULT_SHUTDOWN_TIMEOUT`]); takes effect at the next
    /// shutdown request.
    pub fn set_shutdown_timeout(&mut self, timeout: Duration) {
        self.shutdown_timeout = timeout;
    }

    /// Tell the supervisor (before [`Event::Boot`]) whether a coldplug child runs; [`Event::ColdplugDone`] must
    /// follow when it ends. Default: none (sandbox mode).
    pub fn set_coldplug_running(&mut self, running: bool) {
        self.coldplug_running = running;
    }

    /// True while onboot is held waiting for coldplug.
    pub fn waiting_for_coldplug(&self) -> bool {
        self.coldplug_wait
    }

    /// Look a unit up by kind and name.
    pub fn find(&self, kind: Kind, name: &str) -> Option<UnitId> {
        self.units.iter().position(|u| u.config.kind == kind && u.config.name == name)
    }

    /// Where the machine is (boot, services, shutdown...).
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The requested power action, once a shutdown has begun.
    pub fn power(&self) -> Option<PowerAction> {
        self.power
    }

    /// True once every service has settled after boot (the "boot complete" line was logged).
    pub fn boot_complete(&self) -> bool {
        self.boot_reported
    }

    /// After every event: start what can start, fail what can never start, move shutdown on.
    fn settle(&mut self, now: Instant) {
        match self.phase {
            Phase::Services => {
                self.fail_blocked();
                self.start_ready_services(now);
                self.check_boot_complete(now);
            }
            Phase::Stopping => self.stop_next_services(now),
            _ => {}
        }
    }

    // ---- small helpers shared by the phase files ----

    fn log(&mut self, unit: Option<UnitId>, level: Level, msg: String) {
        self.out.push(Action::Log { unit, level, msg });
    }

    fn name(&self, id: UnitId) -> String {
        self.units.get(id).map(|u| u.config.name.clone()).unwrap_or_default()
    }

    /// "onboot net" / "onshutdown save" / "web".
    fn label(&self, id: UnitId) -> String {
        match self.units.get(id) {
            Some(u) if u.config.kind == Kind::Onboot => format!("onboot {}", u.config.name),
            Some(u) if u.config.kind == Kind::Onshutdown => format!("onshutdown {}", u.config.name),
            Some(u) => u.config.name.clone(),
            None => String::new(),
        }
    }

    fn kind(&self, id: UnitId) -> Option<Kind> {
        self.units.get(id).map(|u| u.config.kind)
    }

    fn state(&self, id: UnitId) -> Option<State> {
        self.units.get(id).map(|u| u.state)
    }

    /// Arm the unit's one timer (replacing any older one).
    fn arm(&mut self, id: UnitId, kind: TimerKind, now: Instant, after: Duration) {
        self.gen += 1;
        let gen = self.gen;
        if let Some(u) = self.units.get_mut(id) {
            u.rt.timer = Some(kind);
            u.rt.timer_gen = gen;
            self.out.push(Action::Timer { unit: id, gen, at: later(now, after) });
        }
    }

    /// Spawn a unit now. Steps get their run deadline, services their readiness deadline.
    fn spawn(&mut self, now: Instant, id: UnitId, announce: bool) {
        let Some(u) = self.units.get_mut(id) else { return };
        u.state = State::Starting;
        u.pid = None;
        u.reason = None;
        u.spawned_at = Some(now);
        u.ready_at = None;
        u.rt.stop = None;
        u.rt.stop_at = None;
        u.rt.spawn_error = None;
        u.rt.oom = None;
        u.rt.finished = false;
        u.rt.announce = announce;
        let (kind, mut timeout) = (u.config.kind, u.config.timeout);
        if let (Kind::Onshutdown, Some(deadline)) = (kind, self.deadline) {
            // A step cannot run past the shutdown deadline.
            timeout = timeout.min(deadline.saturating_duration_since(now));
        }
        self.out.push(Action::Spawn(id));
        let timer = if kind == Kind::Service { TimerKind::ReadyDeadline } else { TimerKind::StepDeadline };
        self.arm(id, timer, now, timeout);
    }

    /// TERM the unit's process now and KILL it after `grace`.
    fn begin_stop(&mut self, now: Instant, id: UnitId, cause: StopCause, grace: Duration) {
        let Some(u) = self.units.get_mut(id) else { return };
        u.state = State::Stopping;
        u.rt.stop = Some(cause);
        u.rt.stop_at = Some(now);
        u.rt.stop_signal = libc::SIGTERM;
        self.out.push(Action::Signal { unit: id, signal: libc::SIGTERM });
        self.arm(id, TimerKind::Kill, now, grace);
    }

    fn on_spawned(&mut self, id: UnitId, pid: i32) {
        let Some(u) = self.units.get_mut(id) else { return };
        if !matches!(u.state, State::Starting | State::Stopping) {
            return;
        }
        u.pid = Some(pid);
        if u.config.kind == Kind::Service && u.rt.announce {
            let msg = format!("starting {} (pid {pid})", u.config.name);
            self.log(Some(id), Level::Info, msg);
        }
    }

    fn on_spawn_failed(&mut self, now: Instant, id: UnitId, error: String, transient: bool) {
        let Some(u) = self.units.get_mut(id) else { return };
        match u.state {
            State::Starting | State::Stopping if u.pid.is_some() => {
                // A process exists: its Exited follows and ends this start (reported with this error then).
                u.rt.spawn_error = Some((error, transient));
            }
            State::Starting | State::Stopping => self.ended(now, id, Outcome::SpawnFailed { error, transient }),
            State::Backoff if transient => {
                // The Exited for this process was handled first and scheduled a restart: a transient failure keeps
                // it; just say why the start failed.
                let line = self.cannot_start_line(id, &error, Fate::Retry);
                self.log(Some(id), Level::Warn, line);
            }
            State::Backoff => {
                // The Exited for this process was handled first and scheduled a restart: a setup failure that
                // cannot heal is not retried, so take that back.
                u.state = State::Failed;
                u.rt.timer = None;
                u.rt.streak = 0;
                u.rt.streak_since = None;
                u.reason = Some(error.clone());
                let line = self.cannot_start_line(id, &error, Fate::Permanent);
                self.log(Some(id), Level::Error, line);
            }
            _ => {
                // The Exited was handled first (and ended it): just say why it could not start.
                let line = self.cannot_start_line(id, &error, Fate::Silent);
                self.log(Some(id), Level::Error, line);
            }
        }
    }

    fn on_oom(&mut self, id: UnitId, kills: u64, limit: Option<u64>) {
        let Some(u) = self.units.get_mut(id) else { return };
        if kills == 0 {
            return;
        }
        u.oom_kills = u.oom_kills.saturating_add(kills);
        u.last_oom = Some(oom_text(limit));
        if matches!(u.state, State::Starting | State::Running | State::Stopping) {
            u.rt.oom = Some((kills, limit));
        }
    }

    /// `web: cannot start: exec /bin/httpd: No such file or directory (errno 2) [bundle /containers/services/web];
    /// permanent failure: not restarting (keelctl start web to retry)`; the tail depends on `fate`.
    fn cannot_start_line(&self, id: UnitId, cause: &str, fate: Fate) -> String {
        let label = self.label(id);
        let name = self.name(id);
        let bundle = self.units.get(id).map(|u| u.config.bundle.display().to_string()).unwrap_or_default();
        let at = if bundle.is_empty() { String::new() } else { format!(" [bundle {bundle}]") };
        let tail = match fate {
            Fate::Permanent => format!("; permanent failure: not restarting (keelctl start {name} to retry)"),
            Fate::Retry => "; transient failure: retrying".to_string(),
            Fate::Silent => String::new(),
        };
        format!("{label}: cannot start: {cause}{at}{tail}")
    }

    fn on_timer(&mut self, now: Instant, id: UnitId, gen: u64) {
        let Some(u) = self.units.get_mut(id) else { return };
        if u.rt.timer_gen != gen {
            return;
        }
        let Some(kind) = u.rt.timer.take() else { return };
        let label = self.label(id);
        let Some(u) = self.units.get_mut(id) else { return };
        match kind {
            TimerKind::StepDeadline => {
                let t = human(u.config.timeout);
                self.log(Some(id), Level::Error, format!("{label}: timed out after {t}; sending SIGTERM"));
                self.begin_stop(now, id, StopCause::Timeout, STEP_KILL_AFTER);
            }
            TimerKind::ReadyDeadline => {
                let (t, grace) = (human(u.config.timeout), u.config.stop_timeout);
                self.log(Some(id), Level::Error, format!("{label}: not ready after {t}; stopping it"));
                self.begin_stop(now, id, StopCause::NotReady, grace);
            }
            TimerKind::Kill => {
                let waited = u.rt.stop_at.map(|t| now.saturating_duration_since(t)).unwrap_or_default();
                u.rt.stop_signal = libc::SIGKILL;
                self.out.push(Action::Signal { unit: id, signal: libc::SIGKILL });
                self.log(Some(id), Level::Warn, format!("{label} did not stop in {}: SIGKILL", human(waited)));
                self.arm(id, TimerKind::Lost, now, LOST_AFTER);
            }
            TimerKind::Lost => self.ended(now, id, Outcome::Lost),
            TimerKind::Backoff => {
                if self.phase == Phase::Services && u.state == State::Backoff {
                    self.spawn(now, id, false);
                }
            }
        }
    }

    /// A unit's process is gone (or given up on): update it and hand over to the step or service logic.
    fn ended(&mut self, now: Instant, id: UnitId, outcome: Outcome) {
        let Some(u) = self.units.get_mut(id) else { return };
        if !matches!(u.state, State::Starting | State::Running | State::Stopping) {
            return; // stale: already handled (e.g. given up on after SIGKILL)
        }
        u.pid = None;
        u.exited_at = Some(now);
        u.rt.timer = None;
        if let Outcome::Exit(exit) = &outcome {
            u.last_exit = Some(*exit);
        }
        let outcome = match (outcome, u.rt.spawn_error.take()) {
            (Outcome::Exit(_), Some((error, transient))) => Outcome::SpawnFailed { error, transient },
            (outcome, _) => outcome,
        };
        let kind = u.config.kind;
        match kind {
            Kind::Service => self.service_ended(now, id, outcome),
            Kind::Onboot | Kind::Onshutdown => self.step_ended(now, id, outcome),
        }
    }
}

fn event_unit(event: &Event) -> Option<UnitId> {
    match event {
        Event::Spawned { unit, .. }
        | Event::Execd { unit }
        | Event::SpawnFailed { unit, .. }
        | Event::OomKilled { unit, .. }
        | Event::Exited { unit, .. }
        | Event::Ready { unit }
        | Event::Timer { unit, .. } => Some(*unit),
        Event::Control(Command::Start(unit) | Command::Stop(unit) | Command::Restart(unit)) => Some(*unit),
        _ => None,
    }
}

/// `now + d` without overflow panics (durations are capped at parse time; this is belt and braces).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).or_else(|| now.checked_add(Duration::from_secs(86_400))).unwrap_or(now)
}

/// "35 ms", "1.6 s", "300 s".
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Milliseconds between two instants (0 if `since` is unknown).
fn ms_since(now: Instant, since: Option<Instant>) -> u128 {
    since.map(|t| now.saturating_duration_since(t).as_millis()).unwrap_or(0)
}

/// "SIGSEGV", "SIGRTMIN+3", "signal 99".
pub fn signal_name(sig: i32) -> String {
    const NAMES: &[(i32, &str)] = &[
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGSTKFLT, "SIGSTKFLT"),
        (libc::SIGCHLD, "SIGCHLD"),
        (libc::SIGCONT, "SIGCONT"),
        (libc::SIGSTOP, "SIGSTOP"),
        (libc::SIGTSTP, "SIGTSTP"),
        (libc::SIGTTIN, "SIGTTIN"),
        (libc::SIGTTOU, "SIGTTOU"),
        (libc::SIGURG, "SIGURG"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGWINCH, "SIGWINCH"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGPWR, "SIGPWR"),
        (libc::SIGSYS, "SIGSYS"),
    ];
    if let Some((_, name)) = NAMES.iter().find(|(n, _)| *n == sig) {
        return (*name).to_string();
    }
    // glibc reserves 32 and 33; SIGRTMIN as seen by programs is 34 on Linux/glibc.
    match sig {
        34 => "SIGRTMIN".to_string(),
        35..=64 => format!("SIGRTMIN+{}", sig - 34),
        _ => format!("signal {sig}"),
    }
}

/// How an OOM kill is described: "OOM killer: memory limit 64 MiB" / "OOM killer: system out of memory (no
/// memory limit)".
pub fn oom_text(limit: Option<u64>) -> String {
    format!("OOM killer: {}", oom_limit_text(limit))
}

fn oom_limit_text(limit: Option<u64>) -> String {
    match limit {
        Some(l) => format!("memory limit {} reached", crate::limits::bytes_human(l)),
        None => "no memory limit: the system ran out of memory".to_string(),
    }
}

/// "exited 3", or with an OOM kill reported for this run: "killed by the OOM killer (memory limit 64 MiB
/// reached; exited 137)".
fn describe(exit: Exit, oom: Option<(u64, Option<u64>)>) -> String {
    match oom {
        Some((_, limit)) => format!("killed by the OOM killer ({}; {})", oom_limit_text(limit), describe_exit(exit)),
        None => describe_exit(exit),
    }
}

/// Can a failed start heal by itself? EAGAIN (no pid left, pids.max reached, threads-max), ENOMEM, EINTR, and
/// the file table and buffer shortages (ENFILE, EMFILE, ENOBUFS): yes, retried with backoff. Anything else (a
/// missing binary, a bad mount, a bad config) fails the same way every time: no.
pub fn transient_errno(errno: i32) -> bool {
    matches!(errno, libc::EAGAIN | libc::ENOMEM | libc::EINTR | libc::ENFILE | libc::EMFILE | libc::ENOBUFS)
}

/// The errno named last in a message, as the runtime writes it: "... (errno 11)" or "... (os error 11)".
pub fn errno_in(msg: &str) -> Option<i32> {
    ["(errno ", "(os error "].iter().filter_map(|p| msg.rfind(p).map(|i| (i, p.len()))).max().and_then(|(i, n)| {
        let rest = msg.get(i + n..)?;
        rest.split(')').next()?.trim().parse().ok()
    })
}

/// What a "cannot start" line says will happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Cannot heal: not restarted until keelctl start.
    Permanent,
    /// Transient: retried with backoff.
    Retry,
    /// Nothing to add (a step, or shutting down).
    Silent,
}

/// "exited 3" / "killed by SIGSEGV".
fn describe_exit(exit: Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exited {c}"),
        Exit::Signal(s) => format!("killed by {}", signal_name(s)),
    }
}

fn power_name(action: PowerAction) -> &'static str {
    match action {
        PowerAction::PowerOff => "power off",
        PowerAction::Reboot => "reboot",
        PowerAction::Halt => "halt",
    }
}
