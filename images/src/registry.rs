//! Pull images over the OCI distribution API into the cache ([`crate::cache`]).
//!
//! `GET /v2/REPO/manifests/REF` with every manifest and index media type in `Accept` (OCI index and manifest,
//! Docker manifest list and schema 2); a `401` is answered as Docker does: `Bearer realm=…,service=…,scope=…`
//! fetches a token from the realm (anonymously, or with `~/.docker/config.json` credentials), `Basic` sends the
//! credentials. An index is resolved to linux/ARCH (amd64 unless `--arch`); the manifest, config and layers are
//! fetched by digest, streamed to disk while hashed, and verified (size and sha256) before they get their name.
//! The image's `index.json` entry is written last; a failed pull removes every blob it wrote, so nothing of it
//! stays in the cache.
//!
//! Loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`) and those in `$KEEL_INSECURE_REGISTRIES`
//! (comma-separated `host:port`) are spoken to over plain HTTP, as Docker treats them; every other one over HTTPS,
//! trusting the webpki roots plus, as Docker does, the CA certificates `/etc/docker/certs.d/HOST[:PORT]/*.crt`
//! (a registry with such a directory is spoken to over HTTPS even on loopback).

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use oci_spec::image::{Descriptor, Digest, MediaType};
use serde::Deserialize;

use crate::auth::{self, Credentials};
use crate::cache::{self, parse_root, pick_platform, sha256_digest, Layout, Root};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::Error;

/// Media types a manifest request accepts.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest or index accepted (distribution's own limit is 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// Attempts for a request that failed in transport (connection refused or reset, timeout) or with a 5xx/429, and
/// for a blob whose transfer broke off; the delay doubles from [`RETRY_DELAY`] between them.
pub const ATTEMPTS: u32 = 3;
pub const RETRY_DELAY: Duration = Duration::from_millis(500);

fn transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Transport(_) => true,
        ureq::Error::Status(code, _) => *code == 429 || *code >= 500,
    }
}

/// How images by registry reference are found.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The cache (an OCI image layout; LinuxKit's `~/.linuxkit/cache` by default).
    pub cache: PathBuf,
    /// Use the cache only: never contact a registry.
    pub offline: bool,
    /// Pull even if the cache has the image (`--pull`).
    pub always: bool,
    /// Platform architecture to resolve indexes to (`amd64`, `arm64`, `arm/v7`).
    pub arch: String,
    /// Docker's client config (credentials).
    pub docker_config: PathBuf,
    /// No progress output.
    pub quiet: bool,
    /// Docker's per-registry CA directory (`certs.d/HOST[:PORT]/*.crt`).
    pub certs_dir: PathBuf,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            cache: cache::default_dir(),
            offline: false,
            always: false,
            arch: "amd64".into(),
            docker_config: auth::default_config(),
            quiet: false,
            certs_dir: PathBuf::from("/etc/docker/certs.d"),
        }
    }
}

/// The CA certificates (`*.crt`, PEM) in `dir`, sorted; none if the directory is missing.
pub fn registry_cas(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "crt")).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A TLS client configuration trusting the webpki roots and the certificates in `cas`.
fn tls_config(cas: &[PathBuf]) -> Result<std::sync::Arc<rustls::ClientConfig>, Error> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for ca in cas {
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca)
            .map_err(|e| Error::Source(format!("registry CA {}: {e}", ca.display())))?;
        let mut n = 0;
        for c in certs {
            let c = c.map_err(|e| Error::Source(format!("registry CA {}: {e}", ca.display())))?;
            roots.add(c).map_err(|e| Error::Source(format!("registry CA {}: {e}", ca.display())))?;
            n += 1;
        }
        if n == 0 {
            return Err(Error::Source(format!("registry CA {}: no PEM certificate in it", ca.display())));
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| Error::Source(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(cfg))
}

/// True for hosts spoken to over plain HTTP.
pub fn insecure(host: &str) -> bool {
    let h = host.rsplit_once(':').map(|(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host });
    let h = h.unwrap_or(host);
    let listed = std::env::var("KEEL_INSECURE_REGISTRIES")
        .map(|v| v.split(',').any(|x| x.trim() == host || x.trim() == h))
        .unwrap_or(false);
    let loopback_ip = h.parse::<std::net::Ipv4Addr>().map(|a| a.is_loopback()).unwrap_or(false);
    listed || h == "localhost" || h == "[::1]" || loopback_ip
}

