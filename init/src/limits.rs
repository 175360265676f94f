//! Guards PID 1 puts around every unit so that one wild service cannot take the machine (machine mode only: in
//! sandbox mode PID 1 creates no cgroups).
//!
//! - Task limit: every unit's cgroup gets `pids.max`, by default 15 % of the system's task limit, as systemd's
//!   `DefaultTasksMax=15%`: the system's limit is the smallest of `kernel.threads-max`, `kernel.pid_max` - 1 and
//!   4194303 (systemd's `system_tasks_max()`). `keel.tasks_max=N`, `=P%` or `=infinity` on the kernel command line
//!   sets the default; a bundle's own `linux.resources.pids.limit` always wins (0 or -1 there: no limit). The limit
//!   is written into the loaded bundle's spec before its first spawn, so the runtime creates the cgroup with it.
//! - The parent cgroup `keel` (under the cgroup2 root) with the cpu, memory, pids and io controllers enabled for its
//!   children: every service's cgroup `keel/NAME` then has its own CPU weight (a fork bomb shares the CPU with
//!   the other services as one unit, not per process; PID 1 stays in the root cgroup, outside), `memory.events`
//!   (OOM kills are counted even without a memory limit), `pids.max`, and `cgroup.kill` (one write kills a whole
//!   service, whatever it forks meanwhile; at shutdown one write to `keel/cgroup.kill` kills every service).
//! - OOM: [`memory_events`] parses a cgroup's `memory.events` (the `oom_kill` counter), [`parse_max`] its
//!   `memory.max` (the limit that was hit).

use std::path::{Path, PathBuf};

/// systemd's `TASKS_MAX`: the largest pid the kernel can hand out on 64-bit, minus one.
pub const TASKS_MAX_CAP: u64 = 4_194_303;
/// Default per-unit share of the system's task limit, in per mille (systemd: `DefaultTasksMax=15%`).
pub const DEFAULT_TASKS_PERMILLE: u64 = 150;
/// The parent of every unit's cgroup, relative to the cgroup2 root.
pub const PARENT: &str = "keel";
/// Controllers enabled for the units' cgroups (those the kernel has).
pub const CONTROLLERS: &[&str] = &["cpu", "memory", "pids", "io"];

/// `keel.tasks_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TasksSetting {
    /// A share of the system's task limit, in per mille.
    Permille(u64),
    /// A fixed number of tasks.
    Absolute(u64),
    /// No limit.
    Infinity,
}

/// Parse `keel.tasks_max`: `N` (N >= 1), `P%` (0 < P <= 100, one decimal allowed), `infinity`/`max`.
pub fn parse_tasks_max(v: &str) -> Option<TasksSetting> {
    let v = v.trim();
    if v == "infinity" || v == "max" {
        return Some(TasksSetting::Infinity);
    }
    if let Some(p) = v.strip_suffix('%') {
        let p = p.trim();
        let (int, frac) = p.split_once('.').unwrap_or((p, ""));
        if int.is_empty() || !int.chars().all(|c| c.is_ascii_digit()) || frac.len() > 1 {
            return None;
        }
        if !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let permille = int.parse::<u64>().ok()?.checked_mul(10)? + frac.parse::<u64>().unwrap_or(0);
        return (1..=1000).contains(&permille).then_some(TasksSetting::Permille(permille));
    }
    if !v.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: u64 = v.parse().ok()?;
    (n >= 1).then_some(TasksSetting::Absolute(n))
}

/// The system's task limit as systemd computes it: min(threads-max, pid_max - 1, [`TASKS_MAX_CAP`]); an unknown
/// (None or 0) value does not count.
pub fn system_tasks_max(threads_max: Option<u64>, pid_max: Option<u64>) -> u64 {
    let a = threads_max.filter(|&a| a > 0).unwrap_or(TASKS_MAX_CAP);
    let b = pid_max.filter(|&b| b > 1).map(|b| b - 1).unwrap_or(TASKS_MAX_CAP);
    a.min(b).min(TASKS_MAX_CAP)
}

