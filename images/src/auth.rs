//! Registry credentials from Docker's client config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
//! `auths.HOST.auth` (base64 `user:password`) or `username`/`password`, and credential helpers (`credHelpers`,
//! `credsStore`: `docker-credential-NAME get`). Docker Hub's entry is `https://index.docker.io/v1/`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

use crate::reference::DOCKER_HUB;
use crate::Error;

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// Where Docker's client config is.
pub fn default_config() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".docker/config.json")
}

/// The host part of an `auths` key (`https://index.docker.io/v1/` → `index.docker.io`).
fn key_host(k: &str) -> &str {
    let k = k.strip_prefix("https://").or_else(|| k.strip_prefix("http://")).unwrap_or(k);
    k.split('/').next().unwrap_or(k)
}

fn same_registry(key: &str, registry: &str) -> bool {
    let h = key_host(key);
    if registry == DOCKER_HUB {
        matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io")
    } else {
        h == registry
    }
}

/// Credentials for `registry` (as in a reference: `docker.io`, `127.0.0.1:5000`) from the config at `config`.
/// A missing config file means none. A credential helper that cannot be run is reported and skipped (anonymous).
pub fn lookup(registry: &str, config: &Path) -> Result<Option<Credentials>, Error> {
    let text = match std::fs::read(config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(crate::io("reading docker config", config)(e)),
    };
    /// The parts of `~/.docker/config.json` keel reads (every other key is ignored).
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct DockerConfig {
        auths: Option<BTreeMap<String, Auth>>,
        cred_helpers: Option<BTreeMap<String, String>>,
        creds_store: Option<String>,
    }
    #[derive(Deserialize)]
    struct Auth {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    let v: DockerConfig = crate::parse_json(&text, &config.display().to_string(), "docker config")?;
    let bad = |why: String| Error::Source(format!("docker config {}: {why}", config.display()));
    if let Some(auths) = &v.auths {
        for (k, a) in auths {
            if !same_registry(k, registry) {
                continue;
            }
            if let Some(enc) = a.auth.as_deref().filter(|s| !s.is_empty()) {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(enc.trim())
                    .map_err(|e| bad(format!("auths.{k}.auth: not base64: {e}")))?;
                let raw = String::from_utf8(raw).map_err(|_| bad(format!("auths.{k}.auth: not UTF-8")))?;
                let (u, p) =
                    raw.split_once(':').ok_or_else(|| bad(format!("auths.{k}.auth: want base64 of user:password")))?;
                return Ok(Some(Credentials { username: u.into(), password: p.into() }));
            }
            if let (Some(u), Some(p)) = (&a.username, &a.password) {
                return Ok(Some(Credentials { username: u.into(), password: p.into() }));
            }
        }
    }
    let helper = v
        .cred_helpers
        .as_ref()
        .and_then(|h| h.iter().find(|(k, _)| same_registry(k, registry)).map(|(_, n)| n.as_str()))
        .or(v.creds_store.as_deref());
    match helper {
        Some(h) if !h.is_empty() => Ok(helper_get(h, registry)),
        _ => Ok(None),
    }
}

fn helper_get(helper: &str, registry: &str) -> Option<Credentials> {
    let server = if registry == DOCKER_HUB { "https://index.docker.io/v1/" } else { registry };
    let bin = format!("docker-credential-{helper}");
    let child =
        Command::new(&bin).arg("get").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keel-image: warning: credential helper {bin}: {e}; pulling from {registry} anonymously");
            return None;
        }
    };
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(server.as_bytes());
    }
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None; // "credentials not found"
    }
    /// A credential helper's answer to `get`.
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct HelperAnswer {
        username: String,
        secret: String,
    }
    let v: HelperAnswer = serde_json::from_slice(&out.stdout).ok()?;
    Some(Credentials { username: v.username, password: v.secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auths_from_docker_config() {
        let d = std::env::temp_dir().join(format!("keel-auth-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("config.json");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(
            &f,
            serde_json::to_vec(&serde_json::json!({"auths": {
                "https://index.docker.io/v1/": {"auth": b64("hub:secret")},
                "127.0.0.1:5000": {"auth": b64("me:pa:ss")},
                "http://r.example:8080/v2/": {"username": "u", "password": "p"},
            }}))
            .unwrap(),
        )
        .unwrap();
        let c = lookup("docker.io", &f).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("hub", "secret"));
        let c = lookup("127.0.0.1:5000", &f).unwrap().unwrap();
        assert_eq!(c.password, "pa:ss");
        assert_eq!(c.basic(), format!("Basic {}", b64("me:pa:ss")));
        assert_eq!(lookup("r.example:8080", &f).unwrap().unwrap().username, "u");
        assert!(lookup("ghcr.io", &f).unwrap().is_none());
        assert!(lookup("ghcr.io", &d.join("missing.json")).unwrap().is_none());
        assert!(!format!("{c:?}").contains("pa:ss"), "Debug hides the password");
        // A wrong type: the file, line, column and field.
        let bad = d.join("bad.json");
        std::fs::write(&bad, "{\"auths\": {\"x\": {\"auth\": 5}}}").unwrap();
        let e = lookup("x", &bad).unwrap_err().to_string();
        assert!(
            e.contains("bad.json: bad docker config: line 1 column 26: auths.x.auth: invalid type: integer `5`"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
