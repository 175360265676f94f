//! Boot: the Boot event (broken bundles, after-graph problems), onboot steps one at a time, and the step logic
//! shared with onshutdown (run deadline, TERM, KILL, exit line, `keel.required`).
//!
//! A step ends with its exit, a spawn failure, or — if it neither exits after SIGTERM at `keel.timeout` nor after
//! SIGKILL [`STEP_KILL_AFTER`] later — [`LOST_AFTER`] after the SIGKILL; so a stuck step never hangs the boot.
//! A failed step (non-zero exit, signal, spawn failure, timeout) is logged and the boot goes on, unless the step
//! has `keel.required=true`: then [`Action::Emergency`] and the boot stops there (services are not started).
//!
//! Coldplug: while the coldplug child runs, the first onboot step waits for [`super::Event::ColdplugDone`], at
//! most [`COLDPLUG_WAIT`] (timer armed; then one WARN line and onboot goes on). No onboot steps: no wait at all,
//! services start at Boot in parallel with coldplug. A shutdown during the wait skips the onboot steps.

use std::time::Instant;

use super::{
    human, ms_since, Action, Exit, Kind, Level, Outcome, Phase, State, StopCause, Supervisor, UnitId, COLDPLUG_WAIT,
    LOST_AFTER, STEP_KILL_AFTER,
};

impl Supervisor {
    pub(super) fn on_boot(&mut self, now: Instant) {
        if self.phase != Phase::Init {
            self.log(None, Level::Warn, "supervisor: second Boot event ignored".to_string());
            return;
        }
        self.boot_at = Some(now);
        self.phase = Phase::Onboot;
        // Broken bundles: one line each, never started.
        for id in 0..self.units.len() {
            let Some(u) = self.units.get_mut(id) else { continue };
            if let Some(msg) = u.config.broken.clone() {
                u.state = State::Failed;
                u.reason = Some(format!("broken bundle: {msg}"));
                u.rt.permanent = true;
                // "web: broken bundle /containers/services/web: config.json line 4 column 3: expected ..."
                let at = u.config.bundle.display().to_string();
                let at = if at.is_empty() { ":".to_string() } else { format!(" {at}:") };
                let line = format!("{}: broken bundle{at} {msg}", u.config.name);
                self.log(Some(id), Level::Error, line);
            }
        }
        // keel.after problems: unknown names and cycles, one line each, those services Failed.
        for problem in super::graph::problems(&self.units) {
            for &id in &problem.units {
                if let Some(u) = self.units.get_mut(id) {
                    if u.state != State::Failed {
                        u.state = State::Failed;
                        u.reason = Some(problem.reason.clone());
                        u.rt.permanent = true;
                    }
                }
            }
            let unit = if problem.units.len() == 1 { problem.units.first().copied() } else { None };
            self.log(unit, Level::Error, problem.line);
        }
        // Services that can never start because of the above: one line each, now rather than later.
        self.fail_blocked();
        let any_onboot = self.units.iter().any(|u| u.config.kind == Kind::Onboot);
        if any_onboot && self.coldplug_running {
            self.coldplug_wait = true;
            self.out.push(Action::ColdplugTimer { at: super::later(now, COLDPLUG_WAIT) });
            return;
        }
        self.run_next_step(now, Kind::Onboot);
    }

    /// The coldplug child ended: release onboot if it was waiting.
    pub(super) fn on_coldplug_done(&mut self, now: Instant) {
        self.coldplug_running = false;
        if std::mem::replace(&mut self.coldplug_wait, false) && self.phase == Phase::Onboot {
            self.run_next_step(now, Kind::Onboot);
        }
    }

    /// [`COLDPLUG_WAIT`] passed: go on without coldplug (it keeps running; its lines still show).
    pub(super) fn on_coldplug_timer(&mut self, now: Instant) {
        if !std::mem::replace(&mut self.coldplug_wait, false) || self.phase != Phase::Onboot {
            return; // stale: coldplug ended first, or a shutdown came
        }
        let msg = format!("coldplug still running after {}; starting onboot steps anyway", human(COLDPLUG_WAIT));
        self.log(None, Level::Warn, msg);
        self.run_next_step(now, Kind::Onboot);
    }

    /// Start the next onboot/onshutdown step after the cursor, skipping broken ones. With none left: onboot
    /// moves to services, onshutdown to stopping services.
    pub(super) fn run_next_step(&mut self, now: Instant, kind: Kind) {
        let cursor = if kind == Kind::Onboot { self.onboot_cursor } else { self.onshutdown_cursor };
        let start = cursor.map_or(0, |c| c + 1);
        let next = (start..self.units.len()).find(|&id| self.kind(id) == Some(kind));
        let Some(id) = next else {
            match kind {
                Kind::Onboot => self.onboot_done(now),
                _ => self.begin_stopping(now),
            }
            return;
        };
        if kind == Kind::Onboot {
            self.onboot_cursor = Some(id);
        } else {
            self.onshutdown_cursor = Some(id);
        }
        let Some(u) = self.units.get(id) else { return };
        match u.state {
            State::Waiting => self.spawn(now, id, false),
            // Broken (already reported at Boot): skip it, unless the boot cannot go on without it.
            _ => {
                if kind == Kind::Onboot && u.config.required && self.phase == Phase::Onboot {
                    let reason = format!("required onboot step {} is broken", u.config.name);
                    self.emergency(reason);
                } else {
                    self.run_next_step(now, kind);
                }
            }
        }
    }

