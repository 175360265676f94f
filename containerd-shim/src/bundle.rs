//! Loading and validating a bundle directory: config.json (+ LinuxKit runtime.json).

use std::path::{Path, PathBuf};

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
}

impl Bundle {
    /// Read `dir/config.json` (and `dir/runtime.json` if present) and validate it.
    pub fn load(dir: &Path) -> Result<Bundle, Error> {
        let path = dir.join("config.json");
        let text = std::fs::read(&path).map_err(|err| Error::Io { what: "read", path: path.clone(), err })?;
        let spec: Spec = serde_json::from_slice(&text).map_err(|e| Error::Json {
            path: path.clone(),
            field: String::new(),
            msg: e.to_string(),
        })?;
        let base = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = match base.split_once('-') {
            Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest.to_string(),
            _ => base,
        };
        Ok(Bundle { dir: dir.to_path_buf(), name, spec })
    }

    /// An OCI annotation from config.json.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.spec.annotations.get(key).map(String::as_str)
    }
}
