//! The per-container state directory under --root: state.json (what later verbs need), exec.fifo (create ->
//! start), and the status of a container derived from its pid (with start time, against pid reuse), its exec
//! fifo and its cgroup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CliError, CliResult, Globals};

/// What keel-runc keeps per container in `<root>/<id>/state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct State {
    pub id: String,
    /// Pid of the container's first process (in our pid namespace).
    pub pid: i32,
    /// Field 22 of /proc/PID/stat when the container was created, to tell our process from a reused pid.
    pub pid_start_time: u64,
    /// Absolute bundle directory.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    /// Absolute cgroup directory of the container (empty if none).
    pub cgroup: PathBuf,
    pub annotations: BTreeMap<String, String>,
    pub oci_version: String,
    /// The container was started by `run` in the foreground, or detached.
    pub detached: bool,
}

/// runc's status names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// The state directory of `id`.
pub fn dir(g: &Globals, id: &str) -> PathBuf {
    g.root.join(id)
}

/// The exec fifo of a created container.
pub fn fifo(g: &Globals, id: &str) -> PathBuf {
    dir(g, id).join("exec.fifo")
}

/// Load the state of `id`, or runc's "container does not exist" error.
pub fn load(g: &Globals, id: &str) -> CliResult<State> {
    let p = dir(g, id).join("state.json");
    let text = match std::fs::read(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CliError::state("container does not exist")),
        Err(e) => return Err(CliError::io("read", &p, e)),
    };
    serde_json::from_slice(&text)
        .map_err(|e| crate::Error::Json { path: p.clone(), field: String::new(), msg: e.to_string() }.into())
}

/// Write state.json atomically (temp file + rename).
pub fn save(g: &Globals, st: &State) -> CliResult {
    let d = dir(g, &st.id);
    let tmp = d.join("state.json.tmp");
    let text = serde_json::to_vec(st).map_err(|e| crate::Error::Invalid {
        path: PathBuf::new(),
        field: "encode state".into(),
        msg: e.to_string(),
    })?;
    std::fs::write(&tmp, text).map_err(|e| CliError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, d.join("state.json")).map_err(|e| CliError::io("rename", &tmp, e))
}

/// Ids of every container under the root, sorted.
pub fn ids(g: &Globals) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(&g.root)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("state.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// (state char, start time) from /proc/PID/stat, parsed after the last ')' (the comm may contain anything).
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 (starttime) is index 19.
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Whether the container's process still exists (not a zombie, same start time).
pub fn alive(st: &State) -> bool {
    match proc_stat(st.pid) {
        Some((s, start)) => s != 'Z' && s != 'X' && (st.pid_start_time == 0 || start == st.pid_start_time),
        None => false,
    }
}

/// runc's status of a container.
pub fn status(g: &Globals, st: &State) -> Status {
    if !alive(st) {
        return Status::Stopped;
    }
    if !st.cgroup.as_os_str().is_empty() && crate::cgroups::is_frozen(&st.cgroup) {
        return Status::Paused;
    }
    if fifo(g, &st.id).exists() {
        return Status::Created;
    }
    Status::Running
}

/// Whether `pid` is blocked opening a fifo for writing (the container waiting in create for `start`).
pub fn blocked_on_fifo(pid: i32) -> bool {
    let w = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    matches!(w.trim(), "wait_for_partner" | "fifo_open")
}

/// Now as RFC 3339 with nanoseconds, UTC (Go's time.RFC3339Nano, as runc writes `created`).
pub fn rfc3339_now() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Format a Unix time as RFC 3339 UTC.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// Remove the state directory of `id` (state.json, fifo, anything else in it).
pub fn remove(g: &Globals, id: &str) -> CliResult {
    let d = dir(g, id);
    match std::fs::remove_dir_all(&d) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::io("remove", &d, e)),
    }
}

/// Resolve a bundle path given on the command line (default: the current directory) to an absolute path.
pub fn bundle_path(arg: Option<&str>) -> CliResult<PathBuf> {
    let p = PathBuf::from(arg.unwrap_or("."));
    let abs =
        if p.is_absolute() { p } else { std::env::current_dir().map_err(|e| CliError::io("getcwd", "", e))?.join(p) };
    std::fs::canonicalize(&abs).map_err(|e| CliError::io("bundle", &abs, e))
}

/// Write `pid` to `path` atomically, as runc does for --pid-file.
pub fn write_pid_file(path: &Path, pid: i32) -> CliResult {
    let tmp = path.with_extension("keel-tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(|e| CliError::io("write pid file", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CliError::io("write pid file", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951782400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1796000000, 0), "2026-11-30T00:53:20.000000000Z");
    }

    #[test]
    fn own_stat() {
        let (s, start) = proc_stat(std::process::id() as i32).unwrap();
        assert!(s == 'R' || s == 'S');
        assert!(start > 0);
    }
}
