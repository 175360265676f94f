//! A container entry -> OCI config.json and LinuxKit runtime.json, with LinuxKit's defaults (ConfigToOCI in
//! linuxkit/src/cmd/linuxkit/moby/config.go and ImageBundle in image.go):
//! - args = `command` else image Entrypoint+Cmd; env = `env` else image Env; cwd = `cwd` else WorkingDir else "/".
//! - no capabilities unless asked (`capabilities: [all]` / `[none]` / a list; `ambient` adds to the bounding set).
//! - namespaces: host net/ipc/uts/user (unless `net: new|none|PATH`, ...), new pid (unless `pid: host`), always
//!   new mount and cgroup namespaces.
//! - mounts: /proc, /dev (tmpfs), /dev/pts, /sys, /sys/fs/cgroup (ro) — LinuxKit omits /dev/shm and /dev/mqueue —
//!   then `tmpfs`, `binds` (default options rw,rbind,rshared), `mounts`; keyed and sorted by destination.
//! - root "rootfs"; writable (default) = an overlay whose lower dir is the unpacked image and whose upper dir is a
//!   tmpfs under the bundle, set up by runtime.json; `readonly: true` = rootfs bind-mounted onto itself.
//! - annotations, sysctl, rlimits ("nofile,1024,2048"), uid/gid (numbers or names from the image's /etc/passwd
//!   and /etc/group), devices (+ device cgroup allow rules), resources, maskedPaths, readonlyPaths pass through.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::sources::ImageConfig;
use crate::tree::{Kind, Tree};
use crate::yaml::{Container, Id, Mount};
use crate::Error;

/// Every capability Linux 6.1 knows, in number order (what `capabilities: [all]` means): keel-runtime's table.
pub const ALL_CAPS: &[&str] = &keel_runtime::caps::NAMES;

const RLIMITS: &[&str] = &[
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

fn mount_json(m: &Mount) -> Value {
    let mut o = Map::new();
    o.insert("destination".into(), json!(m.destination));
    if !m.kind.is_empty() {
        o.insert("type".into(), json!(m.kind));
    }
    if !m.source.is_empty() {
        o.insert("source".into(), json!(m.source));
    }
    if !m.options.is_empty() {
        o.insert("options".into(), json!(m.options));
    }
    Value::Object(o)
}

fn m(dest: &str, kind: &str, src: &str, opts: &[&str]) -> Mount {
    Mount {
        destination: dest.into(),
        kind: kind.into(),
        source: src.into(),
        options: opts.iter().map(|s| s.to_string()).collect(),
    }
}

fn default_mountpoint(kind: &str) -> &'static str {
    match kind {
        "proc" => "/proc",
        "devpts" => "/dev/pts",
        "sysfs" => "/sys",
        "cgroup" | "cgroup2" => "/sys/fs/cgroup",
        "mqueue" => "/dev/mqueue",
        _ => "",
    }
}

/// The mount list (sorted by destination).
fn mounts(c: &Container, readonly: bool) -> Result<Vec<Value>, Error> {
    let who = &c.name;
    let mut dev = vec!["nosuid", "strictatime", "mode=755", "size=65536k"];
    let mut sys = vec!["nosuid", "noexec", "nodev"];
    if readonly {
        dev.push("ro");
        sys.push("ro");
    }
    let mut ms: BTreeMap<String, Mount> = BTreeMap::new();
    for mt in [
        m("/proc", "proc", "proc", &["nosuid", "nodev", "noexec", "relatime"]),
        m("/dev", "tmpfs", "tmpfs", &dev),
        m("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
        m("/sys", "sysfs", "sysfs", &sys),
        m("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"]),
    ] {
        ms.insert(mt.destination.clone(), mt);
    }
    for t in c.tmpfs.iter().flatten() {
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() > 2 {
            return Err(Error::Config(format!("{who}: tmpfs {t:?}: too many ':'")));
        }
        let opts = parts.get(1).map(|o| o.split(',').map(String::from).collect()).unwrap_or_default();
        ms.insert(
            parts[0].into(),
            Mount { destination: parts[0].into(), kind: "tmpfs".into(), source: "tmpfs".into(), options: opts },
        );
    }
    // LinuxKit: `binds` replaces the image label's binds; `binds.add` adds to them. Without labels both add.
    let binds: Vec<&String> = c.binds.iter().flatten().chain(c.binds_add.iter().flatten()).collect();
    for b in binds {
        let parts: Vec<&str> = b.split(':').collect();
        if parts.len() < 2 {
            return Err(Error::Config(format!("{who}: bind {b:?}: missing ':' (SRC:DST[:OPTIONS])")));
        }
        if parts.len() > 3 {
            return Err(Error::Config(format!("{who}: bind {b:?}: too many ':'")));
        }
        let opts: Vec<String> = match parts.get(2) {
            Some(o) => o.split(',').map(String::from).chain(std::iter::once("rbind".to_string())).collect(),
            None => vec!["rw".into(), "rbind".into(), "rshared".into()],
        };
        ms.insert(
            parts[1].into(),
            Mount { destination: parts[1].into(), kind: "bind".into(), source: parts[0].into(), options: opts },
        );
    }
    for mt in c.mounts.iter().flatten() {
        let mut mt = mt.clone();
        if mt.kind.is_empty() && matches!(mt.source.as_str(), "mqueue" | "devpts" | "proc" | "sysfs" | "cgroup") {
            mt.kind = mt.source.clone();
        }
        if mt.kind.is_empty() && mt.destination == "/dev" {
            mt.kind = "tmpfs".into();
        }
        if mt.kind.is_empty() {
            return Err(Error::Config(format!("{who}: mount for destination {} is missing type", mt.destination)));
        }
        if mt.source.is_empty() {
            mt.source = mt.kind.clone();
        }
        if mt.destination.is_empty() {
            mt.destination = default_mountpoint(&mt.kind).into();
        }
        if mt.destination.is_empty() {
            return Err(Error::Config(format!("{who}: mount type {} is missing destination", mt.kind)));
        }
        ms.insert(mt.destination.clone(), mt);
    }
    Ok(ms.values().map(mount_json).collect())
}

