//! OCI runtime-spec config.json types (1.0.2 - 1.2), Linux only. Unknown fields are ignored, as the spec says;
//! `null` is accepted wherever a list or map is expected (Go generators write nil slices as `null`).
//! apparmorProfile, selinuxLabel, mountLabel and intelRdt are parsed but have no effect on this kernel setup.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// `null` or a value: `null` gives `T::default()`.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Most annotations a bundle may have. LinuxKit's have a handful; each costs PID 1 two heap strings and a map node
/// for the unit's whole life (20 000 tiny ones cost ~3 MiB, and even refused after parsing they would leave PID 1's
/// heap at its high-water mark), so parsing stops with an error at the first one over the limit.
pub const MAX_ANNOTATIONS: usize = 1024;

/// `null` or an object of at most [`MAX_ANNOTATIONS`] string values.
fn annotations<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of strings")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(Bounded)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            let mut m = BTreeMap::new();
            while let Some((k, v)) = a.next_entry::<String, String>()? {
                if m.len() >= MAX_ANNOTATIONS {
                    return Err(serde::de::Error::custom(format!("more than {MAX_ANNOTATIONS} annotations")));
                }
                m.insert(k, v);
            }
            Ok(m)
        }
    }
    d.deserialize_option(Bounded)
}

/// The whole config.json.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Spec {
    pub oci_version: String,
    pub process: Option<Process>,
    pub root: Option<Root>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub mounts: Vec<Mount>,
    pub hooks: Option<Hooks>,
    #[serde(deserialize_with = "annotations")]
    pub annotations: BTreeMap<String, String>,
    pub linux: Option<Linux>,
}

/// `process`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Process {
    pub terminal: bool,
    pub console_size: Option<ConsoleSize>,
    pub user: User,
    #[serde(deserialize_with = "nullable")]
    pub args: Vec<String>,
    /// Windows only in the spec; kept for completeness.
    pub command_line: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub env: Vec<String>,
    pub cwd: String,
    #[serde(deserialize_with = "capabilities")]
    pub capabilities: Option<Capabilities>,
    #[serde(deserialize_with = "nullable")]
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    pub apparmor_profile: Option<String>,
    pub oom_score_adj: Option<i32>,
    pub selinux_label: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct ConsoleSize {
    pub height: u32,
    pub width: u32,
}

/// `process.user`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub umask: Option<u32>,
    #[serde(deserialize_with = "nullable")]
    pub additional_gids: Vec<u32>,
    pub username: Option<String>,
}

/// `process.capabilities`: the five sets, names like "CAP_NET_ADMIN".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Capabilities {
    #[serde(deserialize_with = "nullable")]
    pub bounding: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub effective: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub inheritable: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub permitted: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub ambient: Vec<String>,
}

/// Accepts the 1.0 object form and the pre-1.0 list form (one list meaning bounding+effective+permitted+inheritable,
/// as runc did; old LinuxKit bundles carry it).
fn capabilities<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Capabilities>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Caps {
        Sets(Capabilities),
        List(Vec<String>),
    }
    Ok(match Option::<Caps>::deserialize(d)? {
        None => None,
        Some(Caps::Sets(c)) => Some(c),
        Some(Caps::List(l)) => Some(Capabilities {
            bounding: l.clone(),
            effective: l.clone(),
            inheritable: l.clone(),
            permitted: l,
            ambient: Vec::new(),
        }),
    })
}

/// `process.rlimits[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Rlimit {
    /// e.g. "RLIMIT_NOFILE".
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

/// `root`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Root {
    /// Relative to the bundle directory unless absolute.
    pub path: String,
    pub readonly: bool,
}

/// `mounts[]` (also used by LinuxKit's runtime.json).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub source: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub options: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(deserialize_with = "nullable")]
    pub gid_mappings: Vec<IdMapping>,
}

/// `hooks`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Hooks {
    /// Deprecated in 1.2 but still honoured (runtime namespace, after the namespaces exist).
    #[serde(deserialize_with = "nullable")]
    pub prestart: Vec<Hook>,
    #[serde(deserialize_with = "nullable")]
    pub create_runtime: Vec<Hook>,
    #[serde(deserialize_with = "nullable")]
    pub create_container: Vec<Hook>,
    #[serde(deserialize_with = "nullable")]
    pub start_container: Vec<Hook>,
    #[serde(deserialize_with = "nullable")]
    pub poststart: Vec<Hook>,
    #[serde(deserialize_with = "nullable")]
    pub poststop: Vec<Hook>,
}

/// One hook: an absolute path, argv (argv[0] included), env and an optional timeout in seconds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Hook {
    pub path: String,
    #[serde(deserialize_with = "nullable")]
    pub args: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub env: Vec<String>,
    pub timeout: Option<i64>,
}

