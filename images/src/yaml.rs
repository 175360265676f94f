//! LinuxKit's image YAML schema (src/cmd/linuxkit/moby/config.go + schema.go), as strict serde types: every
//! struct denies unknown fields, so a misspelt key or a wrong type is an error that carries its line number.
//!
//! keel extensions (not in LinuxKit): `kernel.path` (a local bzImage) and `kernel.modules` (module names to copy
//! with their dependencies; `[all]` copies the whole tree).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::Error;

/// The whole image definition (LinuxKit's `Moby` type).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Moby {
    pub kernel: Option<Kernel>,
    pub init: Vec<String>,
    pub onboot: Vec<Container>,
    pub onshutdown: Vec<Container>,
    pub services: Vec<Container>,
    pub files: Vec<File>,
    /// LinuxKit's volumes: `/containers/volumes/NAME/{lower,tmp,merged}`, bound into containers by name.
    pub volumes: Vec<Volume>,
    /// LinuxKit's content trust section: accepted and ignored (signatures are not checked; a note says so).
    pub trust: Option<yaml_serde::Value>,
}

/// One `volumes:` entry (LinuxKit's `Volume`): the image's files (or nothing) in `lower`, an overlay at `merged`
/// (read-write over a tmpfs unless `readonly`), mounted at boot.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Volume {
    pub name: String,
    pub image: Option<String>,
    pub readonly: bool,
    /// `filesystem` (default) or `oci` (an OCI layout of the image; keel: not supported, an error).
    pub format: Option<String>,
    pub platforms: Option<Vec<String>>,
}

/// `kernel:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kernel {
    /// `debian` (default) or a LinuxKit kernel image reference (only `debian` can be fetched here).
    pub image: Option<String>,
    pub cmdline: Option<String>,
    /// LinuxKit: name of the kernel file inside the kernel image; accepted, unused.
    pub binary: Option<String>,
    /// LinuxKit: kernel tarball name; accepted, unused (modules come from the Debian package).
    pub tar: Option<String>,
    /// LinuxKit: microcode cpio; accepted, unused.
    pub ucode: Option<String>,
    /// keel: a local kernel (bzImage) instead of the Debian one.
    pub path: Option<String>,
    /// keel: a directory holding lib/modules/KVER for a local kernel.
    pub modules_dir: Option<String>,
    /// keel: modules to put in the image (with their dependencies) on top of the default set; `[all]` = every
    /// module of the kernel package, `[none]` = no modules at all.
    pub modules: Option<Vec<String>>,
}

/// A uid/gid: a number or a name (resolved in the container's /etc/passwd or /etc/group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Num(u32),
    Name(String),
}

// By hand rather than `#[serde(untagged)]`: a wrong type then says what is expected, at the value's own line.
impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a uid/gid (a number from 0 to 4294967295) or a user/group/container name")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Id, E> {
                u32::try_from(n).map(Id::Num).map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Id, E> {
                u32::try_from(n).map(Id::Num).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(n), &self))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Id, E> {
                Ok(Id::Name(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A YAML error as `ORIGIN: line L column C: FIELD.PATH: message` (yaml_serde appends " at line L column C" to its
/// message itself; the position goes first instead).
pub fn yaml_error(origin: &str, e: &yaml_serde::Error) -> String {
    let loc = e.location().map(|l| format!("line {} column {}: ", l.line(), l.column())).unwrap_or_default();
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(i) if !loc.is_empty() => msg[..i].to_string(),
        _ => msg,
    };
    format!("{origin}: {loc}{msg}")
}

/// One `mounts:` entry (OCI mount, LinuxKit lets type/source/destination default).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// One `devices:` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Device {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    pub mode: Option<String>,
}

/// One uid/gid mapping.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct IdMapping {
    #[serde(rename = "hostID")]
    pub host_id: u32,
    #[serde(rename = "containerID")]
    pub container_id: u32,
    pub size: u32,
}

/// `runtime.interfaces[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Interface {
    pub name: String,
    pub add: String,
    pub peer: String,
    pub create_in_root: bool,
}

/// `runtime.bindNS`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BindNs {
    pub cgroup: Option<String>,
    pub ipc: Option<String>,
    pub mnt: Option<String>,
    pub net: Option<String>,
    pub pid: Option<String>,
    pub user: Option<String>,
    pub uts: Option<String>,
}

