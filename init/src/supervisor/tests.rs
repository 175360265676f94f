//! Supervisor unit tests: drive `next` with synthetic events and a fake clock; no processes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::restart::backoff;
use super::*;

const S: Duration = Duration::from_secs(1);
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cfg(kind: Kind, name: &str) -> UnitConfig {
    UnitConfig {
        name: name.to_string(),
        kind,
        bundle: format!("/containers/x/{name}").into(),
        restart: if kind == Kind::Service { Restart::OnFailure } else { Restart::No },
        after: Vec::new(),
        ready: Ready::Started,
        stop_timeout: 10 * S,
        timeout: 300 * S,
        required: false,
        broken: None,
    }
}
fn onboot(name: &str) -> UnitConfig {
    cfg(Kind::Onboot, name)
}
fn onshutdown(name: &str) -> UnitConfig {
    cfg(Kind::Onshutdown, name)
}
fn svc(name: &str) -> UnitConfig {
    cfg(Kind::Service, name)
}
fn after(mut c: UnitConfig, deps: &[&str]) -> UnitConfig {
    c.after = deps.iter().map(|d| d.to_string()).collect();
    c
}

/// A fake event loop: a clock, the armed timers, every log line.
struct H {
    s: Supervisor,
    t0: Instant,
    now: Instant,
    timers: BTreeMap<UnitId, (u64, Instant)>,
    killall: Option<(u64, Instant)>,
    deadline: Option<Instant>,
    /// The armed coldplug wait timer.
    coldplug: Option<Instant>,
    logs: Vec<String>,
    /// Actions of the last `ev`/`advance` call.
    last: Vec<Action>,
    pid: i32,
}

impl H {
    fn new(units: Vec<UnitConfig>) -> H {
        let t0 = Instant::now();
        H {
            s: Supervisor::new(units),
            t0,
            now: t0,
            timers: BTreeMap::new(),
            killall: None,
            deadline: None,
            coldplug: None,
            logs: Vec::new(),
            last: Vec::new(),
            pid: 100,
        }
    }
    fn id(&self, name: &str) -> UnitId {
        self.s.units.iter().position(|u| u.config.name == name).unwrap_or_else(|| panic!("no unit {name}"))
    }
    fn st(&self, name: &str) -> State {
        self.s.units[self.id(name)].state
    }
    fn feed(&mut self, e: Event) -> Vec<Action> {
        let acts = self.s.next(self.now, e);
        for a in &acts {
            match a {
                Action::Timer { unit, gen, at } => {
                    self.timers.insert(*unit, (*gen, *at));
                }
                Action::KillAllTimer { gen, at } => self.killall = Some((*gen, *at)),
                Action::ShutdownDeadlineTimer { at } => self.deadline = Some(*at),
                Action::ColdplugTimer { at } => self.coldplug = Some(*at),
                Action::Log { msg, .. } => self.logs.push(msg.clone()),
                _ => {}
            }
        }
        self.check_no_hang();
        acts
    }
    fn ev(&mut self, e: Event) -> Vec<Action> {
        let acts = self.feed(e);
        self.last = acts.clone();
        acts
    }
    /// Every waiting state has a timer.
    fn check_no_hang(&self) {
        for (id, u) in self.s.units.iter().enumerate() {
            if matches!(u.state, State::Starting | State::Stopping | State::Backoff) {
                assert!(u.rt.timer.is_some(), "{} is {:?} without a timer", u.config.name, u.state);
                assert_eq!(
                    self.timers.get(&id).map(|t| t.0),
                    Some(u.rt.timer_gen),
                    "{}: timer not armed",
                    u.config.name
                );
            }
        }
        if matches!(self.s.phase, Phase::KillTerm | Phase::KillKill) {
            assert_eq!(self.killall.map(|k| k.0), Some(self.s.killall_gen));
        }
        if self.s.waiting_for_coldplug() {
            assert!(self.coldplug.is_some(), "onboot waits for coldplug without a timer");
        }
    }
    /// Move the clock on, firing due timers in time order (as the loop would).
    fn advance(&mut self, d: Duration) -> Vec<Action> {
        let end = self.now + d;
        let mut all = Vec::new();
        loop {
            let unit_due = self.timers.iter().filter(|(_, (_, at))| *at <= end).min_by_key(|(_, (_, at))| *at);
            let unit_due = unit_due.map(|(u, (g, at))| (*at, Some(*u), *g));
            let kill_due = self.killall.filter(|(_, at)| *at <= end).map(|(g, at)| (at, None, g));
            let next = match (unit_due, kill_due) {
                (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
                (a, b) => a.or(b),
            };
            // The deadline timer was armed first: at the same instant it fires first (as in the loop's heap).
            if let Some(at) = self.deadline.filter(|at| *at <= end && next.is_none_or(|n| *at <= n.0)) {
                self.now = at.max(self.now);
                self.deadline = None;
                all.extend(self.feed(Event::ShutdownDeadline));
                continue;
            }
            if let Some(at) = self.coldplug.filter(|at| *at <= end && next.is_none_or(|n| *at <= n.0)) {
                self.now = at.max(self.now);
                self.coldplug = None;
                all.extend(self.feed(Event::ColdplugTimer));
                continue;
            }
            let Some((at, unit, gen)) = next else { break };
            self.now = at.max(self.now);
            let acts = match unit {
                Some(u) => {
                    self.timers.remove(&u);
                    self.feed(Event::Timer { unit: u, gen })
                }
                None => {
                    self.killall = None;
                    self.feed(Event::KillAllTimer { gen })
                }
            };
            all.extend(acts);
        }
        self.now = end;
        self.last = all.clone();
        all
    }
    fn boot(&mut self) -> Vec<Action> {
        self.ev(Event::Boot)
    }
    /// The loop spawned it: Spawned + Execd.
    fn run(&mut self, name: &str) -> Vec<Action> {
        let unit = self.id(name);
        self.pid += 1;
        let mut a = self.ev(Event::Spawned { unit, pid: self.pid });
        a.extend(self.ev(Event::Execd { unit }));
        self.last = a.clone();
        a
    }
    fn exit(&mut self, name: &str, exit: Exit) -> Vec<Action> {
        let unit = self.id(name);
        self.ev(Event::Exited { unit, exit })
    }
    fn ready(&mut self, name: &str) -> Vec<Action> {
        let unit = self.id(name);
        self.ev(Event::Ready { unit })
    }
    fn spawns(&self, acts: &[Action]) -> Vec<String> {
        acts.iter()
            .filter_map(|a| match a {
                Action::Spawn(u) => Some(self.s.units[*u].config.name.clone()),
                _ => None,
            })
            .collect()
    }
    fn signals(&self, acts: &[Action]) -> Vec<(String, i32)> {
        acts.iter()
            .filter_map(|a| match a {
                Action::Signal { unit, signal } => Some((self.s.units[*unit].config.name.clone(), *signal)),
                _ => None,
            })
            .collect()
    }
    /// Names spawned by what `f` feeds.
    fn sp(&mut self, f: impl FnOnce(&mut H) -> Vec<Action>) -> Vec<String> {
        let acts = f(self);
        self.spawns(&acts)
    }
    /// Signals sent in response to what `f` feeds.
    fn sg(&mut self, f: impl FnOnce(&mut H) -> Vec<Action>) -> Vec<(String, i32)> {
        let acts = f(self);
        self.signals(&acts)
    }
    fn logged(&self, needle: &str) -> bool {
        self.logs.iter().any(|l| l.contains(needle))
    }
    fn count_logged(&self, needle: &str) -> usize {
        self.logs.iter().filter(|l| l.contains(needle)).count()
    }
    fn power(&self) -> Option<PowerAction> {
        self.last.iter().find_map(|a| match a {
            Action::Power(p) => Some(*p),
            _ => None,
        })
    }
    fn elapsed_ms(&self) -> u128 {
        (self.now - self.t0).as_millis()
    }
}

const OK: Exit = Exit::Code(0);
const FAIL: Exit = Exit::Code(1);
const SEGV: Exit = Exit::Signal(libc::SIGSEGV);

// ---------------------------------------------------------------- onboot

#[test]
fn onboot_steps_run_one_at_a_time_in_order_then_services() {
    let mut h = H::new(vec![onboot("a"), onboot("b"), svc("web"), onshutdown("z")]);
    assert_eq!(h.sp(|h| h.boot()), ["a"]);
    h.run("a");
    h.now += ms(123);
    assert_eq!(h.sp(|h| h.exit("a", OK)), ["b"]);
    assert!(h.logged("onboot a: exited 0 (123 ms)"), "{:?}", h.logs);
    h.run("b");
    let acts = h.exit("b", Exit::Code(3));
    assert!(h.logged("onboot b: exited 3"), "{:?}", h.logs);
    assert_eq!(h.spawns(&acts), ["web"]);
    assert!(h.logged("onboot done: 2 steps (1 failed) in 123 ms"), "{:?}", h.logs);
    assert_eq!(h.st("b"), State::Failed);
    assert_eq!(h.st("a"), State::Exited);
    assert_eq!(h.st("z"), State::Waiting, "onshutdown steps wait for shutdown");
    h.now += ms(7);
    h.run("web");
    assert!(h.logged("starting web (pid 103)"), "{:?}", h.logs);
    assert!(h.logged("boot complete: 1 service running in 130 ms"), "{:?}", h.logs);
    assert_eq!(h.st("web"), State::Running);
    assert!(h.s.boot_complete());
}

#[test]
fn onboot_signal_exit_is_named() {
    let mut h = H::new(vec![onboot("a"), onboot("b")]);
    h.boot();
    h.run("a");
    assert_eq!(h.sp(|h| h.exit("a", SEGV)), ["b"]);
    assert!(h.logged("onboot a: killed by SIGSEGV"), "{:?}", h.logs);
}

#[test]
fn onboot_timeout_term_then_kill_then_next_step() -> Result<(), Box<dyn std::error::Error>> {
    let mut a = onboot("a");
    a.timeout = 2 * S;
    let mut h = H::new(vec![a, onboot("b")]);
    h.boot();
    h.run("a");
    assert!(h.advance(ms(1999)).is_empty());
    let acts = h.advance(ms(1));
    assert_eq!(h.signals(&acts), [("a".to_string(), libc::SIGTERM)]);
    assert!(h.logged("onboot a: timed out after 2 s"), "{:?}", h.logs);
    let acts = h.advance(5 * S);
    assert_eq!(h.signals(&acts), [("a".to_string(), libc::SIGKILL)]);
    let acts = h.exit("a", Exit::Signal(libc::SIGKILL));
    assert_eq!(h.spawns(&acts), ["b"]);
    assert_eq!(h.st("a"), State::Failed);
    assert!(h.s.units[h.id("a")].reason.as_deref().ok_or("a has no failure reason")?.contains("timed out after 2 s"));
    Ok(())
}

#[test]
fn onboot_step_that_never_exits_does_not_hang_boot() {
    let mut a = onboot("a");
    a.timeout = S;
    let mut h = H::new(vec![a, onboot("b")]);
    h.boot();
    h.run("a");
    let acts = h.advance(S + STEP_KILL_AFTER + LOST_AFTER);
    assert_eq!(h.spawns(&acts), ["b"]);
    assert!(h.logged("onboot a: still running 5 s after SIGKILL; going on without it"), "{:?}", h.logs);
    // The late exit changes nothing: no second advance.
    assert!(h.sp(|h| h.exit("a", Exit::Signal(9))).is_empty());
    assert_eq!(h.st("b"), State::Starting);
}

#[test]
fn required_onboot_failure_stops_boot_into_emergency() {
    let mut net = onboot("net");
    net.required = true;
    let mut h = H::new(vec![net, onboot("after"), svc("web"), onshutdown("save")]);
    h.boot();
    h.run("net");
    let acts = h.exit("net", Exit::Code(2));
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Emergency { reason } if reason.contains("net") && reason.contains("exited 2"))));
    assert!(h.spawns(&acts).is_empty());
    assert_eq!(h.s.phase(), Phase::Emergency);
    assert_eq!(h.st("after"), State::Waiting);
    assert_eq!(h.st("web"), State::Waiting);
    // Poweroff from the emergency shell still shuts down in order.
    let acts = h.ev(Event::Shutdown(PowerAction::PowerOff));
    assert_eq!(h.spawns(&acts), ["save"]);
    h.run("save");
    let acts = h.exit("save", OK);
    assert!(acts.contains(&Action::KillAll { signal: libc::SIGTERM }));
    h.ev(Event::NoProcessesLeft);
    assert_eq!(h.power(), Some(PowerAction::PowerOff));
}

