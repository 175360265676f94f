//! QEMU runner: boots DIR/{kernel, initrd.img, cmdline} with `qemu-system-x86_64` (TCG by default, KVM by option),
//! serial console on stdio, virtio-net with user networking and host port forwards, no reboot (a guest reboot or
//! power-off ends QEMU), and an optional wall-clock timeout that kills the VM.
//!
//! It boots every output format too ([`detect`]): `NAME-kernel` (+ `-initrd.img`, `-cmdline`), `NAME-initrd.tar`,
//! `*-efi.img`/`*-efi.qcow2` (disks) and `*-efi.iso` with OVMF (Debian's `ovmf`), `*-bios.img` and `*.iso` with
//! SeaBIOS. `--disk FILE[,size=N][,format=F]` adds a data disk as `linuxkit run -disk` does (created when missing).
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
    /// Force UEFI (OVMF) on or off; None = from the file name (`*-efi.*`).
    pub uefi: Option<bool>,
    /// Extra disks: `FILE[,size=N][,format=raw|qcow2]`.
    pub disks: Vec<String>,
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
            uefi: None,
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

/// The kernel command line for a run (`dir` holds `cmdline`).
pub fn cmdline(dir: &Path, o: &RunOptions) -> Result<String, Error> {
    cmdline_from(&dir.join("cmdline"), o)
}

