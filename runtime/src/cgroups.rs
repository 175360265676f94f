//! cgroup v2: the spec's `linux.resources` types, creating a container's cgroup, writing its limits, removing it.
//! On hybrid hosts the v1 hierarchies are handled alongside (v1.rs).

pub mod bpf;
pub mod devices;
pub mod v1;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use keel_sys::Errno;
use serde::Deserialize;

use crate::Error;

/// `linux.resources` of config.json.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinuxResources {
    pub devices: Vec<LinuxDeviceCgroup>,
    pub memory: Option<LinuxMemory>,
    pub cpu: Option<LinuxCpu>,
    pub pids: Option<LinuxPids>,
    #[serde(rename = "blockIO", alias = "blockIo")]
    pub block_io: Option<LinuxBlockIo>,
    pub hugepage_limits: Vec<LinuxHugepageLimit>,
    pub network: Option<serde_json::Value>,
    pub rdma: Option<serde_json::Value>,
    pub unified: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinuxDeviceCgroup {
    pub allow: bool,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinuxMemory {
    pub limit: Option<i64>,
    pub reservation: Option<i64>,
    pub swap: Option<i64>,
    pub kernel: Option<i64>,
    pub kernel_tcp: Option<i64>,
    pub swappiness: Option<u64>,
    pub disable_oom_killer: Option<bool>,
    pub use_hierarchy: Option<bool>,
    pub check_before_update: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinuxCpu {
    pub shares: Option<u64>,
    pub quota: Option<i64>,
    pub burst: Option<u64>,
    pub period: Option<u64>,
    pub realtime_runtime: Option<i64>,
    pub realtime_period: Option<u64>,
    pub cpus: Option<String>,
    pub mems: Option<String>,
    pub idle: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinuxPids {
    pub limit: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinuxBlockIo {
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
    pub weight_device: Vec<LinuxWeightDevice>,
    pub throttle_read_bps_device: Vec<LinuxThrottleDevice>,
    pub throttle_write_bps_device: Vec<LinuxThrottleDevice>,
    #[serde(rename = "throttleReadIOPSDevice")]
    pub throttle_read_iops_device: Vec<LinuxThrottleDevice>,
    #[serde(rename = "throttleWriteIOPSDevice")]
    pub throttle_write_iops_device: Vec<LinuxThrottleDevice>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinuxWeightDevice {
    pub major: i64,
    pub minor: i64,
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinuxThrottleDevice {
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinuxHugepageLimit {
    pub page_size: String,
    pub limit: u64,
}

// ---------------------------------------------------------------------------------------------------------------
// cgroup v2 logic. v1-only hosts are not supported: default_root() then names a path that is not cgroup2 and
// create() fails with a clear error.
// ---------------------------------------------------------------------------------------------------------------

/// Whether `p` is the mount point (or a directory) of a cgroup2 file system.
pub fn is_cgroup2(p: &Path) -> bool {
    // CGROUP2_SUPER_MAGIC (libc's constant is i64 on glibc, u64 on musl).
    keel_sys::fs_type(p).is_ok_and(|t| t == 0x6367_7270)
}

/// The cgroup v2 mount: /sys/fs/cgroup on a pure v2 system, /sys/fs/cgroup/unified on a hybrid one.
pub fn default_root() -> PathBuf {
    // Remembered once found (statfs is slow under emulation); not while there is no cgroup2 mount yet.
    if let Some(r) = DEFAULT_ROOT.get() {
        return r.clone();
    }
    let r = find_default_root();
    if is_cgroup2(&r) {
        let _ = DEFAULT_ROOT.set(r.clone());
    }
    r
}

static DEFAULT_ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn find_default_root() -> PathBuf {
    let pure = Path::new("/sys/fs/cgroup");
    let hybrid = Path::new("/sys/fs/cgroup/unified");
    if !is_cgroup2(pure) && is_cgroup2(hybrid) {
        hybrid.to_path_buf()
    } else {
        pure.to_path_buf()
    }
}

/// The v2 cgroup of `pid` relative to the hierarchy root ("0::/a/b" in /proc/PID/cgroup), e.g. "/a/b".
pub fn of_pid(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_string)
}

fn sys(what: String, e: std::io::Error) -> Error {
    Error::Sys { what, errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)) }
}

fn write_file(path: &Path, value: &str) -> Result<(), Error> {
    keel_sys::write_file(path, value.as_bytes())
        .map_err(|e| Error::os(format!("write {value:?} to {}", path.display()), e))
}

/// One limit to write: (controller it needs, file name, value, spec field for errors).
type Limit = (Option<String>, String, String, &'static str);

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// runc's conversion of cpu.shares (2..262144) to cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262144) - 2) * 9999 / 262142
}

/// runc's conversion of blkio weight (10..1000) to io.weight (1..10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (w.clamp(10, 1000) as u64 - 10) * 9999 / 990
}

/// The files and values `res` asks for, in write order.
fn limits(res: &LinuxResources, path: &Path) -> Result<Vec<Limit>, Error> {
    let mut out: Vec<Limit> = Vec::new();
    let mut add = |ctl: &str, file: String, value: String, field: &'static str| {
        out.push((Some(ctl.to_string()), file, value, field));
    };
    if let Some(m) = &res.memory {
        if let Some(l) = m.limit {
            add("memory", "memory.max".into(), max_or(l), "linux.resources.memory.limit");
        }
        if let Some(r) = m.reservation {
            add("memory", "memory.low".into(), max_or(r), "linux.resources.memory.reservation");
        }
        if let Some(sw) = m.swap {
            // The spec's swap is memory+swap (v1 semantics); v2's memory.swap.max is swap alone (runc's rule).
            let v = match (sw, m.limit) {
                (-1, _) => "max".to_string(),
                (sw, Some(l)) if l >= 0 && sw >= l => (sw - l).to_string(),
                (sw, _) => {
                    return Err(Error::Invalid {
                        path: path.to_path_buf(),
                        field: "linux.resources.memory.swap".into(),
                        msg: format!("swap {sw} needs a memory limit no larger than it"),
                    })
                }
            };
            add("memory", "memory.swap.max".into(), v, "linux.resources.memory.swap");
        }
    }
    if let Some(c) = &res.cpu {
        if let Some(sh) = c.shares.filter(|s| *s > 0) {
            add("cpu", "cpu.weight".into(), shares_to_weight(sh).to_string(), "linux.resources.cpu.shares");
        }
        if c.quota.is_some() || c.period.is_some() {
            let q = match c.quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".into(),
            };
            let v = match c.period.filter(|p| *p > 0) {
                Some(p) => format!("{q} {p}"),
                None => q,
            };
            add("cpu", "cpu.max".into(), v, "linux.resources.cpu.quota");
        }
        if let Some(b) = c.burst {
            add("cpu", "cpu.max.burst".into(), b.to_string(), "linux.resources.cpu.burst");
        }
        if let Some(i) = c.idle {
            add("cpu", "cpu.idle".into(), i.to_string(), "linux.resources.cpu.idle");
        }
        if let Some(cpus) = c.cpus.as_ref().filter(|s| !s.is_empty()) {
            add("cpuset", "cpuset.cpus".into(), cpus.clone(), "linux.resources.cpu.cpus");
        }
        if let Some(mems) = c.mems.as_ref().filter(|s| !s.is_empty()) {
            add("cpuset", "cpuset.mems".into(), mems.clone(), "linux.resources.cpu.mems");
        }
    }
    if let Some(p) = &res.pids {
        let v = if p.limit > 0 { p.limit.to_string() } else { "max".into() };
        add("pids", "pids.max".into(), v, "linux.resources.pids.limit");
    }
    if let Some(b) = &res.block_io {
        if let Some(w) = b.weight.filter(|w| *w > 0) {
            add(
                "io",
                "io.weight".into(),
                format!("default {}", blkio_to_io_weight(w)),
                "linux.resources.blockIO.weight",
            );
        }
        for d in &b.weight_device {
            if let Some(w) = d.weight.filter(|w| *w > 0) {
                let v = format!("{}:{} {}", d.major, d.minor, blkio_to_io_weight(w));
                add("io", "io.weight".into(), v, "linux.resources.blockIO.weightDevice");
            }
        }
        let throttles = [
            (&b.throttle_read_bps_device, "rbps", "linux.resources.blockIO.throttleReadBpsDevice"),
            (&b.throttle_write_bps_device, "wbps", "linux.resources.blockIO.throttleWriteBpsDevice"),
            (&b.throttle_read_iops_device, "riops", "linux.resources.blockIO.throttleReadIOPSDevice"),
            (&b.throttle_write_iops_device, "wiops", "linux.resources.blockIO.throttleWriteIOPSDevice"),
        ];
        for (devs, key, field) in throttles {
            for d in devs {
                add("io", "io.max".into(), format!("{}:{} {key}={}", d.major, d.minor, d.rate), field);
            }
        }
    }
    for h in &res.hugepage_limits {
        add("hugetlb", format!("hugetlb.{}.max", h.page_size), h.limit.to_string(), "linux.resources.hugepageLimits");
    }
    for (k, v) in &res.unified {
        if k.contains('/') || k.starts_with('.') {
            return Err(Error::Invalid {
                path: path.to_path_buf(),
                field: format!("linux.resources.unified.{k}"),
                msg: "not a cgroup file name".into(),
            });
        }
        let ctl = k.split_once('.').map(|(c, _)| c.to_string()).filter(|c| c != "cgroup");
        out.push((ctl, k.clone(), v.clone(), "linux.resources.unified"));
    }
    Ok(out)
}

fn controllers(dir: &Path) -> Result<Vec<String>, Error> {
    let f = dir.join("cgroup.controllers");
    let text = std::fs::read_to_string(&f).map_err(|err| Error::Io { what: "read", path: f, err })?;
    Ok(text.split_whitespace().map(str::to_string).collect())
}

/// Create the cgroup `rel` (relative to `root`; a leading '/' is ignored) and write the limits of `res`.
/// Parents are created as needed and get the needed controllers enabled in their cgroup.subtree_control. A
/// limit whose controller the host lacks is an error naming the controller and file; with no limit asked, a
/// missing controller does not matter. With `res`, the device rules (`res.devices` then runc's defaults) are
/// enforced before this returns: the v1 devices controller on hybrid hosts, else a BPF device program on the v2
/// cgroup (devices.rs, bpf.rs). On error, every directory this call created is removed again.
pub fn create(root: &Path, rel: &str, res: Option<&LinuxResources>) -> Result<PathBuf, Error> {
    let rel_path = checked_rel(root, rel)?;
    let leaf = root.join(rel_path);
    let mut lims = match res {
        Some(r) => limits(r, &leaf)?,
        None => Vec::new(),
    };
    // Hybrid host: a controller bound to a v1 hierarchy (not available in v2) gets its limits in v1 terms there.
    let hs = if root == default_root() { v1::hierarchies() } else { &[] };
    let v1_lims = match res {
        Some(res) if !hs.is_empty() => move_to_v1(root, rel_path, res, hs, &mut lims)?,
        _ => Vec::new(),
    };
    // Device rules (with resources at all): checked now, written once the directories exist.
    let dev = res.map(|r| devices::Emulator::for_container(&r.devices, &leaf)).transpose()?;
    let dev_v1 = v1::hierarchy_of(hs, "devices").map(|h| h.mount.join(rel_path));
    let mut created: Vec<PathBuf> = Vec::new();
    let r = make_dirs(root, rel_path, &lims, &mut created)
        .and_then(|()| v1::create_dirs(hs, rel_path, &mut created).map(drop))
        .and_then(|()| write_limits(&leaf, &lims, &v1_lims))
        .and_then(|()| dev.as_ref().map_or(Ok(()), |d| devices::apply(d, &leaf, dev_v1.as_deref())));
    match r {
        Ok(()) => Ok(leaf),
        Err(e) => {
            for d in created.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
            Err(e)
        }
    }
}

/// `rel` as a relative path without `..`, under a cgroup2 `root`.
fn checked_rel<'a>(root: &Path, rel: &'a str) -> Result<&'a Path, Error> {
    let rel_path = Path::new(rel.trim_start_matches('/'));
    if rel_path.as_os_str().is_empty() || rel_path.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Error::Invalid {
            path: root.to_path_buf(),
            field: "linux.cgroupsPath".into(),
            msg: format!("{rel:?} is not a relative cgroup path without '..'"),
        });
    }
    if DEFAULT_ROOT.get().map(PathBuf::as_path) != Some(root) && !is_cgroup2(root) {
        return Err(Error::Invalid {
            path: root.to_path_buf(),
            field: "linux.cgroupsPath".into(),
            msg: "not a cgroup2 mount (keel supports cgroup v2 only)".into(),
        });
    }
    Ok(rel_path)
}