#[test]
fn required_step_timeout_is_a_failure() {
    let mut net = onboot("net");
    net.required = true;
    net.timeout = S;
    let mut h = H::new(vec![net, svc("web")]);
    h.boot();
    h.run("net");
    h.advance(S);
    let acts = h.exit("net", Exit::Signal(libc::SIGTERM));
    assert!(acts.iter().any(|a| matches!(a, Action::Emergency { .. })));
}

#[test]
fn step_spawn_failure_without_process_goes_on() {
    let mut h = H::new(vec![onboot("a"), onboot("b")]);
    h.boot();
    let acts = h.ev(Event::SpawnFailed { unit: 0, error: "config.json: bad JSON at line 3".into(), transient: false });
    assert_eq!(h.spawns(&acts), ["b"]);
    let want = "onboot a: cannot start: config.json: bad JSON at line 3 [bundle /containers/x/a]";
    assert_eq!(h.logs.last().map(String::as_str), Some(want), "{:?}", h.logs);
    assert_eq!(h.s.units[0].reason.as_deref(), Some("config.json: bad JSON at line 3"));
    assert_eq!(h.st("a"), State::Failed);
}

#[test]
fn step_spawn_failure_then_exit_advances_once() {
    let mut h = H::new(vec![onboot("a"), onboot("b"), onboot("c")]);
    h.boot();
    h.ev(Event::Spawned { unit: 0, pid: 5 });
    let acts = h.ev(Event::SpawnFailed { unit: 0, error: "exec /bin/x: ENOENT".into(), transient: false });
    assert!(h.spawns(&acts).is_empty(), "waits for the Exited");
    assert_eq!(h.sp(|h| h.exit("a", Exit::Code(127))), ["b"]);
    assert_eq!(h.count_logged("onboot a"), 1, "{:?}", h.logs);
    assert!(h.logged("onboot a: cannot start: exec /bin/x: ENOENT [bundle /containers/x/a]"), "{:?}", h.logs);
}

#[test]
fn step_exit_then_spawn_failure_advances_once() {
    let mut h = H::new(vec![onboot("a"), onboot("b"), onboot("c")]);
    h.boot();
    h.ev(Event::Spawned { unit: 0, pid: 5 });
    assert_eq!(h.sp(|h| h.exit("a", Exit::Code(127))), ["b"]);
    let acts = h.ev(Event::SpawnFailed { unit: 0, error: "exec /bin/x: ENOENT".into(), transient: false });
    assert!(h.spawns(&acts).is_empty());
    assert!(h.logged("onboot a: cannot start: exec /bin/x: ENOENT [bundle /containers/x/a]"), "{:?}", h.logs);
    assert_eq!(h.st("b"), State::Starting);
}

// ---------------------------------------------------------------- broken bundles and the after-graph

#[test]
fn broken_bundles_are_reported_once_and_skipped() {
    let mut a = onboot("a");
    a.broken = Some("no rootfs".into());
    let mut web = svc("web");
    web.broken = Some("config.json line 1 column 1: expected value".into());
    let mut h = H::new(vec![a, onboot("b"), web, after(svc("api"), &["web"]), svc("db")]);
    let acts = h.boot();
    assert_eq!(h.spawns(&acts), ["b"]);
    assert_eq!(h.count_logged("a: broken bundle /containers/x/a: no rootfs"), 1);
    let want = "web: broken bundle /containers/x/web: config.json line 1 column 1: expected value";
    assert_eq!(h.logs.iter().find(|l| l.contains("web")).map(String::as_str), Some(want), "{:?}", h.logs);
    assert!(h.logged("api: not started: dependency web failed"), "{:?}", h.logs);
    assert_eq!(h.st("a"), State::Failed);
    assert_eq!(h.st("web"), State::Failed);
    assert_eq!(h.st("api"), State::Failed);
    h.run("b");
    assert_eq!(h.sp(|h| h.exit("b", OK)), ["db"]);
    h.run("db");
    assert!(h.logged("boot complete: 1 service running (2 failed)"), "{:?}", h.logs);
    // A broken service cannot be started by hand.
    let web = h.id("web");
    assert!(h.sp(|h| h.ev(Event::Control(Command::Start(web)))).is_empty());
    assert!(h.logged("web cannot start: broken bundle"));
}

