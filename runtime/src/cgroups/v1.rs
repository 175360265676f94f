//! cgroup v1 on hybrid hosts (v1 controllers at /sys/fs/cgroup/<ctrl>, cgroup2 at /sys/fs/cgroup/unified with
//! few or no controllers). As runc does there, a container's cgroup exists under every mounted v1 hierarchy too
//! (`<mount>/<rel>`), the process joins each (the child writes cgroup.procs first thing), and a limit whose
//! controller is bound to v1 is written there in v1 terms (cpu.shares, memory.limit_in_bytes, ...). Without v1
//! mounts (a pure v2 host, the keel VM) every function here is a no-op.

use std::path::{Path, PathBuf};

use super::{sys, Limit, LinuxResources};
use crate::Error;

/// A mounted v1 hierarchy: its mount point and the controllers bound to it (e.g. ["cpu"], ["name=systemd"]).
#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
}

/// The v1 hierarchies of this host from /proc/self/mountinfo; read once per process.
pub fn hierarchies() -> &'static [Hierarchy] {
    static H: std::sync::OnceLock<Vec<Hierarchy>> = std::sync::OnceLock::new();
    H.get_or_init(|| parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()))
}

/// Mount options that are not controllers.
const NOT_CONTROLLERS: &[&str] = &["rw", "ro", "noprefix", "clone_children", "xattr", "nsdelegate", "cpuset_v2_mode"];

fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut out: Vec<(Hierarchy, bool)> = Vec::new();
    for m in keel_sys::mountinfo::parse(text).into_iter().filter(|m| m.fstype == "cgroup") {
        let controllers: Vec<String> = m
            .super_options
            .split(',')
            .filter(|o| !NOT_CONTROLLERS.contains(o) && !o.starts_with("release_agent="))
            .map(str::to_string)
            .collect();
        if controllers.is_empty() {
            continue;
        }
        // One mount per hierarchy: the same one mounted again (a chroot's /sys, a bind) is the same tree. The first
        // mount of its root wins; a bind of one of its cgroups only where the root is mounted nowhere.
        let root = m.root == "/";
        let h = Hierarchy { mount: m.mount_point, controllers };
        match out.iter().position(|(k, _): &(Hierarchy, bool)| k.controllers == h.controllers) {
            None => out.push((h, root)),
            Some(i) if root && !out[i].1 => out[i] = (h, true),
            Some(_) => {}
        }
    }
    out.into_iter().map(|(h, _)| h).collect()
}

/// The v1 hierarchy a controller is bound to. v2's "io" is v1's "blkio".
pub fn hierarchy_of<'a>(hs: &'a [Hierarchy], v2_ctl: &str) -> Option<&'a Hierarchy> {
    let ctl = if v2_ctl == "io" { "blkio" } else { v2_ctl };
    hs.iter().find(|h| h.controllers.iter().any(|c| c == ctl))
}

fn neg1_or(v: i64) -> String {
    if v < 0 {
        "-1".into()
    } else {
        v.to_string()
    }
}

/// The v1 files and values `res` asks for of the v2 controller `ctl` (memory, cpu, cpuset, pids, io, hugetlb), in
/// write order. Each entry's controller is the v2 name, as in [`super::limits`].
pub fn limits(res: &LinuxResources, ctl: &str) -> Vec<Limit> {
    let mut out: Vec<Limit> = Vec::new();
    let mut add = |file: String, value: String, field: &'static str| out.push((Some(ctl.into()), file, value, field));
    match ctl {
        "memory" => {
            if let Some(m) = &res.memory {
                if let Some(l) = m.limit {
                    add("memory.limit_in_bytes".into(), neg1_or(l), "linux.resources.memory.limit");
                }
                if let Some(r) = m.reservation {
                    add("memory.soft_limit_in_bytes".into(), neg1_or(r), "linux.resources.memory.reservation");
                }
                if let Some(sw) = m.swap {
                    // v1's memsw is memory+swap, as the spec's swap is.
                    add("memory.memsw.limit_in_bytes".into(), neg1_or(sw), "linux.resources.memory.swap");
                }
                if let Some(s) = m.swappiness {
                    add("memory.swappiness".into(), s.to_string(), "linux.resources.memory.swappiness");
                }
            }
        }
        "cpu" => {
            if let Some(c) = &res.cpu {
                if let Some(sh) = c.shares.filter(|s| *s > 0) {
                    add("cpu.shares".into(), sh.to_string(), "linux.resources.cpu.shares");
                }
                // Period first: a quota is checked against the current period.
                if let Some(p) = c.period.filter(|p| *p > 0) {
                    add("cpu.cfs_period_us".into(), p.to_string(), "linux.resources.cpu.period");
                }
                if let Some(q) = c.quota {
                    add(
                        "cpu.cfs_quota_us".into(),
                        if q > 0 { q.to_string() } else { "-1".into() },
                        "linux.resources.cpu.quota",
                    );
                }
                if let Some(b) = c.burst {
                    add("cpu.cfs_burst_us".into(), b.to_string(), "linux.resources.cpu.burst");
                }
                if let Some(i) = c.idle {
                    add("cpu.idle".into(), i.to_string(), "linux.resources.cpu.idle");
                }
            }
        }
        "cpuset" => {
            if let Some(c) = &res.cpu {
                if let Some(cpus) = c.cpus.as_ref().filter(|s| !s.is_empty()) {
                    add("cpuset.cpus".into(), cpus.clone(), "linux.resources.cpu.cpus");
                }
                if let Some(mems) = c.mems.as_ref().filter(|s| !s.is_empty()) {
                    add("cpuset.mems".into(), mems.clone(), "linux.resources.cpu.mems");
                }
            }
        }
        "pids" => {
            if let Some(p) = &res.pids {
                let v = if p.limit > 0 { p.limit.to_string() } else { "max".into() };
                add("pids.max".into(), v, "linux.resources.pids.limit");
            }
        }
        "io" => {
            if let Some(b) = &res.block_io {
                if let Some(w) = b.weight.filter(|w| *w > 0) {
                    add("blkio.weight".into(), w.to_string(), "linux.resources.blockIO.weight");
                }
                for d in &b.weight_device {
                    if let Some(w) = d.weight.filter(|w| *w > 0) {
                        let v = format!("{}:{} {w}", d.major, d.minor);
                        add("blkio.weight_device".into(), v, "linux.resources.blockIO.weightDevice");
                    }
                }
                let throttles = [
                    (&b.throttle_read_bps_device, "read_bps", "linux.resources.blockIO.throttleReadBpsDevice"),
                    (&b.throttle_write_bps_device, "write_bps", "linux.resources.blockIO.throttleWriteBpsDevice"),
                    (&b.throttle_read_iops_device, "read_iops", "linux.resources.blockIO.throttleReadIOPSDevice"),
                    (&b.throttle_write_iops_device, "write_iops", "linux.resources.blockIO.throttleWriteIOPSDevice"),
                ];
                for (devs, key, field) in throttles {
                    for d in devs {
                        add(
                            format!("blkio.throttle.{key}_device"),
                            format!("{}:{} {}", d.major, d.minor, d.rate),
                            field,
                        );
                    }
                }
            }
        }
        "hugetlb" => {
            for h in &res.hugepage_limits {
                let f = format!("hugetlb.{}.limit_in_bytes", h.page_size);
                add(f, h.limit.to_string(), "linux.resources.hugepageLimits");
            }
        }
        _ => {}
    }
    out
}