/// The default limit for a unit: None = no limit. A share never rounds to 0.
pub fn default_tasks(setting: TasksSetting, system: u64) -> Option<u64> {
    match setting {
        TasksSetting::Infinity => None,
        TasksSetting::Absolute(n) => Some(n),
        TasksSetting::Permille(p) => Some((system.saturating_mul(p) / 1000).max(1)),
    }
}

/// What a unit's task limit is and where it comes from (for `keelctl status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TasksMax {
    /// None: no limit.
    pub limit: Option<u64>,
    /// "bundle", "default (15% of 3722)", "keel.tasks_max=...", "none (sandbox)".
    pub source: String,
}

/// The machine's default task limit: from `keel.tasks_max` (if given and valid) or 15 %. Returns (limit,
/// description, warning for a bad value).
pub fn machine_default(cmdline: Option<&str>, system: u64) -> (Option<u64>, String, Option<String>) {
    let (setting, given, warn) = match cmdline.map(|v| (v, parse_tasks_max(v))) {
        None => (TasksSetting::Permille(DEFAULT_TASKS_PERMILLE), None, None),
        Some((v, Some(s))) => (s, Some(v), None),
        Some((v, None)) => {
            let w = format!("keel.tasks_max='{v}': expected N, P% or infinity; using 15%");
            (TasksSetting::Permille(DEFAULT_TASKS_PERMILLE), None, Some(w))
        }
    };
    let limit = default_tasks(setting, system);
    let what = match (setting, given) {
        (_, Some(v)) => format!("keel.tasks_max={v}"),
        (TasksSetting::Permille(p), None) => format!("default ({}% of {system})", permille_str(p)),
        _ => "default".to_string(),
    };
    (limit, what, warn)
}

fn permille_str(p: u64) -> String {
    if p.is_multiple_of(10) {
        (p / 10).to_string()
    } else {
        format!("{}.{}", p / 10, p % 10)
    }
}

/// Set the default task limit on a loaded bundle unless its config.json has its own `linux.resources.pids`.
pub fn apply_tasks_max(bundle: &mut keel_runtime::Bundle, default: Option<u64>, what: &str) -> TasksMax {
    let own = bundle.spec.linux.as_ref().and_then(|l| l.resources.as_ref()).and_then(|r| r.pids.as_ref());
    if let Some(p) = own {
        let limit = u64::try_from(p.limit).ok().filter(|&l| l > 0);
        return TasksMax { limit, source: "bundle (linux.resources.pids.limit)".into() };
    }
    let Some(n) = default else { return TasksMax { limit: None, source: what.to_string() } };
    let linux = bundle.spec.linux.get_or_insert_with(Default::default);
    let res = linux.resources.get_or_insert_with(Default::default);
    res.pids = Some(keel_runtime::cgroups::LinuxPids { limit: i64::try_from(n).unwrap_or(i64::MAX) });
    TasksMax { limit: Some(n), source: what.to_string() }
}

/// Read a /proc/sys number.
pub fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The system's task limit from /proc/sys/kernel/{threads-max,pid_max}.
pub fn read_system_tasks_max() -> u64 {
    system_tasks_max(read_u64("/proc/sys/kernel/threads-max"), read_u64("/proc/sys/kernel/pid_max"))
}

/// Counters of a cgroup's `memory.events`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    pub max: u64,
    pub oom: u64,
    pub oom_kill: u64,
}

/// Parse `memory.events` ("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n...").
pub fn memory_events(text: &str) -> MemoryEvents {
    let mut e = MemoryEvents::default();
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) else { continue };
        match k {
            "max" => e.max = v,
            "oom" => e.oom = v,
            "oom_kill" => e.oom_kill = v,
            _ => {}
        }
    }
    e
}

/// `memory.max` / `pids.max`: None for "max" (no limit) or garbage.
pub fn parse_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// "64 MiB", "1.5 GiB", "512 KiB", "100 bytes".
pub fn bytes_human(b: u64) -> String {
    const KI: u64 = 1024;
    let (div, unit) = match b {
        b if b >= KI * KI * KI => (KI * KI * KI, "GiB"),
        b if b >= KI * KI => (KI * KI, "MiB"),
        b if b >= KI => (KI, "KiB"),
        _ => return format!("{b} bytes"),
    };
    if b.is_multiple_of(div) {
        format!("{} {unit}", b / div)
    } else {
        format!("{:.1} {unit}", b as f64 / div as f64)
    }
}

