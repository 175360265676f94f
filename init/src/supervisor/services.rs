//! Services: start ordering (`keel.after`), readiness, the boot summary line, and keelctl start/stop/restart.
//!
//! Rules (documented choices):
//! - A service starts once every service in its `keel.after` is satisfied: Running (ready), or Exited with
//!   status 0 after having been ready (a one-shot that did its job). All services that can start do so in
//!   one batch of actions. (A service stopped by keelctl does not satisfy its dependents.)
//! - Readiness: without `keel.ready` a service is ready when it has exec'd its binary ([`Event::Execd`]) — a
//!   missing binary is not "ready"; with `fd:N`/`notify` at [`Event::Ready`]. A service that is not ready within
//!   `keel.timeout` is stopped and that counts as a failure (restart policy applies).
//! - A service waiting for a dependency that can never be satisfied (Failed, or Exited without being ready or
//!   with a failure) is not started: it becomes Failed with "dependency X failed" and one line. It is not
//!   started anyway: its author asked for the order, and running it without its dependency hides the cause.
//! - When a ready service exits and restarts, the services started after it keep running (as with systemd's
//!   `After=`/`Wants=`; no cascade stop). They are not restarted either.
//! - keelctl start resets the restart streak (backoff and start limit), not the `restarts` total.

use std::time::Instant;

use super::{ms_since, Command, Kind, Level, Phase, Ready, State, StopCause, Supervisor, UnitId, UnitState};

/// Can a service that lists `dep` in keel.after start now?
fn satisfied(dep: &UnitState) -> bool {
    match dep.state {
        State::Running => true,
        State::Exited => dep.rt.finished && dep.ready_at.is_some(),
        _ => false,
    }
}

/// Will `dep` never become satisfied without a keelctl start?
fn hopeless(dep: &UnitState) -> bool {
    match dep.state {
        State::Failed => true,
        State::Exited => !satisfied(dep),
        _ => false,
    }
}

impl Supervisor {
    pub(super) fn on_execd(&mut self, now: Instant, id: UnitId) {
        let Some(u) = self.units.get(id) else { return };
        if u.config.kind == Kind::Service && u.config.ready == Ready::Started && u.state == State::Starting {
            self.became_ready(now, id);
        }
    }

    pub(super) fn on_ready(&mut self, now: Instant, id: UnitId) {
        let Some(u) = self.units.get(id) else { return };
        if u.config.kind == Kind::Service && u.state == State::Starting {
            self.became_ready(now, id);
        }
    }

    fn became_ready(&mut self, now: Instant, id: UnitId) {
        let Some(u) = self.units.get_mut(id) else { return };
        u.state = State::Running;
        u.ready_at = Some(now);
        u.rt.timer = None; // the readiness deadline
        let announce = std::mem::take(&mut u.rt.announce);
        if announce && u.config.ready != Ready::Started {
            let msg = format!("{} ready after {} ms", u.config.name, ms_since(now, u.spawned_at));
            self.log(Some(id), Level::Info, msg);
        }
    }

    /// Fail every Waiting service whose dependency can never be satisfied (transitively), one line each.
    pub(super) fn fail_blocked(&mut self) {
        loop {
            let mut found = None;
            for (id, u) in self.units.iter().enumerate() {
                if u.config.kind != Kind::Service || u.state != State::Waiting {
                    continue;
                }
                if let Some(dep) = u.rt.deps.iter().filter_map(|&d| self.units.get(d)).find(|d| hopeless(d)) {
                    let what = if dep.state == State::Failed { "failed" } else { "exited" };
                    found = Some((id, format!("dependency {} {what}", dep.config.name)));
                    break;
                }
            }
            let Some((id, reason)) = found else { return };
            let Some(u) = self.units.get_mut(id) else { return };
            u.state = State::Failed;
            let line = format!("{}: not started: {reason}", u.config.name);
            u.reason = Some(reason);
            self.log(Some(id), Level::Error, line);
        }
    }