/// Parse a `WWW-Authenticate` challenge: scheme and parameters.
pub fn parse_challenge(h: &str) -> (String, Vec<(String, String)>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, after)) = s.split_once('=') else { break };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (q[..end].to_string(), q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((k, v));
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_ascii_lowercase(), params)
}

/// A registry client for one repository.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    r: Reference,
    creds: Option<Credentials>,
    authz: Option<String>,
}

impl Client {
    /// A client for `r`'s repository, with credentials from `docker_config`.
    pub fn new(r: &Reference, o: &PullOptions) -> Result<Client, Error> {
        let host = r.api_host();
        let cas = registry_cas(&o.certs_dir.join(host));
        let scheme = if cas.is_empty() && insecure(host) { "http" } else { "https" };
        let mut b = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(20))
            .timeout_read(Duration::from_secs(60))
            .user_agent(concat!("keel-image/", env!("CARGO_PKG_VERSION")));
        if !cas.is_empty() {
            b = b.tls_config(tls_config(&cas)?);
        }
        let agent = b.build();
        Ok(Client {
            agent,
            base: format!("{scheme}://{host}"),
            r: r.clone(),
            creds: auth::lookup(&r.registry, &o.docker_config)?,
            authz: None,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.r.repository)
    }

    fn fail(&self, what: &str, e: ureq::Error) -> Error {
        match e {
            ureq::Error::Status(code, resp) => {
                let url = resp.get_url().to_string();
                let mut body = String::new();
                let _ = resp.into_reader().take(512).read_to_string(&mut body);
                let hint = match code {
                    401 | 403 => " (denied: check the credentials in ~/.docker/config.json)",
                    404 => " (not found)",
                    _ => "",
                };
                Error::Source(format!(
                    "pulling {}: {what}: GET {url}: HTTP {code}{hint}: {}",
                    self.r,
                    body.trim().chars().take(300).collect::<String>()
                ))
            }
            ureq::Error::Transport(t) => Error::Source(format!("pulling {}: {what}: {t}", self.r)),
        }
    }