/// What one cgroup says about OOM kills and its memory limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OomInfo {
    pub kills: u64,
    /// memory.max (None: no limit).
    pub limit: Option<u64>,
}

/// Read a unit's cgroup: OOM kills so far and its memory limit. None if the cgroup has no memory controller.
pub fn oom_info(cgroup: &Path) -> Option<OomInfo> {
    let events = std::fs::read_to_string(cgroup.join("memory.events")).ok()?;
    let limit = std::fs::read_to_string(cgroup.join("memory.max")).ok().and_then(|t| parse_max(&t));
    Some(OomInfo { kills: memory_events(&events).oom_kill, limit })
}

/// Tasks in a unit's cgroup now (pids.current).
pub fn tasks_current(cgroup: &Path) -> Option<u64> {
    std::fs::read_to_string(cgroup.join("pids.current")).ok().and_then(|t| parse_max(&t))
}

/// Create `root/keel` and enable [`CONTROLLERS`] (those the kernel has) in the root's and in its
/// `cgroup.subtree_control`. Returns the parent's path and one line per problem (errno named).
pub fn prepare_parent(root: &Path) -> (PathBuf, Vec<String>) {
    let mut problems = Vec::new();
    let parent = root.join(PARENT);
    if let Err(e) = std::fs::create_dir(&parent) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            problems.push(format!("cgroup {}: mkdir: {e}", parent.display()));
            return (parent, problems);
        }
    }
    let have = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    for dir in [root, parent.as_path()] {
        let sub = dir.join("cgroup.subtree_control");
        let enabled = std::fs::read_to_string(&sub).unwrap_or_default();
        for c in CONTROLLERS.iter().filter(|c| have.split_whitespace().any(|h| h == **c)) {
            if enabled.split_whitespace().any(|e| e == *c) {
                continue;
            }
            if let Err(e) = std::fs::write(&sub, format!("+{c}")) {
                problems.push(format!("cgroup {}: enable {c}: {e}", sub.display()));
            }
        }
    }
    (parent, problems)
}

