//! LinuxKit's runtime.json: what LinuxKit's `service` tool does around runc (pkg/init/cmd/service/prepare.go):
//! `mounts` (in the host mount namespace, before the container is created; destinations and `mkdir` entries that are
//! relative are relative to the bundle's rootfs, as LinuxKit does), `mkdir`, `cgroups` (plain cgroup dirs),
//! `interfaces` (veth/other links created and moved into the container's net namespace), `bindNS` (bind-mount the
//! container's /proc/PID/ns/* files to paths, so later containers can join them) and `namespace` (containerd
//! namespace: ignored by keel).

use serde::{Deserialize, Deserializer};

use crate::spec::Mount;

fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The whole runtime.json.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuntimeJson {
    #[serde(deserialize_with = "nullable")]
    pub cgroups: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub mounts: Vec<Mount>,
    #[serde(deserialize_with = "nullable")]
    pub mkdir: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub interfaces: Vec<Interface>,
    #[serde(rename = "bindNS", deserialize_with = "nullable")]
    pub bind_ns: BindNs,
    pub namespace: Option<String>,
}

/// `bindNS`: where to bind-mount each of the container's namespaces (empty: not bound).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BindNs {
    pub cgroup: Option<String>,
    pub ipc: Option<String>,
    pub mnt: Option<String>,
    pub net: Option<String>,
    pub pid: Option<String>,
    pub user: Option<String>,
    pub uts: Option<String>,
}

impl BindNs {
    /// (ns file name under /proc/PID/ns, bind target) for every non-empty entry.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("cgroup", &self.cgroup),
            ("ipc", &self.ipc),
            ("mnt", &self.mnt),
            ("net", &self.net),
            ("pid", &self.pid),
            ("user", &self.user),
            ("uts", &self.uts),
        ]
        .into_iter()
        .filter_map(|(ns, p)| p.as_deref().filter(|p| !p.is_empty()).map(|p| (ns, p)))
    }
}

/// `interfaces[]`: a link to create (`add`: "veth" or another link kind) or an existing one (`add` empty) to move
/// into the container's net namespace. A `peer` implies a veth; `createInRoot` creates in the host first.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Interface {
    pub name: String,
    pub add: String,
    pub peer: String,
    pub create_in_root: bool,
}
