//! Pulling from a real registry on loopback: Debian's `docker-registry` (the distribution registry) started and
//! stopped by each test on 127.0.0.1 with a private storage directory, images pushed by the test with Debian's
//! `skopeo` from OCI layouts the test writes. Cases: a single image (pull, cache layout, offline, cache rm), a
//! multi-arch index (amd64 and arm64), a digest reference, token auth (a token server in the test, credentials
//! from a docker config.json), htpasswd basic auth, TLS with a CA from certs.d, a corrupted blob and a registry
//! that goes away mid-pull (both refused, the cache left clean), a cache written by another tool (skopeo) used
//! offline as is, and a YAML built from the registry then offline.
//!
//! Without `docker-registry`/`skopeo`/`openssl`/`htpasswd` the tests print `SKIPPED: why` and return (in CI, env
//! CI=true, they fail instead): `make deps` installs them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use keel_image::cache::{sha256_digest, Layout};
use keel_image::reference::Reference;
use keel_image::registry::{self, PullOptions};
use keel_image::sources::{load_with, registry_image, Image};
use keel_image::test_registry::{have, tmp, Registry};
use keel_image::testutil::{layer, write_oci_index, write_oci_layout, Entry};
use keel_image::tree::Kind;
use serde_json::json;

fn hello_layers(text: &str) -> Vec<Vec<u8>> {
    vec![
        layer(&[Entry::Dir("srv"), Entry::File("srv/hello.txt", text.as_bytes(), 0o644)]),
        layer(&[Entry::Dir("etc"), Entry::File("etc/motd", b"motd\n", 0o644)]),
    ]
}

fn file_text(img: &Image, path: &str) -> String {
    match &img.rootfs.get(path).unwrap_or_else(|| panic!("{path} missing in the image")).kind {
        Kind::File(d) => String::from_utf8_lossy(d).into_owned(),
        k => panic!("{path}: not a file: {k:?}"),
    }
}

fn opts(cache: &Path) -> PullOptions {
    PullOptions {
        cache: cache.to_path_buf(),
        quiet: false, // progress lines go to the test's stderr
        docker_config: cache.join("no-docker-config.json"),
        ..Default::default()
    }
}

/// Every file under the cache's blobs/sha256 (temporaries included).
fn blob_files(cache: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cache.join("blobs/sha256"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The manifest digest of a single-image layout written by write_oci_layout.
fn layout_manifest_digest(layout: &Path) -> String {
    let idx: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    idx["manifests"][0]["digest"].as_str().unwrap().to_string()
}

fn layer_digests(layout: &Path) -> Vec<String> {
    let md = layout_manifest_digest(layout);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&md[7..])).unwrap()).unwrap();
    m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