/// Take out of `lims` the limits of controllers that v2 lacks and a v1 hierarchy has, and return them in v1 terms
/// with their v1 directory. `unified` entries stay v2 (and fail as on any host without the controller).
fn move_to_v1(
    root: &Path,
    rel_path: &Path,
    res: &LinuxResources,
    hs: &[v1::Hierarchy],
    lims: &mut Vec<Limit>,
) -> Result<Vec<(PathBuf, Limit)>, Error> {
    let have = if lims.is_empty() { Vec::new() } else { controllers(root)? };
    let mut moved: Vec<String> = Vec::new();
    let mut v1_lims = Vec::new();
    for l in lims.iter().filter(|l| l.3 != "linux.resources.unified") {
        let Some(ctl) = l.0.as_deref() else { continue };
        if have.iter().any(|c| c == ctl) || moved.iter().any(|m| m == ctl) {
            continue;
        }
        if let Some(h) = v1::hierarchy_of(hs, ctl) {
            moved.push(ctl.to_string());
            let dir = h.mount.join(rel_path);
            v1_lims.extend(v1::limits(res, ctl).into_iter().map(|l| (dir.clone(), l)));
        }
    }
    lims.retain(|l| l.3 == "linux.resources.unified" || !l.0.as_ref().is_some_and(|c| moved.contains(c)));
    Ok(v1_lims)
}

