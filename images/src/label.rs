//! LinuxKit's image label `org.mobyproject.config`: the `config:` section of a package's build.yml, baked into
//! the image config's Labels as JSON by `linuxkit pkg build`. `linuxkit build` merges it with the YAML entry
//! (ConfigToOCI in linuxkit/src/cmd/linuxkit/moby/config.go); [`merge`] does the same, field by field:
//! - most keys: the YAML's value replaces the label's (a list given in the YAML, even an empty one, replaces the
//!   label's list; a string such as `net`/`pid`/`cwd`/`hostname` replaces it only when not empty);
//! - `binds`: the YAML's `binds` if given (then `binds.add` is ignored, as LinuxKit does), else the label's binds
//!   followed by the YAML's `binds.add`;
//! - `capabilities`: the YAML's `capabilities` if given, else the label's followed by the YAML's
//!   `capabilities.add` (a label of `[all]` plus any `capabilities.add` is an error in LinuxKit: `all` only means
//!   every capability when it is the only entry);
//! - `capabilities.add` / `binds.add` inside a label are ignored (LinuxKit reads them only from the YAML);
//! - `runtime`: each of its keys (and each `bindNS` entry) separately, the YAML's over the label's;
//! - a label may not set `name` or `image`.

use crate::yaml::{BindNs, Container, Runtime};
use crate::Error;

/// The label key LinuxKit reads.
pub const LABEL: &str = "org.mobyproject.config";

/// Parse a label's text (JSON; LinuxKit parses it as YAML, of which JSON is a subset) for container `who`.
pub fn parse(text: &str, who: &str, image: &str) -> Result<Container, Error> {
    let c: Container = yaml_serde::from_str(text)
        .map_err(|e| Error::Config(crate::yaml::yaml_error(&format!("{who}: image {image}: label {LABEL}"), &e)))?;
    if !c.name.is_empty() {
        return Err(Error::Config(format!("{who}: image {image}: label {LABEL}: name cannot be set in a label")));
    }
    if !c.image.is_empty() {
        return Err(Error::Config(format!("{who}: image {image}: label {LABEL}: image cannot be set in a label")));
    }
    Ok(c)
}

/// What the label contributed, for the build note.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Settings taken from the label, e.g. "capabilities all", "11 binds", "net host".
    pub from_label: Vec<String>,
    /// Label keys the YAML replaced.
    pub replaced: Vec<String>,
    /// Label keys LinuxKit ignores (`capabilities.add`, `binds.add` inside a label).
    pub ignored: Vec<String>,
}