#[test]
fn broken_required_step_means_emergency() {
    let mut a = onboot("a");
    a.broken = Some("no rootfs".into());
    a.required = true;
    let mut h = H::new(vec![onboot("first"), a, svc("web")]);
    h.boot();
    h.run("first");
    let acts = h.exit("first", OK);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Emergency { reason } if reason.contains("required onboot step a is broken"))));
    assert!(h.spawns(&acts).is_empty());
}

#[test]
fn chain_starts_in_order_after_readiness() {
    let mut h = H::new(vec![after(svc("c"), &["b"]), after(svc("b"), &["a"]), svc("a")]);
    assert_eq!(h.sp(|h| h.boot()), ["a"]);
    assert_eq!(h.sp(|h| h.run("a")), ["b"]);
    assert_eq!(h.sp(|h| h.run("b")), ["c"]);
    assert!(h.sp(|h| h.run("c")).is_empty());
    assert!(h.logged("boot complete: 3 services running"));
}

#[test]
fn diamond_waits_for_both_sides() {
    let mut h = H::new(vec![svc("a"), after(svc("b"), &["a"]), after(svc("c"), &["a"]), after(svc("d"), &["b", "c"])]);
    assert_eq!(h.sp(|h| h.boot()), ["a"]);
    assert_eq!(h.sp(|h| h.run("a")), ["b", "c"], "b and c in one batch");
    assert!(h.sp(|h| h.run("b")).is_empty(), "d still waits for c");
    assert_eq!(h.s.units[3].reason.as_deref(), Some("waiting for c"));
    assert_eq!(h.sp(|h| h.run("c")), ["d"]);
}

#[test]
fn independent_services_start_in_one_batch() {
    let mut h = H::new(vec![onboot("o"), svc("x"), svc("y"), svc("z")]);
    h.boot();
    h.run("o");
    assert_eq!(h.sp(|h| h.exit("o", OK)), ["x", "y", "z"]);
}

#[test]
fn unknown_after_name_is_reported_and_fails_only_that_service() {
    let mut h = H::new(vec![after(svc("web"), &["db"]), svc("other"), onboot("db")]);
    let acts = h.boot();
    assert!(h.logged("web: keel.after names unknown service 'db' (an onboot step, not a service)"), "{:?}", h.logs);
    assert_eq!(h.st("web"), State::Failed);
    h.run("db");
    let acts2 = h.exit("db", OK);
    assert_eq!(h.spawns(&acts), ["db"]);
    assert_eq!(h.spawns(&acts2), ["other"]);
    let mut h = H::new(vec![after(svc("web"), &["db", "cache"])]);
    h.boot();
    assert!(h.logged("web: keel.after names unknown services 'db', 'cache'"), "{:?}", h.logs);
    assert!(h.logged("boot complete: 0 services running (1 failed)"), "{:?}", h.logs);
}

#[test]
fn cycles_are_reported_with_names_and_never_hang() -> Result<(), Box<dyn std::error::Error>> {
    let mut h = H::new(vec![
        after(svc("a"), &["b"]),
        after(svc("b"), &["a"]),
        after(svc("c"), &["a"]),
        after(svc("self"), &["self"]),
        svc("free"),
    ]);
    let acts = h.boot();
    assert_eq!(h.count_logged("cycle: a -> b -> a"), 1, "{:?}", h.logs);
    assert_eq!(h.count_logged("cycle: self -> self"), 1, "{:?}", h.logs);
    assert!(h.logged("c: not started: dependency a failed"), "{:?}", h.logs);
    assert_eq!(h.spawns(&acts), ["free"]);
    for n in ["a", "b", "c", "self"] {
        assert_eq!(h.st(n), State::Failed, "{n}");
    }
    assert!(h.s.units[0].reason.as_deref().ok_or("unit 0 has no failure reason")?.contains("a -> b -> a"));
    h.run("free");
    assert!(h.logged("boot complete: 1 service running (4 failed)"), "{:?}", h.logs);
    Ok(())
}

#[test]
fn larger_cycle_reports_shortest_path_and_other_members() -> Result<(), Box<dyn std::error::Error>> {
    // a -> b -> c -> a, plus d in the same component (d -> a, b -> d).
    let mut h = H::new(vec![
        after(svc("a"), &["b"]),
        after(svc("b"), &["c", "d"]),
        after(svc("c"), &["a"]),
        after(svc("d"), &["a"]),
    ]);
    h.boot();
    let line = h.logs.iter().find(|l| l.starts_with("cycle:")).ok_or("no cycle: line logged")?.clone();
    assert!(line.starts_with("cycle: a -> b -> c -> a") || line.starts_with("cycle: a -> b -> d -> a"), "{line}");
    assert!(line.contains("also caught in it"), "{line}");
    assert_eq!(h.count_logged("cycle:"), 1);
    Ok(())
}

#[test]
fn readiness_fd_and_notify_gate_dependents() {
    let mut db = svc("db");
    db.ready = Ready::Fd(3);
    let mut cache = svc("cache");
    cache.ready = Ready::Notify;
    let mut h = H::new(vec![db, cache, after(svc("web"), &["db", "cache"])]);
    assert_eq!(h.sp(|h| h.boot()), ["db", "cache"]);
    assert!(h.sp(|h| h.run("db")).is_empty(), "exec is not readiness for fd:N");
    assert!(h.sp(|h| h.run("cache")).is_empty());
    assert_eq!(h.st("db"), State::Starting);
    h.now += ms(35);
    assert!(h.sp(|h| h.ready("db")).is_empty(), "cache not ready yet");
    assert!(h.logged("db ready after 35 ms"), "{:?}", h.logs);
    assert!(!h.logged("boot complete"));
    assert_eq!(h.sp(|h| h.ready("cache")), ["web"]);
    h.run("web");
    assert!(h.logged("boot complete: 3 services running in 35 ms"), "{:?}", h.logs);
    // At most 2 lines per service at boot.
    for n in ["db", "cache", "web"] {
        assert!(
            h.logs.iter().filter(|l| l.starts_with(n) || l.contains(&format!(" {n} "))).count() <= 2,
            "{n}: {:?}",
            h.logs
        );
    }
}

#[test]
fn not_ready_in_time_is_stopped_and_counts_as_failure() {
    let mut db = svc("db");
    db.ready = Ready::Notify;
    db.timeout = 5 * S;
    db.stop_timeout = S;
    let mut h = H::new(vec![db, after(svc("web"), &["db"])]);
    h.boot();
    h.run("db");
    let acts = h.advance(5 * S);
    assert_eq!(h.signals(&acts), [("db".to_string(), libc::SIGTERM)]);
    assert!(h.logged("db: not ready after 5 s; stopping it"), "{:?}", h.logs);
    h.exit("db", OK);
    assert_eq!(h.st("db"), State::Backoff, "on-failure restarts it even after exit 0");
    assert_eq!(h.st("web"), State::Waiting);
}

#[test]
fn exit_before_ready_fails_waiting_dependents_but_a_finished_oneshot_satisfies_them() {
    let mut once = svc("once");
    once.restart = Restart::No;
    let mut fdsvc = svc("fdsvc");
    fdsvc.ready = Ready::Fd(4);
    fdsvc.restart = Restart::No;
    let mut h = H::new(vec![once, fdsvc, after(svc("a"), &["once"]), after(svc("b"), &["fdsvc"])]);
    h.boot();
    assert_eq!(h.sp(|h| h.run("once")), ["a"]);
    h.exit("once", OK);
    h.run("fdsvc");
    h.exit("fdsvc", OK);
    assert_eq!(h.st("b"), State::Failed);
    assert!(h.logged("b: not started: dependency fdsvc exited"), "{:?}", h.logs);
    assert_eq!(h.st("a"), State::Starting);
}

// ---------------------------------------------------------------- restart policy

fn booted(c: UnitConfig) -> H {
    let mut h = H::new(vec![c]);
    h.boot();
    h.run(&h.s.units[0].config.name.clone());
    h
}

#[test]
fn restart_policies() {
    let cases = [
        (Restart::No, OK, State::Exited),
        (Restart::No, FAIL, State::Exited),
        (Restart::No, SEGV, State::Exited),
        (Restart::OnFailure, OK, State::Exited),
        (Restart::OnFailure, FAIL, State::Backoff),
        (Restart::OnFailure, SEGV, State::Backoff),
        (Restart::Always, OK, State::Backoff),
        (Restart::Always, FAIL, State::Backoff),
        (Restart::Always, SEGV, State::Backoff),
    ];
    for (policy, exit, want) in cases {
        let mut c = svc("web");
        c.restart = policy;
        let mut h = booted(c);
        h.now += S;
        h.exit("web", exit);
        assert_eq!(h.st("web"), want, "{policy:?} {exit:?}");
        if want == State::Backoff {
            assert_eq!(h.sp(|h| h.advance(ms(100))), ["web"], "{policy:?} {exit:?}");
            assert_eq!(h.s.units[0].restarts, 1);
        } else {
            assert!(h.advance(60 * S).is_empty());
        }
    }
    let mut h = booted(svc("web"));
    h.exit("web", SEGV);
    assert!(h.logged("web killed by SIGSEGV; restart 1 in 100 ms"), "{:?}", h.logs);
    let mut c = svc("web");
    c.restart = Restart::No;
    let mut h = booted(c);
    h.exit("web", FAIL);
    assert!(h.logged("web exited 1; not restarted (keel.restart=no)"), "{:?}", h.logs);
}