/// mkdir each component of `rel_path` under `root` (recorded in `created`), enabling in each parent the
/// controllers `lims` need. An existing leaf is reused only if it has no processes (runc's check).
fn make_dirs(root: &Path, rel_path: &Path, lims: &[Limit], created: &mut Vec<PathBuf>) -> Result<(), Error> {
    let mut needed: Vec<&str> = lims.iter().filter_map(|l| l.0.as_deref()).collect();
    needed.sort();
    needed.dedup();
    let mut dir = root.to_path_buf();
    let comps: Vec<_> = rel_path.components().collect();
    for (i, c) in comps.iter().enumerate() {
        if !needed.is_empty() {
            enable_controllers(&dir, &needed, lims)?;
        }
        dir.push(c);
        match std::fs::create_dir(&dir) {
            Ok(()) => created.push(dir.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && i + 1 < comps.len() => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if !procs(&dir).is_empty() {
                    return Err(Error::Invalid {
                        path: dir.clone(),
                        field: "linux.cgroupsPath".into(),
                        msg: "cgroup already exists and has processes".into(),
                    });
                }
            }
            Err(e) => return Err(sys(format!("mkdir {}", dir.display()), e)),
        }
    }
    Ok(())
}

/// Enable the `needed` controllers in `dir` for its children; one `dir` lacks is an error naming it and the file
/// (from `lims`) that needs it.
fn enable_controllers(dir: &Path, needed: &[&str], lims: &[Limit]) -> Result<(), Error> {
    let have = controllers(dir)?;
    let sub = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&sub).unwrap_or_default();
    for ctl in needed {
        if !have.iter().any(|h| h == ctl) {
            let l = lims.iter().find(|l| l.0.as_deref() == Some(*ctl));
            return Err(Error::Invalid {
                path: dir.join("cgroup.controllers"),
                field: l.map_or("linux.resources", |l| l.3).into(),
                msg: format!(
                    "cgroup controller {ctl:?} is not available (needed for {})",
                    l.map_or("?", |l| l.1.as_str())
                ),
            });
        }
        if !enabled.split_whitespace().any(|e| e == *ctl) {
            write_file(&sub, &format!("+{ctl}"))?;
        }
    }
    Ok(())
}

