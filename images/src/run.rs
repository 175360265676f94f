//! QEMU runner: boots DIR/{kernel, initrd.img, cmdline} with `qemu-system-x86_64` (TCG by default, KVM by option),
//! serial console on stdio, virtio-net with user networking and host port forwards, no reboot (a guest reboot or
//! power-off ends QEMU), and an optional wall-clock timeout that kills the VM.
//!
//! When stdin is not a terminal (CI, `make run < /dev/null`), `keel.autopoweroff` is appended to the command line:
//! images that honour it (the demo does) power themselves off once their services are up; such a run also gets a
//! default timeout of 300 s.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{io, Error};

/// The timeout a run gets when stdin is not a terminal and none was given.
pub const UNATTENDED_TIMEOUT: Duration = Duration::from_secs(300);

/// Run options.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub dir: PathBuf,
    pub kvm: bool,
    /// (host port, guest port) TCP forwards.
    pub forwards: Vec<(u16, u16)>,
    pub timeout: Option<Duration>,
    pub append: Vec<String>,
    pub memory_mb: u32,
    pub smp: u32,
    /// None = auto (on when stdin is not a terminal).
    pub autopoweroff: Option<bool>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            dir: PathBuf::new(),
            kvm: false,
            forwards: vec![],
            timeout: None,
            append: vec![],
            memory_mb: 512,
            smp: 1,
            autopoweroff: None,
        }
    }
}

/// Parse "HOST:GUEST" (or "PORT" for the same on both sides).
pub fn parse_forward(s: &str) -> Result<(u16, u16), Error> {
    let bad = || Error::Command(format!("--forward {s:?}: want HOSTPORT:GUESTPORT"));
    match s.split_once(':') {
        Some((h, g)) => Ok((h.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?)),
        None => {
            let p = s.parse().map_err(|_| bad())?;
            Ok((p, p))
        }
    }
}

fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(0) == 1 }
}

/// The kernel command line for a run.
pub fn cmdline(dir: &Path, o: &RunOptions) -> Result<String, Error> {
    let p = dir.join("cmdline");
    let mut c = std::fs::read_to_string(&p).map_err(io("reading", &p))?.trim().to_string();
    if o.autopoweroff.unwrap_or(!stdin_is_tty()) && !c.contains("keel.autopoweroff") {
        c.push_str(" keel.autopoweroff");
    }
    for a in &o.append {
        c.push(' ');
        c.push_str(a);
    }
    Ok(c)
}

/// The QEMU command for a run (stdio is the serial console).
pub fn qemu_command(o: &RunOptions) -> Result<Command, Error> {
    let kernel = o.dir.join("kernel");
    let initrd = o.dir.join("initrd.img");
    for p in [&kernel, &initrd] {
        if !p.is_file() {
            return Err(Error::Command(format!("{} missing: build the image first (keel-image build)", p.display())));
        }
    }
    let mut netdev = "user,id=n0".to_string();
    for (h, g) in &o.forwards {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}"));
    }
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-accel", if o.kvm { "kvm" } else { "tcg" }]);
    if o.kvm {
        c.args(["-cpu", "host"]);
    }
    c.args(["-m", &o.memory_mb.to_string(), "-smp", &o.smp.to_string()]);
    c.args(["-display", "none", "-no-reboot", "-nodefaults"]);
    c.args(["-chardev", "stdio,id=con0,mux=on,signal=off", "-serial", "chardev:con0", "-mon", "chardev=con0"]);
    c.arg("-kernel").arg(&kernel).arg("-initrd").arg(&initrd);
    c.args(["-append", &cmdline(&o.dir, o)?]);
    // romfile= : no iPXE option ROM (saves boot time). A (headless) VGA keeps SeaBIOS's screen-clearing output
    // off the serial console.
    c.args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0,romfile="]);
    c.args(["-device", "VGA"]);
    c.args(["-device", "virtio-rng-pci"]);
    Ok(c)
}

/// Boot and wait. Returns QEMU's exit code (124 on timeout, as timeout(1)).
pub fn run(o: &RunOptions) -> Result<i32, Error> {
    let mut cmd = qemu_command(o)?;
    cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| {
        Error::Command(format!(
            "starting qemu-system-x86_64: {e} (install it: apt-get install -y --no-install-recommends qemu-system-x86)"
        ))
    })?;
    let start = Instant::now();
    // Unattended (stdin not a terminal) and no --timeout: never hang forever.
    let timeout = o.timeout.or_else(|| (!stdin_is_tty()).then_some(UNATTENDED_TIMEOUT));
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(st.code().unwrap_or(1)),
            Ok(None) => {}
            Err(e) => return Err(Error::Command(format!("waiting for qemu: {e}"))),
        }
        if let Some(t) = timeout {
            if start.elapsed() >= t {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("\nkeel-image: timeout after {} s: VM killed", t.as_secs());
                return Ok(124);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards() {
        assert_eq!(parse_forward("8080:80").unwrap(), (8080, 80));
        assert_eq!(parse_forward("22").unwrap(), (22, 22));
        assert!(parse_forward("x:1").is_err());
    }
}
