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

use serde_json::Value;

use crate::sources::ImageConfig;
use crate::spec::{
    BindNs, Capabilities, Device, DeviceRule, IdMapping, Interface, Linux, Namespace, Process, Resources, Rlimit, Root,
    RuntimeJson, Spec, User,
};
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
fn mounts(c: &Container, readonly: bool) -> Result<Vec<crate::spec::Mount>, Error> {
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
    Ok(ms.values().map(crate::spec::Mount::from).collect())
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

fn rlimits(list: &[String], who: &str) -> Result<Vec<Rlimit>, Error> {
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
        out.push(Rlimit { kind: name, soft: num(parts[1])?, hard: num(parts[2])? });
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
/// Serialised, it has the shape LinuxKit's (Go's) writes: empty lists, maps and false flags left out
/// (see [`crate::spec`]).
pub fn oci_config(c: &Container, img: &ImageConfig, rootfs: &Tree, ids: &BTreeMap<String, u32>) -> Result<Spec, Error> {
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
    let additional_gids = c
        .additional_gids
        .iter()
        .flatten()
        .map(|i| uid_of(i, rootfs, true, ids, who))
        .collect::<Result<Vec<u32>, Error>>()?;

    // LinuxKit: `capabilities` if given, else `capabilities.add` (the label's are merged in before).
    let effective = caps(&c.capabilities.clone().or(c.capabilities_add.clone()), who)?;
    let ambient = caps(&c.ambient, who)?;
    let bounding: Vec<String> =
        effective.iter().chain(ambient.iter()).cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let capabilities =
        Capabilities { inheritable: bounding.clone(), permitted: bounding.clone(), bounding, effective, ambient };

    let process = Process {
        user: User { uid, gid, additional_gids },
        args,
        env,
        cwd,
        capabilities,
        rlimits: rlimits(c.rlimits.as_deref().unwrap_or(&[]), who)?,
        no_new_privileges: c.no_new_privileges.unwrap_or(false),
        oom_score_adj: c.oom_score_adj,
    };

    // Namespaces, in LinuxKit's order.
    let mut namespaces = Vec::new();
    let mut opt_ns = |v: &Option<String>, kind: &str, default_new: bool| {
        let v =
            v.clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| if default_new { "new".into() } else { "root".into() });
        if v != "host" && v != "root" {
            let path = (v != "new" && v != "none").then_some(v);
            namespaces.push(Namespace { kind: kind.into(), path });
        }
    };
    opt_ns(&c.net, "network", false);
    opt_ns(&c.ipc, "ipc", false);
    opt_ns(&c.uts, "uts", false);
    opt_ns(&c.pid, "pid", true);
    opt_ns(&c.userns, "user", false);
    namespaces.push(Namespace { kind: "mount".into(), path: None });
    // keel's one deliberate difference: LinuxKit has no cgroup namespace ("TODO cgroup namespaces" in its
    // ConfigToOCI); keel gives each container one so /sys/fs/cgroup shows only its own subtree (see CGROUP_NS_NOTE).
    namespaces.push(Namespace { kind: "cgroup".into(), path: None });

    // Resources (the YAML's, as given; its device rules typed) + devices.
    let mut resources: Resources = match &c.resources {
        Some(v @ Value::Object(_)) => serde_json::from_value(v.clone())
            .map_err(|e| Error::Config(format!("{who}: resources: {e} (an OCI linux.resources mapping)")))?,
        Some(Value::Null) | None => Resources::default(),
        Some(other) => return Err(Error::Config(format!("{who}: resources must be a mapping, got {other}"))),
    };
    let mut devices = Vec::new();
    for (i, d) in c.devices.iter().flatten().enumerate() {
        let kind = (!d.kind.is_empty()).then(|| d.kind.clone());
        if d.path == "all" {
            resources.devices.push(DeviceRule { allow: true, kind, access: Some("rwm".into()), ..Default::default() });
            continue;
        }
        let mode_s = d.mode.as_deref().ok_or_else(|| {
            Error::Config(format!("{who}: devices[{i}] {}: mode missing (an octal string such as \"0666\")", d.path))
        })?;
        let file_mode = u32::from_str_radix(mode_s.trim_start_matches("0o"), 8)
            .map_err(|e| Error::Config(format!("{who}: devices[{i}] {}: mode {mode_s:?} is not octal: {e}", d.path)))?;
        devices.push(Device { path: d.path.clone(), kind: d.kind.clone(), major: d.major, minor: d.minor, file_mode });
        resources.devices.push(DeviceRule {
            allow: true,
            kind,
            major: Some(d.major),
            minor: Some(d.minor),
            access: Some("rwm".into()),
        });
    }

    let idmap = |v: &Option<Vec<crate::yaml::IdMapping>>| -> Vec<IdMapping> {
        v.iter()
            .flatten()
            .map(|m| IdMapping { container_id: m.container_id, host_id: m.host_id, size: m.size })
            .collect()
    };
    let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let linux = Linux {
        uid_mappings: idmap(&c.uid_mappings),
        gid_mappings: idmap(&c.gid_mappings),
        sysctl: c.sysctl.clone().unwrap_or_default(),
        resources,
        cgroups_path: non_empty(&c.cgroups_path),
        namespaces,
        devices,
        rootfs_propagation: non_empty(&c.rootfs_propagation),
        masked_paths: c.masked_paths.clone().unwrap_or_default(),
        readonly_paths: c.readonly_paths.clone().unwrap_or_default(),
    };

    Ok(Spec {
        oci_version: OCI_VERSION.into(),
        process,
        root: Root { path: "rootfs".into(), readonly },
        hostname: non_empty(&c.hostname),
        mounts: mounts(c, readonly)?,
        annotations: c.annotations.clone().unwrap_or_default(),
        linux,
    })
}

/// The note for keel's deliberate difference from LinuxKit's config.json (printed once per build).
pub const CGROUP_NS_NOTE: &str = "every container gets a cgroup namespace (LinuxKit's config.json has none): \
    /sys/fs/cgroup inside shows the container's own subtree";

/// Build runtime.json for the bundle at absolute in-image path `bundle` (e.g. "/containers/services/web"), whose
/// image tree is unpacked at `lower` (the bundle's own `lower`/`rootfs`, or another bundle's when shared).
pub fn runtime_json(c: &Container, bundle: &str, lower: &str, readonly: bool) -> RuntimeJson {
    use crate::spec::Mount;
    let s = |v: &str| v.to_string();
    let rootfs = format!("{bundle}/rootfs");
    let mut mounts: Vec<Mount> = if readonly {
        // Bind the rootfs onto itself (or from the shared copy): runc and keel-runtime want a mount point.
        vec![Mount { destination: rootfs, source: s(lower), options: vec![s("bind")], ..Default::default() }]
    } else {
        let tmp = format!("{bundle}/tmp");
        vec![
            Mount { destination: tmp.clone(), kind: s("tmpfs"), source: s("tmpfs"), options: vec![] },
            // Remount private so nothing else sees the temporary layers (two mount calls: see field notes).
            Mount { destination: tmp.clone(), options: vec![s("remount"), s("private")], ..Default::default() },
            Mount {
                destination: rootfs,
                kind: s("overlay"),
                source: s("overlay"),
                options: vec![
                    format!("lowerdir={lower}"),
                    format!("upperdir={tmp}/upper"),
                    format!("workdir={tmp}/work"),
                ],
            },
        ]
    };
    let rt = c.runtime.clone().unwrap_or_default();
    mounts.extend(rt.mounts.iter().flatten().map(Mount::from));
    let interfaces = rt
        .interfaces
        .iter()
        .flatten()
        .map(|i| Interface {
            name: i.name.clone(),
            add: i.add.clone(),
            peer: i.peer.clone(),
            create_in_root: i.create_in_root,
        })
        .collect();
    let b = &rt.bind_ns;
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    RuntimeJson {
        cgroups: rt.cgroups.unwrap_or_default(),
        mounts,
        mkdir: rt.mkdir.unwrap_or_default(),
        interfaces,
        bind_ns: BindNs {
            cgroup: o(&b.cgroup),
            ipc: o(&b.ipc),
            mnt: o(&b.mnt),
            net: o(&b.net),
            pid: o(&b.pid),
            user: o(&b.user),
            uts: o(&b.uts),
        },
        namespace: rt.namespace.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::Moby;
    use serde_json::json;

    /// config.json as the JSON written into the image.
    fn cfg_json(c: &Container, img: &ImageConfig, rootfs: &Tree, ids: &BTreeMap<String, u32>) -> Value {
        serde_json::to_value(oci_config(c, img, rootfs, ids).unwrap()).unwrap()
    }

    fn one(y: &str) -> Container {
        Moby::parse(y, "t").unwrap().services.remove(0)
    }

    #[test]
    fn linuxkit_defaults() {
        let c = one("services:\n  - name: s\n    image: busybox\n    command: [sleep, '1']\n");
        let img = ImageConfig { env: vec!["PATH=/bin".into()], ..Default::default() };
        let cfg = cfg_json(&c, &img, &Tree::new(), &BTreeMap::new());
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
        let cfg = cfg_json(&one(y), &ImageConfig::default(), &rootfs, &BTreeMap::new());
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
        let cfg = cfg_json(&m.services[0], &img, &Tree::new(), &ids);
        assert_eq!(cfg["process"]["user"], json!({"uid": 102, "gid": 100, "additionalGids": [101, 5]}));
        let c = one("services:\n  - name: s\n    image: busybox\n    command: [x]\n");
        let cfg = cfg_json(&c, &img, &Tree::new(), &ids);
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
        let rw =
            serde_json::to_value(runtime_json(&c, "/containers/services/s", "/containers/services/s/lower", false))
                .unwrap();
        assert_eq!(rw["mounts"][2]["type"], "overlay");
        assert_eq!(rw["mounts"][1]["options"], json!(["remount", "private"]));
        let ro =
            serde_json::to_value(runtime_json(&c, "/containers/services/s", "/containers/services/s/rootfs", true))
                .unwrap();
        assert_eq!(ro["mounts"][0]["options"], json!(["bind"]));
    }

    #[test]
    fn written_files_parse_with_keel_runtime() {
        let y = r#"
services:
  - name: s
    image: busybox
    command: [x]
    capabilities: [all]
    ambient: [net_raw]
    net: /run/netns/x
    readonly: true
    hostname: h
    rlimits: ["nofile,1024,unlimited"]
    noNewPrivileges: true
    oomScoreAdj: -10
    sysctl: {net.ipv4.ip_forward: "1"}
    cgroupsPath: /keel/s
    rootfsPropagation: shared
    maskedPaths: [/proc/kcore]
    readonlyPaths: [/proc/sys]
    uidMappings: [{containerID: 0, hostID: 1000, size: 1}]
    resources:
      memory: {limit: 1048576}
      devices: [{allow: false, access: rwm}]
    devices:
      - {path: /dev/fuse, type: c, major: 10, minor: 229, mode: "0666"}
      - {path: all, type: b}
    annotations: {keel.restart: always}
    runtime:
      mkdir: [/var/x]
      interfaces: [{name: eth1, add: veth, peer: veth1, createInRoot: true}]
      bindNS: {net: /run/netns/s}
"#;
        let c = one(y);
        let written = crate::spec::to_json(
            &oci_config(&c, &ImageConfig::default(), &Tree::new(), &BTreeMap::new()).unwrap(),
            "config.json",
        )
        .unwrap();
        let spec: keel_runtime::spec::Spec = serde_json::from_slice(&written).unwrap();
        let p = spec.process.unwrap();
        assert_eq!(p.args, ["x"]);
        assert_eq!(p.capabilities.as_ref().unwrap().ambient, ["CAP_NET_RAW"]);
        assert_eq!(p.capabilities.unwrap().bounding.len(), ALL_CAPS.len());
        assert_eq!((p.rlimits[0].soft, p.rlimits[0].hard), (1024, u64::MAX));
        assert!(p.no_new_privileges);
        assert_eq!(p.oom_score_adj, Some(-10));
        assert!(spec.root.unwrap().readonly);
        assert_eq!(spec.hostname.as_deref(), Some("h"));
        assert_eq!(spec.annotations["keel.restart"], "always");
        let l = spec.linux.unwrap();
        let net = l.namespace(keel_runtime::spec::NamespaceType::Network).unwrap();
        assert_eq!(net.path.as_deref(), Some("/run/netns/x"));
        assert_eq!(l.uid_mappings[0].host_id, 1000);
        assert_eq!(l.devices[0].file_mode, Some(0o666));
        assert_eq!(l.sysctl["net.ipv4.ip_forward"], "1");
        let r = l.resources.unwrap();
        assert_eq!(r.memory.unwrap().limit, Some(1048576));
        let rules: Vec<(bool, Option<&str>, Option<i64>)> =
            r.devices.iter().map(|d| (d.allow, d.kind.as_deref(), d.major)).collect();
        assert_eq!(rules, [(false, None, None), (true, Some("c"), Some(10)), (true, Some("b"), None)]);

        let rt = crate::spec::to_json(
            &runtime_json(&c, "/containers/services/s", "/containers/services/s/rootfs", true),
            "runtime.json",
        )
        .unwrap();
        let rt: keel_runtime::RuntimeJson = serde_json::from_slice(&rt).unwrap();
        assert_eq!(rt.mounts[0].options, ["bind"]);
        assert_eq!(rt.mkdir, ["/var/x"]);
        assert!(rt.interfaces[0].create_in_root && rt.interfaces[0].peer == "veth1");
        assert_eq!(rt.bind_ns.entries().collect::<Vec<_>>(), [("net", "/run/netns/s")]);
    }

    #[test]
    fn bad_resources_name_the_container() {
        let c = one("services:\n  - name: s\n    image: busybox\n    command: [x]\n    resources: {devices: [{allow: maybe}]}\n");
        let e = oci_config(&c, &ImageConfig::default(), &Tree::new(), &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.starts_with("s: resources: "), "{e}");
        let c = one("services:\n  - name: s\n    image: busybox\n    command: [x]\n    resources: [1]\n");
        let e = oci_config(&c, &ImageConfig::default(), &Tree::new(), &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("s: resources must be a mapping"), "{e}");
    }

    #[test]
    fn written_in_go_field_order() {
        let c = one(
            "services:\n  - name: s\n    image: busybox\n    command: [x]\n    hostname: h\n    annotations: {a: b}\n",
        );
        let cfg = oci_config(&c, &ImageConfig::default(), &Tree::new(), &BTreeMap::new()).unwrap();
        let text = String::from_utf8(crate::spec::to_json(&cfg, "config.json").unwrap()).unwrap();
        let top: Vec<&str> =
            text.lines().filter(|l| l.starts_with("  \"")).map(|l| l.trim().split('"').nth(1).unwrap_or("")).collect();
        assert_eq!(top, ["ociVersion", "process", "root", "hostname", "mounts", "annotations", "linux"]);
        let at = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
        assert!(at("user") < at("args") && at("args") < at("cwd") && at("cwd") < at("capabilities"));
        assert!(at("resources") < at("namespaces"));
        // Deterministic: the same input writes the same bytes.
        assert_eq!(crate::spec::to_json(&cfg, "config.json").unwrap(), text.as_bytes());
    }
}
