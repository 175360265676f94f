//! Finding the units: /containers/onboot, /containers/services and /containers/onshutdown (root overridable with
//! $KEEL_CONTAINERS for tests), each sorted by directory name. Every bundle is loaded with `Bundle::load`; a load
//! error makes the unit *broken* with a one-line cause relative to the bundle, such as
//! `config.json line 3 column 5: process.args: invalid type ...` (see [`load_cause`]); the supervisor prints it once
//! as `web: broken bundle /containers/services/web: <cause>`. Broken units are never started, and everything else
//! still boots.
//!
//! The process binary is deliberately not looked for here: in a LinuxKit-layout bundle rootfs/ is empty until
//! runtime.json mounts an overlay or a bind onto it, so only the runtime can tell; it reports a missing binary on
//! the status pipe ("exec /bin/x: No such file or directory (errno 2)"), which the supervisor turns into one ERROR
//! line and no restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_runtime::Bundle;

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
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut skipped = Vec::new();
        for e in entries.filter_map(Result::ok).filter(|e| !e.file_name().to_string_lossy().starts_with('.')) {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => dirs.push(path),
                // A link to a bundle directory is followed; a dangling one or a plain file is no bundle: said once
                // (it is probably a mistake in the image) and skipped.
                Ok(t) if t.is_symlink() => match std::fs::metadata(&path) {
                    Ok(m) if m.is_dir() => dirs.push(path),
                    Ok(_) => skipped
                        .push(format!("{}: not a bundle directory (a link to a file); ignored", rel(root, &path))),
                    Err(err) => {
                        let to = std::fs::read_link(&path).map(|t| t.display().to_string()).unwrap_or_default();
                        skipped.push(format!("{}: link to {to}: {}; ignored", rel(root, &path), io_cause(&err)))
                    }
                },
                _ => skipped.push(format!("{}: not a bundle directory; ignored", rel(root, &path))),
            }
        }
        skipped.sort();
        errors.append(&mut skipped);
        dirs.sort();
        for d in dirs {
            out.push(load(kind, &d));
        }
    }
    (out, errors)
}

/// Longest a bundle's OCI hook may run when PID 1 starts or cleans up the bundle, in seconds.
pub const HOOK_TIMEOUT_MAX: i64 = 5;

/// Give every hook of `b` a timeout of at most [`HOOK_TIMEOUT_MAX`]. The runtime runs prestart, createRuntime and
/// poststop hooks synchronously in its caller, here PID 1, and the spec's default is no timeout at all: a hook
/// that never returns (found by init/tests/hostile.rs) froze PID 1 for good, no reaping, no keelctl, no power
/// off. This bounds the freeze; running hooks outside PID 1's loop is the real fix (keel-runtime's spawn).
fn bound_hooks(b: &mut Bundle) {
    let Some(h) = b.spec.hooks.as_mut() else { return };
    for list in [
        &mut h.prestart,
        &mut h.create_runtime,
        &mut h.create_container,
        &mut h.start_container,
        &mut h.poststart,
        &mut h.poststop,
    ] {
        for hook in list.iter_mut() {
            hook.timeout = Some(hook.timeout.map_or(HOOK_TIMEOUT_MAX, |t| t.clamp(1, HOOK_TIMEOUT_MAX)));
        }
    }
}

/// `path` relative to the containers root, for messages (`services/web`).
fn rel(root: &Path, path: &Path) -> String {
    crate::console::visible(&path.strip_prefix(root).unwrap_or(path).display().to_string()).into_owned()
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
    let (name, bundle, broken) = match Bundle::load(dir) {
        Ok(mut b) => {
            bound_hooks(&mut b);
            (b.name.clone(), Some(b), None)
        }
        Err(e) => (unit_name(dir), None, Some(load_cause(dir, &e))),
    };
    // A directory name with control characters (ESC...) is shown, listed and addressed in its visible form.
    let name = crate::console::visible(&name).into_owned();
    let empty = BTreeMap::new();
    let ann = bundle.as_ref().map(|b| &b.spec.annotations).unwrap_or(&empty);
    let (mut config, warnings) = crate::units::unit_config(kind, &name, ann, broken);
    config.bundle = dir.to_path_buf();
    Found { config, bundle, warnings }
}

/// Why a bundle did not load, without the bundle's name or path (the console line gives those once), files
/// relative to the bundle: `config.json line 4 column 3: expected `,` or `]``,
/// `config.json line 3 column 14: process.args: invalid type: integer `5`, expected a sequence`,
/// `rootfs /nonexistent/rootfs: No such file or directory (errno 2)`.
pub fn load_cause(dir: &Path, e: &keel_runtime::Error) -> String {
    use keel_runtime::Error;
    let rel =
        |p: &Path| p.strip_prefix(dir).map(Path::to_path_buf).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    let field = |f: &str| if f.is_empty() { String::new() } else { format!(" {f}:") };
    match e {
        Error::Json { path, field: f, msg } => {
            // serde_json ends its messages with " at line L column C": put the place first, as a compiler does.
            let (msg, place) = match msg.rsplit_once(" at line ") {
                Some((m, lc)) if lc.split_once(" column ").is_some_and(|(l, c)| num(l) && num(c)) => {
                    (m.to_string(), format!(" line {}", lc))
                }
                _ => (msg.clone(), String::new()),
            };
            format!("{}{place}:{} {msg}", rel(path), field(f))
        }
        Error::Invalid { path, field: f, msg } => format!("{}:{} {msg}", rel(path), field(f)),
        Error::Io { what, path, err } => format!("{what} {}: {}", rel(path), io_cause(err)),
        Error::Rootfs { path, err, .. } => match rel(path).as_str() {
            "rootfs" => format!("rootfs/: {}", io_cause(err)),
            p => format!("rootfs {p}: {}", io_cause(err)),
        },
        Error::Setup { msg, .. } => msg.clone(),
        e => e.to_string(),
    }
}

