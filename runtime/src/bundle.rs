//! Loading and validating a bundle directory: config.json (+ LinuxKit runtime.json).
//!
//! JSON errors name the file, line and column (from serde_json) and the JSON path of the field at that position
//! (computed by [`json_path_at`], since serde_json does not track it). Validation covers what the spec says a
//! runtime MUST reject before creating anything: empty process.args, a missing or non-directory rootfs, relative
//! mount destinations, relative hook paths, duplicate namespaces.

use std::path::{Path, PathBuf};

use crate::runtime_json::RuntimeJson;
use crate::spec::Spec;
use crate::Error;

/// A loaded, validated bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// Directory name without an `NNN-` order prefix (e.g. `001-dhcp` -> `dhcp`).
    pub name: String,
    /// Parsed config.json.
    pub spec: Spec,
    /// Parsed LinuxKit runtime.json, if the bundle has one.
    pub runtime: Option<RuntimeJson>,
    /// Absolute path of the root filesystem (root.path resolved against `dir`).
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Read `dir/config.json` (and `dir/runtime.json` if present) and validate it.
    pub fn load(dir: &Path) -> Result<Bundle, Error> {
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir().map_err(|err| Error::Io { what: "getcwd", path: dir.to_path_buf(), err })?.join(dir)
        };
        let base = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = match base.split_once('-') {
            Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest.to_string(),
            _ => base,
        };

        let path = dir.join("config.json");
        let spec: Spec = parse_json(&path)?;
        let rt_path = dir.join("runtime.json");
        // Read it straight away (no stat first): a missing file is simply no runtime.json.
        let runtime = match read_limited(&rt_path) {
            Ok(text) => Some(parse_json_text::<RuntimeJson>(&rt_path, &text?)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(Error::Io { what: "read", path: rt_path, err }),
        };

        let root = spec.root.as_ref().map(|r| r.path.as_str()).unwrap_or("rootfs");
        let rootfs = if root.is_empty() { dir.join("rootfs") } else { dir.join(root) };
        let bundle = Bundle { dir, name, spec, runtime, rootfs };
        bundle.validate(&path)?;
        Ok(bundle)
    }

    fn validate(&self, path: &Path) -> Result<(), Error> {
        let invalid = |field: String, msg: &str| Error::Invalid { path: path.to_path_buf(), field, msg: msg.into() };
        match std::fs::metadata(&self.rootfs) {
            // A rootfs that is (a link to) the host's / would give the container the whole host, and pivot_root
            // onto it fails with an obscure EBUSY anyway: refuse it by name. LinuxKit bundles never do this.
            Ok(m) if m.is_dir() && std::fs::canonicalize(&self.rootfs).is_ok_and(|p| p == Path::new("/")) => {
                let rel = self.rootfs.strip_prefix(&self.dir).unwrap_or(&self.rootfs).display().to_string();
                return Err(invalid("root.path".into(), &format!("{rel} is the host's / (refused)")));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Rootfs {
                    bundle: self.name.clone(),
                    path: self.rootfs.clone(),
                    err: std::io::Error::from_raw_os_error(libc::ENOTDIR),
                })
            }
            Err(err) => return Err(Error::Rootfs { bundle: self.name.clone(), path: self.rootfs.clone(), err }),
        }
        if let Some(p) = &self.spec.process {
            if p.args.is_empty() {
                return Err(invalid("process.args".into(), "must not be empty"));
            }
            if !p.cwd.is_empty() && !p.cwd.starts_with('/') {
                return Err(invalid("process.cwd".into(), "must be an absolute path"));
            }
            if let Some(c) = &p.capabilities {
                let sets = [
                    ("bounding", &c.bounding),
                    ("effective", &c.effective),
                    ("permitted", &c.permitted),
                    ("inheritable", &c.inheritable),
                    ("ambient", &c.ambient),
                ];
                for (set, names) in sets {
                    for (i, n) in names.iter().enumerate() {
                        if crate::caps::from_name(n).is_none() {
                            return Err(invalid(format!("process.capabilities.{set}[{i}]"), "unknown capability"));
                        }
                    }
                }
            }
            for (i, r) in p.rlimits.iter().enumerate() {
                if crate::rlimits::resource(&r.kind).is_none() {
                    return Err(invalid(format!("process.rlimits[{i}].type"), "unknown rlimit"));
                }
            }
        }
        for (i, m) in self.spec.mounts.iter().enumerate() {
            if !m.destination.starts_with('/') {
                return Err(invalid(format!("mounts[{i}].destination"), "must be an absolute path"));
            }
        }
        if let Some(h) = &self.spec.hooks {
            let lists = [
                ("prestart", &h.prestart),
                ("createRuntime", &h.create_runtime),
                ("createContainer", &h.create_container),
                ("startContainer", &h.start_container),
                ("poststart", &h.poststart),
                ("poststop", &h.poststop),
            ];
            for (name, list) in lists {
                for (i, hook) in list.iter().enumerate() {
                    if !hook.path.starts_with('/') {
                        return Err(invalid(format!("hooks.{name}[{i}].path"), "must be an absolute path"));
                    }
                    if hook.timeout.is_some_and(|t| t <= 0) {
                        return Err(invalid(format!("hooks.{name}[{i}].timeout"), "must be greater than zero"));
                    }
                }
            }
        }
        if let Some(l) = &self.spec.linux {
            for (i, ns) in l.namespaces.iter().enumerate() {
                if l.namespaces[..i].iter().any(|o| o.kind == ns.kind) {
                    return Err(invalid(format!("linux.namespaces[{i}]"), "duplicate namespace type"));
                }
                if ns.path.as_deref().is_some_and(|p| !p.is_empty() && !p.starts_with('/')) {
                    return Err(invalid(format!("linux.namespaces[{i}].path"), "must be an absolute path"));
                }
            }
            for (i, d) in l.devices.iter().enumerate() {
                if !d.path.starts_with('/') {
                    return Err(invalid(format!("linux.devices[{i}].path"), "must be an absolute path"));
                }
                if !matches!(d.kind.as_str(), "c" | "u" | "b" | "p") {
                    return Err(invalid(format!("linux.devices[{i}].type"), "must be one of c, u, b, p"));
                }
            }
            if let Some(p) = l.rootfs_propagation.as_deref() {
                if crate::mounts::propagation_flag(p).is_none() && !p.is_empty() {
                    return Err(invalid("linux.rootfsPropagation".into(), "unknown propagation"));
                }
            }
            if (!l.uid_mappings.is_empty() || !l.gid_mappings.is_empty())
                && l.namespace(crate::spec::NamespaceType::User).is_none()
            {
                return Err(invalid("linux.uidMappings".into(), "needs a user namespace"));
            }
        }
        if let Some(rt) = &self.runtime {
            for (i, m) in rt.mounts.iter().enumerate() {
                if m.destination.is_empty() {
                    return Err(Error::Invalid {
                        path: self.dir.join("runtime.json"),
                        field: format!("mounts[{i}].destination"),
                        msg: "must not be empty".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// An OCI annotation from config.json.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.spec.annotations.get(key).map(String::as_str)
    }
}

/// Largest config.json or runtime.json accepted. Real ones are a few KiB (a big seccomp profile ~100 KiB); a
/// bigger file is a broken or hostile bundle, and PID 1 loads every bundle and keeps its spec for the unit's life.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Read a bundle file of at most [`MAX_CONFIG_BYTES`].
fn read_limited(path: &Path) -> std::io::Result<Result<Vec<u8>, Error>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    // Sized from the file: one read(2) for a regular file instead of a doubling series of small ones.
    let hint = f.metadata().map_or(0, |m| m.len()).min(MAX_CONFIG_BYTES + 1);
    let mut text = Vec::with_capacity(usize::try_from(hint).unwrap_or(0) + 1);
    f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Ok(Err(Error::Invalid {
            path: path.to_path_buf(),
            field: String::new(),
            msg: format!("larger than {} KiB (the limit for a bundle's JSON file)", MAX_CONFIG_BYTES >> 10),
        }));
    }
    Ok(Ok(text))
}

/// Read and parse a JSON file; errors name the file, line/column and the JSON path of the offending field.
fn parse_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = read_limited(path).map_err(|err| Error::Io { what: "read", path: path.to_path_buf(), err })??;
    parse_json_text(path, &text)
}