fn caps(list: &Option<Vec<String>>, who: &str) -> Result<Vec<String>, Error> {
    let l = list.clone().unwrap_or_default();
    if l.len() == 1 {
        match l[0].to_ascii_lowercase().as_str() {
            "none" => return Ok(vec![]),
            "all" => return Ok(ALL_CAPS.iter().map(|s| s.to_string()).collect()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for c in l {
        let up = c.to_ascii_uppercase();
        let up = if up.starts_with("CAP_") { up } else { format!("CAP_{up}") };
        if !ALL_CAPS.contains(&up.as_str()) {
            return Err(Error::Config(format!("{who}: unknown capability: {c}")));
        }
        if !out.contains(&up) {
            out.push(up);
        }
    }
    Ok(out)
}

fn rlimits(list: &[String], who: &str) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for r in list {
        let parts: Vec<&str> = r.splitn(3, ',').map(str::trim).collect();
        if parts.len() != 3 {
            return Err(Error::Config(format!("{who}: cannot parse rlimit {r:?} (want NAME,SOFT,HARD)")));
        }
        let mut name = parts[0].to_ascii_uppercase();
        if !name.starts_with("RLIMIT_") {
            name = format!("RLIMIT_{name}");
        }
        if !RLIMITS.contains(&name.as_str()) {
            return Err(Error::Config(format!("{who}: unknown rlimit {}", parts[0])));
        }
        let num = |s: &str| -> Result<u64, Error> {
            if s.eq_ignore_ascii_case("unlimited") {
                Ok(u64::MAX)
            } else {
                s.parse().map_err(|e| Error::Config(format!("{who}: rlimit {r:?}: cannot parse {s:?}: {e}")))
            }
        };
        out.push(json!({"type": name, "soft": num(parts[1])?, "hard": num(parts[2])?}));
    }
    Ok(out)
}

/// Look a name up in the rootfs's /etc/passwd (`field` 2 = uid, 3 = gid) or /etc/group (`field` 2 = gid).
fn lookup(rootfs: &Tree, file: &str, name: &str) -> Option<u32> {
    let p = rootfs.resolve(file)?;
    let Kind::File(d) = &rootfs.get(&p)?.kind else { return None };
    String::from_utf8_lossy(d).lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name)).then(|| f.get(2).and_then(|x| x.parse().ok())).flatten()
    })
}

fn uid_of(id: &Id, rootfs: &Tree, group: bool, who: &str) -> Result<u32, Error> {
    match id {
        Id::Num(n) => Ok(*n),
        Id::Name(s) if s.is_empty() || s == "root" => Ok(0),
        Id::Name(s) => {
            if let Ok(n) = s.parse() {
                return Ok(n);
            }
            let file = if group { "etc/group" } else { "etc/passwd" };
            lookup(rootfs, file, s).ok_or_else(|| {
                Error::Config(format!(
                    "{who}: cannot find {} {s:?} in the image's /{file}",
                    if group { "group" } else { "user" }
                ))
            })
        }
    }
}

