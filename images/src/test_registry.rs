//! A real distribution registry on loopback for tests: Debian's `docker-registry` started on 127.0.0.1 with a
//! private storage directory (killed on drop), images pushed with Debian's `skopeo` from OCI layouts. Used by
//! keel-image's registry tests and the VM tests.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True in CI (env CI=true): missing tools fail instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
}

/// True when every tool is on PATH; otherwise prints `SKIPPED: …` (or panics in CI).
pub fn have(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join(t).is_file()))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{} not installed (make deps)", missing.join(", "));
    if in_ci() {
        panic!("{msg}");
    }
    // Not eprintln!: the test harness captures that and hides it when the test passes.
    let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("SKIPPED: {msg}\n"));
    false
}

/// A fresh temporary directory.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("keel-registry-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A distribution registry on 127.0.0.1, killed on drop.
pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    pub storage: PathBuf,
    pub dir: PathBuf,
}

impl Registry {
    /// Start with an optional extra config section (e.g. `auth:`).
    pub fn start(dir: &Path, extra: &str) -> Registry {
        let port = free_port();
        let storage = dir.join("storage");
        let cfg = dir.join("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: keel-test\n{extra}",
                storage.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting docker-registry: {e}"));
        let r = Registry { child: Some(child), port, storage, dir: dir.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "registry did not listen on {port}: {}", r.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `skopeo copy [--all] oci:LAYOUT:TAG docker://HOST/REPO` (plain HTTP), with `creds` if given.
    pub fn push(&self, layout: &Path, tag: &str, repo: &str, all: bool, creds: Option<&str>) {
        self.push_as(layout, tag, repo, all, creds, &[])
    }

    pub fn push_as(&self, layout: &Path, tag: &str, repo: &str, all: bool, creds: Option<&str>, extra: &[&str]) {
        let mut c = Command::new("skopeo");
        c.args(["--insecure-policy", "copy", "--dest-tls-verify=false", "--retry-times", "0"]);
        c.args(extra);
        if all {
            c.arg("--all");
        }
        if let Some(cr) = creds {
            c.args(["--dest-creds", cr]);
        }
        c.arg(format!("oci:{}:{tag}", layout.display())).arg(format!("docker://{}/{repo}", self.host()));
        let out = c.output().unwrap_or_else(|e| panic!("skopeo: {e}"));
        assert!(
            out.status.success(),
            "skopeo push failed: {}\n{}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// The file the registry stores blob `digest` in.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.storage.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
