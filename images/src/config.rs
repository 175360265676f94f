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
    // LinuxKit: `binds` if given (then `binds.add` is ignored), else `binds.add` (the label's binds are merged in
    // before, by label::merge).
    let binds: Vec<&String> = c.binds.as_ref().or(c.binds_add.as_ref()).into_iter().flatten().collect();
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

/// LinuxKit gives every container a uid/gid that other entries can use by name (`uid: getty`): 100, 101, ... in
/// the order onboot, onshutdown, services (a name used twice keeps the later id).
pub fn assigned_ids(m: &crate::yaml::Moby) -> BTreeMap<String, u32> {
    let mut ids = BTreeMap::new();
    for (i, c) in m.onboot.iter().chain(m.onshutdown.iter()).chain(m.services.iter()).enumerate() {
        ids.insert(c.name.clone(), 100 + i as u32);
    }
    ids
}

/// A uid/gid as LinuxKit's IDNumeric: a number; "" or "root" = 0; a container name = its assigned id. keel also
/// takes a number written as a string and a name from the image's /etc/passwd (uid) or /etc/group (gid), where
/// LinuxKit fails.
fn uid_of(id: &Id, rootfs: &Tree, group: bool, ids: &BTreeMap<String, u32>, who: &str) -> Result<u32, Error> {
    match id {
        Id::Num(n) => Ok(*n),
        Id::Name(s) if s.is_empty() || s == "root" => Ok(0),
        Id::Name(s) => {
            if let Some(n) = ids.get(s) {
                return Ok(*n);
            }
            if let Ok(n) = s.parse() {
                return Ok(n);
            }
            let file = if group { "etc/group" } else { "etc/passwd" };
            lookup(rootfs, file, s).ok_or_else(|| {
                Error::Config(format!(
                    "{who}: {} {s:?}: not a container name (LinuxKit assigns each container an id by name) nor a {} \
                     in the image's /{file}",
                    if group { "gid" } else { "uid" },
                    if group { "group" } else { "user" }
                ))
            })
        }
    }
}

/// What the image config says that LinuxKit ignores (a note): its `User`.
pub fn ignored_image_settings(c: &Container, img: &ImageConfig) -> Option<String> {
    (!img.user.is_empty()).then(|| {
        format!(
            "{}: image User {:?} ignored (as LinuxKit): runs as uid {} unless `uid:`/`gid:` say otherwise",
            c.name,
            img.user,
            match &c.uid {
                Some(Id::Num(n)) => n.to_string(),
                Some(Id::Name(s)) if !s.is_empty() => s.clone(),
                _ => "0".into(),
            }
        )
    })
}

/// The OCI version LinuxKit writes (runtime-spec v1.2.1's specs.Version).
pub const OCI_VERSION: &str = "1.2.1";