    /// Answer a 401 challenge: set `self.authz` for the retry.
    fn authenticate(&mut self, challenge: &str, what: &str) -> Result<(), Error> {
        let (scheme, params) = parse_challenge(challenge);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match scheme.as_str() {
            "bearer" => {
                let realm = get("realm").ok_or_else(|| {
                    Error::Source(format!("pulling {}: {what}: Bearer challenge without realm", self.r))
                })?;
                let scope = get("scope").unwrap_or_else(|| format!("repository:{}:pull", self.r.repository));
                let mut req = self.agent.get(&realm).query("scope", &scope);
                if let Some(s) = get("service") {
                    req = req.query("service", &s);
                }
                if let Some(c) = &self.creds {
                    req = req.set("Authorization", &c.basic());
                }
                let resp = req.call().map_err(|e| self.fail(&format!("{what}: token from {realm}"), e))?;
                /// The token endpoint's answer (Docker's `token`, OAuth2's `access_token`).
                #[derive(Deserialize)]
                struct TokenAnswer {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let mut body = Vec::new();
                resp.into_reader()
                    .take(1 << 20)
                    .read_to_end(&mut body)
                    .map_err(|e| Error::Source(format!("pulling {}: token from {realm}: {e}", self.r)))?;
                let v: TokenAnswer =
                    crate::parse_json(&body, &format!("pulling {}: token from {realm}", self.r), "answer")?;
                let tok = v.token.filter(|t| !t.is_empty()).or(v.access_token).ok_or_else(|| {
                    Error::Source(format!("pulling {}: token from {realm}: no token in the answer", self.r))
                })?;
                self.authz = Some(format!("Bearer {tok}"));
                Ok(())
            }
            "basic" => match &self.creds {
                Some(c) => {
                    self.authz = Some(c.basic());
                    Ok(())
                }
                None => Err(Error::Source(format!(
                    "pulling {}: {what}: {} wants credentials (docker login, or auths in ~/.docker/config.json)",
                    self.r, self.r.registry
                ))),
            },
            other => Err(Error::Source(format!("pulling {}: {what}: unsupported auth scheme {other:?}", self.r))),
        }
    }

    /// GET `path` under the repository, authenticating once if challenged and retrying transient failures
    /// ([`ATTEMPTS`]).
    pub fn get(&mut self, path: &str, accept: &str, what: &str) -> Result<ureq::Response, Error> {
        let url = self.url(path);
        let (mut authenticated, mut failures) = (false, 0);
        loop {
            let mut req = self.agent.get(&url).set("Accept", accept);
            if let Some(a) = &self.authz {
                req = req.set("Authorization", a);
            }
            match req.call() {
                Ok(r) => return Ok(r),
                Err(ureq::Error::Status(401, resp)) if !authenticated => {
                    let ch = resp.header("WWW-Authenticate").unwrap_or("").to_string();
                    self.authenticate(&ch, what)?;
                    authenticated = true;
                }
                Err(e) if transient(&e) && failures + 1 < ATTEMPTS => {
                    std::thread::sleep(RETRY_DELAY * 2u32.pow(failures));
                    failures += 1;
                }
                Err(e) => {
                    let err = self.fail(what, e);
                    return Err(if failures > 0 {
                        Error::Source(format!("{err} (after {} attempts)", failures + 1))
                    } else {
                        err
                    });
                }
            }
        }
    }

    /// Fetch a manifest or index by tag or digest: (bytes, media type).
    pub fn manifest(&mut self, reference: &str) -> Result<(Vec<u8>, String), Error> {
        let what = if reference.starts_with("sha256:") {
            format!("manifest {reference}")
        } else {
            format!("manifest of tag {reference}")
        };
        let resp = self.get(&format!("manifests/{reference}"), ACCEPT, &what)?;
        let ct = resp.content_type().to_string();
        let header_digest = resp.header("Docker-Content-Digest").map(String::from);
        let mut data = Vec::new();
        resp.into_reader()
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut data)
            .map_err(|e| Error::Source(format!("pulling {}: {what}: {e}", self.r)))?;
        if data.len() as u64 > MAX_MANIFEST {
            return Err(Error::Source(format!("pulling {}: {what}: larger than {MAX_MANIFEST} bytes", self.r)));
        }
        let got = sha256_digest(&data);
        if let Some(h) = header_digest.filter(|h| h.starts_with("sha256:")) {
            if h != got {
                return Err(Error::Source(format!(
                    "pulling {}: {what}: content hashes to {got}, the registry says {h}",
                    self.r
                )));
            }
        }
        Ok((data, ct))
    }
}

/// One pull in progress: the blobs it wrote (removed again if it fails).
struct Pull<'a> {
    c: Client,
    layout: &'a Layout,
    written: Vec<String>,
    quiet: bool,
}