/// Parse JSON already read from `path` (errors as [`parse_json`]).
fn parse_json_text<T: serde::de::DeserializeOwned>(path: &Path, text: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        field: if e.is_data() { json_path_at(text, e.line(), e.column()) } else { String::new() },
        msg: e.to_string(),
    })
}

/// The JSON path (e.g. `linux.namespaces[2].type`) of the value at 1-based `line`/`column` of `text`. Best effort: a
/// tiny scanner that tracks object keys and array indexes up to that position.
pub fn json_path_at(text: &[u8], line: usize, column: usize) -> String {
    // Byte offset of line/column.
    let mut end = text.len();
    let (mut l, mut c) = (1, 0);
    for (i, &b) in text.iter().enumerate() {
        if l == line && c >= column {
            end = i;
            break;
        }
        if b == b'\n' {
            l += 1;
            c = 0;
        } else {
            c += 1;
        }
    }
    enum Frame {
        Obj { key: String, expect_key: bool },
        Arr(usize),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < end {
        match text[i] {
            b'{' => stack.push(Frame::Obj { key: String::new(), expect_key: true }),
            b'[' => stack.push(Frame::Arr(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Obj { expect_key, .. }) => *expect_key = true,
                Some(Frame::Arr(n)) => *n += 1,
                None => {}
            },
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    if text[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if let Some(Frame::Obj { key, expect_key }) = stack.last_mut() {
                    if *expect_key {
                        *key = String::from_utf8_lossy(&text[start..i.min(text.len())]).into_owned();
                        *expect_key = false;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut out = String::new();
    for f in &stack {
        match f {
            Frame::Obj { key, .. } if !key.is_empty() => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Frame::Obj { .. } => {}
            Frame::Arr(n) => out.push_str(&format!("[{n}]")),
        }
    }
    out
}
