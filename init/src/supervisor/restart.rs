//! What happens when a service's process ends: stopped on request, or the restart policy with exponential
//! backoff and a start limit.
//!
//! - `keel.restart=no`: never restarted. `on-failure` (default): restarted after a non-zero exit, a signal
//!   or a readiness timeout. `always`: restarted after any exit.
//! - A start that fails with an errno that can heal (EAGAIN: no pid left or `pids.max` reached; ENOMEM; EINTR...:
//!   [`super::transient_errno`], classified by the loop) is retried with the backoff below, whatever the policy
//!   (the service never ran), and never trips the start limit: the machine's pid table or memory may take minutes
//!   to recover from a storm. One WARN line each: "cannot start: CAUSE [bundle]; transient failure: restart N in T".
//! - A setup failure before exec that cannot heal (missing binary, failing mount, bad cwd, bad config...:
//!   [`Outcome::SpawnFailed`] not transient) is never restarted, whatever the policy: it would fail the same way
//!   each time. The service is Failed with the cause as its reason and one ERROR line naming the unit, the cause,
//!   the bundle and "permanent failure"; `keelctl start` retries it.
//! - An OOM kill ([`super::Event::OomKilled`] before the exit) is named in the exit line and counts as a failure.
//! - Backoff: [`BACKOFF_START`] doubling per restart in a row, capped at [`BACKOFF_CAP`]; a run of at least
//!   [`BACKOFF_RESET`] resets it.
//! - Start limit: a failure after [`START_LIMIT`] restarts in a row (no run reaching [`BACKOFF_RESET`]) makes the
//!   service Failed with one line saying why; `keelctl start` retries it.
//! - During shutdown nothing restarts. Memory per service is a counter and two instants: no history.

use std::time::{Duration, Instant};

use super::{
    describe, human, signal_name, Exit, Fate, Level, Outcome, Restart, State, StopCause, Supervisor, UnitId,
    BACKOFF_CAP, BACKOFF_RESET, BACKOFF_START, START_LIMIT,
};

/// Delay before restart number `n` in a row (1-based): 100 ms, 200 ms, 400 ms, ... 30 s.
pub fn backoff(n: u32) -> Duration {
    let shift = n.saturating_sub(1).min(20);
    BACKOFF_START.saturating_mul(1u32 << shift).min(BACKOFF_CAP)
}

impl Supervisor {
    pub(super) fn service_ended(&mut self, now: Instant, id: UnitId, outcome: Outcome) {
        let shutting_down = self.power.is_some();
        let Some(u) = self.units.get_mut(id) else { return };
        let name = u.config.name.clone();
        let stop = u.rt.stop.take();
        let ran = now.saturating_duration_since(u.spawned_at.unwrap_or(now));
        let oom = u.rt.oom.take();
        let what = match &outcome {
            Outcome::Exit(exit) => format!("{name} {}", describe(*exit, oom)),
            Outcome::SpawnFailed { error, .. } => format!("{name}: cannot start: {error}"),
            Outcome::Lost => {
                format!("{name}: still running {} after SIGKILL; giving up on it", human(super::LOST_AFTER))
            }
        };
        let transient = matches!(outcome, Outcome::SpawnFailed { transient: true, .. });
        if let (Outcome::SpawnFailed { error, .. }, false) = (&outcome, transient && !shutting_down) {
            u.state = State::Failed;
            u.reason = Some(error.clone());
            u.rt.streak = 0;
            u.rt.streak_since = None;
            let error = error.clone();
            let fate = if shutting_down { Fate::Silent } else { Fate::Permanent };
            let line = self.cannot_start_line(id, &error, fate);
            return self.log(Some(id), Level::Error, line);
        }
        if outcome == Outcome::Lost {
            u.state = State::Failed;
            u.reason = Some("did not exit after SIGKILL".to_string());
            return self.log(Some(id), Level::Error, what);
        }
        // Stopped on request (keelctl or shutdown): no restart.
        if let Some(StopCause::Control { .. } | StopCause::Shutdown) = stop {
            let took = human(now.saturating_duration_since(u.rt.stop_at.unwrap_or(now)));
            let signal = signal_name(u.rt.stop_signal);
            u.state = State::Exited;
            u.reason = Some(if shutting_down { "stopped for shutdown" } else { "stopped by keelctl" }.to_string());
            self.log(Some(id), Level::Info, format!("{name} stopped ({signal}) in {took}"));
            if stop == Some(StopCause::Control { then_start: true }) && !shutting_down {
                self.control_start(now, id);
            }
            return;
        }
        if shutting_down {
            u.state = State::Exited;
            u.reason = Some("exited during shutdown".to_string());
            let level = if outcome == Outcome::Exit(Exit::Code(0)) { Level::Info } else { Level::Warn };
            return self.log(Some(id), level, format!("{what} (shutting down: not restarted)"));
        }
        let failed = stop == Some(StopCause::NotReady) || outcome != Outcome::Exit(Exit::Code(0));
        let restart = match u.config.restart {
            _ if transient => true, // it never ran: the start is retried whatever the policy
            Restart::No => false,
            Restart::OnFailure => failed,
            Restart::Always => true,
        };
        if !restart {
            u.state = State::Exited;
            let policy = match u.config.restart {
                Restart::No => "no",
                Restart::OnFailure => "on-failure",
                Restart::Always => "always",
            };
            u.reason = failed.then(|| what.clone());
            u.rt.finished = !failed;
            let level = if failed { Level::Warn } else { Level::Info };
            return self.log(Some(id), level, format!("{what}; not restarted (keel.restart={policy})"));
        }
        if ran >= BACKOFF_RESET {
            u.rt.streak = 0;
            u.rt.streak_since = None;
        }
        if u.rt.streak >= START_LIMIT && !transient {
            let since = u.rt.streak_since.unwrap_or(now);
            let span = human(now.saturating_duration_since(since));
            let exits = u.rt.streak + 1;
            let last = match &outcome {
                Outcome::Exit(exit) => describe(*exit, oom),
                _ => "not ready".to_string(),
            };
            let reason = format!("{exits} exits in {span}, none after running {}, last {last}", human(BACKOFF_RESET));
            u.state = State::Failed;
            u.reason = Some(reason.clone());
            u.rt.streak = 0;
            u.rt.streak_since = None;
            let line = format!("{name}: failed: {reason}; giving up (keelctl start {name} to retry)");
            return self.log(Some(id), Level::Error, line);
        }
        if u.rt.streak == 0 {
            u.rt.streak_since = u.spawned_at;
        }
        u.rt.streak += 1;
        u.restarts = u.restarts.saturating_add(1);
        let delay = backoff(u.rt.streak);
        let n = u.rt.streak;
        u.state = State::Backoff;
        let line = if let Outcome::SpawnFailed { error, .. } = &outcome {
            let error = error.clone();
            u.reason = Some(format!("cannot start: {error} (transient; retrying)"));
            let line = self.cannot_start_line(id, &error, Fate::Silent);
            format!("{line}; transient failure: restart {n} in {}", human(delay))
        } else {
            format!("{what}; restart {n} in {}", human(delay))
        };
        self.log(Some(id), Level::Warn, line);
        self.arm(id, super::TimerKind::Backoff, now, delay);
    }
}