/// Create `<mount>/<rel>` in every v1 hierarchy (a new cpuset cgroup gets its parent's cpus and mems, else no
/// process could join it), appending each directory made to `created`. Returns the leaves.
pub fn create_dirs(hs: &[Hierarchy], rel: &Path, created: &mut Vec<PathBuf>) -> Result<Vec<PathBuf>, Error> {
    let mut leaves = Vec::new();
    for h in hs {
        let cpuset = h.controllers.iter().any(|c| c == "cpuset");
        let mut dir = h.mount.clone();
        for c in rel.components() {
            let parent = dir.clone();
            dir.push(c);
            match std::fs::create_dir(&dir) {
                Ok(()) => created.push(dir.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(sys(format!("mkdir {}", dir.display()), e)),
            }
            if cpuset {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let v = std::fs::read_to_string(parent.join(f)).unwrap_or_default();
                    if !v.trim().is_empty() {
                        super::write_file(&dir.join(f), v.trim())?;
                    }
                }
            }
        }
        leaves.push(dir);
    }
    Ok(leaves)
}

/// The v1 leaves of the container whose v2 cgroup is `v2_path` (under the hybrid v2 root `root`); empty on a pure
/// v2 host or for a path outside `root`.
pub fn leaves_of(hs: &[Hierarchy], root: &Path, v2_path: &Path) -> Vec<PathBuf> {
    match v2_path.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => hs.iter().map(|h| h.mount.join(rel)).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_hierarchies() {
        let hs = parse_mountinfo(
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:5 - cgroup cgroup rw,cpu,cpuacct\n\
             40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n\
             38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n\
             90 89 0:35 / /chroot/sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n\
             91 89 0:36 /ctr /c/sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
             92 89 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n",
        );
        assert_eq!(hs.len(), 4, "{hs:?}");
        assert_eq!(hierarchy_of(&hs, "blkio").unwrap().mount, Path::new("/sys/fs/cgroup/blkio"), "first mount");
        assert_eq!(hierarchy_of(&hs, "pids").unwrap().mount, Path::new("/sys/fs/cgroup/pids"), "the root's mount");
        assert_eq!(hs[0].mount, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(hs[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(hs[1].controllers, ["name=systemd"]);
        assert_eq!(hierarchy_of(&hs, "io").unwrap().mount, Path::new("/sys/fs/cgroup/blkio"));
        assert!(hierarchy_of(&hs, "memory").is_none());
    }

    #[test]
    fn v1_limits() {
        let res: LinuxResources = serde_json::from_str(
            r#"{"memory": {"limit": 1048576, "swap": 2097152}, "cpu": {"shares": 1024, "quota": 50000,
                "period": 100000}, "blockIO": {"weight": 500}, "pids": {"limit": 10}}"#,
        )
        .unwrap();
        let files = |ctl| limits(&res, ctl).into_iter().map(|l| (l.1, l.2)).collect::<Vec<_>>();
        let p = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            files("memory"),
            [p("memory.limit_in_bytes", "1048576"), p("memory.memsw.limit_in_bytes", "2097152")]
        );
        assert_eq!(
            files("cpu"),
            [p("cpu.shares", "1024"), p("cpu.cfs_period_us", "100000"), p("cpu.cfs_quota_us", "50000")]
        );
        assert_eq!(files("io"), [p("blkio.weight", "500")]);
        assert_eq!(files("pids"), [p("pids.max", "10")]);
    }
}
