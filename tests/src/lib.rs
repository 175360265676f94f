//! Test helpers shared by keel's root-namespace and VM tests.
//!
//! [`vm`]: build an image from a YAML with keel-image, boot it under QEMU (TCG) with the serial console captured
//! line by line, wait for lines, talk to forwarded ports, and collect the whole console at power-off.

pub mod clients;

pub mod vm {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use keel_image::build::{self, Options};
    use keel_image::run::{self, RunOptions};

    /// The workspace root.
    pub fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".."))
    }

    /// True in CI (env CI=true): missing prerequisites fail instead of skipping.
    pub fn in_ci() -> bool {
        std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
    }

    /// What a VM test needs.
    #[derive(Debug, Clone)]
    pub struct Env {
        pub init_binary: PathBuf,
        pub kernel_cache: PathBuf,
        pub out_base: PathBuf,
    }

    /// Check prerequisites (qemu, the static init binary, the kernel). Returns None (after printing `SKIPPED test:
    /// why`) when a test cannot run; panics instead when in CI. Tests never install anything: `make test-vm`
    /// runs `make deps`, `make build` and `make kernel` first.
    pub fn env() -> Option<Env> {
        let root = root();
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
        let init_binary = std::env::var_os("KEEL_INIT_BINARY").map(PathBuf::from).unwrap_or_else(|| {
            let made = root.join("build/bin/init"); // what `make build` puts in the image
            if made.is_file() {
                made
            } else {
                target.join("x86_64-unknown-linux-gnu/release/init")
            }
        });
        let kernel_cache =
            std::env::var_os("KEEL_KERNEL_CACHE").map(PathBuf::from).unwrap_or_else(|| root.join("build/kernel"));
        let mut missing = Vec::new();
        if Command::new("qemu-system-x86_64").arg("--version").output().is_err() {
            missing.push("qemu-system-x86_64 (make deps)".to_string());
        }
        if !init_binary.is_file() {
            missing.push(format!("{} (make build)", init_binary.display()));
        }
        if keel_image::kernel::debian(&kernel_cache).is_err() {
            missing.push(format!("the Debian kernel in {} (make kernel)", kernel_cache.display()));
        }
        if !missing.is_empty() {
            let msg = format!("VM test prerequisites missing: {}", missing.join(", "));
            if in_ci() {
                panic!("{msg}");
            }
            // Not eprintln!: the test harness captures that and hides it when the test passes.
            let _ = std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!("SKIPPED {}: {msg}\n", std::thread::current().name().unwrap_or("VM test")),
            );
            return None;
        }
        Some(Env { init_binary, kernel_cache, out_base: root.join("build/vm-tests") })
    }

    /// Build `yaml` (relative to the workspace root) into build/vm-tests/NAME.
    pub fn build_image(env: &Env, yaml: &str, name: &str) -> PathBuf {
        let out = env.out_base.join(name);
        let o = Options {
            yaml: root().join(yaml),
            out: out.clone(),
            init_binary: env.init_binary.clone(),
            kernel_cache: env.kernel_cache.clone(),
            gzip_level: 1,
            pull: Default::default(),
        };
        match build::build(&o) {
            Ok(s) => {
                for n in &s.notes {
                    eprintln!("keel-image: note: {n}");
                }
                eprintln!("built {name}: {} bundles, initrd {} KiB", s.bundles.len(), s.initrd_bytes / 1024);
            }
            Err(e) => panic!("building {yaml}: {e}"),
        }
        out
    }

    /// A free TCP port on 127.0.0.1 (racy by nature, good enough for tests).
    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(18080)
    }

    /// A running VM with its console captured.
    pub struct Vm {
        child: Child,
        lines: Arc<Mutex<Vec<(Duration, String)>>>,
        start: Instant,
        pub timeout: Duration,
    }

    /// The console of a finished boot.
    #[derive(Debug, Clone)]
    pub struct Console {
        pub lines: Vec<String>,
        pub exit: Option<i32>,
        pub timed_out: bool,
        pub wall: Duration,
    }

    impl Console {
        /// Index of the first line containing `pat` (all of the `&`-joined parts, in any order).
        pub fn find(&self, pat: &str) -> Option<usize> {
            self.find_from(0, pat)
        }
        pub fn find_from(&self, from: usize, pat: &str) -> Option<usize> {
            self.lines.iter().enumerate().skip(from).find(|(_, l)| matches(l, pat)).map(|(i, _)| i)
        }
        pub fn count(&self, pat: &str) -> usize {
            self.lines.iter().filter(|l| matches(l, pat)).count()
        }
        pub fn has(&self, pat: &str) -> bool {
            self.find(pat).is_some()
        }
        /// The whole console, for assertion messages.
        pub fn text(&self) -> String {
            self.lines.join("\n")
        }
        /// Assert `pat` is on the console; the console is printed otherwise.
        pub fn expect(&self, pat: &str) -> usize {
            match self.find(pat) {
                Some(i) => i,
                None => panic!("console has no line matching {pat:?}:\n{}", self.text()),
            }
        }
    }

    fn matches(line: &str, pat: &str) -> bool {
        pat.split('&').all(|p| line.contains(p))
    }

    impl Vm {
        /// Boot `dir` with extra kernel args and forwards. `keel.autopoweroff` is not added (tests power off
        /// themselves), unless `append` asks for it.
        pub fn start(dir: &Path, append: &[&str], forwards: &[(u16, u16)], timeout: Duration) -> Vm {
            let o = RunOptions {
                dir: dir.to_path_buf(),
                forwards: forwards.to_vec(),
                append: append.iter().map(|s| s.to_string()).collect(),
                autopoweroff: Some(false),
                ..Default::default()
            };
            Vm::start_with(&o, timeout)
        }

        /// Boot with explicit run options (an image file, `disks`, `uefi`, ...); missing `--disk` files are created
        /// first.
        pub fn start_with(o: &RunOptions, timeout: Duration) -> Vm {
            for d in &o.disks {
                run::prepare_disk(d).unwrap_or_else(|e| panic!("disk: {e}"));
            }
            let mut cmd = run::qemu_command(o).unwrap_or_else(|e| panic!("qemu command: {e}"));
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
            let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting qemu: {e}"));
            let out = child.stdout.take().unwrap_or_else(|| panic!("no qemu stdout"));
            let lines = Arc::new(Mutex::new(Vec::new()));
            let start = Instant::now();
            let l2 = lines.clone();
            let echo = std::env::var_os("KEEL_VM_ECHO").is_some();
            std::thread::spawn(move || {
                let mut r = BufReader::new(out);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let s = String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).replace('\r', "");
                            if echo {
                                eprintln!("  | {s}");
                            }
                            if let Ok(mut v) = l2.lock() {
                                v.push((start.elapsed(), s));
                            }
                        }
                    }
                }
            });
            Vm { child, lines, start, timeout }
        }

        fn snapshot(&self) -> Vec<String> {
            self.lines.lock().map(|v| v.iter().map(|(_, s)| s.clone()).collect()).unwrap_or_default()
        }

        /// Wait until a console line matches `pat` (or the VM ends / `within` passes).
        pub fn wait_for(&mut self, pat: &str, within: Duration) -> bool {
            let deadline = Instant::now() + within;
            loop {
                if self.snapshot().iter().any(|l| matches(l, pat)) {
                    return true;
                }
                if Instant::now() >= deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                    return self.snapshot().iter().any(|l| matches(l, pat));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        /// Kill the VM now and collect the console (for images that do not power themselves off).
        pub fn stop(mut self) -> Console {
            let _ = self.child.kill();
            let exit = self.child.wait().ok().and_then(|s| s.code());
            std::thread::sleep(Duration::from_millis(200));
            Console { lines: self.snapshot(), exit, timed_out: false, wall: self.start.elapsed() }
        }

        /// Wait for QEMU to exit (the guest powers off) or the timeout; collect the console.
        pub fn finish(mut self) -> Console {
            let mut timed_out = false;
            let exit = loop {
                match self.child.try_wait() {
                    Ok(Some(st)) => break st.code(),
                    Ok(None) => {}
                    Err(_) => break None,
                }
                if self.start.elapsed() >= self.timeout {
                    timed_out = true;
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            // Let the reader drain.
            std::thread::sleep(Duration::from_millis(200));
            Console { lines: self.snapshot(), exit, timed_out, wall: self.start.elapsed() }
        }
    }

    impl Drop for Vm {
        fn drop(&mut self) {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    /// One HTTP GET over a fresh connection; returns the whole response (status line, headers, body).
    pub fn http_get(port: u16, path: &str, within: Duration) -> Result<String, String> {
        use std::io::{Read, Write};
        let deadline = Instant::now() + within;
        let mut last = String::new();
        while Instant::now() < deadline {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(mut s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
                    if let Err(e) = s.write_all(req.as_bytes()) {
                        last = format!("write: {e}");
                    } else {
                        let mut resp = String::new();
                        match s.read_to_string(&mut resp) {
                            Ok(_) if resp.starts_with("HTTP/") => return Ok(resp),
                            Ok(_) => last = format!("no HTTP response (got {resp:?})"),
                            Err(e) => last = format!("read: {e}"),
                        }
                    }
                }
                Err(e) => last = format!("connect: {e}"),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(last)
    }
}