const NOEXEC: &str = "exec /bin/httpd: No such file or directory (errno 2)";
const NOEXEC_LINE: &str = "web: cannot start: exec /bin/httpd: No such file or directory (errno 2) \
                           [bundle /containers/x/web]; permanent failure: not restarting (keelctl start web to retry)";

/// After a setup failure: Failed with the cause, exactly one (ERROR) line, nothing armed, nothing restarts.
fn assert_failed_once(h: &mut H, acts: &[Action]) {
    assert_eq!(h.st("web"), State::Failed);
    assert_eq!(h.s.units[0].reason.as_deref(), Some(NOEXEC));
    assert_eq!(h.count_logged("web"), 1, "{:?}", h.logs);
    assert!(h.logged(NOEXEC_LINE), "{:?}", h.logs);
    let errors: Vec<_> = acts.iter().filter(|a| matches!(a, Action::Log { level: Level::Error, .. })).collect();
    assert_eq!(errors.len(), 1, "{acts:?}");
    assert!(!acts.iter().any(|a| matches!(a, Action::Timer { .. } | Action::Spawn(_))), "{acts:?}");
    assert!(h.advance(120 * S).is_empty(), "{:?}", h.last);
    assert_eq!(h.st("web"), State::Failed);
}

#[test]
fn spawn_failure_is_not_restarted() {
    for policy in [Restart::OnFailure, Restart::Always] {
        // spawn() itself failed: no process.
        let mut c = svc("web");
        c.restart = policy;
        let mut h = H::new(vec![c]);
        h.boot();
        h.logs.clear();
        let acts = h.ev(Event::SpawnFailed { unit: 0, error: NOEXEC.into(), transient: false });
        assert_failed_once(&mut h, &acts);
        assert_eq!(h.s.units[0].restarts, 0);
        // keelctl start retries it.
        assert_eq!(h.sp(|h| h.ev(Event::Control(Command::Start(0)))), ["web"]);
        assert_eq!(h.st("web"), State::Starting);
    }
}

#[test]
fn setup_failure_reported_by_the_status_pipe_is_not_restarted() {
    // The usual order: status pipe (SpawnFailed), then the child's exit 127.
    let mut h = H::new(vec![svc("web")]);
    h.boot();
    h.logs.clear();
    h.ev(Event::Spawned { unit: 0, pid: 7 });
    let mut acts = h.ev(Event::SpawnFailed { unit: 0, error: NOEXEC.into(), transient: false });
    acts.extend(h.exit("web", Exit::Code(127)));
    assert_eq!(h.count_logged("web: cannot start"), 1, "{:?}", h.logs);
    assert_eq!(h.st("web"), State::Failed);
    assert!(h.advance(120 * S).is_empty(), "{:?}", h.last);
    assert_eq!(h.s.units[0].last_exit, Some(Exit::Code(127)));

    // The other order: the exit was handled first (a restart was scheduled), then the status: taken back.
    let mut h = H::new(vec![svc("web")]);
    h.boot();
    h.ev(Event::Spawned { unit: 0, pid: 7 });
    h.exit("web", Exit::Code(127));
    assert_eq!(h.st("web"), State::Backoff);
    h.ev(Event::SpawnFailed { unit: 0, error: NOEXEC.into(), transient: false });
    assert_eq!(h.st("web"), State::Failed);
    assert_eq!(h.s.units[0].reason.as_deref(), Some(NOEXEC));
    assert!(h.logged(NOEXEC_LINE), "{:?}", h.logs);
    assert!(h.advance(120 * S).is_empty(), "{:?}", h.last);
    assert_eq!(h.st("web"), State::Failed);
}

#[test]
fn spawn_failure_of_a_restarted_service_stops_the_loop() {
    let mut h = booted(svc("web"));
    h.exit("web", FAIL);
    h.advance(ms(100));
    h.logs.clear();
    let acts = h.ev(Event::SpawnFailed { unit: 0, error: NOEXEC.into(), transient: false });
    assert_failed_once(&mut h, &acts);
}

#[test]
fn required_step_spawn_failure_is_one_line_then_emergency() {
    let mut net = onboot("net");
    net.required = true;
    let mut h = H::new(vec![net, svc("web")]);
    h.boot();
    let acts = h.ev(Event::SpawnFailed {
        unit: 0,
        error: "mount /proc: Permission denied (errno 13)".into(),
        transient: false,
    });
    assert!(acts.iter().any(|a| matches!(a, Action::Emergency { .. })), "{acts:?}");
    assert!(h.spawns(&acts).is_empty());
    assert_eq!(h.count_logged("onboot net: cannot start"), 1, "{:?}", h.logs);
    assert!(h.logged("onboot net: cannot start: mount /proc: Permission denied (errno 13) [bundle /containers/x/net]"));
    assert_eq!(h.st("net"), State::Failed);
}

/// Crash right after each start; return the restart delays seen.
fn crash_loop(h: &mut H, n: usize) -> Vec<Duration> {
    let mut delays = Vec::new();
    for _ in 0..n {
        h.now += ms(10);
        let acts = h.exit("web", FAIL);
        let Some(at) = acts.iter().find_map(|a| match a {
            Action::Timer { at, .. } => Some(*at),
            _ => None,
        }) else {
            break;
        };
        delays.push(at - h.now);
        let spawned = h.advance(at - h.now);
        assert_eq!(h.spawns(&spawned), ["web"]);
        h.run("web");
    }
    delays
}

#[test]
fn backoff_doubles_to_the_cap() {
    assert_eq!(backoff(1), ms(100));
    assert_eq!(backoff(2), ms(200));
    assert_eq!(backoff(3), ms(400));
    assert_eq!(backoff(9), ms(25_600));
    assert_eq!(backoff(10), 30 * S);
    assert_eq!(backoff(1000), 30 * S);
    let mut h = booted(svc("web"));
    let d = crash_loop(&mut h, 10);
    let want: Vec<Duration> = [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000].map(ms).to_vec();
    assert_eq!(d, want);
    assert!(h.logged("web exited 1; restart 3 in 400 ms"), "{:?}", h.logs);
    assert!(h.logged("web exited 1; restart 10 in 30 s"), "{:?}", h.logs);
}

#[test]
fn backoff_resets_after_a_10_s_run() {
    let mut h = booted(svc("web"));
    assert_eq!(crash_loop(&mut h, 3), [ms(100), ms(200), ms(400)]);
    h.now += 10 * S;
    h.exit("web", FAIL);
    assert!(h.logged("web exited 1; restart 1 in 100 ms"), "{:?}", h.logs);
    assert_eq!(h.s.units[0].restarts, 4, "the total is kept");
}

#[test]
fn start_limit_gives_up_with_one_line_and_keelctl_start_retries() -> Result<(), Box<dyn std::error::Error>> {
    let mut h = booted(svc("web"));
    let d = crash_loop(&mut h, 20);
    assert_eq!(d.len(), START_LIMIT as usize, "the 11th failure gives up");
    assert_eq!(h.st("web"), State::Failed);
    assert_eq!(h.count_logged("giving up"), 1);
    let line = h.logs.iter().find(|l| l.contains("giving up")).ok_or("no giving up line logged")?;
    assert!(line.starts_with("web: failed: 11 exits in "), "{line}");
    assert!(line.contains("last exited 1; giving up (keelctl start web to retry)"), "{line}");
    assert!(h.advance(600 * S).is_empty(), "no timer left");
    let acts = h.ev(Event::Control(Command::Start(0)));
    assert_eq!(h.spawns(&acts), ["web"]);
    h.run("web");
    h.exit("web", FAIL);
    assert!(h.logs.last().ok_or("nothing logged")?.contains("restart 1 in 100 ms"), "{:?}", h.logs.last());
    Ok(())
}