/// Build config.json for container `c` (its image label already merged in by [`crate::label::resolve`]) with
/// image defaults `img`, the image's tree `rootfs` (user/group names) and LinuxKit's per-container ids `ids`.
/// The JSON has the shape LinuxKit's (Go's) writes: empty lists, maps and false flags left out.
pub fn oci_config(
    c: &Container,
    img: &ImageConfig,
    rootfs: &Tree,
    ids: &BTreeMap<String, u32>,
) -> Result<Value, Error> {
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

    // User: uid/gid (default 0); the image's User is ignored, as LinuxKit does.
    let uid = uid_of(c.uid.as_ref().unwrap_or(&Id::Num(0)), rootfs, false, ids, who)?;
    let gid = uid_of(c.gid.as_ref().unwrap_or(&Id::Num(0)), rootfs, true, ids, who)?;
    let mut user = json!({"uid": uid, "gid": gid});
    if let Some(ag) = &c.additional_gids {
        let ids: Result<Vec<u32>, Error> = ag.iter().map(|i| uid_of(i, rootfs, true, ids, who)).collect();
        let ids = ids?;
        if !ids.is_empty() {
            user["additionalGids"] = json!(ids);
        }
    }

    // LinuxKit: `capabilities` if given, else `capabilities.add` (the label's are merged in before).
    let effective = caps(&c.capabilities.clone().or(c.capabilities_add.clone()), who)?;
    let ambient = caps(&c.ambient, who)?;
    let bounding: Vec<String> =
        effective.iter().chain(ambient.iter()).cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let mut capabilities = Map::new();
    for (k, v) in [
        ("bounding", &bounding),
        ("effective", &effective),
        ("inheritable", &bounding),
        ("permitted", &bounding),
        ("ambient", &ambient),
    ] {
        if !v.is_empty() {
            capabilities.insert(k.into(), json!(v));
        }
    }

    let mut process = json!({
        "user": user,
        "args": args,
        "cwd": cwd,
        "capabilities": capabilities,
    });
    if !env.is_empty() {
        process["env"] = json!(env);
    }
    let rl = rlimits(c.rlimits.as_deref().unwrap_or(&[]), who)?;
    if !rl.is_empty() {
        process["rlimits"] = json!(rl);
    }
    if c.no_new_privileges.unwrap_or(false) {
        process["noNewPrivileges"] = json!(true);
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
    // keel's one deliberate difference: LinuxKit has no cgroup namespace ("TODO cgroup namespaces" in its
    // ConfigToOCI); keel gives each container one so /sys/fs/cgroup shows only its own subtree (see CGROUP_NS_NOTE).
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
            let mut rule = json!({"allow": true, "access": "rwm"});
            if !d.kind.is_empty() {
                rule["type"] = json!(d.kind);
            }
            dev_rules.push(rule);
            continue;
        }
        let mode_s = d.mode.as_deref().ok_or_else(|| {
            Error::Config(format!("{who}: devices[{i}] {}: mode missing (an octal string such as \"0666\")", d.path))
        })?;
        let mode = u32::from_str_radix(mode_s.trim_start_matches("0o"), 8)
            .map_err(|e| Error::Config(format!("{who}: devices[{i}] {}: mode {mode_s:?} is not octal: {e}", d.path)))?;
        devices.push(json!({"path": d.path, "type": d.kind, "major": d.major, "minor": d.minor, "fileMode": mode}));
        let mut rule = json!({"allow": true, "major": d.major, "minor": d.minor, "access": "rwm"});
        if !d.kind.is_empty() {
            rule["type"] = json!(d.kind);
        }
        dev_rules.push(rule);
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

    let mut root = json!({"path": "rootfs"});
    if readonly {
        root["readonly"] = json!(true);
    }
    let mut cfg = json!({
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": root,
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

/// The note for keel's deliberate difference from LinuxKit's config.json (printed once per build).
pub const CGROUP_NS_NOTE: &str = "every container gets a cgroup namespace (LinuxKit's config.json has none): \
    /sys/fs/cgroup inside shows the container's own subtree";

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
        .map(|i| {
            // Go's omitempty: name, add and peer only when set.
            let mut o = json!({"createInRoot": i.create_in_root});
            for (k, v) in [("name", &i.name), ("add", &i.add), ("peer", &i.peer)] {
                if !v.is_empty() {
                    o[k] = json!(v);
                }
            }
            o
        })
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
        let cfg = oci_config(&c, &img, &Tree::new(), &BTreeMap::new()).unwrap();
        // Go's omitempty: no capability sets at all, no readonly flag, no terminal.
        assert_eq!(cfg["process"]["capabilities"], json!({}));
        assert_eq!(cfg["process"]["cwd"], "/");
        assert_eq!(cfg["process"]["env"], json!(["PATH=/bin"]));
        assert_eq!(cfg["root"], json!({"path": "rootfs"}));
        assert!(cfg["process"].get("terminal").is_none());
        assert_eq!(cfg["ociVersion"], OCI_VERSION);
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
        let cfg = oci_config(&one(y), &ImageConfig::default(), &rootfs, &BTreeMap::new()).unwrap();
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
    fn ids_by_container_name_and_image_user_ignored() {
        let m = Moby::parse(
            "onboot:\n  - name: a\n    image: busybox\nonshutdown:\n  - name: z\n    image: busybox\nservices:\n  - name: s\n    image: busybox\n    command: [x]\n    uid: s\n    gid: a\n    additionalGids: [z, 5]\n",
            "t",
        )
        .unwrap();
        let ids = assigned_ids(&m);
        assert_eq!(ids, BTreeMap::from([("a".into(), 100), ("z".into(), 101), ("s".into(), 102)]));
        let img = ImageConfig { user: "1000:1000".into(), ..Default::default() };
        let cfg = oci_config(&m.services[0], &img, &Tree::new(), &ids).unwrap();
        assert_eq!(cfg["process"]["user"], json!({"uid": 102, "gid": 100, "additionalGids": [101, 5]}));
        let c = one("services:\n  - name: s\n    image: busybox\n    command: [x]\n");
        let cfg = oci_config(&c, &img, &Tree::new(), &ids).unwrap();
        assert_eq!(cfg["process"]["user"], json!({"uid": 0, "gid": 0}), "image User ignored, as LinuxKit");
        assert!(ignored_image_settings(&c, &img).unwrap().contains("image User \"1000:1000\" ignored"));
        let c = one("services:\n  - name: s\n    image: busybox\n    command: [x]\n    uid: nosuch\n");
        let e = oci_config(&c, &img, &Tree::new(), &ids).unwrap_err().to_string();
        assert!(e.contains("s: uid \"nosuch\": not a container name"), "{e}");
    }

    #[test]
    fn errors_name_the_container() {
        let c = one("services:\n  - name: s\n    image: busybox\n    command: [x]\n    capabilities: [CAP_FLY]\n");
        assert!(oci_config(&c, &ImageConfig::default(), &Tree::new(), &BTreeMap::new())
            .unwrap_err()
            .to_string()
            .contains("s: unknown capability"));
        let c = one("services:\n  - name: s\n    image: busybox\n");
        assert!(oci_config(&c, &ImageConfig::default(), &Tree::new(), &BTreeMap::new())
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