/// Build config.json for container `c` with image defaults `img` (rootfs used for user/group names).
pub fn oci_config(c: &Container, img: &ImageConfig, rootfs: &Tree) -> Result<Value, Error> {
    let who = c.name.as_str();
    let args: Vec<String> = match &c.command {
        Some(cmd) => cmd.clone(),
        None => img.entrypoint.iter().chain(img.cmd.iter()).cloned().collect(),
    };
    if args.is_empty() {
        return Err(Error::Config(format!("{who}: no command: set `command:` (the image has no Entrypoint/Cmd)")));
    }
    let env = c.env.clone().unwrap_or_else(|| img.env.clone());
    let cwd = c.cwd.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        if img.working_dir.is_empty() {
            "/".into()
        } else {
            img.working_dir.clone()
        }
    });
    let readonly = c.readonly.unwrap_or(false);

    // User: YAML uid/gid, else the image's User ("uid[:gid]" or names), else root.
    let (img_u, img_g) = match img.user.split_once(':') {
        Some((u, g)) => (Some(u.to_string()), Some(g.to_string())),
        None if !img.user.is_empty() => (Some(img.user.clone()), None),
        None => (None, None),
    };
    let uid_id = c.uid.clone().or(img_u.map(Id::Name)).unwrap_or(Id::Num(0));
    let gid_id = c.gid.clone().or(img_g.map(Id::Name)).unwrap_or(Id::Num(0));
    let uid = uid_of(&uid_id, rootfs, false, who)?;
    let gid = uid_of(&gid_id, rootfs, true, who)?;
    let mut user = json!({"uid": uid, "gid": gid});
    if let Some(ag) = &c.additional_gids {
        let ids: Result<Vec<u32>, Error> = ag.iter().map(|i| uid_of(i, rootfs, true, who)).collect();
        user["additionalGids"] = json!(ids?);
    }

    let effective = caps(&c.capabilities.clone().or(c.capabilities_add.clone()), who)?;
    let ambient = caps(&c.ambient, who)?;
    let bounding: Vec<String> =
        effective.iter().chain(ambient.iter()).cloned().collect::<BTreeSet<_>>().into_iter().collect();

    let mut process = json!({
        "terminal": false,
        "user": user,
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": bounding,
            "effective": effective,
            "inheritable": bounding,
            "permitted": bounding,
            "ambient": ambient,
        },
        "noNewPrivileges": c.no_new_privileges.unwrap_or(false),
    });
    let rl = rlimits(c.rlimits.as_deref().unwrap_or(&[]), who)?;
    if !rl.is_empty() {
        process["rlimits"] = json!(rl);
    }
    if let Some(o) = c.oom_score_adj {
        process["oomScoreAdj"] = json!(o);
    }

    // Namespaces, in LinuxKit's order.
    let mut ns = Vec::new();
    let mut opt_ns = |v: &Option<String>, kind: &str, default_new: bool| {
        let v =
            v.clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| if default_new { "new".into() } else { "root".into() });
        if v != "host" && v != "root" {
            if v == "new" || v == "none" {
                ns.push(json!({"type": kind}));
            } else {
                ns.push(json!({"type": kind, "path": v}));
            }
        }
    };
    opt_ns(&c.net, "network", false);
    opt_ns(&c.ipc, "ipc", false);
    opt_ns(&c.uts, "uts", false);
    opt_ns(&c.pid, "pid", true);
    opt_ns(&c.userns, "user", false);
    ns.push(json!({"type": "mount"}));
    ns.push(json!({"type": "cgroup"}));

    // Resources + devices.
    let mut resources = match &c.resources {
        Some(Value::Object(o)) => Value::Object(o.clone()),
        Some(Value::Null) | None => json!({}),
        Some(other) => return Err(Error::Config(format!("{who}: resources must be a mapping, got {other}"))),
    };
    let mut devices = Vec::new();
    let mut dev_rules = resources.get("devices").and_then(|d| d.as_array().cloned()).unwrap_or_default();
    for (i, d) in c.devices.iter().flatten().enumerate() {
        if d.path == "all" {
            dev_rules.push(json!({"allow": true, "type": d.kind, "access": "rwm"}));
            continue;
        }
        let mode_s =
            d.mode.as_deref().ok_or_else(|| Error::Config(format!("{who}: devices[{i}] {}: mode missing", d.path)))?;
        let mode = u32::from_str_radix(mode_s.trim_start_matches("0o"), 8)
            .map_err(|e| Error::Config(format!("{who}: devices[{i}] {}: mode {mode_s:?} is not octal: {e}", d.path)))?;
        devices.push(json!({"path": d.path, "type": d.kind, "major": d.major, "minor": d.minor, "fileMode": mode}));
        dev_rules.push(json!({"allow": true, "type": d.kind, "major": d.major, "minor": d.minor, "access": "rwm"}));
    }
    if !dev_rules.is_empty() {
        resources["devices"] = json!(dev_rules);
    }

    let mut linux = json!({"resources": resources, "namespaces": ns});
    let idmap = |v: &Option<Vec<crate::yaml::IdMapping>>| -> Option<Value> {
        v.as_ref().filter(|l| !l.is_empty()).map(|l| {
            json!(l
                .iter()
                .map(|m| json!({"containerID": m.container_id, "hostID": m.host_id, "size": m.size}))
                .collect::<Vec<_>>())
        })
    };
    if let Some(v) = idmap(&c.uid_mappings) {
        linux["uidMappings"] = v;
    }
    if let Some(v) = idmap(&c.gid_mappings) {
        linux["gidMappings"] = v;
    }
    if let Some(s) = c.sysctl.as_ref().filter(|s| !s.is_empty()) {
        linux["sysctl"] = json!(s);
    }
    if let Some(p) = c.cgroups_path.as_ref().filter(|s| !s.is_empty()) {
        linux["cgroupsPath"] = json!(p);
    }
    if !devices.is_empty() {
        linux["devices"] = json!(devices);
    }
    if let Some(p) = c.rootfs_propagation.as_ref().filter(|s| !s.is_empty()) {
        linux["rootfsPropagation"] = json!(p);
    }
    if let Some(p) = c.masked_paths.as_ref().filter(|s| !s.is_empty()) {
        linux["maskedPaths"] = json!(p);
    }
    if let Some(p) = c.readonly_paths.as_ref().filter(|s| !s.is_empty()) {
        linux["readonlyPaths"] = json!(p);
    }

    let mut cfg = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": readonly},
        "mounts": mounts(c, readonly)?,
        "linux": linux,
    });
    if let Some(h) = c.hostname.as_ref().filter(|s| !s.is_empty()) {
        cfg["hostname"] = json!(h);
    }
    if let Some(a) = c.annotations.as_ref().filter(|a| !a.is_empty()) {
        cfg["annotations"] = json!(a);
    }
    Ok(cfg)
}