/// `runtime:` (goes to runtime.json, not config.json).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    pub cgroups: Option<Vec<String>>,
    pub mounts: Option<Vec<Mount>>,
    pub mkdir: Option<Vec<String>>,
    pub interfaces: Option<Vec<Interface>>,
    #[serde(rename = "bindNS")]
    pub bind_ns: BindNs,
    pub namespace: Option<String>,
    #[serde(rename = "noRestart")]
    pub no_restart: Option<bool>,
}

/// One onboot / service / onshutdown entry (LinuxKit's `Image` + `ImageConfig`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub capabilities: Option<Vec<String>>,
    #[serde(rename = "capabilities.add")]
    pub capabilities_add: Option<Vec<String>>,
    pub ambient: Option<Vec<String>>,
    pub mounts: Option<Vec<Mount>>,
    pub binds: Option<Vec<String>>,
    #[serde(rename = "binds.add")]
    pub binds_add: Option<Vec<String>>,
    pub devices: Option<Vec<Device>>,
    pub tmpfs: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub cwd: Option<String>,
    pub net: Option<String>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub uts: Option<String>,
    pub userns: Option<String>,
    pub hostname: Option<String>,
    pub readonly: Option<bool>,
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    pub uid: Option<Id>,
    pub gid: Option<Id>,
    pub additional_gids: Option<Vec<Id>>,
    pub no_new_privileges: Option<bool>,
    pub oom_score_adj: Option<i32>,
    pub rootfs_propagation: Option<String>,
    pub cgroups_path: Option<String>,
    /// OCI `linux.resources`, passed through as given (keel-runtime validates it).
    pub resources: Option<serde_json::Value>,
    pub sysctl: Option<BTreeMap<String, String>>,
    pub rlimits: Option<Vec<String>>,
    pub uid_mappings: Option<Vec<IdMapping>>,
    pub gid_mappings: Option<Vec<IdMapping>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub runtime: Option<Runtime>,
}

/// One `files:` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct File {
    pub path: String,
    pub directory: bool,
    pub symlink: Option<String>,
    pub contents: Option<String>,
    pub source: Option<String>,
    /// LinuxKit: `metadata: yaml` writes the image YAML itself; supported.
    pub metadata: Option<String>,
    pub optional: bool,
    pub mode: Option<String>,
    pub uid: Option<Id>,
    pub gid: Option<Id>,
}