impl Report {
    /// The one-line note: `from label: capabilities all, 11 binds, ...; YAML replaces: binds`.
    pub fn note(&self, who: &str) -> Option<String> {
        if self.from_label.is_empty() && self.replaced.is_empty() && self.ignored.is_empty() {
            return None;
        }
        let mut s = format!("{who}: from label: ");
        s.push_str(if self.from_label.is_empty() { "nothing".into() } else { self.from_label.join(", ") }.as_str());
        if !self.replaced.is_empty() {
            s.push_str(&format!("; YAML replaces: {}", self.replaced.join(", ")));
        }
        if !self.ignored.is_empty() {
            s.push_str(&format!("; ignored in the label (as LinuxKit): {}", self.ignored.join(", ")));
        }
        Some(s)
    }
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

fn caps_text(l: &[String]) -> String {
    if l.len() == 1 && l[0].eq_ignore_ascii_case("all") {
        return "capabilities all".into();
    }
    if l.is_empty() {
        return "capabilities none".into();
    }
    let names: Vec<String> = l.iter().map(|c| c.trim_start_matches("CAP_").to_string()).collect();
    format!("capabilities {}", names.join(","))
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Merge `label` (parsed with [`parse`]) under the YAML entry `yaml`, as LinuxKit does. The result's
/// `binds.add` and `capabilities.add` are folded in (None), so [`crate::config::oci_config`] reads only
/// `binds` and `capabilities`.
pub fn merge(label: &Container, yaml: &Container) -> Result<(Container, Report), Error> {
    let mut r = Report::default();
    let mut out = yaml.clone();

    // Option<T>: the YAML's if given, else the label's.
    macro_rules! pick {
        ($field:ident, $key:expr, $text:expr) => {
            match (&yaml.$field, &label.$field) {
                (Some(_), Some(_)) => r.replaced.push($key.to_string()),
                (None, Some(v)) => {
                    out.$field = Some(v.clone());
                    r.from_label.push(($text)(v));
                }
                _ => {}
            }
        };
    }
    // Strings where empty means unset (LinuxKit's assignStringEmpty).
    macro_rules! pick_str {
        ($field:ident, $key:expr) => {
            match (nonempty(&yaml.$field), nonempty(&label.$field)) {
                (Some(_), Some(_)) => r.replaced.push($key.to_string()),
                (None, Some(v)) => {
                    r.from_label.push(format!("{} {v}", $key));
                    out.$field = Some(v);
                }
                _ => {}
            }
        };
    }

    merge_capabilities(label, yaml, &mut out, &mut r)?;
    merge_binds(label, yaml, &mut out, &mut r);
    for (k, v) in [("capabilities.add", label.capabilities_add.is_some()), ("binds.add", label.binds_add.is_some())] {
        if v {
            r.ignored.push(k.to_string());
        }
    }

    pick!(ambient, "ambient", |v: &Vec<String>| format!("ambient {}", v.join(",")));
    pick!(devices, "devices", |v: &Vec<crate::yaml::Device>| count(v.len(), "device"));
    pick!(tmpfs, "tmpfs", |v: &Vec<String>| format!("tmpfs {}", v.join(",")));
    pick!(mounts, "mounts", |v: &Vec<crate::yaml::Mount>| count(v.len(), "mount"));
    pick!(command, "command", |v: &Vec<String>| format!("command {}", v.join(" ")));
    pick!(env, "env", |v: &Vec<String>| count(v.len(), "env var"));
    pick_str!(cwd, "cwd");
    pick_str!(net, "net");
    pick_str!(pid, "pid");
    pick_str!(ipc, "ipc");
    pick_str!(uts, "uts");
    pick_str!(userns, "userns");
    pick_str!(hostname, "hostname");
    pick!(readonly, "readonly", |v: &bool| if *v { "readonly".to_string() } else { "readonly false".to_string() });
    pick!(masked_paths, "maskedPaths", |v: &Vec<String>| count(v.len(), "masked path"));
    pick!(readonly_paths, "readonlyPaths", |v: &Vec<String>| count(v.len(), "readonly path"));
    pick!(uid, "uid", |v: &crate::yaml::Id| format!("uid {}", id_text(v)));
    pick!(gid, "gid", |v: &crate::yaml::Id| format!("gid {}", id_text(v)));
    pick!(additional_gids, "additionalGids", |v: &Vec<crate::yaml::Id>| count(v.len(), "additional gid"));
    pick!(no_new_privileges, "noNewPrivileges", |v: &bool| format!("noNewPrivileges {v}"));
    pick!(oom_score_adj, "oomScoreAdj", |v: &i32| format!("oomScoreAdj {v}"));
    pick!(rootfs_propagation, "rootfsPropagation", |v: &String| format!("rootfsPropagation {v}"));
    pick!(cgroups_path, "cgroupsPath", |v: &String| format!("cgroupsPath {v}"));
    pick!(resources, "resources", |_v: &serde_json::Value| "resources".to_string());
    pick!(sysctl, "sysctl", |v: &std::collections::BTreeMap<String, String>| count(v.len(), "sysctl"));
    pick!(rlimits, "rlimits", |v: &Vec<String>| count(v.len(), "rlimit"));
    pick!(uid_mappings, "uidMappings", |_v: &Vec<crate::yaml::IdMapping>| "uidMappings".to_string());
    pick!(gid_mappings, "gidMappings", |_v: &Vec<crate::yaml::IdMapping>| "gidMappings".to_string());
    pick!(annotations, "annotations", |v: &std::collections::BTreeMap<String, String>| count(v.len(), "annotation"));

    if let Some(lr) = &label.runtime {
        out.runtime = Some(merge_runtime(lr, yaml.runtime.clone().unwrap_or_default(), &mut r));
    }
    Ok((out, r))
}

/// capabilities: the YAML's, else the label's plus the YAML's capabilities.add.
fn merge_capabilities(label: &Container, yaml: &Container, out: &mut Container, r: &mut Report) -> Result<(), Error> {
    let who = yaml.name.as_str();
    match (&yaml.capabilities, &label.capabilities) {
        (Some(_), Some(_)) => r.replaced.push("capabilities".into()),
        (None, Some(l)) => {
            let add = yaml.capabilities_add.clone().unwrap_or_default();
            if !add.is_empty() && l.iter().any(|c| c.eq_ignore_ascii_case("all")) {
                return Err(Error::Config(format!(
                    "{who}: capabilities.add {add:?} on top of the label's `capabilities: [all]`: LinuxKit rejects \
                     this (`all` is only special as the sole entry; it fails with `unknown capability: all`); drop \
                     capabilities.add (all already includes them)"
                )));
            }
            let mut t = caps_text(l);
            if !add.is_empty() {
                t.push_str(&format!(" (+{} from capabilities.add)", add.len()));
            }
            r.from_label.push(t);
            out.capabilities = Some(l.iter().cloned().chain(add).collect());
        }
        (None, None) => out.capabilities = yaml.capabilities_add.clone(),
        (Some(_), None) => {}
    }
    out.capabilities_add = None;
    Ok(())
}

/// binds: the YAML's, else the label's plus the YAML's binds.add.
fn merge_binds(label: &Container, yaml: &Container, out: &mut Container, r: &mut Report) {
    match (&yaml.binds, &label.binds) {
        (Some(_), Some(_)) => r.replaced.push("binds".into()),
        (None, Some(l)) => {
            let add = yaml.binds_add.clone().unwrap_or_default();
            let mut t = count(l.len(), "bind");
            if !add.is_empty() {
                t.push_str(&format!(" (+{} from binds.add)", add.len()));
            }
            r.from_label.push(t);
            out.binds = Some(l.iter().cloned().chain(add).collect());
        }
        (None, None) => out.binds = yaml.binds_add.clone(),
        (Some(_), None) => {}
    }
    out.binds_add = None;
}

/// runtime: key by key, the YAML's where given, else the label's; bindNS namespace by namespace.
fn merge_runtime(lr: &Runtime, yr: Runtime, r: &mut Report) -> Runtime {
    let mut keys = Vec::new();
    let mut replaced = Vec::new();
    macro_rules! rt {
        ($f:ident, $k:expr) => {
            match (&yr.$f, &lr.$f) {
                (None, Some(_)) => keys.push($k),
                (Some(_), Some(_)) => replaced.push($k),
                _ => {}
            }
        };
    }
    rt!(cgroups, "cgroups");
    rt!(mounts, "mounts");
    rt!(mkdir, "mkdir");
    rt!(interfaces, "interfaces");
    rt!(namespace, "namespace");
    let b = |y: &Option<String>, l: &Option<String>| y.clone().or(l.clone());
    let (yb, lb) = (&yr.bind_ns, &lr.bind_ns);
    let bind_ns = BindNs {
        cgroup: b(&yb.cgroup, &lb.cgroup),
        ipc: b(&yb.ipc, &lb.ipc),
        mnt: b(&yb.mnt, &lb.mnt),
        net: b(&yb.net, &lb.net),
        pid: b(&yb.pid, &lb.pid),
        user: b(&yb.user, &lb.user),
        uts: b(&yb.uts, &lb.uts),
    };
    let label_bind = [&lb.cgroup, &lb.ipc, &lb.mnt, &lb.net, &lb.pid, &lb.user, &lb.uts];
    let yaml_bind = [&yb.cgroup, &yb.ipc, &yb.mnt, &yb.net, &yb.pid, &yb.user, &yb.uts];
    if label_bind.iter().zip(yaml_bind.iter()).any(|(l, y)| l.is_some() && y.is_none()) {
        keys.push("bindNS");
    }
    if !keys.is_empty() {
        r.from_label.push(format!("runtime {}", keys.join(",")));
    }
    for k in replaced {
        r.replaced.push(format!("runtime.{k}"));
    }
    Runtime {
        cgroups: yr.cgroups.clone().or(lr.cgroups.clone()),
        mounts: yr.mounts.clone().or(lr.mounts.clone()),
        mkdir: yr.mkdir.clone().or(lr.mkdir.clone()),
        interfaces: yr.interfaces.clone().or(lr.interfaces.clone()),
        bind_ns,
        namespace: yr.namespace.clone().or(lr.namespace.clone()),
        no_restart: yr.no_restart.or(lr.no_restart),
    }
}

fn id_text(v: &crate::yaml::Id) -> String {
    match v {
        crate::yaml::Id::Num(n) => n.to_string(),
        crate::yaml::Id::Name(s) => s.clone(),
    }
}

/// The label of an image config, if any, parsed.
pub fn of(img: &crate::sources::ImageConfig, who: &str, image: &str) -> Result<Option<Container>, Error> {
    match img.labels.get(LABEL).filter(|s| !s.trim().is_empty()) {
        Some(t) => parse(t, who, image).map(Some),
        None => Ok(None),
    }
}

/// The YAML entry `c` with its image's label merged in (no label: `binds.add`/`capabilities.add` folded the
/// same way), and the note saying what came from the label.
pub fn resolve(c: &Container, img: &crate::sources::ImageConfig) -> Result<(Container, Option<String>), Error> {
    let label = of(img, &c.name, &c.image)?;
    let has = label.is_some();
    let (m, r) = merge(&label.unwrap_or_default(), c)?;
    Ok((m, if has { r.note(&c.name) } else { None }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::Moby;

    fn entry(y: &str) -> Container {
        Moby::parse(y, "t").unwrap().services.remove(0)
    }

    const GETTY: &str = r#"{"capabilities":["all"],"binds":["/etc/resolv.conf:/etc/resolv.conf","/run:/run","/tmp:/tmp","/etc:/hostroot/etc","/usr/bin/ctr:/usr/bin/ctr","/usr/bin/runc:/usr/bin/runc","/containers:/containers","/var/log:/var/log","/var/lib/containerd:/var/lib/containerd","/dev:/dev","/sys:/sys"],"devices":[{"path":"/dev/console","type":"c","major":5,"minor":1,"mode":"0666"},{"path":"/dev/tty0","type":"c","major":4,"minor":0,"mode":"0666"},{"path":"/dev/ttyS0","type":"c","major":4,"minor":64,"mode":"0666"},{"path":"/dev/ttyAMA0","type":"c","major":204,"minor":64,"mode":"0666"},{"path":"/dev/hvc0","type":"c","major":229,"minor":0,"mode":"0666"}],"net":"host","pid":"host"}"#;

    #[test]
    fn getty_note() {
        let l = parse(GETTY, "getty", "x").unwrap();
        let (m, r) = merge(&l, &entry("services:\n  - name: getty\n    image: x\n    env: [INSECURE=true]\n")).unwrap();
        assert_eq!(
            r.note("getty").unwrap(),
            "getty: from label: capabilities all, 11 binds, 5 devices, net host, pid host"
        );
        assert_eq!(m.binds.unwrap().len(), 11);
        assert_eq!(m.env.unwrap(), ["INSECURE=true"]);
    }

    #[test]
    fn binds_replace_and_add() {
        let l = parse(GETTY, "s", "x").unwrap();
        let (m, r) = merge(&l, &entry("services:\n  - name: s\n    image: x\n    binds.add: [/a:/a]\n")).unwrap();
        assert_eq!(m.binds.as_ref().unwrap().len(), 12);
        assert_eq!(m.binds.unwrap()[11], "/a:/a");
        assert!(r.from_label.contains(&"11 binds (+1 from binds.add)".to_string()), "{r:?}");
        // binds given: binds.add ignored, as LinuxKit.
        let y = "services:\n  - name: s\n    image: x\n    binds: [/b:/b]\n    binds.add: [/a:/a]\n";
        let (m, r) = merge(&l, &entry(y)).unwrap();
        assert_eq!(m.binds.unwrap(), ["/b:/b"]);
        assert_eq!(r.replaced, ["binds"]);
        // an empty list replaces too
        let (m, _) = merge(&l, &entry("services:\n  - name: s\n    image: x\n    binds: []\n")).unwrap();
        assert_eq!(m.binds.unwrap().len(), 0);
    }

    #[test]
    fn capabilities_add() {
        let l = parse(r#"{"capabilities":["CAP_SYS_ADMIN"]}"#, "s", "x").unwrap();
        let y = "services:\n  - name: s\n    image: x\n    capabilities.add: [CAP_NET_ADMIN]\n";
        let (m, _) = merge(&l, &entry(y)).unwrap();
        assert_eq!(m.capabilities.unwrap(), ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]);
        let all = parse(r#"{"capabilities":["all"]}"#, "s", "x").unwrap();
        assert!(merge(&all, &entry(y)).unwrap_err().to_string().contains("capabilities.add"));
        // label's own capabilities.add is ignored
        let l = parse(r#"{"capabilities.add":["CAP_SYS_ADMIN"]}"#, "s", "x").unwrap();
        let (m, r) = merge(&l, &entry("services:\n  - name: s\n    image: x\n")).unwrap();
        assert_eq!(m.capabilities, None);
        assert_eq!(r.ignored, ["capabilities.add"]);
    }

    #[test]
    fn strings_and_runtime() {
        let l =
            parse(r#"{"net":"new","pid":"host","runtime":{"mkdir":["/a"],"bindNS":{"net":"/run/netns/x"}}}"#, "s", "x")
                .unwrap();
        let y =
            "services:\n  - name: s\n    image: x\n    net: host\n    runtime:\n      bindNS:\n        ipc: /run/ipc\n";
        let (m, r) = merge(&l, &entry(y)).unwrap();
        assert_eq!(m.net.as_deref(), Some("host"));
        assert_eq!(m.pid.as_deref(), Some("host"));
        let rt = m.runtime.unwrap();
        assert_eq!(rt.mkdir.unwrap(), ["/a"]);
        assert_eq!(rt.bind_ns.net.as_deref(), Some("/run/netns/x"));
        assert_eq!(rt.bind_ns.ipc.as_deref(), Some("/run/ipc"));
        assert_eq!(r.replaced, ["net"]);
        assert!(r.from_label.iter().any(|s| s == "runtime mkdir,bindNS"), "{r:?}");
    }

    #[test]
    fn bad_labels() {
        assert!(parse(r#"{"name":"x"}"#, "s", "img").unwrap_err().to_string().contains("name cannot"));
        let e = parse(r#"{"capabilitiez":[]}"#, "s", "img").unwrap_err().to_string();
        assert!(e.contains("s: image img: label org.mobyproject.config") && e.contains("capabilitiez"), "{e}");
        let e = parse(r#"{"net": "host", "capabilities": 3}"#, "s", "img").unwrap_err().to_string();
        assert_eq!(
            e,
            "s: image img: label org.mobyproject.config: line 1 column 33: capabilities: invalid type: integer `3`, \
             expected a sequence"
        );
    }
}