fn cmdline_from(p: &Path, o: &RunOptions) -> Result<String, Error> {
    let p = p.to_path_buf();
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

/// What a run boots.
#[derive(Debug, Clone, PartialEq)]
pub enum Boot {
    /// Direct kernel boot.
    Kernel { kernel: PathBuf, initrd: PathBuf, cmdline: PathBuf },
    /// A bootable disk (`raw` or `qcow2`), with OVMF when `uefi`.
    Disk { path: PathBuf, format: String, uefi: bool },
    /// A bootable ISO, with OVMF when `uefi`.
    Cdrom { path: PathBuf, uefi: bool },
}

fn name_of(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Decide how to boot `path`: a directory with kernel/initrd.img/cmdline (keel's layout) or with one
/// `NAME-kernel`; a `NAME` prefix or `NAME-kernel` file; `NAME-initrd.tar` (unpacked beside it);
/// `.iso`, `.img`/`.raw`, `.qcow2` (UEFI when the name says `-efi`, or as `uefi` forces).
pub fn detect(path: &Path, uefi: Option<bool>) -> Result<Boot, Error> {
    let prefix_boot = |prefix: &str| -> Boot {
        Boot::Kernel {
            kernel: PathBuf::from(format!("{prefix}-kernel")),
            initrd: PathBuf::from(format!("{prefix}-initrd.img")),
            cmdline: PathBuf::from(format!("{prefix}-cmdline")),
        }
    };
    if path.is_dir() {
        if path.join("kernel").is_file() {
            return Ok(Boot::Kernel {
                kernel: path.join("kernel"),
                initrd: path.join("initrd.img"),
                cmdline: path.join("cmdline"),
            });
        }
        let kernels: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io("reading", path))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| name_of(p).ends_with("-kernel"))
            .collect();
        return match kernels.as_slice() {
            [k] => Ok(prefix_boot(k.to_string_lossy().trim_end_matches("-kernel"))),
            _ => Err(Error::Command(format!(
                "{}: no kernel (want kernel + initrd.img + cmdline, or one NAME-kernel); build the image first",
                path.display()
            ))),
        };
    }
    let name = name_of(path);
    let s = path.to_string_lossy().into_owned();
    let efi = |default: bool| uefi.unwrap_or(default);
    if path.is_file() {
        if name.ends_with(".iso") {
            return Ok(Boot::Cdrom { path: path.to_path_buf(), uefi: efi(name.ends_with("-efi.iso")) });
        }
        if name.ends_with(".qcow2") {
            return Ok(Boot::Disk {
                path: path.to_path_buf(),
                format: "qcow2".into(),
                uefi: efi(name.contains("-efi")),
            });
        }
        if name.ends_with(".img") || name.ends_with(".raw") {
            return Ok(Boot::Disk { path: path.to_path_buf(), format: "raw".into(), uefi: efi(name.contains("-efi")) });
        }
        if name.ends_with("-initrd.tar") {
            let dir = path.with_file_name(format!(".{name}.d"));
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
            let f = std::fs::File::open(path).map_err(io("opening", path))?;
            tar::Archive::new(f).unpack(&dir).map_err(io("unpacking", path))?;
            return detect(&dir, uefi);
        }
        if name.ends_with("-kernel") {
            return Ok(prefix_boot(s.trim_end_matches("-kernel")));
        }
    }
    if Path::new(&format!("{s}-kernel")).is_file() {
        return Ok(prefix_boot(&s));
    }
    Err(Error::Command(format!(
        "{}: not an image (a directory, NAME-kernel, NAME-initrd.tar, .iso, .img, .qcow2); build it first",
        path.display()
    )))
}

/// OVMF from Debian's `ovmf`: (code, vars template).
pub const OVMF: &[(&str, &str)] = &[
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
];

fn ovmf_args(c: &mut Command) -> Result<(), Error> {
    let (code, vars) = OVMF
        .iter()
        .find(|(c, v)| Path::new(c).is_file() && Path::new(v).is_file())
        .ok_or_else(|| Error::Command("UEFI boot needs OVMF: apt-get install -y ovmf".into()))?;
    c.args(["-drive", &format!("if=pflash,format=raw,unit=0,readonly=on,file={code}")]);
    // The variable store: the template, copy-on-write (snapshot) so nothing is written back.
    c.args(["-drive", &format!("if=pflash,format=raw,unit=1,snapshot=on,file={vars}")]);
    Ok(())
}

/// `--disk FILE[,size=N][,format=F]` → qemu arguments; the file is created (qemu-img) when missing and a size
/// is given, as `linuxkit run -disk` does.
pub fn disk_args(spec: &str) -> Result<Vec<String>, Error> {
    let mut parts = spec.split(',');
    let file =
        parts.next().filter(|f| !f.is_empty()).ok_or_else(|| Error::Command(format!("--disk {spec:?}: no file")))?;
    let (mut size, mut format) = (None, None);
    for p in parts {
        match p.split_once('=') {
            Some(("size", v)) => size = Some(v.to_string()),
            Some(("format", v)) => format = Some(v.to_string()),
            Some(("file", _)) | None | Some(_) => {
                return Err(Error::Command(format!("--disk {spec:?}: want FILE[,size=N][,format=raw|qcow2]")))
            }
        }
    }
    let format = format.unwrap_or_else(|| if file.ends_with(".qcow2") { "qcow2".into() } else { "raw".into() });
    if !Path::new(file).exists() {
        let size = size.ok_or_else(|| Error::Command(format!("--disk {file}: missing; give size=N to create it")))?;
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", &format, file, &size])
            .output()
            .map_err(|e| Error::Command(format!("qemu-img: {e} (apt-get install qemu-utils)")))?;
        if !out.status.success() {
            return Err(Error::Command(format!(
                "qemu-img create {file} {size}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(vec!["-drive".into(), format!("file={file},format={format},if=virtio")])
}

/// The QEMU command for a run (stdio is the serial console).
pub fn qemu_command(o: &RunOptions) -> Result<Command, Error> {
    let boot = detect(&o.dir, o.uefi)?;
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
    match &boot {
        Boot::Kernel { kernel, initrd, cmdline } => {
            for p in [kernel, initrd] {
                if !p.is_file() {
                    return Err(Error::Command(format!(
                        "{} missing: build the image first (keel-image build)",
                        p.display()
                    )));
                }
            }
            c.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd);
            c.args(["-append", &cmdline_from(cmdline, o)?]);
        }
        Boot::Disk { path, format, uefi } => {
            if *uefi {
                ovmf_args(&mut c)?;
            }
            c.arg("-drive").arg(format!("file={},format={format},if=virtio", path.display()));
        }
        Boot::Cdrom { path, uefi } => {
            if *uefi {
                ovmf_args(&mut c)?;
            }
            c.arg("-drive").arg(format!("file={},media=cdrom,if=ide,readonly=on", path.display()));
        }
    }
    if !matches!(boot, Boot::Kernel { .. }) {
        if !o.append.is_empty() {
            eprintln!("keel-image: --append ignored: the kernel command line is inside {}", o.dir.display());
        }
        if o.autopoweroff == Some(true) || (o.autopoweroff.is_none() && !stdin_is_tty()) {
            eprintln!(
                "keel-image: note: keel.autopoweroff cannot be appended to the command line inside {} \
                 (put it in the YAML's kernel.cmdline)",
                o.dir.display()
            );
        }
    }
    for d in &o.disks {
        c.args(disk_args(d)?);
    }
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

    #[test]
    fn detects_how_to_boot_each_format() {
        let d = std::env::temp_dir().join(format!("keel-run-detect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["demo-kernel", "demo-efi.img", "demo-efi.qcow2", "demo-efi.iso", "demo.iso", "demo-bios.img"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        let k = detect(&d.join("demo"), None).unwrap();
        assert_eq!(
            k,
            Boot::Kernel {
                kernel: d.join("demo-kernel"),
                initrd: d.join("demo-initrd.img"),
                cmdline: d.join("demo-cmdline")
            }
        );
        assert_eq!(detect(&d.join("demo-kernel"), None).unwrap(), k);
        assert_eq!(detect(&d, None).unwrap(), k, "a directory with one NAME-kernel");
        let disk = |f: &str, fmt: &str, uefi: bool| Boot::Disk { path: d.join(f), format: fmt.into(), uefi };
        assert_eq!(detect(&d.join("demo-efi.img"), None).unwrap(), disk("demo-efi.img", "raw", true));
        assert_eq!(detect(&d.join("demo-efi.qcow2"), None).unwrap(), disk("demo-efi.qcow2", "qcow2", true));
        assert_eq!(detect(&d.join("demo-bios.img"), None).unwrap(), disk("demo-bios.img", "raw", false));
        assert_eq!(detect(&d.join("demo-bios.img"), Some(true)).unwrap(), disk("demo-bios.img", "raw", true));
        assert_eq!(
            detect(&d.join("demo-efi.iso"), None).unwrap(),
            Boot::Cdrom { path: d.join("demo-efi.iso"), uefi: true }
        );
        assert_eq!(detect(&d.join("demo.iso"), None).unwrap(), Boot::Cdrom { path: d.join("demo.iso"), uefi: false });
        assert!(detect(&d.join("nothing"), None).is_err());
        // --disk: an existing file; a missing one without size is an error; bad options are errors.
        let data = d.join("data.img");
        std::fs::write(&data, vec![0u8; 4096]).unwrap();
        let a = disk_args(&data.display().to_string()).unwrap();
        assert_eq!(a[1], format!("file={},format=raw,if=virtio", data.display()));
        assert!(disk_args(&d.join("missing.img").display().to_string()).is_err());
        assert!(disk_args("x.img,bogus=1").is_err());
        // Missing with a size: created by qemu-img (when installed), as `linuxkit run -disk`.
        let q = d.join("new.qcow2");
        if Command::new("qemu-img").arg("--version").output().is_ok() {
            let a = disk_args(&format!("{},size=16M", q.display())).unwrap();
            assert_eq!(a[1], format!("file={},format=qcow2,if=virtio", q.display()));
            assert!(q.is_file());
        } else {
            eprintln!("SKIPPED (part): qemu-img not installed");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