/// `linux`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Linux {
    #[serde(deserialize_with = "nullable")]
    pub namespaces: Vec<LinuxNamespace>,
    #[serde(deserialize_with = "nullable")]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(deserialize_with = "nullable")]
    pub gid_mappings: Vec<IdMapping>,
    #[serde(deserialize_with = "nullable")]
    pub devices: Vec<LinuxDevice>,
    pub cgroups_path: Option<String>,
    pub resources: Option<crate::cgroups::LinuxResources>,
    #[serde(deserialize_with = "nullable")]
    pub sysctl: BTreeMap<String, String>,
    pub seccomp: Option<crate::seccomp::LinuxSeccomp>,
    /// "", "shared", "slave", "private", "unbindable" and their "r" forms.
    pub rootfs_propagation: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub masked_paths: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub readonly_paths: Vec<String>,
    pub mount_label: Option<String>,
    pub personality: Option<LinuxPersonality>,
    /// Keys "monotonic" and "boottime" (time namespace).
    #[serde(deserialize_with = "nullable")]
    pub time_offsets: BTreeMap<String, TimeOffset>,
}

impl Linux {
    /// The namespace entry of `kind`, if the config lists one.
    pub fn namespace(&self, kind: NamespaceType) -> Option<&LinuxNamespace> {
        self.namespaces.iter().find(|n| n.kind == kind)
    }
}

/// `linux.namespaces[]`: a new namespace (no path) or one joined by path.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LinuxNamespace {
    #[serde(rename = "type")]
    pub kind: NamespaceType,
    pub path: Option<String>,
}

/// Namespace types of the spec. An unknown type is a parse error naming the field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceType {
    #[default]
    Pid,
    Network,
    Mount,
    Ipc,
    Uts,
    User,
    Cgroup,
    Time,
}

impl NamespaceType {
    /// The CLONE_NEW* flag.
    pub fn clone_flag(self) -> libc::c_int {
        match self {
            NamespaceType::Pid => libc::CLONE_NEWPID,
            NamespaceType::Network => libc::CLONE_NEWNET,
            NamespaceType::Mount => libc::CLONE_NEWNS,
            NamespaceType::Ipc => libc::CLONE_NEWIPC,
            NamespaceType::Uts => libc::CLONE_NEWUTS,
            NamespaceType::User => libc::CLONE_NEWUSER,
            NamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
            NamespaceType::Time => 0x80, // CLONE_NEWTIME
        }
    }

    /// The spec's name ("network", ...).
    pub fn name(self) -> &'static str {
        match self {
            NamespaceType::Pid => "pid",
            NamespaceType::Network => "network",
            NamespaceType::Mount => "mount",
            NamespaceType::Ipc => "ipc",
            NamespaceType::Uts => "uts",
            NamespaceType::User => "user",
            NamespaceType::Cgroup => "cgroup",
            NamespaceType::Time => "time",
        }
    }

    /// The file name under /proc/PID/ns/.
    pub fn proc_name(self) -> &'static str {
        match self {
            NamespaceType::Network => "net",
            NamespaceType::Mount => "mnt",
            other => other.name(),
        }
    }
}

/// uid/gid mapping: container id range -> host id range.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

/// `linux.devices[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinuxDevice {
    pub path: String,
    /// "c", "u", "b" or "p".
    #[serde(rename = "type")]
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    pub file_mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// `linux.personality`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LinuxPersonality {
    /// "LINUX" or "LINUX32".
    pub domain: String,
    #[serde(deserialize_with = "nullable")]
    pub flags: Vec<String>,
}

/// `linux.timeOffsets.*`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct TimeOffset {
    pub secs: i64,
    pub nanosecs: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_null_some_and_too_many() {
        let s: Spec = serde_json::from_str(r#"{"annotations":null}"#).unwrap();
        assert!(s.annotations.is_empty());
        let s: Spec = serde_json::from_str(r#"{"annotations":{"a":"1","b":"2"}}"#).unwrap();
        assert_eq!(s.annotations.len(), 2);
        let many: Vec<String> = (0..=MAX_ANNOTATIONS).map(|i| format!("\"k{i}\":\"v\"")).collect();
        let e = serde_json::from_str::<Spec>(&format!("{{\"annotations\":{{{}}}}}", many.join(","))).unwrap_err();
        assert!(e.to_string().contains("more than 1024 annotations"), "{e}");
        let ok: Vec<String> = (0..MAX_ANNOTATIONS).map(|i| format!("\"k{i}\":\"v\"")).collect();
        assert!(serde_json::from_str::<Spec>(&format!("{{\"annotations\":{{{}}}}}", ok.join(","))).is_ok());
        assert!(serde_json::from_str::<Spec>(r#"{"annotations":{"a":5}}"#).is_err());
    }
}