impl Moby {
    /// Parse an image definition; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Moby, Error> {
        let m: Moby = yaml_serde::from_str(text).map_err(|e| Error::Yaml(yaml_error(origin, &e)))?;
        m.validate(origin)?;
        Ok(m)
    }

    fn validate(&self, origin: &str) -> Result<(), Error> {
        let mut seen = std::collections::BTreeSet::new();
        for (section, list) in
            [("onboot", &self.onboot), ("onshutdown", &self.onshutdown), ("services", &self.services)]
        {
            for c in list.iter() {
                if c.name.is_empty() {
                    return Err(Error::Yaml(format!("{origin}: {section}: an entry has no name")));
                }
                if !c.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') {
                    return Err(Error::Yaml(format!(
                        "{origin}: {section}: invalid name {:?} (allowed: a-z 0-9 _ -)",
                        c.name
                    )));
                }
                if c.image.is_empty() {
                    return Err(Error::Yaml(format!("{origin}: {section}/{}: no image", c.name)));
                }
            }
        }
        for c in &self.services {
            if !seen.insert(c.name.clone()) {
                return Err(Error::Yaml(format!("{origin}: duplicate service name: {}", c.name)));
            }
        }
        let mut vols = std::collections::BTreeSet::new();
        for v in &self.volumes {
            if v.name.is_empty()
                || !v.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return Err(Error::Yaml(format!(
                    "{origin}: volumes: invalid volume name {:?} (allowed: a-z 0-9 _ -)",
                    v.name
                )));
            }
            if !vols.insert(v.name.clone()) {
                return Err(Error::Yaml(format!("{origin}: volumes: duplicate volume name: {}", v.name)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_linuxkit_example() {
        let y = r#"
kernel:
  image: linuxkit/kernel:6.6.13
  cmdline: "console=tty0 console=ttyS0"
init:
  - linuxkit/init:v1.0
  - linuxkit/runc:v1.0
onboot:
  - name: sysctl
    image: linuxkit/sysctl:v1
  - name: dhcpcd
    image: linuxkit/dhcpcd:v1
    command: ["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"]
services:
  - name: getty
    image: linuxkit/getty:v1
    env:
     - INSECURE=true
    binds.add:
     - /etc:/hostroot/etc
    capabilities:
     - all
    uid: 0
    gid: root
files:
  - path: etc/linuxkit-config
    metadata: yaml
trust:
  org:
    - linuxkit
"#;
        let m = Moby::parse(y, "t.yml").unwrap();
        assert_eq!(m.onboot.len(), 2);
        assert_eq!(m.services[0].uid, Some(Id::Num(0)));
        assert_eq!(m.services[0].gid, Some(Id::Name("root".into())));
        assert_eq!(m.init.len(), 2);
    }

    #[test]
    fn unknown_key_has_line_number() {
        let y =
            "onboot:\n  - name: a\n    image: busybox\nservices:\n  - name: web\n    image: busybox\n    comand: [x]\n";
        let e = Moby::parse(y, "t.yml").unwrap_err().to_string();
        assert!(e.contains("line 7"), "{e}");
        assert!(e.contains("comand"), "{e}");
    }

    #[test]
    fn wrong_type_has_line_number() {
        let y = "services:\n  - name: web\n    image: busybox\n    readonly: maybe\n";
        let e = Moby::parse(y, "t.yml").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid image definition: t.yml: line 4 column 15: services[0].readonly: invalid type: string \"maybe\", \
             expected a boolean"
        );
        let y = "services:\n  - name: web\n    image: busybox\n    runtime:\n      bindNS:\n        nett: x\n";
        let e = Moby::parse(y, "t.yml").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "invalid image definition: t.yml: line 6 column 9: services[0].runtime.bindNS: unknown field `nett`"
            ),
            "{e}"
        );
        let e = Moby::parse("services: 3\n", "t.yml").unwrap_err().to_string();
        assert!(
            e.ends_with("t.yml: line 1 column 11: services: invalid type: integer `3`, expected a sequence"),
            "{e}"
        );
        let e = Moby::parse("services:\n  - name: web\n    image: [a\n", "t.yml").unwrap_err().to_string();
        assert!(e.contains("t.yml: line 3 column 12: "), "{e}");
    }

    #[test]
    fn ids_numbers_or_names() {
        let y = "services:\n  - name: web\n    image: busybox\n    uid: [1]\n";
        let e = Moby::parse(y, "t.yml").unwrap_err().to_string();
        assert!(
            e.contains("t.yml: line 4 column 10: services[0].uid: invalid type: sequence, expected a uid/gid"),
            "{e}"
        );
        let y = "services:\n  - name: web\n    image: busybox\n    uid: -1\n";
        let e = Moby::parse(y, "t.yml").unwrap_err().to_string();
        assert!(e.contains("line 4 column 10: services[0].uid: invalid value: integer `-1`"), "{e}");
        let y = "services:\n  - name: web\n    image: busybox\n    uid: 65534\n    gid: '7'\n    additionalGids: [1, wheel]\n";
        let s = &Moby::parse(y, "t.yml").unwrap().services[0];
        assert_eq!((s.uid.clone(), s.gid.clone()), (Some(Id::Num(65534)), Some(Id::Name("7".into()))));
        assert_eq!(s.additional_gids, Some(vec![Id::Num(1), Id::Name("wheel".into())]));
    }

    #[test]
    fn unknown_top_level_key() {
        let e = Moby::parse("kernal:\n  image: x\n", "t.yml").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("kernal"), "{e}");
    }

    #[test]
    fn duplicate_and_bad_names() {
        let y = "services:\n  - name: a\n    image: busybox\n  - name: a\n    image: busybox\n";
        assert!(Moby::parse(y, "t").unwrap_err().to_string().contains("duplicate"));
        let y = "services:\n  - name: A/b\n    image: busybox\n";
        assert!(Moby::parse(y, "t").unwrap_err().to_string().contains("invalid name"));
    }
}
