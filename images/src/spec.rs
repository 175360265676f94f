//! The files keel-image writes into each bundle, as types: config.json (the subset of the OCI runtime spec that
//! LinuxKit's ConfigToOCI fills in) and LinuxKit's runtime.json.
//!
//! Their serialisation is the JSON LinuxKit's Go code writes: fields in the Go structs' order
//! (opencontainers/runtime-spec specs-go, LinuxKit's moby `Runtime`), `omitempty` fields left out when empty,
//! lists kept in the order they were built (capability sets in the YAML's order, mounts sorted by destination),
//! maps sorted by key. The oci-spec crate's runtime types are not used here: they hold capability sets in a
//! `HashSet` (random order: images would not be reproducible and differ from LinuxKit's) and maps in a `HashMap`.
//!
//! keel-runtime reads these files with its own types (runtime/src/spec.rs, runtime_json.rs); the tests parse what
//! is written here with them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

fn is_false(b: &bool) -> bool {
    !*b
}

/// `null` or a value: `null` gives `T::default()`.
fn nullable<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// config.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub oci_version: String,
    pub process: Process,
    pub root: Root,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub mounts: Vec<Mount>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub linux: Linux,
}

/// `process`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub user: User,
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    pub cwd: String,
    /// Always written (`{}` when every set is empty), as LinuxKit does.
    pub capabilities: Capabilities,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rlimits: Vec<Rlimit>,
    #[serde(skip_serializing_if = "is_false")]
    pub no_new_privileges: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
}

/// `process.user`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

/// `process.capabilities`: the five sets, each left out when empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Capabilities {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bounding: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub effective: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inheritable: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permitted: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ambient: Vec<String>,
}

/// `process.rlimits[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rlimit {
    /// e.g. "RLIMIT_NOFILE".
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

/// `root`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Root {
    pub path: String,
    #[serde(skip_serializing_if = "is_false")]
    pub readonly: bool,
}

/// `mounts[]` of config.json and runtime.json: type, source and options left out when empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Mount {
    /// Whether this is a bind mount (type `bind`, or a `bind`/`rbind` option).
    pub fn is_bind(&self) -> bool {
        self.kind == "bind" || self.options.iter().any(|o| o == "bind" || o == "rbind")
    }
}

impl From<&crate::yaml::Mount> for Mount {
    fn from(m: &crate::yaml::Mount) -> Mount {
        Mount {
            destination: m.destination.clone(),
            kind: m.kind.clone(),
            source: m.source.clone(),
            options: m.options.clone(),
        }
    }
}

/// `linux`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gid_mappings: Vec<IdMapping>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    /// Always written (`{}` when empty), as LinuxKit does.
    pub resources: Resources,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroups_path: Option<String>,
    pub namespaces: Vec<Namespace>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs_propagation: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked_paths: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub readonly_paths: Vec<String>,
}

/// `linux.uidMappings[]` / `linux.gidMappings[]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

/// `linux.namespaces[]`: a new namespace (no path) or one joined by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Namespace {
    /// "network", "ipc", "uts", "pid", "user", "mount", "cgroup".
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `linux.devices[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    pub file_mode: u32,
}

/// `linux.resources`: the device cgroup rules typed (the YAML's own rules first, then one per `devices:` entry);
/// every other key (memory, cpu, pids, ...) as the YAML gives it (keel-runtime validates them when it loads the
/// bundle), sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRule>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `linux.resources.devices[]`: a device cgroup rule.
/// Unknown keys are dropped, as LinuxKit's Go types do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    pub allow: bool,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
}

/// LinuxKit's runtime.json (its moby `Runtime`, as `linuxkit build` writes it: every field present).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuntimeJson {
    pub cgroups: Vec<String>,
    pub mounts: Vec<Mount>,
    pub mkdir: Vec<String>,
    pub interfaces: Vec<Interface>,
    #[serde(rename = "bindNS")]
    pub bind_ns: BindNs,
    pub namespace: String,
}

/// `interfaces[]`: name, add and peer left out when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub add: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer: String,
    pub create_in_root: bool,
}

/// `bindNS`: every namespace written, "" when not bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BindNs {
    pub cgroup: String,
    pub ipc: String,
    pub mnt: String,
    pub net: String,
    pub pid: String,
    pub user: String,
    pub uts: String,
}

/// The bytes of a bundle file as written into the image: pretty JSON. `what` names the file in the error.
pub fn to_json<T: Serialize>(v: &T, what: &str) -> Result<Vec<u8>, crate::Error> {
    serde_json::to_vec_pretty(v).map_err(|e| crate::Error::Config(format!("{what}: cannot serialise: {e}")))
}