/// Write the v2 limits into `leaf` and the v1 ones into their directories; a missing file names its controller.
fn write_limits(leaf: &Path, lims: &[Limit], v1_lims: &[(PathBuf, Limit)]) -> Result<(), Error> {
    let v2_lims = lims.iter().map(|l| (leaf, l));
    for (dir, (ctl, file, value, field)) in v2_lims.chain(v1_lims.iter().map(|(d, l)| (d.as_path(), l))) {
        let f = dir.join(file);
        if let Err(e) = std::fs::write(&f, value) {
            if e.kind() == std::io::ErrorKind::NotFound {
                let what = match ctl {
                    Some(c) => format!("cgroup file {file} does not exist (controller {c:?} lacks it)"),
                    None => format!("cgroup file {file} does not exist"),
                };
                return Err(Error::Invalid { path: f, field: (*field).into(), msg: what });
            }
            return Err(sys(format!("write {value:?} to {} ({field})", f.display()), e));
        }
    }
    Ok(())
}

/// Pids in the cgroup (cgroup.procs); empty if it does not exist.
pub fn procs(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Pids in the cgroup and all its descendants.
pub fn procs_recursive(path: &Path) -> Vec<i32> {
    let mut out = procs(path);
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(procs_recursive(&e.path()));
            }
        }
    }
    out
}