#[test]
fn single_image_pull_cache_offline_and_rm() {
    if !have(&["docker-registry", "skopeo"]) {
        return;
    }
    let d = tmp("single");
    let mut reg = Registry::start(&d, "");
    let layout = d.join("layout");
    write_oci_layout(&layout, &hello_layers("hello from the registry\n"), true, json!({"Cmd": ["/bin/sh"]}), "v1")
        .unwrap();
    reg.push(&layout, "v1", "keel/hello:v1", false, None);
    let cache = d.join("cache");
    let o = opts(&cache);
    let spec = format!("{}/keel/hello:v1", reg.host());
    let t0 = Instant::now();
    let img = load_with(&spec, "hello", Path::new("/"), &o).unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    eprintln!("cold pull: {:?}", t0.elapsed());
    assert_eq!(file_text(&img, "srv/hello.txt"), "hello from the registry\n");
    assert_eq!(img.config.cmd, ["/bin/sh"]);
    // LinuxKit's cache layout: index.json names the image by its full reference.
    let l = Layout::at(&cache);
    let names: Vec<String> = l.entries().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec![spec.clone()]);
    assert!(cache.join("oci-layout").is_file());
    let entry = l.lookup(&spec).unwrap().unwrap();
    assert_eq!(entry.digest().to_string(), layout_manifest_digest(&layout));
    // Manifest + config + 2 layers, nothing else.
    assert_eq!(blob_files(&cache).len(), 4, "{:?}", blob_files(&cache));
    // Registry gone: the cache serves, with and without --offline.
    reg.stop();
    let t0 = Instant::now();
    let img = load_with(&spec, "hello", Path::new("/"), &o).unwrap();
    eprintln!("warm (cache) load: {:?}", t0.elapsed());
    assert_eq!(file_text(&img, "etc/motd"), "motd\n");
    let off = PullOptions { offline: true, ..o.clone() };
    assert!(load_with(&spec, "hello", Path::new("/"), &off).is_ok());
    // Offline and not cached: an error naming the image, nothing fetched.
    let e = load_with(&format!("{}/keel/other:v1", reg.host()), "other", Path::new("/"), &off).unwrap_err();
    let e = e.to_string();
    assert!(e.contains("other") && e.contains("--offline"), "{e}");
    // The registry is down and the image is not cached: an error naming it.
    let e = load_with(&format!("{}/keel/other:v1", reg.host()), "other", Path::new("/"), &o).unwrap_err();
    assert!(e.to_string().contains("keel/other:v1"), "{e}");
    // A corrupted cache blob is refused on read, naming it.
    let layer0 = layer_digests(&layout)[0].clone();
    let p = cache.join("blobs/sha256").join(&layer0[7..]);
    let good = std::fs::read(&p).unwrap();
    let mut bad = good.clone();
    bad[10] ^= 0xff;
    std::fs::write(&p, &bad).unwrap();
    let e = load_with(&spec, "hello", Path::new("/"), &off).unwrap_err().to_string();
    assert!(e.contains(&layer0) && e.contains(&spec), "{e}");
    std::fs::write(&p, &good).unwrap();
    // cache rm: the entry and its blobs go.
    assert!(l.remove(&spec).unwrap());
    assert!(l.entries().unwrap().is_empty());
    assert!(blob_files(&cache).is_empty(), "{:?}", blob_files(&cache));
    let _ = std::fs::remove_dir_all(&d);
}

fn arch_image(arch: &str) -> (&str, Vec<Vec<u8>>, serde_json::Value) {
    let text = format!("built for {arch}\n");
    (
        arch,
        vec![layer(&[Entry::Dir("srv"), Entry::File("srv/arch.txt", text.as_bytes(), 0o644)])],
        json!({"Env": [format!("ARCH={arch}")]}),
    )
}