#[test]
fn a_restarting_dependency_leaves_dependents_running() {
    let mut h = H::new(vec![svc("db"), after(svc("web"), &["db"])]);
    h.boot();
    h.run("db");
    h.run("web");
    h.exit("db", FAIL);
    assert_eq!(h.st("web"), State::Running);
    assert!(h.sg(|h| h.last.clone()).is_empty());
    h.advance(ms(100));
    h.run("db");
    assert_eq!(h.st("db"), State::Running);
    assert_eq!(h.st("web"), State::Running);
}

#[test]
fn memory_per_service_stays_bounded() {
    let mut c = svc("web");
    c.restart = Restart::Always;
    let mut h = booted(c);
    for _ in 0..1000 {
        h.now += 11 * S;
        h.exit("web", OK);
        h.advance(ms(100));
        h.run("web");
    }
    assert_eq!(h.s.units[0].restarts, 1000);
    assert_eq!(h.s.units[0].rt.streak, 1);
}

// ---------------------------------------------------------------- control

#[test]
fn control_stop_terms_then_kills_and_does_not_restart() {
    let mut c = svc("web");
    c.stop_timeout = 3 * S;
    let mut h = booted(c);
    let acts = h.ev(Event::Control(Command::Stop(0)));
    assert_eq!(h.signals(&acts), [("web".to_string(), libc::SIGTERM)]);
    h.now += ms(12);
    h.exit("web", Exit::Signal(libc::SIGTERM));
    assert!(h.logged("web stopped (SIGTERM) in 12 ms"), "{:?}", h.logs);
    assert_eq!(h.st("web"), State::Exited);
    assert!(h.advance(60 * S).is_empty());
    // Start again, then a stop that needs SIGKILL.
    assert_eq!(h.sp(|h| h.ev(Event::Control(Command::Start(0)))), ["web"]);
    h.run("web");
    h.ev(Event::Control(Command::Stop(0)));
    let acts = h.advance(3 * S);
    assert_eq!(h.signals(&acts), [("web".to_string(), libc::SIGKILL)]);
    assert!(h.logged("web did not stop in 3 s: SIGKILL"), "{:?}", h.logs);
    h.exit("web", Exit::Signal(9));
    assert!(h.logged("web stopped (SIGKILL) in 3 s"), "{:?}", h.logs);
    assert_eq!(h.st("web"), State::Exited);
}

#[test]
fn control_stop_in_backoff_cancels_the_restart() {
    let mut h = booted(svc("web"));
    h.exit("web", FAIL);
    h.ev(Event::Control(Command::Stop(0)));
    assert_eq!(h.st("web"), State::Exited);
    assert!(h.sp(|h| h.advance(S)).is_empty());
}

#[test]
fn control_restart_stops_then_starts() {
    let mut h = booted(svc("web"));
    let acts = h.ev(Event::Control(Command::Restart(0)));
    assert_eq!(h.signals(&acts), [("web".to_string(), libc::SIGTERM)]);
    let acts = h.exit("web", Exit::Signal(libc::SIGTERM));
    assert_eq!(h.spawns(&acts), ["web"]);
    assert_eq!(h.s.units[0].restarts, 0, "a requested restart is not a policy restart");
    // Restart of an exited service just starts it.
    h.run("web");
    h.ev(Event::Control(Command::Stop(0)));
    h.exit("web", OK);
    assert_eq!(h.sp(|h| h.ev(Event::Control(Command::Restart(0)))), ["web"]);
}

#[test]
fn control_start_waits_for_or_refuses_dependencies() {
    let mut h = H::new(vec![svc("db"), after(svc("web"), &["db"])]);
    h.boot();
    h.run("db");
    h.run("web");
    h.ev(Event::Control(Command::Stop(1)));
    h.exit("web", OK);
    h.ev(Event::Control(Command::Stop(0)));
    h.exit("db", OK);
    assert!(h.sp(|h| h.ev(Event::Control(Command::Start(1)))).is_empty());
    assert!(h.logged("web cannot start: dependency db is not running (keelctl start db first)"), "{:?}", h.logs);
    assert_eq!(h.sp(|h| h.ev(Event::Control(Command::Start(0)))), ["db"]);
    assert!(h.sp(|h| h.ev(Event::Control(Command::Start(1)))).is_empty());
    assert_eq!(h.st("web"), State::Waiting);
    assert_eq!(h.sp(|h| h.run("db")), ["web"]);
}

#[test]
fn control_only_stops_steps_and_ignores_services_during_onboot() {
    let mut h = H::new(vec![onboot("slow"), svc("web")]);
    h.boot();
    h.run("slow");
    assert!(h.sp(|h| h.ev(Event::Control(Command::Start(1)))).is_empty());
    assert!(h.logged("keelctl start web: services start after onboot"), "{:?}", h.logs);
    let acts = h.ev(Event::Control(Command::Stop(0)));
    assert_eq!(h.signals(&acts), [("slow".to_string(), libc::SIGTERM)]);
    let acts = h.exit("slow", Exit::Signal(libc::SIGTERM));
    assert_eq!(h.spawns(&acts), ["web"]);
    assert!(h.logged("onboot slow: stopped by keelctl (SIGTERM)"), "{:?}", h.logs);
}

// ---------------------------------------------------------------- shutdown

#[test]
fn shutdown_runs_onshutdown_then_stops_in_reverse_order_then_kills_all() {
    let mut h = H::new(vec![
        svc("db"),
        after(svc("api"), &["db"]),
        after(svc("web"), &["api"]),
        svc("lone"),
        onshutdown("save"),
        onshutdown("sync"),
    ]);
    h.boot();
    h.run("db");
    h.run("api");
    h.run("web");
    h.run("lone");
    let acts = h.ev(Event::Shutdown(PowerAction::Reboot));
    assert_eq!(h.spawns(&acts), ["save"]);
    assert!(h.signals(&acts).is_empty(), "services run during onshutdown");
    h.run("save");
    assert_eq!(h.sp(|h| h.exit("save", OK)), ["sync"]);
    h.run("sync");
    let acts = h.exit("sync", OK);
    let mut sig = h.signals(&acts);
    sig.sort();
    assert_eq!(
        sig,
        [("lone".to_string(), libc::SIGTERM), ("web".to_string(), libc::SIGTERM)],
        "independent ones together"
    );
    h.now += ms(12);
    assert!(h.sg(|h| h.exit("lone", OK)).is_empty());
    assert!(h.logged("lone stopped (SIGTERM) in 12 ms"), "{:?}", h.logs);
    assert_eq!(h.sg(|h| h.exit("web", OK)), [("api".to_string(), libc::SIGTERM)]);
    assert_eq!(h.sg(|h| h.exit("api", OK)), [("db".to_string(), libc::SIGTERM)]);
    let acts = h.exit("db", OK);
    assert!(h.spawns(&acts).is_empty(), "nothing restarts during shutdown");
    assert!(acts.contains(&Action::KillAll { signal: libc::SIGTERM }));
    let acts = h.advance(KILLALL_TERM_GRACE);
    assert!(acts.contains(&Action::KillAll { signal: libc::SIGKILL }));
    assert_eq!(h.power(), None);
    h.advance(KILLALL_KILL_GRACE);
    assert_eq!(h.power(), Some(PowerAction::Reboot));
    assert_eq!(h.s.phase(), Phase::Done);
    assert!(h.logged("shutdown done in "), "{:?}", h.logs);
}

#[test]
fn shutdown_kills_after_stop_timeout_and_gives_up_on_unkillable() {
    let mut stubborn = svc("stubborn");
    stubborn.stop_timeout = 2 * S;
    let mut h = H::new(vec![stubborn, after(svc("dep"), &["stubborn"])]);
    h.boot();
    h.run("stubborn");
    h.run("dep");
    h.ev(Event::Shutdown(PowerAction::PowerOff));
    h.exit("dep", Exit::Signal(libc::SIGTERM));
    assert_eq!(h.sg(|h| h.last.clone()), [("stubborn".to_string(), libc::SIGTERM)]);
    let acts = h.advance(2 * S);
    assert_eq!(h.signals(&acts), [("stubborn".to_string(), libc::SIGKILL)]);
    assert!(h.logged("stubborn did not stop in 2 s: SIGKILL"), "{:?}", h.logs);
    // Never exits: the supervisor goes on after LOST_AFTER, then kill-all and power.
    let acts = h.advance(LOST_AFTER);
    assert!(acts.contains(&Action::KillAll { signal: libc::SIGTERM }), "{acts:?}");
    h.ev(Event::NoProcessesLeft);
    assert_eq!(h.power(), Some(PowerAction::PowerOff));
}