impl Pull<'_> {
    fn label(&self, kind: &str, digest: &str) -> String {
        format!("{} {kind} {}", self.c.r, &digest[..digest.len().min(19)])
    }

    /// A manifest/index by digest: from the cache if there and valid, else the registry (verified, stored).
    fn manifest_by_digest(&mut self, digest: &str, size: u64) -> Result<Vec<u8>, Error> {
        if let Ok(d) = self.layout.read_blob(digest, Some(size)) {
            return Ok(d);
        }
        let (data, _) = self.c.manifest(digest)?;
        cache::verify(&data, digest, Some(size), &cache::blob_path(&self.layout.dir, digest)?)
            .map_err(|e| Error::Source(format!("pulling {}: {e}", self.c.r)))?;
        self.store_small(digest, &data)?;
        Ok(data)
    }

    fn store_small(&mut self, digest: &str, data: &[u8]) -> Result<(), Error> {
        if !self.layout.blob_exists(digest) || self.layout.read_blob(digest, Some(data.len() as u64)).is_err() {
            self.layout.put_blob(digest, data).map_err(|e| Error::Source(format!("pulling {}: {e}", self.c.r)))?;
            self.written.push(digest.to_string());
        }
        Ok(())
    }

    /// A config or layer blob, streamed to the cache and verified; a transfer that breaks off is started again
    /// (at most [`ATTEMPTS`] times).
    fn blob(&mut self, kind: &str, digest: &str, size: u64) -> Result<(), Error> {
        if self.layout.has_blob(digest, size) {
            return Ok(());
        }
        let mut first: Option<Error> = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(RETRY_DELAY * 2u32.pow(attempt - 1));
            }
            match self.blob_once(kind, digest, size) {
                Ok(()) => return Ok(()),
                Err((retry, e)) => {
                    let e = match first.take() {
                        Some(f) => Error::Source(format!("{f}; then, attempt {}: {e}", attempt + 1)),
                        None => e,
                    };
                    if !retry {
                        return Err(e);
                    }
                    first = Some(e);
                }
            }
        }
        Err(first.unwrap_or_else(|| Error::Source(format!("pulling {}: {kind} {digest}: failed", self.c.r))))
    }

    /// One transfer of a blob. Err((true, _)) when it broke off mid-way (worth another try).
    fn blob_once(&mut self, kind: &str, digest: &str, size: u64) -> Result<(), (bool, Error)> {
        let fatal = |e: Error| (false, e);
        let resp = self.c.get(&format!("blobs/{digest}"), "*/*", &format!("{kind} {digest}")).map_err(fatal)?;
        let mut w = self.layout.blob_writer(digest, size).map_err(fatal)?;
        let mut p = Progress::start(self.label(kind, digest), size, self.quiet);
        let mut rd = resp.into_reader();
        let mut buf = vec![0u8; 256 << 10];
        let r = loop {
            match rd.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    if let Err(e) = std::io::Write::write_all(&mut w, &buf[..n]) {
                        break Err((false, format!("writing the cache: {e}")));
                    }
                    p.add(n as u64);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err((true, format!("after {} of {size} bytes: {e}", w.written()))),
            }
        };
        if let Err((retry, e)) = r {
            p.finish(false);
            return Err((retry, Error::Source(format!("pulling {}: {kind} {digest}: {e}", self.c.r))));
        }
        match w.commit() {
            Ok(_) => {
                p.finish(true);
                self.written.push(digest.to_string());
                Ok(())
            }
            Err(e) => {
                p.finish(false);
                Err(fatal(Error::Source(format!("pulling {}: {kind} {e} (refused; nothing kept)", self.c.r))))
            }
        }
    }

    fn run(&mut self, arch: &str) -> Result<Descriptor, Error> {
        let r = self.c.r.clone();
        let (data, ct) = self.c.manifest(r.manifest_ref())?;
        let digest = sha256_digest(&data);
        if let Some(want) = &r.digest {
            if *want != digest {
                return Err(Error::Source(format!("pulling {r}: manifest content hashes to {digest}, not {want}")));
            }
        }
        let what = format!("{r}: manifest {digest}");
        let media_type = match parse_root(&data, &what)? {
            Root::Index(ix) => ix.media_type().clone(),
            Root::Manifest(m) => m.media_type().clone(),
        }
        .unwrap_or_else(|| MediaType::from(ct.as_str()));
        let typed_digest: Digest =
            digest.parse().map_err(|e| Error::Source(format!("pulling {r}: manifest digest {digest}: {e}")))?;
        self.store_small(&digest, &data)?;
        let root = Descriptor::new(media_type, data.len() as u64, typed_digest);
        let (mut cur, mut cur_digest) = (data, digest);
        for _ in 0..4 {
            match parse_root(&cur, &format!("{r}: manifest {cur_digest}"))? {
                Root::Index(ix) => {
                    let d = pick_platform(&ix, arch, &format!("{r}: index {cur_digest}"))?;
                    let (dg, sz) = (d.digest().to_string(), d.size());
                    cur = self.manifest_by_digest(&dg, sz)?;
                    cur_digest = dg;
                }
                Root::Manifest(m) => {
                    let c = m.config();
                    self.blob("config", c.digest().as_ref(), c.size())?;
                    for l in m.layers() {
                        self.blob("layer", l.digest().as_ref(), l.size())?;
                    }
                    return Ok(root);
                }
            }
        }
        Err(Error::Source(format!("pulling {r}: indexes nested too deep")))
    }
}