#[test]
fn multi_arch_index_and_digest_reference() {
    if !have(&["docker-registry", "skopeo"]) {
        return;
    }
    let d = tmp("multi");
    let reg = Registry::start(&d, "");
    let layout = d.join("layout");
    write_oci_index(&layout, &[arch_image("amd64"), arch_image("arm64")], "v1").unwrap();
    reg.push(&layout, "v1", "keel/multi:v1", true, None);
    let cache = d.join("cache");
    let spec = format!("{}/keel/multi:v1", reg.host());
    let img = load_with(&spec, "m", Path::new("/"), &opts(&cache)).unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    assert_eq!(file_text(&img, "srv/arch.txt"), "built for amd64\n");
    assert_eq!(img.config.env, ["ARCH=amd64"]);
    // The cache holds the index, the amd64 manifest, its config and layer: not arm64's.
    assert_eq!(blob_files(&cache).len(), 4, "{:?}", blob_files(&cache));
    let root = Layout::at(&cache).lookup(&spec).unwrap().unwrap();
    assert_eq!(root.media_type().to_string(), "application/vnd.oci.image.index.v1+json");
    // --arch arm64: the same cached index, the other platform's blobs pulled.
    let arm = PullOptions { arch: "arm64".into(), ..opts(&cache) };
    let img = load_with(&spec, "m", Path::new("/"), &arm).unwrap();
    assert_eq!(file_text(&img, "srv/arch.txt"), "built for arm64\n");
    assert_eq!(blob_files(&cache).len(), 7, "{:?}", blob_files(&cache));
    // A platform the index lacks: an error listing what it has.
    let e =
        load_with(&spec, "m", Path::new("/"), &PullOptions { arch: "riscv64".into(), always: true, ..opts(&cache) })
            .unwrap_err()
            .to_string();
    assert!(e.contains("riscv64") && e.contains("linux/arm64"), "{e}");
    // The same as a Docker manifest list (schema 2): resolved the same way.
    reg.push_as(&layout, "v1", "keel/multi-docker:v1", true, None, &["--format", "v2s2"]);
    let dspec = format!("{}/keel/multi-docker:v1", reg.host());
    let img = load_with(&dspec, "m", Path::new("/"), &arm).unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    assert_eq!(file_text(&img, "srv/arch.txt"), "built for arm64\n");
    let droot = Layout::at(&cache).lookup(&dspec).unwrap().unwrap();
    assert_eq!(droot.media_type().to_string(), "application/vnd.docker.distribution.manifest.list.v2+json");
    // By digest (of the index): pulled by digest, cached under the digest reference.
    let idx_digest = root.digest().to_string();
    let by_digest = format!("{}/keel/multi@{idx_digest}", reg.host());
    let cache2 = d.join("cache2");
    let img = load_with(&by_digest, "m", Path::new("/"), &opts(&cache2)).unwrap();
    assert_eq!(file_text(&img, "srv/arch.txt"), "built for amd64\n");
    assert_eq!(Layout::at(&cache2).entries().unwrap()[0].name, by_digest);
    // A digest the registry does not have: refused, nothing kept.
    let missing = format!("{}/keel/multi@{}", reg.host(), sha256_digest(b"nothing"));
    let cache3 = d.join("cache3");
    let e = load_with(&missing, "m", Path::new("/"), &opts(&cache3)).unwrap_err().to_string();
    assert!(e.contains("keel/multi@sha256:") && e.contains("404"), "{e}");
    assert!(Layout::at(&cache3).entries().unwrap().is_empty());
    assert!(blob_files(&cache3).is_empty());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn corrupted_blob_is_refused_and_leaves_nothing() {
    if !have(&["docker-registry", "skopeo"]) {
        return;
    }
    let d = tmp("corrupt");
    let reg = Registry::start(&d, "");
    let layout = d.join("layout");
    write_oci_layout(&layout, &hello_layers("soon corrupted\n"), true, json!({}), "v1").unwrap();
    reg.push(&layout, "v1", "keel/corrupt:v1", false, None);
    // Flip one byte of the second layer in the registry's storage (same size, wrong content).
    let bad_layer = layer_digests(&layout)[1].clone();
    let f = reg.blob_file(&bad_layer);
    let mut data = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    let n = data.len() / 2;
    data[n] ^= 0x55;
    std::fs::write(&f, &data).unwrap();
    let cache = d.join("cache");
    let spec = format!("{}/keel/corrupt:v1", reg.host());
    let e = load_with(&spec, "c", Path::new("/"), &opts(&cache)).unwrap_err().to_string();
    assert!(e.contains(&spec) && e.contains(&bad_layer) && e.contains("hashes to"), "{e}");
    assert!(Layout::at(&cache).entries().unwrap().is_empty(), "no index entry");
    assert!(blob_files(&cache).is_empty(), "blobs left: {:?}", blob_files(&cache));
    let _ = std::fs::remove_dir_all(&d);
}

/// A TCP proxy to `target` that closes every connection once it has relayed `limit` bytes of responses and then
/// stops accepting (a registry that goes away mid-transfer), or with `once`, goes on relaying (a connection
/// that broke once).
fn dying_proxy(target: u16, limit: u64) -> (u16, Arc<AtomicBool>) {
    proxy(target, limit, false)
}

fn proxy(target: u16, limit: u64, once: bool) -> (u16, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let dead = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let d2 = dead.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(client) = c else { break };
            if d2.load(Ordering::SeqCst) && !once {
                let _ = client.shutdown(Shutdown::Both);
                break;
            }
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { break };
            conns.lock().unwrap().push(client.try_clone().unwrap());
            let (mut c_r, mut s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_r, &mut s_w);
            });
            let (mut s_r, mut c_w) = (server, client);
            let (sent, dead, conns) = (sent.clone(), d2.clone(), conns.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                loop {
                    let n = match s_r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if c_w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    let total = sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                    if total >= limit && !(once && dead.load(Ordering::SeqCst)) {
                        dead.store(true, Ordering::SeqCst);
                        for c in conns.lock().unwrap().iter() {
                            let _ = c.shutdown(Shutdown::Both);
                        }
                        let _ = s_r.shutdown(Shutdown::Both);
                        break;
                    }
                }
            });
        }
    });
    (port, dead)
}