#[test]
fn shutdown_turns_backoff_and_waiting_services_into_exited() {
    let mut db = svc("db");
    db.ready = Ready::Notify;
    let mut h = H::new(vec![svc("crashy"), db, after(svc("web"), &["db"])]);
    h.boot();
    h.run("crashy");
    h.run("db");
    h.exit("crashy", FAIL);
    assert_eq!(h.st("crashy"), State::Backoff);
    let acts = h.ev(Event::Shutdown(PowerAction::Halt));
    assert_eq!(h.st("crashy"), State::Exited);
    assert_eq!(h.st("web"), State::Exited);
    assert_eq!(h.signals(&acts), [("db".to_string(), libc::SIGTERM)], "starting services are stopped too");
    assert!(h.sp(|h| h.advance(S)).is_empty());
}

#[test]
fn shutdown_during_onboot_stops_the_step_and_skips_the_rest() {
    let mut h = H::new(vec![onboot("a"), onboot("b"), svc("web"), onshutdown("save")]);
    h.boot();
    h.run("a");
    let acts = h.ev(Event::Shutdown(PowerAction::PowerOff));
    assert_eq!(h.signals(&acts), [("a".to_string(), libc::SIGTERM)]);
    assert!(h.spawns(&acts).is_empty());
    let acts = h.exit("a", Exit::Signal(libc::SIGTERM));
    assert_eq!(h.spawns(&acts), ["save"]);
    h.run("save");
    let acts = h.exit("save", OK);
    assert!(acts.contains(&Action::KillAll { signal: libc::SIGTERM }));
    assert_eq!(h.st("b"), State::Waiting);
    assert_eq!(h.st("web"), State::Exited);
    h.ev(Event::NoProcessesLeft);
    assert_eq!(h.power(), Some(PowerAction::PowerOff));
}

#[test]
fn shutdown_during_a_timed_out_step_still_ends() {
    let mut a = onboot("a");
    a.timeout = S;
    let mut h = H::new(vec![a, onshutdown("save")]);
    h.boot();
    h.run("a");
    h.advance(S); // TERM for the timeout
    h.ev(Event::Shutdown(PowerAction::PowerOff));
    let acts = h.advance(STEP_KILL_AFTER + LOST_AFTER);
    assert_eq!(h.spawns(&acts), ["save"]);
}

#[test]
fn shutdown_before_boot_and_without_anything() {
    let mut h = H::new(vec![svc("web")]);
    let acts = h.ev(Event::Shutdown(PowerAction::PowerOff));
    assert!(acts.contains(&Action::KillAll { signal: libc::SIGTERM }));
    h.advance(KILLALL_TERM_GRACE + KILLALL_KILL_GRACE);
    assert_eq!(h.power(), Some(PowerAction::PowerOff));
}

#[test]
fn second_shutdown_is_answered_once_then_ignored() {
    let mut h = booted(svc("web"));
    h.ev(Event::Shutdown(PowerAction::PowerOff));
    h.ev(Event::Shutdown(PowerAction::Reboot));
    h.ev(Event::Shutdown(PowerAction::Reboot));
    assert_eq!(h.count_logged("already shutting down (power off); reboot request ignored"), 1, "{:?}", h.logs);
    assert_eq!(h.s.power(), Some(PowerAction::PowerOff));
    h.exit("web", OK);
    h.ev(Event::NoProcessesLeft);
    assert_eq!(h.power(), Some(PowerAction::PowerOff));
}

#[test]
fn control_is_ignored_while_shutting_down() {
    let mut h = booted(svc("web"));
    h.ev(Event::Shutdown(PowerAction::PowerOff));
    h.exit("web", OK);
    assert!(h.sp(|h| h.ev(Event::Control(Command::Start(0)))).is_empty());
    assert!(h.logged("shutting down: keelctl start web ignored"));
}

/// Whatever state the machine is in, a shutdown with no process ever exiting reaches Power by timers alone.
#[test]
fn shutdown_always_ends_on_timers_alone() {
    let scenarios: Vec<fn(&mut H)> = vec![
        |_| {},
        |h| {
            h.boot();
        },
        |h| {
            h.boot();
            h.run("o1");
        },
        |h| {
            h.boot();
            h.run("o1");
            h.exit("o1", OK);
            h.run("db");
        },
        |h| {
            h.boot();
            h.run("o1");
            h.exit("o1", OK);
            h.run("db");
            h.ready("db");
            h.run("web");
            h.exit("web", FAIL);
        },
    ];
    for (i, setup) in scenarios.into_iter().enumerate() {
        let mut db = svc("db");
        db.ready = Ready::Fd(3);
        let mut o1 = onboot("o1");
        o1.timeout = 30 * S;
        let mut h = H::new(vec![o1, db, after(svc("web"), &["db"]), svc("x"), onshutdown("s1"), onshutdown("s2")]);
        setup(&mut h);
        h.ev(Event::Shutdown(PowerAction::PowerOff));
        let start = h.now;
        let mut powered = false;
        for _ in 0..100 {
            // Spawned steps report a pid but never exit.
            for name in h.sp(|h| h.last.clone()) {
                let unit = h.id(&name);
                h.pid += 1;
                h.feed(Event::Spawned { unit, pid: h.pid });
            }
            h.advance(10 * S);
            if h.power().is_some() {
                powered = true;
                break;
            }
        }
        assert!(powered, "scenario {i}: no Power; phase {:?}; {:?}", h.s.phase(), h.logs);
        assert!(h.now - start <= 1000 * S, "scenario {i}");
    }
}

// ---------------------------------------------------------------- odds and ends

#[test]
fn stale_and_unknown_events_are_harmless() {
    let mut h = booted(svc("web"));
    assert!(h.ev(Event::Timer { unit: 0, gen: 999 }).is_empty());
    let acts = h.ev(Event::Exited { unit: 77, exit: OK });
    assert!(matches!(acts.as_slice(), [Action::Log { level: Level::Warn, .. }]));
    assert!(h.ev(Event::KillAllTimer { gen: 1 }).is_empty());
    assert!(h.ev(Event::NoProcessesLeft).is_empty());
    h.ev(Event::Boot);
    assert!(h.logged("second Boot event ignored"));
    assert_eq!(h.st("web"), State::Running);
    assert_eq!(h.elapsed_ms(), 0);
}

#[test]
fn signal_names_and_durations() {
    assert_eq!(signal_name(libc::SIGSEGV), "SIGSEGV");
    assert_eq!(signal_name(9), "SIGKILL");
    assert_eq!(signal_name(15), "SIGTERM");
    assert_eq!(signal_name(34), "SIGRTMIN");
    assert_eq!(signal_name(37), "SIGRTMIN+3");
    assert_eq!(signal_name(99), "signal 99");
    assert_eq!(human(ms(35)), "35 ms");
    assert_eq!(human(S * 300), "300 s");
    assert_eq!(human(ms(1600)), "1.6 s");
}

/// The console as an operator sees it: a whole boot and shutdown, line by line.
#[test]
fn console_transcript() {
    let mut net = onboot("net");
    net.timeout = 2 * S;
    let mut db = svc("db");
    db.ready = Ready::Fd(3);
    let mut h = H::new(vec![
        onboot("modules"),
        net,
        db,
        after(svc("web"), &["db"]),
        after(svc("bad"), &["nope"]),
        svc("crashy"),
        onshutdown("save"),
    ]);
    h.boot();
    h.run("modules");
    h.now += ms(40);
    h.exit("modules", OK);
    h.run("net");
    h.advance(2 * S);
    h.exit("net", Exit::Signal(libc::SIGTERM));
    h.run("db");
    h.run("crashy");
    h.now += ms(30);
    h.ready("db");
    h.run("web");
    h.exit("crashy", SEGV);
    h.advance(ms(100));
    h.run("crashy");
    h.now += 20 * S;
    h.ev(Event::Shutdown(PowerAction::PowerOff));
    h.run("save");
    h.exit("save", OK);
    h.now += ms(5);
    h.exit("web", OK);
    h.exit("crashy", OK);
    h.now += ms(5);
    h.exit("db", OK);
    h.ev(Event::NoProcessesLeft);
    let want = [
        "bad: keel.after names unknown service 'nope'",
        "onboot modules: exited 0 (40 ms)",
        "onboot net: timed out after 2 s; sending SIGTERM",
        "onboot net: killed by SIGTERM (2 s)",
        "onboot done: 2 steps (1 failed) in 2040 ms",
        "starting db (pid 103)",
        "starting crashy (pid 104)",
        "db ready after 30 ms",
        "starting web (pid 105)",
        "boot complete: 3 services running (1 failed) in 2070 ms",
        "crashy killed by SIGSEGV; restart 1 in 100 ms",
        "shutting down (power off)",
        "onshutdown save: exited 0 (0 ms)",
        "web stopped (SIGTERM) in 5 ms",
        "crashy stopped (SIGTERM) in 5 ms",
        "db stopped (SIGTERM) in 5 ms",
        "services stopped; sending SIGTERM to all remaining processes",
        "shutdown done in 10 ms: power off",
    ];
    assert_eq!(h.logs, want);
}