/// Pull `r` into the cache (blobs already there and valid are kept) and record it; returns its descriptor.
pub fn pull(r: &Reference, o: &PullOptions) -> Result<Descriptor, Error> {
    if o.offline {
        return Err(Error::Source(format!("{r}: not pulling: --offline")));
    }
    let layout = Layout::create(&o.cache)?;
    let _writing = layout.writing()?;
    layout.sweep();
    let mut p = Pull { c: Client::new(r, o)?, layout: &layout, written: Vec::new(), quiet: o.quiet };
    match p.run(&o.arch) {
        Ok(desc) => {
            layout.set(&r.full(), desc.clone())?;
            Ok(desc)
        }
        Err(e) => {
            for d in &p.written {
                if let Ok(path) = cache::blob_path(&layout.dir, d) {
                    let _ = std::fs::remove_file(path);
                }
            }
            Err(e)
        }
    }
}

/// True when every blob `desc` needs for `arch` is in the cache (presence only; reads verify).
fn complete(l: &Layout, desc: &Descriptor, arch: &str) -> bool {
    let (mut dg, mut sz) = (desc.digest().to_string(), desc.size());
    for _ in 0..4 {
        let Ok(data) = l.read_blob(&dg, Some(sz)) else { return false };
        match parse_root(&data, "cached manifest") {
            Ok(Root::Index(ix)) => match pick_platform(&ix, arch, "cached index") {
                Ok(d) => {
                    dg = d.digest().to_string();
                    sz = d.size();
                }
                Err(_) => return false,
            },
            Ok(Root::Manifest(m)) => {
                return std::iter::once(m.config())
                    .chain(m.layers().iter())
                    .all(|d| l.blob_exists(d.digest().as_ref()));
            }
            Err(_) => return false,
        }
    }
    false
}

/// The cached descriptor of `r`, pulling it first when missing (or incomplete for this arch, or `always`).
pub fn ensure(r: &Reference, o: &PullOptions) -> Result<Descriptor, Error> {
    let l = Layout::at(&o.cache);
    let cached = if o.cache.join("index.json").exists() { l.lookup_for(&r.full(), &o.arch)? } else { None };
    if let Some(d) = &cached {
        if o.offline || (!o.always && complete(&l, d, &o.arch)) {
            return Ok(d.clone());
        }
    }
    if o.offline {
        return Err(Error::Source(format!(
            "{r} is not in the cache {} and --offline forbids pulling it: drop --offline, or `keel-image pull {r}` \
             where the registry is reachable",
            o.cache.display()
        )));
    }
    pull(r, o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(
            p,
            [
                ("realm".to_string(), "https://auth.docker.io/token".to_string()),
                ("service".to_string(), "registry.docker.io".to_string()),
                ("scope".to_string(), "repository:library/alpine:pull".to_string())
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((s.as_str(), p[0].1.as_str()), ("basic", "Registry Realm"));
        let (_, p) = parse_challenge("Bearer realm=http://x/t, service=s");
        assert_eq!(p[1], ("service".to_string(), "s".to_string()));
    }

    #[test]
    fn loopback_is_plain_http() {
        assert!(insecure("127.0.0.1:5000"));
        assert!(insecure("localhost:5000"));
        assert!(insecure("localhost"));
        assert!(!insecure("registry-1.docker.io"));
        assert!(!insecure("ghcr.io:443"));
        assert!(insecure("127.1.2.3:80"));
        assert!(!insecure("127.example.com"));
    }

    #[test]
    fn offline_miss_is_a_clear_error() {
        let d = std::env::temp_dir().join(format!("keel-offline-{}", std::process::id()));
        let o = PullOptions { cache: d.clone(), offline: true, ..Default::default() };
        let r = Reference::parse("linuxkit/getty:v1").unwrap();
        let e = ensure(&r, &o).unwrap_err().to_string();
        assert!(e.contains("docker.io/linuxkit/getty:v1") && e.contains("--offline"), "{e}");
        assert!(!d.exists(), "an offline miss creates nothing");
    }
}
