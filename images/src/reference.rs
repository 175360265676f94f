//! Image references as Docker and LinuxKit normalise them: `alpine` → `docker.io/library/alpine:latest`,
//! `linuxkit/getty:TAG` → `docker.io/linuxkit/getty:TAG`, `127.0.0.1:5000/x/y@sha256:…` kept with its registry.
//! The full string ([`Reference::full`]) is the key of LinuxKit's cache (`org.opencontainers.image.ref.name`).

use std::fmt;

use crate::Error;

/// Docker Hub's name in references, and the host its API is served from.
pub const DOCKER_HUB: &str = "docker.io";
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host[:port] (`docker.io` for Docker Hub).
    pub registry: String,
    /// Repository path (`library/alpine`, `linuxkit/getty`).
    pub repository: String,
    /// Tag (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// `sha256:<64 hex>` when pinned.
    pub digest: Option<String>,
}

fn bad(s: &str, why: &str) -> Error {
    Error::Source(format!("image reference {s:?}: {why}"))
}

/// A `sha256:` digest with 64 lowercase hex digits (the only algorithm registries use in practice).
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .map(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .unwrap_or(false)
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ separated by '.', '_', '__' or '-'s (distribution's grammar, checked loosely).
    !c.is_empty()
        && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && c.as_bytes()[0].is_ascii_alphanumeric()
        && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Reference {
    /// Parse and normalise `s`.
    pub fn parse(s: &str) -> Result<Reference, Error> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !valid_digest(d) {
                    return Err(bad(s, "digest must be sha256: and 64 lowercase hex digits"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':' before it is a registry port).
        let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(bad(s, &format!("invalid tag {t:?}")));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" { DOCKER_HUB.to_string() } else { registry };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.is_empty() || !repository.split('/').all(valid_component) {
            return Err(bad(s, "repository must be lowercase [a-z0-9._-] components separated by '/'"));
        }
        if registry.is_empty() || registry.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(bad(s, "invalid registry host"));
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// `registry/repository[:tag][@digest]`: LinuxKit's cache key.
    pub fn full(&self) -> String {
        self.to_string()
    }

    /// What to ask the registry's manifest endpoint for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The host[:port] the distribution API is served from.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        Reference::parse(s).unwrap().full()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(full("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("alpine:3.19"), "docker.io/library/alpine:3.19");
        assert_eq!(full("linuxkit/getty:v1.0"), "docker.io/linuxkit/getty:v1.0");
        assert_eq!(full("docker.io/linuxkit/getty:v1.0"), "docker.io/linuxkit/getty:v1.0");
        assert_eq!(full("index.docker.io/library/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("127.0.0.1:5000/keel/hello"), "127.0.0.1:5000/keel/hello:latest");
        assert_eq!(full("localhost/a/b:t"), "localhost/a/b:t");
        assert_eq!(full("ghcr.io/o/r:1.2_x-y"), "ghcr.io/o/r:1.2_x-y");
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(full(&format!("linuxkit/getty@{d}")), format!("docker.io/linuxkit/getty@{d}"));
        assert_eq!(full(&format!("r.io:443/a:t@{d}")), format!("r.io:443/a:t@{d}"));
        let r = Reference::parse(&format!("127.0.0.1:5000/x@{d}")).unwrap();
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        assert_eq!(Reference::parse("alpine").unwrap().api_host(), DOCKER_HUB_API);
    }

    #[test]
    fn rejects_bad_references() {
        for s in ["Alpine", "a//b", "a:", "x@sha256:12", "x@md5:00", "a:b c", "", "/a", "a/"] {
            assert!(Reference::parse(s).is_err(), "{s:?} accepted");
        }
    }
}