// ---------------------------------------------------------------- the overall shutdown deadline

fn killall_signals(acts: &[Action]) -> Vec<i32> {
    acts.iter()
        .filter_map(|a| match a {
            Action::KillAll { signal } => Some(*signal),
            _ => None,
        })
        .collect()
}

#[test]
fn shutdown_deadline_kills_everything_whatever_the_phase() {
    // A service that ignores TERM with a stop timeout longer than the deadline.
    let mut stubborn = svc("stubborn");
    stubborn.stop_timeout = 300 * S;
    let mut h = booted(stubborn);
    let t = h.now;
    h.ev(Event::Shutdown(PowerAction::PowerOff));
    assert_eq!(h.deadline, Some(t + 90 * S));
    assert_eq!(h.st("stubborn"), State::Stopping);
    assert!(h.advance(89 * S).is_empty());
    let acts = h.advance(S);
    assert_eq!(killall_signals(&acts), [libc::SIGKILL], "straight to SIGKILL: {acts:?}");
    assert_eq!(h.s.phase(), Phase::KillKill);
    assert_eq!(h.count_logged("shutdown deadline (90 s) reached: killing everything (still running: stubborn)"), 1);
    assert_eq!(h.st("stubborn"), State::Failed);
    // Its exit now is stale; no other timer acts; the kill grace ends in Power.
    assert!(h.exit("stubborn", Exit::Signal(libc::SIGKILL)).is_empty());
    h.advance(KILLALL_KILL_GRACE);
    assert_eq!(h.power(), Some(PowerAction::PowerOff));
    assert_eq!(h.elapsed_ms() - (t - h.t0).as_millis(), 91_000);
    // A late deadline event changes nothing.
    assert!(h.ev(Event::ShutdownDeadline).is_empty());
}

#[test]
fn shutdown_deadline_from_the_command_line_caps_onshutdown_steps() {
    let mut save = onshutdown("save");
    save.timeout = 300 * S;
    let mut h = H::new(vec![svc("web"), save, onshutdown("later")]);
    h.s.set_shutdown_timeout(10 * S);
    h.boot();
    h.run("web");
    let t = h.now;
    let acts = h.ev(Event::Shutdown(PowerAction::Reboot));
    assert_eq!(h.spawns(&acts), ["save"]);
    // The step's run deadline is what remains of the shutdown deadline, not its 300 s.
    let save_id = h.id("save");
    assert_eq!(h.timers.get(&save_id).map(|t| t.1), Some(t + 10 * S));
    h.run("save");
    h.advance(4 * S);
    assert!(h.logs.iter().all(|l| !l.contains("deadline")));
    let acts = h.advance(6 * S);
    assert_eq!(killall_signals(&acts), [libc::SIGKILL], "{acts:?}");
    assert!(h.signals(&acts).is_empty(), "no per-unit TERM at the deadline: {acts:?}");
    assert!(
        h.logged("shutdown deadline (10 s) reached: killing everything (still running: web, save)"),
        "{:?}",
        h.logs
    );
    assert!(!h.logged("timed out after"), "{:?}", h.logs);
    assert_eq!(h.st("later"), State::Waiting);
    assert_eq!(h.s.units[h.id("later")].reason.as_deref(), Some("not run: shutdown deadline"));
    let acts = h.ev(Event::NoProcessesLeft);
    assert!(acts.contains(&Action::Power(PowerAction::Reboot)), "{acts:?}");
    assert_eq!(h.s.phase(), Phase::Done);
}

#[test]
fn shutdown_deadline_cuts_the_kill_all_term_grace_short() {
    let mut h = booted(svc("web"));
    h.s.set_shutdown_timeout(ms(500));
    h.ev(Event::Shutdown(PowerAction::Halt));
    h.advance(ms(100));
    let acts = h.exit("web", Exit::Signal(libc::SIGTERM));
    assert_eq!(killall_signals(&acts), [libc::SIGTERM]);
    assert_eq!(h.s.phase(), Phase::KillTerm);
    let acts = h.advance(ms(400));
    assert_eq!(killall_signals(&acts), [libc::SIGKILL], "{acts:?}");
    assert!(h.logged("shutdown deadline (500 ms) reached: killing everything"), "{:?}", h.logs);
    assert!(!h.logged("still running"), "{:?}", h.logs);
    h.advance(KILLALL_KILL_GRACE);
    assert_eq!(h.power(), Some(PowerAction::Halt));
}

#[test]
fn shutdown_ends_early_when_done() {
    let mut h = H::new(vec![svc("web"), onshutdown("bye")]);
    h.boot();
    h.run("web");
    h.ev(Event::Shutdown(PowerAction::PowerOff));
    h.run("bye");
    h.exit("bye", OK);
    h.exit("web", Exit::Signal(libc::SIGTERM));
    let acts = h.ev(Event::NoProcessesLeft);
    assert!(acts.contains(&Action::Power(PowerAction::PowerOff)));
    assert_eq!(h.elapsed_ms(), 0);
    assert!(h.advance(200 * S).is_empty(), "{:?}", h.last);
    assert!(!h.logged("deadline"), "{:?}", h.logs);
}

// ---- coldplug in the background ----

#[test]
fn onboot_waits_for_coldplug() {
    let mut h = H::new(vec![onboot("dhcp"), svc("web")]);
    h.s.set_coldplug_running(true);
    assert!(h.sp(|h| h.boot()).is_empty(), "no step before coldplug is done");
    assert!(h.s.waiting_for_coldplug());
    assert_eq!(h.s.phase(), Phase::Onboot);
    h.advance(ms(400));
    assert!(h.sp(|h| h.ev(Event::ColdplugDone)) == ["dhcp"], "then the first step");
    assert!(!h.s.waiting_for_coldplug());
    h.run("dhcp");
    assert_eq!(h.sp(|h| h.exit("dhcp", Exit::Code(0))), ["web"]);
    // The wait timer firing later is stale: nothing happens, no WARN.
    h.advance(20 * S);
    assert!(!h.logged("coldplug still running"), "{:?}", h.logs);
    assert_eq!(h.st("dhcp"), State::Exited);
}

#[test]
fn no_onboot_services_start_at_boot_in_parallel_with_coldplug() {
    let mut h = H::new(vec![svc("a"), svc("b")]);
    h.s.set_coldplug_running(true);
    assert_eq!(h.sp(|h| h.boot()), ["a", "b"]);
    assert!(!h.s.waiting_for_coldplug() && h.coldplug.is_none(), "no wait, no timer");
    h.run("a");
    h.run("b");
    assert!(h.ev(Event::ColdplugDone).is_empty(), "coldplug ending later changes nothing");
    assert!(h.logged("boot complete: 2 services running"), "{:?}", h.logs);
}

#[test]
fn coldplug_wait_is_bounded() {
    let mut h = H::new(vec![onboot("dhcp"), svc("web")]);
    h.s.set_coldplug_running(true);
    h.boot();
    assert!(h.sp(|h| h.advance(COLDPLUG_WAIT - ms(1))).is_empty());
    assert_eq!(h.sp(|h| h.advance(ms(1))), ["dhcp"], "after 10 s onboot goes on");
    assert!(h.logged("coldplug still running after 10 s; starting onboot steps anyway"), "{:?}", h.logs);
    // Coldplug ending while the step runs starts nothing twice.
    h.run("dhcp");
    assert!(h.sp(|h| h.ev(Event::ColdplugDone)).is_empty());
    assert_eq!(h.sp(|h| h.exit("dhcp", Exit::Code(0))), ["web"]);
}

#[test]
fn without_coldplug_onboot_starts_at_boot() {
    // Sandbox mode (or no modules): the supervisor is never told coldplug runs.
    let mut h = H::new(vec![onboot("dhcp"), svc("web")]);
    assert_eq!(h.sp(|h| h.boot()), ["dhcp"]);
    assert!(h.coldplug.is_none());
    // A stray ColdplugDone/ColdplugTimer does nothing.
    assert!(h.sp(|h| h.ev(Event::ColdplugDone)).is_empty());
    assert!(h.sp(|h| h.ev(Event::ColdplugTimer)).is_empty());
    assert_eq!(h.st("dhcp"), State::Starting);
}

