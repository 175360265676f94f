//! Shutdown: onshutdown steps, services in reverse dependency order, kill-all, then Power.
//!
//! Order (LinuxKit runs onshutdown while services still run, so a step can still talk to them):
//! 1. If an onboot step is running, it is stopped (TERM, KILL after [`STEP_KILL_AFTER`]); remaining onboot
//!    steps and unstarted services are skipped.
//! 2. onshutdown steps one at a time, each with its `keel.timeout` (as onboot; `keel.required` has no effect).
//! 3. Services: those in Backoff/Waiting just become Exited; a running service is sent SIGTERM once no running
//!    service lists it in `keel.after` (so independent ones stop concurrently), SIGKILL after its
//!    `keel.stop-timeout`; nothing restarts.
//! 4. kill(-1, SIGTERM); after [`KILLALL_TERM_GRACE`] kill(-1, SIGKILL); after [`KILLALL_KILL_GRACE`] — or as
//!    soon as the loop reports no process left — [`Action::Power`].
//!
//! Every wait has a timer (step deadline, stop timeout, [`LOST_AFTER`] after SIGKILL, kill-all timers), so the
//! sequence ends even if no exit is ever reported. Over all of it there is one deadline (the shutdown timeout,
//! [`super::DEFAULT_SHUTDOWN_TIMEOUT`] unless `keel.shutdown_timeout=SECONDS` is on the kernel command line): an
//! onshutdown step's `keel.timeout` is capped by what remains of it, and when it expires, whatever phase the
//! shutdown is in, one line is logged and it goes straight to kill(-1, SIGKILL) and then [`Action::Power`].
//! When everything ends sooner, so does the shutdown: the deadline is only an upper bound. A second shutdown request is answered with one line and
//! otherwise ignored (the first action wins); later ones are ignored silently.

use std::time::Instant;

use super::{
    power_name, Action, Kind, Level, Phase, PowerAction, State, StopCause, Supervisor, UnitId, KILLALL_KILL_GRACE,
    KILLALL_TERM_GRACE,
};

impl Supervisor {
    pub(super) fn on_shutdown(&mut self, now: Instant, action: PowerAction) {
        if let Some(first) = self.power {
            if !std::mem::replace(&mut self.told_shutdown_again, true) {
                let msg =
                    format!("already shutting down ({}); {} request ignored", power_name(first), power_name(action));
                self.log(None, Level::Warn, msg);
            }
            return;
        }
        self.power = Some(action);
        self.shutdown_at = Some(now);
        let deadline = super::later(now, self.shutdown_timeout);
        self.deadline = Some(deadline);
        self.out.push(Action::ShutdownDeadlineTimer { at: deadline });
        self.log(None, Level::Info, format!("shutting down ({})", power_name(action)));
        let phase = std::mem::replace(&mut self.phase, Phase::Onshutdown);
        // Onboot held for coldplug: no step runs, so straight to onshutdown (coldplug itself dies at kill-all).
        self.coldplug_wait = false;
        // Whatever was not started yet never will be; nothing restarts from here on.
        for u in self.units.iter_mut().filter(|u| u.config.kind != Kind::Onshutdown) {
            match u.state {
                State::Waiting => u.reason = Some("not started: shutdown".to_string()),
                State::Backoff => {
                    u.state = State::Exited;
                    u.rt.timer = None;
                    u.reason = Some("not restarted: shutdown".to_string());
                }
                _ => {}
            }
        }
        if phase == Phase::Onboot {
            let running = self.onboot_cursor.filter(|&id| {
                self.kind(id) == Some(Kind::Onboot)
                    && matches!(self.state(id), Some(State::Starting | State::Running | State::Stopping))
            });
            if let Some(id) = running {
                // Its end (exit or timers) runs the onshutdown steps: see step_ended.
                return self.stop_running_step(now, id);
            }
        }
        self.run_next_step(now, Kind::Onshutdown);
    }

    /// After onshutdown: services stop in reverse dependency order.
    pub(super) fn begin_stopping(&mut self, now: Instant) {
        self.phase = Phase::Stopping;
        for u in self.units.iter_mut().filter(|u| u.config.kind == Kind::Service) {
            if matches!(u.state, State::Waiting | State::Backoff) {
                u.state = State::Exited;
                u.rt.timer = None;
                if u.reason.is_none() {
                    u.reason = Some("not restarted: shutdown".to_string());
                }
            }
        }
        self.stop_next_services(now);
    }