    /// Spawn every Waiting service whose dependencies are satisfied.
    pub(super) fn start_ready_services(&mut self, now: Instant) {
        let ready: Vec<UnitId> = (0..self.units.len())
            .filter(|&id| {
                self.units.get(id).is_some_and(|u| {
                    u.config.kind == Kind::Service
                        && u.state == State::Waiting
                        && !u.rt.permanent
                        && u.rt.deps.iter().all(|&d| self.units.get(d).is_some_and(satisfied))
                })
            })
            .collect();
        for id in ready {
            self.spawn(now, id, true);
        }
        // For `keelctl status`: what each still-waiting service waits for.
        for id in 0..self.units.len() {
            let Some(u) = self.units.get(id) else { continue };
            if u.config.kind != Kind::Service || u.state != State::Waiting || u.rt.permanent {
                continue;
            }
            let names: Vec<&str> =
                u.rt.deps
                    .iter()
                    .filter_map(|&d| self.units.get(d))
                    .filter(|d| !satisfied(d))
                    .map(|d| d.config.name.as_str())
                    .collect();
            let reason = format!("waiting for {}", names.join(", "));
            if u.reason.as_deref() != Some(reason.as_str()) {
                if let Some(u) = self.units.get_mut(id) {
                    u.reason = Some(reason);
                }
            }
        }
    }

    /// Once, when every service has settled: Running, Exited, Failed, restarting (Backoff: it was started and
    /// crashed; a crash loop must not hold back the summary for the ~80 s its start limit takes), or Waiting on
    /// a restarting dependency. Then the boot summary line.
    pub(super) fn check_boot_complete(&mut self, now: Instant) {
        if self.boot_reported {
            return;
        }
        let restarting = |id: &UnitId| self.units.get(*id).is_some_and(|d| d.state == State::Backoff);
        let blocked = |u: &UnitState| u.state == State::Waiting && u.rt.deps.iter().any(restarting);
        let services = || self.units.iter().filter(|u| u.config.kind == Kind::Service);
        if services()
            .any(|u| !matches!(u.state, State::Running | State::Exited | State::Failed | State::Backoff) && !blocked(u))
        {
            return;
        }
        self.boot_reported = true;
        let count = |st: State| services().filter(|u| u.state == st).count();
        let (running, exited, failed, backoff) =
            (count(State::Running), count(State::Exited), count(State::Failed), count(State::Backoff));
        let waiting = services().filter(|u| blocked(u)).count();
        let s = if running == 1 { "" } else { "s" };
        let mut extra = String::new();
        for (n, what) in [(exited, "exited"), (backoff, "restarting"), (waiting, "waiting")] {
            if n > 0 {
                extra.push_str(&format!(", {n} {what}"));
            }
        }
        let failed = if failed > 0 { format!(" ({failed} failed)") } else { String::new() };
        let ms = ms_since(now, self.boot_at);
        let level = if failed.is_empty() && backoff + waiting == 0 { Level::Info } else { Level::Warn };
        self.log(None, level, format!("boot complete: {running} service{s} running{extra}{failed} in {ms} ms"));
    }

