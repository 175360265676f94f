//! The supervisor: a pure state machine, `next(now, event) -> actions`, tested without processes.
//!
//! It owns every unit's state (onboot steps, services, onshutdown steps), the boot/shutdown phases,
//! restart policies and backoff, ordering (`keel.after`), readiness and the stop order. It never makes a
//! syscall: the event loop (`crate::event_loop`) turns [`Action`]s into spawns, signals and timers, and feeds
//! back [`Event`]s.
//!
//! Phases: Onboot (steps one at a time, in name order, each to completion or timeout) -> Services (all started,
//! ordered by `after`/readiness, concurrently where independent) -> on a shutdown request: Onshutdown (steps one
//! at a time) -> Stopping (services in reverse dependency order: TERM, KILL after stop-timeout) -> KillAll (TERM
//! to every remaining process, then KILL) -> Done (the loop syncs, unmounts and calls reboot(2)).

use std::time::{Duration, Instant};

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
    /// spawn() failed, or the child's setup failed before exec (message from the status pipe).
    SpawnFailed { unit: UnitId, error: String },
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
    /// kill(-1, signal): every process but PID 1.
    KillAll { signal: i32 },
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
    /// Gave up: broken bundle, start limit hit, dependency failed or unknown.
    Failed,
}

/// A unit's live state, read by the control socket.
#[derive(Debug, Clone)]
pub struct UnitState {
    pub config: UnitConfig,
    pub state: State,
    pub pid: Option<i32>,
    pub restarts: u32,
    pub last_exit: Option<Exit>,
    /// Why it is Failed/Waiting, for `keelctl status`.
    pub reason: Option<String>,
    /// Timeline for `keelctl analyze`: when it was last spawned, became ready, exited.
    pub spawned_at: Option<Instant>,
    pub ready_at: Option<Instant>,
    pub exited_at: Option<Instant>,
}

/// The supervisor.
#[derive(Debug)]
pub struct Supervisor {
    pub units: Vec<UnitState>,
}

impl Supervisor {
    /// Build from every unit found at boot, onboot and onshutdown each sorted by directory name.
    pub fn new(configs: Vec<UnitConfig>) -> Supervisor {
        let units = configs
            .into_iter()
            .map(|config| UnitState {
                config,
                state: State::Waiting,
                pid: None,
                restarts: 0,
                last_exit: None,
                reason: None,
                spawned_at: None,
                ready_at: None,
                exited_at: None,
            })
            .collect();
        Supervisor { units }
    }

    /// Feed one event; get the actions to perform, in order.
    pub fn next(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let _ = (now, event);
        Vec::new()
    }

    /// Look a unit up by kind and name.
    pub fn find(&self, kind: Kind, name: &str) -> Option<UnitId> {
        self.units.iter().position(|u| u.config.kind == kind && u.config.name == name)
    }
}