    fn alive(&self, id: UnitId) -> bool {
        self.units.get(id).is_some_and(|u| {
            u.config.kind == Kind::Service && matches!(u.state, State::Starting | State::Running | State::Stopping)
        })
    }

    /// TERM every running service no running service depends on; when none is left, kill-all.
    pub(super) fn stop_next_services(&mut self, now: Instant) {
        let alive: Vec<UnitId> = (0..self.units.len()).filter(|&id| self.alive(id)).collect();
        if alive.is_empty() {
            return self.begin_killall(now);
        }
        let to_stop: Vec<UnitId> = alive
            .iter()
            .copied()
            .filter(|&id| self.state(id) != Some(State::Stopping))
            .filter(|&id| {
                !alive
                    .iter()
                    .any(|&other| other != id && self.units.get(other).is_some_and(|o| o.rt.deps.contains(&id)))
            })
            .collect();
        for id in to_stop {
            let grace = self.units.get(id).map(|u| u.config.stop_timeout).unwrap_or_default();
            self.begin_stop(now, id, StopCause::Shutdown, grace);
        }
    }

    fn begin_killall(&mut self, now: Instant) {
        self.phase = Phase::KillTerm;
        self.log(None, Level::Info, "services stopped; sending SIGTERM to all remaining processes".to_string());
        self.out.push(Action::KillAll { signal: libc::SIGTERM });
        self.arm_killall(now, KILLALL_TERM_GRACE);
    }

    fn arm_killall(&mut self, now: Instant, after: std::time::Duration) {
        self.gen += 1;
        self.killall_gen = self.gen;
        self.out.push(Action::KillAllTimer { gen: self.gen, at: super::later(now, after) });
    }

    pub(super) fn on_killall_timer(&mut self, now: Instant, gen: u64) {
        if gen != self.killall_gen {
            return;
        }
        match self.phase {
            Phase::KillTerm => {
                self.phase = Phase::KillKill;
                self.log(None, Level::Warn, "processes left after SIGTERM: sending SIGKILL to all".to_string());
                self.out.push(Action::KillAll { signal: libc::SIGKILL });
                self.arm_killall(now, KILLALL_KILL_GRACE);
            }
            Phase::KillKill => self.power_now(now),
            _ => {}
        }
    }

    /// The shutdown deadline expired: whatever is still running is killed now, then Power.
    pub(super) fn deadline_reached(&mut self, now: Instant) {
        self.deadline = None;
        if !matches!(self.phase, Phase::Onshutdown | Phase::Stopping | Phase::KillTerm) {
            return;
        }
        let mut running = Vec::new();
        for u in self.units.iter_mut() {
            match u.state {
                State::Starting | State::Running | State::Stopping => {
                    running.push(u.config.name.clone());
                    u.state = State::Failed;
                    u.reason = Some("killed: shutdown deadline".to_string());
                    u.rt.timer = None;
                    u.rt.stop = None;
                    u.pid = None;
                    u.exited_at = Some(now);
                }
                State::Waiting if u.config.kind == Kind::Onshutdown => {
                    u.reason = Some("not run: shutdown deadline".to_string());
                }
                _ => {}
            }
        }
        let still =
            if running.is_empty() { String::new() } else { format!(" (still running: {})", running.join(", ")) };
        let limit = super::human(self.shutdown_timeout);
        self.log(None, Level::Warn, format!("shutdown deadline ({limit}) reached: killing everything{still}"));
        self.phase = Phase::KillKill;
        self.out.push(Action::KillAll { signal: libc::SIGKILL });
        self.arm_killall(now, KILLALL_KILL_GRACE);
    }

    /// Nothing left to kill: no need to wait for the timers.
    pub(super) fn on_no_processes_left(&mut self, now: Instant) {
        if matches!(self.phase, Phase::KillTerm | Phase::KillKill) {
            self.power_now(now);
        }
    }

    fn power_now(&mut self, now: Instant) {
        let Some(action) = self.power else { return };
        self.phase = Phase::Done;
        let ms = super::ms_since(now, self.shutdown_at);
        self.log(None, Level::Info, format!("shutdown done in {ms} ms: {}", power_name(action)));
        self.out.push(Action::Power(action));
    }
}