    pub(super) fn on_control(&mut self, now: Instant, cmd: Command) {
        let (id, verb) = match cmd {
            Command::Start(id) => (id, "start"),
            Command::Stop(id) => (id, "stop"),
            Command::Restart(id) => (id, "restart"),
        };
        let name = self.name(id);
        if self.power.is_some() {
            self.log(Some(id), Level::Warn, format!("shutting down: keelctl {verb} {name} ignored"));
            return;
        }
        let Some(u) = self.units.get(id) else { return };
        let state = u.state;
        if u.config.kind != Kind::Service {
            // A running step may be stopped (a hung onboot step, say); it then ends as a failed step.
            let label = self.label(id);
            match (cmd, state) {
                (Command::Stop(_), State::Starting) => {
                    let grace = u.config.stop_timeout;
                    self.begin_stop(now, id, StopCause::Control { then_start: false }, grace);
                }
                (Command::Stop(_), _) => self.log(Some(id), Level::Info, format!("{label} is not running")),
                _ => {
                    let msg = format!("keelctl {verb} {label}: only services can be started or restarted");
                    self.log(Some(id), Level::Warn, msg);
                }
            }
            return;
        }
        match cmd {
            Command::Stop(_) => self.control_stop(now, id, false),
            Command::Restart(_) if matches!(state, State::Starting | State::Running | State::Stopping) => {
                self.control_stop(now, id, true)
            }
            Command::Start(_) | Command::Restart(_) => self.control_start(now, id),
        }
    }

    fn control_stop(&mut self, now: Instant, id: UnitId, then_start: bool) {
        let Some(u) = self.units.get_mut(id) else { return };
        let name = u.config.name.clone();
        match u.state {
            State::Starting | State::Running => {
                let grace = u.config.stop_timeout;
                self.begin_stop(now, id, StopCause::Control { then_start }, grace);
            }
            State::Stopping => {
                // Already stopping (keelctl, or not ready in time): just update what happens after.
                u.rt.stop = Some(StopCause::Control { then_start });
            }
            State::Waiting | State::Backoff => {
                u.state = State::Exited;
                u.reason = Some("stopped by keelctl".to_string());
                u.rt.timer = None;
                self.log(Some(id), Level::Info, format!("{name} stopped (was not running)"));
            }
            State::Exited | State::Failed => self.log(Some(id), Level::Info, format!("{name} is not running")),
        }
    }

    pub(super) fn control_start(&mut self, now: Instant, id: UnitId) {
        let Some(u) = self.units.get(id) else { return };
        let name = u.config.name.clone();
        match u.state {
            State::Starting | State::Running => {
                return self.log(Some(id), Level::Info, format!("{name} is already running"));
            }
            State::Stopping => {
                if let Some(u) = self.units.get_mut(id) {
                    u.rt.stop = Some(StopCause::Control { then_start: true });
                }
                return self.log(Some(id), Level::Info, format!("{name} is stopping; it will start again"));
            }
            _ => {}
        }
        match self.phase {
            Phase::Services => {}
            Phase::Emergency => {
                let msg = format!("keelctl start {name}: the boot stopped (emergency); services are not started");
                return self.log(Some(id), Level::Warn, msg);
            }
            _ => return self.log(Some(id), Level::Warn, format!("keelctl start {name}: services start after onboot")),
        }
        if u.rt.permanent {
            let why = u.reason.clone().unwrap_or_default();
            return self.log(Some(id), Level::Error, format!("{name} cannot start: {why}"));
        }
        if let Some(dep) = u.rt.deps.iter().filter_map(|&d| self.units.get(d)).find(|d| hopeless(d)) {
            let msg = format!(
                "{name} cannot start: dependency {0} is not running (keelctl start {0} first)",
                dep.config.name
            );
            return self.log(Some(id), Level::Error, msg);
        }
        let waiting: Vec<String> =
            u.rt.deps
                .iter()
                .filter_map(|&d| self.units.get(d))
                .filter(|d| !satisfied(d))
                .map(|d| d.config.name.clone())
                .collect();
        let Some(u) = self.units.get_mut(id) else { return };
        u.rt.streak = 0;
        u.rt.streak_since = None;
        u.rt.timer = None;
        if waiting.is_empty() {
            self.spawn(now, id, true);
        } else {
            let verb = if waiting.len() == 1 { "is" } else { "are" };
            let list = waiting.join(", ");
            u.state = State::Waiting;
            u.reason = Some(format!("waiting for {list}"));
            u.rt.announce = true;
            self.log(Some(id), Level::Info, format!("{name} will start when {list} {verb} ready"));
        }
    }
}