#[test]
fn shutdown_while_onboot_waits_for_coldplug() {
    let mut h = H::new(vec![onboot("dhcp"), svc("web"), onshutdown("save")]);
    h.s.set_coldplug_running(true);
    h.boot();
    assert_eq!(h.sp(|h| h.ev(Event::Shutdown(PowerAction::PowerOff))), ["save"], "straight to onshutdown");
    assert!(!h.s.waiting_for_coldplug());
    assert!(h.sp(|h| h.ev(Event::ColdplugDone)).is_empty(), "no onboot step after a shutdown request");
    assert!(h.sp(|h| h.advance(COLDPLUG_WAIT)).iter().all(|n| n != "dhcp"));
    assert_eq!(h.st("dhcp"), State::Waiting);
}

#[test]
fn crash_loop_does_not_hold_back_boot_complete() {
    let mut crasher = svc("crasher");
    crasher.ready = Ready::Fd(3); // never gets to say it is ready
    let mut h = H::new(vec![svc("ok"), crasher, after(svc("api"), &["crasher"])]);
    assert_eq!(h.sp(|h| h.boot()), ["ok", "crasher"]);
    h.run("ok");
    h.run("crasher");
    assert!(!h.logged("boot complete"), "api still waits for crasher to be ready: {:?}", h.logs);
    h.now += ms(20);
    h.exit("crasher", Exit::Code(1));
    assert_eq!(h.st("crasher"), State::Backoff);
    assert_eq!(h.st("api"), State::Waiting);
    assert!(
        h.logged("boot complete: 1 service running, 1 restarting, 1 waiting in 20 ms"),
        "a crash-looping service and its dependents must not hold back the summary: {:?}",
        h.logs
    );
    assert_eq!(h.count_logged("boot complete"), 1);
}

// ---------------------------------------------------------------- storms: transient failures, OOM kills

const EAGAIN_MSG: &str = "fork pid namespace reaper: Resource temporarily unavailable (errno 11)";

#[test]
fn errnos_that_can_heal_are_transient() {
    for e in [libc::EAGAIN, libc::ENOMEM, libc::EINTR, libc::ENFILE, libc::EMFILE, libc::ENOBUFS] {
        assert!(transient_errno(e), "{e}");
    }
    for e in [libc::ENOENT, libc::EACCES, libc::EPERM, libc::EINVAL, libc::ENOEXEC, libc::ENOTDIR, libc::EEXIST] {
        assert!(!transient_errno(e), "{e}");
    }
    assert_eq!(errno_in(EAGAIN_MSG), Some(11));
    assert_eq!(errno_in("open /x: Cannot allocate memory (os error 12)"), Some(12));
    assert_eq!(errno_in("mount (errno 2) then clone3: (errno 11)"), Some(11));
    assert_eq!(errno_in("config.json: bad JSON"), None);
    assert_eq!(errno_in("x (errno ?)"), None);
}

#[test]
fn transient_spawn_failure_is_retried_with_backoff_and_never_hits_the_start_limit() {
    for policy in [Restart::No, Restart::OnFailure, Restart::Always] {
        let mut c = svc("web");
        c.restart = policy;
        let mut h = H::new(vec![c]);
        h.boot();
        h.logs.clear();
        let mut delays = Vec::new();
        // Far more failures than the start limit, alternating how they arrive.
        for i in 0..(START_LIMIT as usize + 5) {
            if i % 2 == 0 {
                // spawn() itself failed (clone3 EAGAIN): no process.
                h.ev(Event::SpawnFailed { unit: 0, error: EAGAIN_MSG.into(), transient: true });
            } else {
                // The status pipe said so, then the child's exit 127.
                h.ev(Event::Spawned { unit: 0, pid: 7 + i32::try_from(i).unwrap() }); // ok: test
                h.ev(Event::SpawnFailed { unit: 0, error: EAGAIN_MSG.into(), transient: true });
                h.exit("web", Exit::Code(127));
            }
            assert_eq!(h.st("web"), State::Backoff, "{policy:?} #{i}: {:?}", h.logs);
            let (_, at) = h.timers[&0];
            delays.push(at - h.now);
            assert_eq!(h.sp(|h| h.advance(at - h.now)), ["web"], "{policy:?} #{i}");
        }
        assert_eq!(delays[..4], [ms(100), ms(200), ms(400), ms(800)], "{policy:?}");
        assert_eq!(*delays.last().unwrap_or(&S), BACKOFF_CAP);
        assert_eq!(h.count_logged("transient failure: restart"), START_LIMIT as usize + 5, "{:?}", h.logs);
        assert!(
            h.logged(&format!(
                "web: cannot start: {EAGAIN_MSG} [bundle /containers/x/web]; transient failure: restart 1 in 100 ms"
            )),
            "{:?}",
            h.logs
        );
        assert!(!h.logs.iter().any(|l| l.contains("giving up") || l.contains("permanent")), "{:?}", h.logs);
        // Once the machine recovers, the service runs.
        h.run("web");
        assert_eq!(h.st("web"), State::Running);
    }
}

#[test]
fn transient_failure_after_the_exit_keeps_the_restart() {
    let mut h = H::new(vec![svc("web")]);
    h.boot();
    h.ev(Event::Spawned { unit: 0, pid: 7 });
    h.exit("web", Exit::Code(127));
    assert_eq!(h.st("web"), State::Backoff);
    h.ev(Event::SpawnFailed { unit: 0, error: EAGAIN_MSG.into(), transient: true });
    assert_eq!(h.st("web"), State::Backoff);
    assert!(h.logged("transient failure: retrying"), "{:?}", h.logs);
    assert_eq!(h.sp(|h| h.advance(S)), ["web"]);
}

#[test]
fn transient_failure_during_shutdown_is_not_retried() {
    let mut h = booted(svc("web"));
    h.ev(Event::Shutdown(PowerAction::PowerOff));
    h.ev(Event::SpawnFailed { unit: 0, error: EAGAIN_MSG.into(), transient: true });
    h.exit("web", Exit::Code(127));
    assert_ne!(h.st("web"), State::Backoff);
    assert!(h.sp(|h| h.advance(5 * S)).is_empty());
}

#[test]
fn oom_kills_are_named_with_the_limit_and_restart_on_failure() {
    let mut h = booted(svc("hog"));
    h.ev(Event::OomKilled { unit: 0, kills: 1, limit: Some(64 << 20) });
    h.exit("hog", Exit::Code(137));
    assert!(
        h.logged("hog killed by the OOM killer (memory limit 64 MiB reached; exited 137); restart 1 in 100 ms"),
        "{:?}",
        h.logs
    );
    assert_eq!(h.s.units[0].oom_kills, 1);
    assert_eq!(h.s.units[0].last_oom.as_deref(), Some("OOM killer: memory limit 64 MiB reached"));
    // The next run is not an OOM kill unless told so again.
    h.advance(S);
    h.run("hog");
    h.exit("hog", Exit::Code(1));
    assert!(h.logs.last().is_some_and(|l| l.starts_with("hog exited 1;")), "{:?}", h.logs);
    // No memory limit: the whole system ran out.
    h.advance(S);
    h.run("hog");
    h.ev(Event::OomKilled { unit: 0, kills: 2, limit: None });
    h.exit("hog", Exit::Signal(libc::SIGKILL));
    assert!(
        h.logged("hog killed by the OOM killer (no memory limit: the system ran out of memory; killed by SIGKILL)"),
        "{:?}",
        h.logs
    );
    assert_eq!(h.s.units[0].oom_kills, 3);
    // Zero kills: nothing to say.
    h.ev(Event::OomKilled { unit: 0, kills: 0, limit: None });
    assert_eq!(h.s.units[0].oom_kills, 3);
}

#[test]
fn oom_killed_step_is_named() {
    let mut h = H::new(vec![onboot("big"), svc("web")]);
    h.boot();
    h.run("big");
    h.ev(Event::OomKilled { unit: 0, kills: 1, limit: Some(32 << 20) });
    h.exit("big", Exit::Signal(libc::SIGKILL));
    assert!(
        h.logs.iter().any(|l| l.starts_with("onboot big: killed by the OOM killer (memory limit 32 MiB reached")),
        "{:?}",
        h.logs
    );
    assert_eq!(
        h.s.units[0].reason.as_deref(),
        Some("killed by the OOM killer (memory limit 32 MiB reached; killed by SIGKILL)")
    );
}