/// Kill every process left in `path` (cgroup.kill, or SIGKILL to each pid on kernels before 5.14) and remove it
/// and its child cgroups, retrying while the kernel finishes the exits. A missing cgroup is not an error.
pub fn remove(path: &Path) -> Result<(), Error> {
    // Hybrid host: the same cgroup under each v1 hierarchy (empty once the v2 one is, the processes are the same).
    let v1 = v1_leaves(path);
    let r = remove_v2(path);
    for d in &v1 {
        rmdir_tree(d)?;
    }
    r
}

/// On a hybrid host, the v1 cgroups of the container whose v2 cgroup is `path` (every v1 hierarchy, same relative
/// path); empty on a pure v2 host.
pub fn v1_leaves(path: &Path) -> Vec<PathBuf> {
    let hs = v1::hierarchies();
    if hs.is_empty() {
        return Vec::new();
    }
    v1::leaves_of(hs, &default_root(), path)
}

fn remove_v2(path: &Path) -> Result<(), Error> {
    if !path.exists() {
        return Ok(());
    }
    let kill = path.join("cgroup.kill");
    if kill.exists() {
        let _ = std::fs::write(&kill, "1");
    } else {
        for pid in procs_recursive(path) {
            let _ = keel_sys::kill(pid, libc::SIGKILL);
        }
    }
    rmdir_tree(path)
}

fn rmdir_tree(path: &Path) -> Result<(), Error> {
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path())?;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut delay = Duration::from_micros(200);
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(sys(format!("rmdir {}", path.display()), e)),
        }
    }
}

/// Freeze (pause) or thaw (resume) the cgroup via cgroup.freeze, waiting up to 2 s for cgroup.events to agree.
pub fn freeze(path: &Path, frozen: bool) -> Result<(), Error> {
    write_file(&path.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let events = path.join("cgroup.events");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let text =
            std::fs::read_to_string(&events).map_err(|err| Error::Io { what: "read", path: events.clone(), err })?;
        if text.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Sys {
                what: format!("wait for {want:?} in {}", events.display()),
                errno: Errno::ETIMEDOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether cgroup.events says the cgroup is frozen.
pub fn is_frozen(path: &Path) -> bool {
    std::fs::read_to_string(path.join("cgroup.events"))
        .map(|t| t.lines().any(|l| l.trim() == "frozen 1"))
        .unwrap_or(false)
}

/// Move `pid` into the cgroup.
pub fn add_pid(path: &Path, pid: i32) -> Result<(), Error> {
    write_file(&path.join("cgroup.procs"), &pid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(1000), 10000);
    }

    #[test]
    fn limits_from_resources() {
        let res: LinuxResources = serde_json::from_str(
            r#"{"memory": {"limit": 1048576, "reservation": 4096, "swap": 2097152},
                "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
                "pids": {"limit": 10},
                "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]},
                "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
                "unified": {"memory.high": "900000", "cgroup.max.descendants": "3"}}"#,
        )
        .unwrap();
        let l = limits(&res, Path::new("/x")).unwrap();
        let get = |f: &str| l.iter().filter(|x| x.1 == f).map(|x| x.2.clone()).collect::<Vec<_>>();
        assert_eq!(get("memory.max"), ["1048576"]);
        assert_eq!(get("memory.low"), ["4096"]);
        assert_eq!(get("memory.swap.max"), ["1048576"]);
        assert_eq!(get("cpu.weight"), ["39"]);
        assert_eq!(get("cpu.max"), ["50000 100000"]);
        assert_eq!(get("cpuset.cpus"), ["0"]);
        assert_eq!(get("pids.max"), ["10"]);
        assert_eq!(get("io.weight"), ["default 4950"]);
        assert_eq!(get("io.max"), ["8:0 rbps=1000"]);
        assert_eq!(get("hugetlb.2MB.max"), ["0"]);
        assert_eq!(get("memory.high"), ["900000"]);
        let d = l.iter().find(|x| x.1 == "cgroup.max.descendants").unwrap();
        assert_eq!(d.0, None);
        let bad: LinuxResources = serde_json::from_str(r#"{"unified": {"../x": "1"}}"#).unwrap();
        assert!(limits(&bad, Path::new("/x")).is_err());
        let bad: LinuxResources = serde_json::from_str(r#"{"memory": {"swap": 100}}"#).unwrap();
        assert!(limits(&bad, Path::new("/x")).unwrap_err().to_string().contains("memory.swap"));
    }
}