fn num(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(root: &Path, rel: &str, config: &str, with_sh: bool) -> std::io::Result<()> {
        let d = root.join(rel);
        std::fs::create_dir_all(d.join("rootfs/bin"))?;
        if with_sh {
            std::fs::write(d.join("rootfs/bin/sh"), b"")?;
        }
        std::fs::write(d.join("config.json"), config)
    }

    const OK: &str = r#"{"ociVersion":"1.0.2","process":{"args":["/bin/sh"],"cwd":"/"},"root":{"path":"rootfs"}}"#;

    #[test]
    fn finds_sorted_units_and_marks_broken_ones() -> Result<(), Box<dyn std::error::Error>> {
        let root = std::env::temp_dir().join(format!("keel-discover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        bundle(&root, "onboot/002-second", OK, true)?;
        bundle(&root, "onboot/001-first", OK, true)?;
        bundle(&root, "services/web", "{\n  \"process\": {\n    \"args\": 5\n  }\n}", true)?;
        bundle(&root, "services/syntax", "{\n  \"process\": {\n    \"args\": [\"/bin/sh\"\n  }\n}", true)?;
        bundle(&root, "services/nobin", &OK.replace("/bin/sh", "/bin/nope"), true)?;
        bundle(&root, "services/pathbin", &OK.replace("/bin/sh", "sh"), true)?;
        // LinuxKit layout: rootfs/ is empty until runtime.json's mount puts the image there.
        bundle(&root, "services/lkit", &OK.replace("/bin/sh", "/usr/bin/app"), false)?;
        let rt = r#"{"mounts":[{"source":"/var/lib/app","destination":"/","type":"bind","options":["rbind"]}]}"#;
        std::fs::write(root.join("services/lkit/runtime.json"), rt)?;
        bundle(&root, "services/norootfs", OK, true)?;
        std::fs::remove_dir_all(root.join("services/norootfs/rootfs"))?;
        bundle(&root, "onshutdown/001-bye", OK, true)?;
        let (found, errs) = discover(&root);
        assert!(errs.is_empty());
        // A file and a dangling link are said once and skipped; a link to a bundle directory is followed.
        std::fs::write(root.join("services/afile"), "x")?;
        std::os::unix::fs::symlink("/nonexistent/b", root.join("services/dangling"))?;
        std::os::unix::fs::symlink(root.join("services/web"), root.join("services/zlink"))?;
        let (found2, errs) = discover(&root);
        assert_eq!(
            errs,
            vec![
                "services/afile: not a bundle directory; ignored".to_string(),
                "services/dangling: link to /nonexistent/b: No such file or directory (errno 2); ignored".into(),
            ]
        );
        assert!(found2.iter().any(|f| f.config.name == "zlink"));
        for f in ["afile", "dangling", "zlink"] {
            std::fs::remove_file(root.join("services").join(f))?;
        }
        let names: Vec<_> = found.iter().map(|f| (f.config.kind, f.config.name.as_str())).collect();
        assert_eq!(
            names,
            vec![
                (Kind::Onboot, "first"),
                (Kind::Onboot, "second"),
                (Kind::Service, "lkit"),
                (Kind::Service, "nobin"),
                (Kind::Service, "norootfs"),
                (Kind::Service, "pathbin"),
                (Kind::Service, "syntax"),
                (Kind::Service, "web"),
                (Kind::Onshutdown, "bye"),
            ]
        );
        let broken = |n: &str| {
            found.iter().find(|f| f.config.name == n).unwrap_or_else(|| panic!("no unit {n}")).config.broken.clone()
        };
        assert_eq!(broken("first"), None);
        assert_eq!(broken("pathbin"), None);
        let web = broken("web").ok_or("web not marked broken")?;
        assert!(web.starts_with("config.json line 3 column "), "{web}");
        assert!(web.contains(": process.args: invalid type"), "{web}");
        assert!(!web.contains(" at line ") && !web.contains(&root.display().to_string()), "{web}");
        assert!(!web.contains('\n'));
        let syntax = broken("syntax").ok_or("syntax not marked broken")?;
        assert!(syntax.starts_with("config.json line 4 column 3: expected `,` or `]`"), "{syntax}");
        assert_eq!(
            found.iter().find(|f| f.config.name == "web").ok_or("no unit web")?.config.bundle,
            root.join("services/web")
        );
        // Not checked at discovery (see the top of this file): the runtime reports it at exec.
        assert_eq!(broken("nobin"), None);
        assert_eq!(broken("lkit"), None);
        assert!(found.iter().find(|f| f.config.name == "lkit").ok_or("no unit lkit")?.bundle.is_some());
        let norootfs = broken("norootfs").ok_or("norootfs not marked broken")?;
        assert_eq!(norootfs, "rootfs/: No such file or directory (errno 2)");
        std::fs::remove_dir_all(&root)?;
        Ok(())
    }
}