/// Pseudo-random (incompressible) bytes.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn registry_going_away_mid_pull_leaves_nothing() {
    if !have(&["docker-registry", "skopeo"]) {
        return;
    }
    let d = tmp("away");
    let mut reg = Registry::start(&d, "");
    let layout = d.join("layout");
    let big = noise(4 << 20);
    let layers =
        vec![layer(&[Entry::File("small.txt", b"small\n", 0o644)]), layer(&[Entry::File("big.bin", &big, 0o644)])];
    write_oci_layout(&layout, &layers, false, json!({}), "v1").unwrap();
    reg.push(&layout, "v1", "keel/big:v1", false, None);
    // First a connection that breaks once mid-layer: the layer is fetched again, the pull succeeds.
    let (port, cut) = proxy(reg.port, 1 << 20, true);
    let flaky = format!("127.0.0.1:{port}/keel/big:v1");
    let img = load_with(&flaky, "big", Path::new("/"), &opts(&d.join("cache-flaky"))).unwrap();
    assert!(cut.load(Ordering::SeqCst), "the proxy never cut the transfer");
    assert!(img.rootfs.get("big.bin").is_some());
    assert_eq!(blob_files(&d.join("cache-flaky")).len(), 4, "no temporaries left");
    // Then a registry that goes away for good.
    let (port, dead) = dying_proxy(reg.port, 1 << 20);
    let cache = d.join("cache");
    let spec = format!("127.0.0.1:{port}/keel/big:v1");
    let e = load_with(&spec, "big", Path::new("/"), &opts(&cache)).unwrap_err().to_string();
    reg.stop();
    assert!(dead.load(Ordering::SeqCst), "the proxy never cut the transfer");
    // (the registry's layer digest need not be the layout's: skopeo may recompress on push)
    assert!(e.contains(&spec) && e.contains("layer sha256:") && e.contains("bytes"), "error names image and blob: {e}");
    assert!(e.contains("attempt"), "the transfer was tried again: {e}");
    eprintln!("registry gone: {e}");
    assert!(Layout::at(&cache).entries().unwrap().is_empty(), "no index entry");
    assert!(blob_files(&cache).is_empty(), "blobs left: {:?}", blob_files(&cache));
    let _ = std::fs::remove_dir_all(&d);
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A token server for the registry's `auth: token`: answers GET /token only to user `keel` with password
/// `s3cret` (Basic auth), with a JWT signed by `key.pem` (RS256, its certificate in `x5c`) granting what the
/// scope asks. Returns the port.
fn token_server(dir: &Path) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let der = std::fs::read(dir.join("cert.der")).unwrap();
    let x5c = base64::engine::general_purpose::STANDARD.encode(der);
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        for (n, c) in l.incoming().enumerate() {
            let Ok(mut c) = c else { break };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let mut authorized = false;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
                    let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("keel:s3cret"));
                    authorized = v.1.trim() == want;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let query = path.split_once('?').map(|x| x.1).unwrap_or("");
            let mut access = Vec::new();
            for kv in query.split('&') {
                if let Some(s) = kv.strip_prefix("scope=") {
                    let s = s.replace("%3A", ":").replace("%2F", "/").replace("%2C", ",");
                    let parts: Vec<&str> = s.split(':').collect();
                    if parts.len() == 3 {
                        access.push(json!({"type": parts[0], "name": parts[1],
                            "actions": parts[2].split(',').collect::<Vec<_>>()}));
                    }
                }
            }
            if !authorized {
                let _ = c.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            }
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
            let claims = json!({"iss": "keel-test-issuer", "sub": "keel", "aud": "keel-test",
                "exp": now + 600, "nbf": now - 60, "iat": now - 60, "jti": format!("t{n}"), "access": access});
            let input = format!(
                "{}.{}",
                b64url(&serde_json::to_vec(&header).unwrap()),
                b64url(&serde_json::to_vec(&claims).unwrap())
            );
            let inf = dir.join(format!("in{n}"));
            std::fs::write(&inf, &input).unwrap();
            let sig = Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(dir.join("key.pem"))
                .arg(&inf)
                .output()
                .unwrap();
            let token = format!("{input}.{}", b64url(&sig.stdout));
            let body = serde_json::to_vec(&json!({"token": token, "access_token": token, "expires_in": 600})).unwrap();
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(&body);
        }
    });
    port
}

