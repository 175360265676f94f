//! Finding the units: /containers/onboot, /containers/services and /containers/onshutdown (root overridable with
//! $KEEL_CONTAINERS for tests), each sorted by directory name. Every bundle is loaded with `Bundle::load`; a load
//! error, or a process binary that is not in the rootfs, makes the unit *broken* with a one-line cause such as
//! `bundle /containers/services/web: config.json: line 3 column 5: ...`. Broken units are never started, and
//! everything else still boots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_shim::Bundle;

use crate::supervisor::{Kind, UnitConfig};

/// Default root of the bundle tree.
pub const DEFAULT_CONTAINERS: &str = "/containers";

/// One unit found at boot.
#[derive(Debug)]
pub struct Found {
    pub config: UnitConfig,
    /// The loaded bundle; None if broken.
    pub bundle: Option<Bundle>,
    /// Warnings about its annotations, one line each.
    pub warnings: Vec<String>,
}

/// $KEEL_CONTAINERS or /containers.
pub fn containers_dir() -> PathBuf {
    std::env::var_os("KEEL_CONTAINERS").map(Into::into).unwrap_or_else(|| DEFAULT_CONTAINERS.into())
}

/// Every unit under `root`: onboot, then services, then onshutdown; each group sorted by directory name.
/// Returns also the problems met reading the directories themselves.
pub fn discover(root: &Path) -> (Vec<Found>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (sub, kind) in [("onboot", Kind::Onboot), ("services", Kind::Service), ("onshutdown", Kind::Onshutdown)] {
        let dir = root.join(sub);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                errors.push(format!("read {}: {e}", dir.display()));
                continue;
            }
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        for d in dirs {
            out.push(load(kind, &d));
        }
    }
    (out, errors)
}

/// `001-dhcp` -> `dhcp`, as Bundle::load names it.
pub fn unit_name(dir: &Path) -> String {
    let base = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    match base.split_once('-') {
        Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest.to_string(),
        _ => base,
    }
}

/// Load one bundle into a unit.
pub fn load(kind: Kind, dir: &Path) -> Found {
    let shown = dir.display().to_string();
    let (name, bundle, broken) = match Bundle::load(dir) {
        Ok(b) => match missing_binary(&b) {
            None => (b.name.clone(), Some(b), None),
            Some(cause) => (b.name.clone(), None, Some(format!("bundle {shown}: {cause}"))),
        },
        Err(e) => {
            // The runtime's messages start with the full file path; say it relative to the bundle.
            let msg = e.to_string().replace(&format!("{shown}/"), "");
            let msg = msg.replace(&format!("bundle {}: ", unit_name(dir)), "");
            (unit_name(dir), None, Some(format!("bundle {shown}: {msg}")))
        }
    };
    let empty = BTreeMap::new();
    let ann = bundle.as_ref().map(|b| &b.spec.annotations).unwrap_or(&empty);
    let (mut config, warnings) = crate::units::unit_config(kind, &name, ann, broken);
    config.bundle = dir.to_path_buf();
    Found { config, bundle, warnings }
}

/// "No such file or directory (errno 2)": an io::Error as the console shows errors.
pub fn io_cause(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(n) => {
            let text = err.to_string();
            let text = text.strip_suffix(&format!(" (os error {n})")).unwrap_or(&text);
            format!("{text} (errno {n})")
        }
        None => err.to_string(),
    }
}

/// The process binary is neither in the rootfs nor under one of the bundle's mounts: say so now rather than as
/// an exec failure after spawn (and a restart loop).
fn missing_binary(b: &Bundle) -> Option<String> {
    let p = b.spec.process.as_ref()?;
    let arg0 = p.args.first()?;
    let path_env = p
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let candidates: Vec<String> = if arg0.contains('/') {
        let cwd = if p.cwd.is_empty() { "/" } else { p.cwd.as_str() };
        vec![if arg0.starts_with('/') { arg0.clone() } else { format!("{}/{arg0}", cwd.trim_end_matches('/')) }]
    } else {
        path_env
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| format!("{}/{arg0}", d.trim_end_matches('/')))
            .collect()
    };
    let mount_dests = b
        .spec
        .mounts
        .iter()
        .map(|m| m.destination.as_str())
        .chain(b.runtime.iter().flat_map(|r| r.mounts.iter().map(|m| m.destination.as_str())));
    for dest in mount_dests {
        let dest = dest.trim_end_matches('/');
        if dest.is_empty() || candidates.iter().any(|c| c.starts_with(&format!("{dest}/"))) {
            return None; // provided by a mount: cannot check before the container exists
        }
    }
    let found = candidates.iter().any(|c| {
        // symlink_metadata: an absolute symlink points into the container, not the host.
        std::fs::symlink_metadata(b.rootfs.join(c.trim_start_matches('/'))).is_ok()
    });
    if found {
        None
    } else {
        Some(format!("process.args[0] {arg0}: not found in rootfs (ENOENT)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(root: &Path, rel: &str, config: &str, with_sh: bool) {
        let d = root.join(rel);
        std::fs::create_dir_all(d.join("rootfs/bin")).unwrap();
        if with_sh {
            std::fs::write(d.join("rootfs/bin/sh"), b"").unwrap();
        }
        std::fs::write(d.join("config.json"), config).unwrap();
    }

    const OK: &str = r#"{"ociVersion":"1.0.2","process":{"args":["/bin/sh"],"cwd":"/"},"root":{"path":"rootfs"}}"#;

    #[test]
    fn finds_sorted_units_and_marks_broken_ones() {
        let root = std::env::temp_dir().join(format!("keel-discover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        bundle(&root, "onboot/002-second", OK, true);
        bundle(&root, "onboot/001-first", OK, true);
        bundle(&root, "services/web", "{\n  \"process\": {\n    \"args\": 5\n  }\n}", true);
        bundle(&root, "services/nobin", &OK.replace("/bin/sh", "/bin/nope"), true);
        bundle(&root, "services/pathbin", &OK.replace("/bin/sh", "sh"), true);
        bundle(&root, "services/norootfs", OK, true);
        std::fs::remove_dir_all(root.join("services/norootfs/rootfs")).unwrap();
        bundle(&root, "onshutdown/001-bye", OK, true);
        let (found, errs) = discover(&root);
        assert!(errs.is_empty());
        let names: Vec<_> = found.iter().map(|f| (f.config.kind, f.config.name.as_str())).collect();
        assert_eq!(
            names,
            vec![
                (Kind::Onboot, "first"),
                (Kind::Onboot, "second"),
                (Kind::Service, "nobin"),
                (Kind::Service, "norootfs"),
                (Kind::Service, "pathbin"),
                (Kind::Service, "web"),
                (Kind::Onshutdown, "bye"),
            ]
        );
        let broken = |n: &str| found.iter().find(|f| f.config.name == n).unwrap().config.broken.clone();
        assert_eq!(broken("first"), None);
        assert_eq!(broken("pathbin"), None);
        let web = broken("web").unwrap();
        assert!(web.starts_with(&format!("bundle {}/services/web: config.json", root.display())), "{web}");
        assert!(web.contains("line 3"), "{web}");
        assert!(!web.contains('\n'));
        assert!(broken("nobin").unwrap().contains("/bin/nope: not found"));
        assert!(broken("norootfs").unwrap().contains("rootfs"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