/// Build runtime.json for the bundle at absolute in-image path `bundle` (e.g. "/containers/services/web"), whose
/// image tree is unpacked at `lower` (the bundle's own `lower`/`rootfs`, or another bundle's when shared).
pub fn runtime_json(c: &Container, bundle: &str, lower: &str, readonly: bool) -> Value {
    let rootfs = format!("{bundle}/rootfs");
    let mut ms: Vec<Value> = if readonly {
        // Bind the rootfs onto itself (or from the shared copy): runc and keel-runtime want a mount point.
        vec![json!({"source": lower, "destination": rootfs, "options": ["bind"]})]
    } else {
        let tmp = format!("{bundle}/tmp");
        vec![
            json!({"source": "tmpfs", "type": "tmpfs", "destination": tmp}),
            // Remount private so nothing else sees the temporary layers (two mount calls: see field notes).
            json!({"destination": tmp, "options": ["remount", "private"]}),
            json!({"source": "overlay", "type": "overlay", "destination": rootfs, "options": [
                format!("lowerdir={lower}"), format!("upperdir={tmp}/upper"), format!("workdir={tmp}/work")]}),
        ]
    };
    let rt = c.runtime.clone().unwrap_or_default();
    ms.extend(rt.mounts.iter().flatten().map(mount_json));
    let ifs: Vec<Value> = rt
        .interfaces
        .iter()
        .flatten()
        .map(|i| json!({"name": i.name, "add": i.add, "peer": i.peer, "createInRoot": i.create_in_root}))
        .collect();
    let s = |v: &Option<String>| json!(v.clone().unwrap_or_default());
    json!({
        "cgroups": rt.cgroups.unwrap_or_default(),
        "mounts": ms,
        "mkdir": rt.mkdir.unwrap_or_default(),
        "interfaces": ifs,
        "bindNS": {
            "cgroup": s(&rt.bind_ns.cgroup), "ipc": s(&rt.bind_ns.ipc), "mnt": s(&rt.bind_ns.mnt),
            "net": s(&rt.bind_ns.net), "pid": s(&rt.bind_ns.pid), "user": s(&rt.bind_ns.user), "uts": s(&rt.bind_ns.uts),
        },
        "namespace": rt.namespace.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::Moby;

    fn one(y: &str) -> Container {
        Moby::parse(y, "t").unwrap().services.remove(0)
    }

    #[test]
    fn linuxkit_defaults() {
        let c = one("services:\n  - name: s\n    image: busybox\n    command: [sleep, '1']\n");
        let img = ImageConfig { env: vec!["PATH=/bin".into()], ..Default::default() };
        let cfg = oci_config(&c, &img, &Tree::new()).unwrap();
        assert_eq!(cfg["process"]["capabilities"]["effective"], json!([]));
        assert_eq!(cfg["process"]["capabilities"]["bounding"], json!([]));
        assert_eq!(cfg["process"]["cwd"], "/");
        assert_eq!(cfg["process"]["env"], json!(["PATH=/bin"]));
        assert_eq!(cfg["root"]["readonly"], false);
        assert_eq!(cfg["linux"]["namespaces"], json!([{"type": "pid"}, {"type": "mount"}, {"type": "cgroup"}]));
        let dests: Vec<&str> =
            cfg["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap()).collect();
        assert_eq!(dests, ["/dev", "/dev/pts", "/proc", "/sys", "/sys/fs/cgroup"]);
    }

    #[test]
    fn options() {
        let y = r#"
services:
  - name: s
    image: busybox
    command: [x]
    capabilities: [CAP_NET_ADMIN, net_raw]
    net: new
    pid: host
    readonly: true
    binds: ["/run/keel:/run/keel", "/etc:/hostetc:ro"]
    tmpfs: ["/tmp:size=1m"]
    rlimits: ["nofile,1024,unlimited"]
    devices:
      - {path: /dev/fuse, type: c, major: 10, minor: 229, mode: "0666"}
    annotations: {keel.restart: always}
    uid: nobody
"#;
        let mut rootfs = Tree::new();
        rootfs.insert("etc/passwd", crate::tree::Node::file(b"nobody:x:65534:65534::/:/bin/false\n".to_vec(), 0o644));
        let cfg = oci_config(&one(y), &ImageConfig::default(), &rootfs).unwrap();
        assert_eq!(cfg["process"]["capabilities"]["effective"], json!(["CAP_NET_ADMIN", "CAP_NET_RAW"]));
        assert_eq!(cfg["process"]["user"]["uid"], 65534);
        assert_eq!(cfg["linux"]["namespaces"], json!([{"type": "network"}, {"type": "mount"}, {"type": "cgroup"}]));
        assert_eq!(cfg["annotations"]["keel.restart"], "always");
        assert_eq!(cfg["process"]["rlimits"][0]["hard"], json!(u64::MAX));
        assert_eq!(cfg["linux"]["devices"][0]["fileMode"], 0o666);
        let ms = cfg["mounts"].as_array().unwrap();
        let bind = ms.iter().find(|m| m["destination"] == "/run/keel").unwrap();
        assert_eq!(bind["options"], json!(["rw", "rbind", "rshared"]));
        let ro = ms.iter().find(|m| m["destination"] == "/hostetc").unwrap();
        assert_eq!(ro["options"], json!(["ro", "rbind"]));
        let dev = ms.iter().find(|m| m["destination"] == "/dev").unwrap();
        assert!(dev["options"].as_array().unwrap().contains(&json!("ro")));
    }

    #[test]
    fn errors_name_the_container() {
        let c = one("services:\n  - name: s\n    image: busybox\n    command: [x]\n    capabilities: [CAP_FLY]\n");
        assert!(oci_config(&c, &ImageConfig::default(), &Tree::new())
            .unwrap_err()
            .to_string()
            .contains("s: unknown capability"));
        let c = one("services:\n  - name: s\n    image: busybox\n");
        assert!(oci_config(&c, &ImageConfig::default(), &Tree::new())
            .unwrap_err()
            .to_string()
            .contains("s: no command"));
    }

    #[test]
    fn runtime_overlay_and_readonly() {
        let c = one("services:\n  - name: s\n    image: busybox\n");
        let rw = runtime_json(&c, "/containers/services/s", "/containers/services/s/lower", false);
        assert_eq!(rw["mounts"][2]["type"], "overlay");
        assert_eq!(rw["mounts"][1]["options"], json!(["remount", "private"]));
        let ro = runtime_json(&c, "/containers/services/s", "/containers/services/s/rootfs", true);
        assert_eq!(ro["mounts"][0]["options"], json!(["bind"]));
    }
}