    /// A step's process ended: log it, then the next step (or emergency, or on to onshutdown).
    pub(super) fn step_ended(&mut self, now: Instant, id: UnitId, outcome: Outcome) {
        let label = self.label(id);
        let cannot = match &outcome {
            Outcome::SpawnFailed { error, .. } => self.cannot_start_line(id, error, super::Fate::Silent),
            _ => String::new(),
        };
        let Some(u) = self.units.get_mut(id) else { return };
        let took = super::human(now.saturating_duration_since(u.spawned_at.unwrap_or(now)));
        let stop = u.rt.stop.take();
        let signal = super::signal_name(u.rt.stop_signal);
        let oom = u.rt.oom.take();
        let (ok, level, line) = match (&outcome, stop) {
            (Outcome::Exit(Exit::Code(0)), None) => (true, Level::Info, format!("{label}: exited 0 ({took})")),
            (Outcome::Exit(exit), None | Some(StopCause::Timeout)) => {
                (false, Level::Error, format!("{label}: {} ({took})", super::describe(*exit, oom)))
            }
            (Outcome::Exit(_), Some(StopCause::Shutdown)) => {
                (false, Level::Info, format!("{label}: stopped ({signal}) for shutdown after {took}"))
            }
            (Outcome::Exit(_), Some(_)) => (false, Level::Warn, format!("{label}: stopped by keelctl ({signal})")),
            (Outcome::SpawnFailed { .. }, _) => (false, Level::Error, cannot),
            (Outcome::Lost, _) => (
                false,
                Level::Error,
                format!("{label}: still running {} after SIGKILL; going on without it", human(LOST_AFTER)),
            ),
        };
        u.state = if ok { State::Exited } else { State::Failed };
        u.reason = (!ok).then(|| match &outcome {
            Outcome::Exit(exit) if stop == Some(StopCause::Timeout) => {
                format!("timed out after {} ({})", human(u.config.timeout), super::describe_exit(*exit))
            }
            Outcome::Exit(exit) => super::describe(*exit, oom),
            Outcome::SpawnFailed { error, .. } => error.clone(),
            Outcome::Lost => "did not exit after SIGKILL".to_string(),
        });
        let required = u.config.kind == Kind::Onboot && u.config.required;
        let kind = u.config.kind;
        let reason = u.reason.clone().unwrap_or_default();
        self.log(Some(id), level, line);
        match (self.phase, kind) {
            (Phase::Onboot, Kind::Onboot) if !ok && required => {
                let name = self.name(id);
                self.emergency(format!("required onboot step {name} failed: {reason}"));
            }
            (Phase::Onboot, Kind::Onboot) => self.run_next_step(now, Kind::Onboot),
            // Shutdown came during onboot: that step is over, now the onshutdown steps.
            (Phase::Onshutdown, Kind::Onboot) => self.run_next_step(now, Kind::Onshutdown),
            (Phase::Onshutdown, Kind::Onshutdown) => self.run_next_step(now, Kind::Onshutdown),
            _ => {} // a step stopped by keelctl outside its phase: nothing follows from it
        }
    }

    /// The last onboot step is done: log a one-line summary and let services start.
    fn onboot_done(&mut self, now: Instant) {
        self.phase = Phase::Services;
        let steps: Vec<_> = self.units.iter().filter(|u| u.config.kind == Kind::Onboot).collect();
        if !steps.is_empty() {
            let failed = steps.iter().filter(|u| u.state == State::Failed).count();
            let n = steps.len();
            let s = if n == 1 { "" } else { "s" };
            let failed = if failed > 0 { format!(" ({failed} failed)") } else { String::new() };
            let ms = ms_since(now, self.boot_at);
            self.log(None, Level::Info, format!("onboot done: {n} step{s}{failed} in {ms} ms"));
        }
    }

    /// A required onboot step failed: stop the boot, leave services unstarted, start the emergency shell.
    fn emergency(&mut self, reason: String) {
        self.phase = Phase::Emergency;
        for u in self.units.iter_mut().filter(|u| u.config.kind != Kind::Onshutdown && u.state == State::Waiting) {
            u.reason = Some("not started: boot stopped (emergency)".to_string());
        }
        self.log(None, Level::Error, format!("boot stopped: {reason}; starting the emergency shell"));
        self.out.push(Action::Emergency { reason });
    }

    /// Used by shutdown: stop the running onboot step (TERM, KILL after [`STEP_KILL_AFTER`]).
    pub(super) fn stop_running_step(&mut self, now: Instant, id: UnitId) {
        // Already stopping (timed out)? Then its KILL/lost timers end it.
        if let Some(State::Starting | State::Running) = self.state(id) {
            self.begin_stop(now, id, StopCause::Shutdown, STEP_KILL_AFTER);
        }
    }
}