#[test]
fn token_auth_with_docker_config_credentials() {
    if !have(&["docker-registry", "skopeo", "openssl"]) {
        return;
    }
    let d = tmp("token");
    let st = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=keel-token"])
        .arg("-keyout")
        .arg(d.join("key.pem"))
        .arg("-out")
        .arg(d.join("cert.pem"))
        .output()
        .unwrap();
    assert!(st.status.success(), "openssl req: {}", String::from_utf8_lossy(&st.stderr));
    let st = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(d.join("cert.pem"))
        .arg("-out")
        .arg(d.join("cert.der"))
        .output()
        .unwrap();
    assert!(st.status.success());
    let tport = token_server(&d);
    let auth = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{tport}/token\n    service: keel-test\n    issuer: keel-test-issuer\n    rootcertbundle: {}\n",
        d.join("cert.pem").display()
    );
    let reg = Registry::start(&d, &auth);
    let layout = d.join("layout");
    write_oci_layout(&layout, &hello_layers("behind a token\n"), true, json!({}), "v1").unwrap();
    reg.push(&layout, "v1", "keel/private:v1", false, Some("keel:s3cret"));
    let spec = format!("{}/keel/private:v1", reg.host());
    // Anonymous: the token server refuses, the error says so and names the image.
    let cache = d.join("cache");
    let e = load_with(&spec, "p", Path::new("/"), &opts(&cache)).unwrap_err().to_string();
    assert!(e.contains(&spec) && e.contains("401"), "{e}");
    assert!(blob_files(&cache).is_empty());
    // Credentials from a docker config.json: pulled.
    let cfg = d.join("docker-config.json");
    let b = base64::engine::general_purpose::STANDARD.encode("keel:s3cret");
    std::fs::write(&cfg, serde_json::to_vec(&json!({"auths": {reg.host(): {"auth": b}}})).unwrap()).unwrap();
    let o = PullOptions { docker_config: cfg, ..opts(&cache) };
    let img = registry_image(&Reference::parse(&spec).unwrap(), &o).unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    assert_eq!(file_text(&img, "srv/hello.txt"), "behind a token\n");
    // `keel-image pull` path: pulls again (blobs already there are kept).
    let desc = registry::pull(&Reference::parse(&spec).unwrap(), &PullOptions { always: true, ..o }).unwrap();
    assert_eq!(desc.digest().to_string(), layout_manifest_digest(&layout));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn yaml_builds_from_the_registry_then_offline_from_the_cache() {
    if !have(&["docker-registry", "skopeo"]) || !Path::new("/bin/busybox").exists() {
        return;
    }
    let d = tmp("build");
    let mut reg = Registry::start(&d, "");
    let layout = d.join("layout");
    let bb = std::fs::read("/bin/busybox").unwrap();
    let l1 = layer(&[Entry::Dir("bin"), Entry::File("bin/busybox", &bb, 0o755), Entry::Symlink("bin/sh", "busybox")]);
    write_oci_layout(&layout, &[l1], true, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}), "1").unwrap();
    reg.push(&layout, "1", "keel/busybox:1", false, None);
    std::fs::write(d.join("bzImage"), b"not really a kernel").unwrap();
    std::fs::write(d.join("init"), b"\x7fELF stand-in").unwrap();
    std::fs::write(d.join("keel-runc"), b"\x7fELF keel-runc stand-in").unwrap();
    let yaml = d.join("img.yml");
    let spec = format!("{}/keel/busybox:1", reg.host());
    std::fs::write(
        &yaml,
        format!(
            "kernel:\n  path: bzImage\nonboot:\n  - name: a\n    image: {spec}\n    command: [true]\n\
             services:\n  - name: s\n    image: {spec}\n"
        ),
    )
    .unwrap();
    let cache = d.join("cache");
    let o = |out: &str, offline: bool| keel_image::build::Options {
        yaml: yaml.clone(),
        out: d.join(out),
        init_binary: d.join("init"),
        kernel_cache: d.join("kcache"),
        gzip_level: 1,
        pull: PullOptions { offline, ..opts(&cache) },
    };
    let t0 = Instant::now();
    let s = keel_image::build::build(&o("cold", false)).unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    eprintln!("cold build (pull): {:?}", t0.elapsed());
    assert_eq!(s.bundles, ["containers/onboot/000-a", "containers/services/s"]);
    reg.stop();
    let t0 = Instant::now();
    keel_image::build::build(&o("offline", true)).unwrap();
    eprintln!("offline build (cache): {:?}", t0.elapsed());
    // Same bytes both times (the cpio is deterministic).
    assert_eq!(std::fs::read(d.join("cold/initrd.img")).unwrap(), std::fs::read(d.join("offline/initrd.img")).unwrap());
    // An empty cache offline: an error naming the container and the image.
    let e = keel_image::build::build(&keel_image::build::Options {
        pull: PullOptions { offline: true, ..opts(&d.join("empty")) },
        ..o("x", true)
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains(&spec) && e.contains("--offline"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn basic_auth_with_docker_config_credentials() {
    if !have(&["docker-registry", "skopeo", "htpasswd"]) {
        return;
    }
    let d = tmp("basic");
    let out = Command::new("htpasswd").args(["-Bbn", "keel", "s3cret"]).output().unwrap();
    assert!(out.status.success());
    std::fs::write(d.join("htpasswd"), &out.stdout).unwrap();
    let auth = format!("auth:\n  htpasswd:\n    realm: keel-basic\n    path: {}\n", d.join("htpasswd").display());
    let reg = Registry::start(&d, &auth);
    let layout = d.join("layout");
    write_oci_layout(&layout, &hello_layers("behind basic auth\n"), true, json!({}), "v1").unwrap();
    reg.push(&layout, "v1", "keel/basic:v1", false, Some("keel:s3cret"));
    let spec = format!("{}/keel/basic:v1", reg.host());
    let cache = d.join("cache");
    // No credentials: an error saying what is wanted.
    let e = load_with(&spec, "b", Path::new("/"), &opts(&cache)).unwrap_err().to_string();
    assert!(e.contains(&spec) && e.contains("credentials"), "{e}");
    // Wrong password: 401 after authenticating.
    let cfg = d.join("config.json");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    std::fs::write(&cfg, serde_json::to_vec(&json!({"auths": {reg.host(): {"auth": b64("keel:wrong")}}})).unwrap())
        .unwrap();
    let o = PullOptions { docker_config: cfg.clone(), ..opts(&cache) };
    let e = load_with(&spec, "b", Path::new("/"), &o).unwrap_err().to_string();
    assert!(e.contains(&spec) && e.contains("401"), "{e}");
    // The right one (`username`/`password` form, with a scheme in the key as `docker login` may write it).
    std::fs::write(
        &cfg,
        serde_json::to_vec(
            &json!({"auths": {format!("http://{}", reg.host()): {"username": "keel", "password": "s3cret"}}}),
        )
        .unwrap(),
    )
    .unwrap();
    let img = load_with(&spec, "b", Path::new("/"), &o).unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    assert_eq!(file_text(&img, "srv/hello.txt"), "behind basic auth\n");
    let _ = std::fs::remove_dir_all(&d);
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn tls_registry_with_a_ca_in_certs_d() {
    if !have(&["docker-registry", "skopeo", "openssl"]) {
        return;
    }
    let d = tmp("tls");
    // A CA and a server certificate for 127.0.0.1 signed by it.
    let ca = ["-subj", "/CN=keel-test-ca", "-addext", "basicConstraints=critical,CA:TRUE"];
    let mut a = vec!["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", "ca.key", "-out"];
    openssl(&[&a[..], &["ca.crt"], &ca[..], &["-addext", "keyUsage=critical,keyCertSign,cRLSign"]].concat(), &d);
    let key = a.len() - 2; // the -keyout value
    a[key] = "other.key";
    openssl(&[&a[..], &["other.crt"], &ca[..]].concat(), &d);
    openssl(
        &["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "srv.key", "-out", "srv.csr"],
        &d,
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "srv.crt",
            "-extfile",
            "ext.cnf",
        ],
        &d,
    );
    let tls =
        format!("  tls:\n    certificate: {}\n    key: {}\n", d.join("srv.crt").display(), d.join("srv.key").display());
    let reg = Registry::start(&d, &tls);
    let layout = d.join("layout");
    write_oci_layout(&layout, &hello_layers("over TLS\n"), true, json!({}), "v1").unwrap();
    reg.push(&layout, "v1", "keel/tls:v1", false, None);
    let spec = format!("{}/keel/tls:v1", reg.host());
    let certs = d.join("certs.d");
    let cache = d.join("cache");
    // No CA for it: a loopback registry is spoken to over plain HTTP, which a TLS server refuses.
    let e = load_with(&spec, "t", Path::new("/"), &PullOptions { certs_dir: certs.clone(), ..opts(&cache) })
        .unwrap_err()
        .to_string();
    assert!(e.contains(&spec) && e.contains("HTTP 400"), "{e}");
    // A CA that did not sign the server's certificate: HTTPS, and the certificate is refused.
    let dir = certs.join(reg.host());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(d.join("other.crt"), dir.join("ca.crt")).unwrap();
    let e = load_with(&spec, "t", Path::new("/"), &PullOptions { certs_dir: certs.clone(), ..opts(&cache) })
        .unwrap_err()
        .to_string();
    assert!(e.contains(&spec) && e.to_lowercase().contains("certificate"), "{e}");
    // The right CA (Docker's certs.d/HOST:PORT/ca.crt): pulled over HTTPS.
    std::fs::copy(d.join("ca.crt"), dir.join("ca.crt")).unwrap();
    let img = load_with(&spec, "t", Path::new("/"), &PullOptions { certs_dir: certs, ..opts(&cache) })
        .unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    assert_eq!(file_text(&img, "srv/hello.txt"), "over TLS\n");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_cache_written_by_another_tool_is_used_as_is() {
    // An OCI layout keyed by full reference, as LinuxKit's cache is, written here by skopeo (not by keel-image):
    // `image: linuxkit/hello:v1` builds from it offline; keel-image adds its own pulls beside the entry.
    if !have(&["skopeo"]) {
        return;
    }
    let d = tmp("foreign");
    let layout = d.join("layout");
    write_oci_layout(&layout, &hello_layers("from a foreign cache\n"), true, json!({}), "v1").unwrap();
    let cache = d.join("cache");
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("oci:{}:docker.io/linuxkit/hello:v1", cache.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    let off = PullOptions { offline: true, ..opts(&cache) };
    let img = load_with("linuxkit/hello:v1", "h", Path::new("/"), &off).unwrap();
    assert_eq!(file_text(&img, "srv/hello.txt"), "from a foreign cache\n");
    // Online too (the cached entry is complete: no registry is contacted).
    let img = load_with("docker.io/linuxkit/hello:v1", "h", Path::new("/"), &opts(&cache)).unwrap();
    assert_eq!(file_text(&img, "etc/motd"), "motd\n");
    // Its blobs are verified like ours.
    let l0 = layer_digests(&layout)[0].clone();
    let p = cache.join("blobs/sha256").join(&l0[7..]);
    let mut data = std::fs::read(&p).unwrap();
    data[5] ^= 1;
    std::fs::write(&p, &data).unwrap();
    let e = load_with("linuxkit/hello:v1", "h", Path::new("/"), &off).unwrap_err().to_string();
    assert!(e.contains(&l0) && e.contains("docker.io/linuxkit/hello:v1"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}