/// Write "1" to `cgroup/cgroup.kill` (Linux 5.14+): SIGKILL to every process in it and its descendants, including
/// those forked meanwhile. Err: the errno (ENOENT: no such file, older kernel or no cgroup).
pub fn kill_cgroup(cgroup: &Path) -> Result<(), i32> {
    std::fs::write(cgroup.join("cgroup.kill"), "1").map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// Write `cgroup.freeze` (1: freeze, 0: thaw). Err: the errno.
pub fn freeze_cgroup(cgroup: &Path, frozen: bool) -> Result<(), i32> {
    std::fs::write(cgroup.join("cgroup.freeze"), if frozen { "1" } else { "0" })
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_max_values() {
        assert_eq!(parse_tasks_max("15%"), Some(TasksSetting::Permille(150)));
        assert_eq!(parse_tasks_max("2.5%"), Some(TasksSetting::Permille(25)));
        assert_eq!(parse_tasks_max("100%"), Some(TasksSetting::Permille(1000)));
        assert_eq!(parse_tasks_max("512"), Some(TasksSetting::Absolute(512)));
        assert_eq!(parse_tasks_max("infinity"), Some(TasksSetting::Infinity));
        assert_eq!(parse_tasks_max("max"), Some(TasksSetting::Infinity));
        for bad in ["", "0", "0%", "101%", "-5", "1.25%", "ten", "5 %x", "%", ".5%", "1e3"] {
            assert_eq!(parse_tasks_max(bad), None, "{bad}");
        }
    }

    #[test]
    fn default_is_15_percent_of_the_smallest_system_limit_as_systemd() {
        // A 512 MiB VM: threads-max 3722 is below pid_max 32768.
        assert_eq!(system_tasks_max(Some(3722), Some(32768)), 3722);
        assert_eq!(system_tasks_max(Some(1_000_000), Some(32768)), 32767);
        assert_eq!(system_tasks_max(None, None), TASKS_MAX_CAP);
        assert_eq!(system_tasks_max(Some(0), Some(4_194_304)), TASKS_MAX_CAP);
        assert_eq!(system_tasks_max(Some(u64::MAX), Some(u64::MAX)), TASKS_MAX_CAP);
        assert_eq!(default_tasks(TasksSetting::Permille(150), 3722), Some(558));
        assert_eq!(default_tasks(TasksSetting::Permille(150), 32767), Some(4915)); // systemd's 4915
        assert_eq!(default_tasks(TasksSetting::Permille(1), 3), Some(1));
        assert_eq!(default_tasks(TasksSetting::Absolute(64), 3722), Some(64));
        assert_eq!(default_tasks(TasksSetting::Infinity, 3722), None);
        let (l, what, w) = machine_default(None, 3722);
        assert_eq!((l, what.as_str(), w), (Some(558), "default (15% of 3722)", None));
        let (l, what, w) = machine_default(Some("100"), 3722);
        assert_eq!((l, what.as_str(), w), (Some(100), "keel.tasks_max=100", None));
        let (l, _, w) = machine_default(Some("lots"), 3722);
        assert_eq!(l, Some(558));
        assert!(w.is_some_and(|w| w.starts_with("keel.tasks_max='lots'")));
        assert_eq!(machine_default(Some("infinity"), 3722).0, None);
    }

    fn bundle(config: &str) -> keel_runtime::Bundle {
        let spec = serde_json::from_str(config).unwrap_or_else(|e| panic!("spec {config}: {e}"));
        keel_runtime::Bundle { dir: "/x".into(), name: "x".into(), spec, runtime: None, rootfs: "/x/rootfs".into() }
    }

    fn pids(b: &keel_runtime::Bundle) -> Option<i64> {
        b.spec.linux.as_ref()?.resources.as_ref()?.pids.as_ref().map(|p| p.limit)
    }

    #[test]
    fn the_bundle_limit_wins_over_the_default() {
        let mut b = bundle(r#"{"ociVersion":"1.0.2"}"#);
        let t = apply_tasks_max(&mut b, Some(558), "default (15% of 3722)");
        assert_eq!(t, TasksMax { limit: Some(558), source: "default (15% of 3722)".into() });
        assert_eq!(pids(&b), Some(558));
        let mut b = bundle(r#"{"ociVersion":"1.0.2","linux":{"resources":{"memory":{"limit":1000000}}}}"#);
        apply_tasks_max(&mut b, Some(558), "d");
        assert_eq!(pids(&b), Some(558));
        let mut b = bundle(r#"{"ociVersion":"1.0.2","linux":{"resources":{"pids":{"limit":32}}}}"#);
        let t = apply_tasks_max(&mut b, Some(558), "d");
        assert_eq!(t.limit, Some(32));
        assert!(t.source.starts_with("bundle"));
        assert_eq!(pids(&b), Some(32));
        let mut b = bundle(r#"{"ociVersion":"1.0.2","linux":{"resources":{"pids":{"limit":-1}}}}"#);
        assert_eq!(apply_tasks_max(&mut b, Some(558), "d").limit, None);
        let mut b = bundle(r#"{"ociVersion":"1.0.2"}"#);
        assert_eq!(apply_tasks_max(&mut b, None, "keel.tasks_max=infinity").limit, None);
        assert_eq!(pids(&b), None);
    }

    #[test]
    fn memory_events_and_limits() {
        let e = memory_events("low 0\nhigh 0\nmax 57\noom 2\noom_kill 1\noom_group_kill 0\n");
        assert_eq!(e, MemoryEvents { max: 57, oom: 2, oom_kill: 1 });
        assert_eq!(memory_events("garbage\noom_kill x\n"), MemoryEvents::default());
        assert_eq!(parse_max("max\n"), None);
        assert_eq!(parse_max("67108864\n"), Some(64 << 20));
        assert_eq!(bytes_human(64 << 20), "64 MiB");
        assert_eq!(bytes_human(1536 << 20), "1.5 GiB");
        assert_eq!(bytes_human(2048), "2 KiB");
        assert_eq!(bytes_human(100), "100 bytes");
    }
}
