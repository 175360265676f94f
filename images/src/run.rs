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
    /// `--disk FILE[,size=N]` (as `linuxkit run -disk`): virtio disks, created when missing.
    pub disks: Vec<Disk>,
}

/// One `--disk`: `[file=]PATH[,size=N[K|M|G]][,format=raw|qcow2][,if=virtio|ide]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    /// Bytes, for creating a missing file.
    pub size: Option<u64>,
    /// `raw` (default; created sparse) or `qcow2` (created with qemu-img).
    pub format: String,
    /// `virtio` (default: /dev/vda, ...) or `ide` (LinuxKit's qemu default: /dev/sda; needs the ata_piix and
    /// sd_mod modules, `kernel.modules: [ata_piix, sd_mod]`).
    pub interface: String,
}

/// Parse a `--disk` value.
pub fn parse_disk(s: &str) -> Result<Disk, Error> {
    let bad = |why: &str| Error::Command(format!("--disk {s:?}: {why} (want [file=]PATH[,size=N][,format=raw|qcow2])"));
    let mut d = Disk { path: PathBuf::new(), size: None, format: "raw".into(), interface: "virtio".into() };
    for (i, part) in s.split(',').enumerate() {
        match part.split_once('=') {
            Some(("file", v)) => d.path = PathBuf::from(v),
            Some(("size", v)) => d.size = Some(parse_size(v).ok_or_else(|| bad("bad size"))?),
            Some(("format", v)) if v == "raw" || v == "qcow2" => d.format = v.into(),
            Some(("if", v)) if v == "virtio" || v == "ide" => d.interface = v.into(),
            None if i == 0 => d.path = PathBuf::from(part),
            _ => return Err(bad(&format!("unknown part {part:?}"))),
        }
    }
    if d.path.as_os_str().is_empty() {
        return Err(bad("no file"));
    }
    Ok(d)
}

/// "1G", "512M", "4096K", "1048576" (bytes) -> bytes.
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mul) = match v.chars().last()?.to_ascii_uppercase() {
        'K' => (&v[..v.len() - 1], 1u64 << 10),
        'M' => (&v[..v.len() - 1], 1 << 20),
        'G' => (&v[..v.len() - 1], 1 << 30),
        'T' => (&v[..v.len() - 1], 1 << 40),
        _ => (v, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul).filter(|n| *n > 0)
}

/// Create a missing disk file with its size (raw: a sparse file; qcow2: `qemu-img create`).
pub fn prepare_disk(d: &Disk) -> Result<(), Error> {
    if d.path.exists() {
        return Ok(());
    }
    let size = d.size.ok_or_else(|| {
        Error::Command(format!("--disk {}: the file does not exist; give ,size=N to create it", d.path.display()))
    })?;
    if d.format == "qcow2" {
        let st = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&d.path)
            .arg(size.to_string())
            .status()
            .map_err(|e| {
                Error::Command(format!("qemu-img create {}: {e} (apt-get install qemu-utils)", d.path.display()))
            })?;
        if !st.success() {
            return Err(Error::Command(format!("qemu-img create {}: {st}", d.path.display())));
        }
        return Ok(());
    }
    let f = std::fs::File::create(&d.path).map_err(io("creating disk", &d.path))?;
    f.set_len(size).map_err(io("sizing disk", &d.path))
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
            disks: vec![],
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
    for (i, d) in o.disks.iter().enumerate() {
        let mut drive = std::ffi::OsString::from("file=");
        drive.push(d.path.as_os_str());
        drive.push(format!(",format={},media=disk,if={},index={i}", d.format, d.interface));
        c.arg("-drive").arg(drive);
    }
    Ok(c)
}

/// Boot and wait. Returns QEMU's exit code (124 on timeout, as timeout(1)).
pub fn run(o: &RunOptions) -> Result<i32, Error> {
    for d in &o.disks {
        prepare_disk(d)?;
    }
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

    #[test]
    fn disks() {
        let d = parse_disk("disk.img,size=1G").unwrap();
        assert_eq!((d.path.to_str().unwrap(), d.size, d.format.as_str()), ("disk.img", Some(1 << 30), "raw"));
        let d = parse_disk("file=/x/y.qcow2,size=512M,format=qcow2,if=ide").unwrap();
        assert_eq!((d.size, d.format.as_str(), d.interface.as_str()), (Some(512 << 20), "qcow2", "ide"));
        assert!(parse_disk("a,size=0").is_err() && parse_disk("a,sise=1G").is_err() && parse_disk("size=1G").is_err());
        let dir = std::env::temp_dir().join(format!("keel-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("d.img");
        let _ = std::fs::remove_file(&p);
        prepare_disk(&parse_disk(&format!("{},size=64M", p.display())).unwrap()).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 64 << 20);
        prepare_disk(&parse_disk(p.to_str().unwrap()).unwrap()).unwrap(); // exists: kept
        let e = prepare_disk(&parse_disk(dir.join("none.img").to_str().unwrap()).unwrap()).unwrap_err();
        assert!(e.to_string().contains("size=N"), "{e}");
        let o = RunOptions { dir: dir.clone(), disks: vec![parse_disk("d.img").unwrap()], ..Default::default() };
        std::fs::write(dir.join("kernel"), b"k").unwrap();
        std::fs::write(dir.join("initrd.img"), b"i").unwrap();
        std::fs::write(dir.join("cmdline"), b"console=ttyS0\n").unwrap();
        let c = qemu_command(&o).unwrap();
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(
            args.windows(2).any(|w| w[0] == "-drive" && w[1] == "file=d.img,format=raw,media=disk,if=virtio,index=0"),
            "{args:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
