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
    /// `--disk FILE[,size=N][,format=raw|qcow2]` (as `linuxkit run -disk`): data disks, created when missing.
    pub disks: Vec<Disk>,
}

/// One `--disk`: `[file=]PATH[,size=N[K|M|G]][,format=raw|qcow2][,if=virtio|ide]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    /// Bytes, for creating a missing file.
    pub size: Option<u64>,
    /// `raw` (default; created sparse) or `qcow2` (created with qemu-img; the default for a `*.qcow2` file).
    pub format: String,
    /// `virtio` (default: /dev/vda, ...) or `ide` (LinuxKit's qemu default: /dev/sda; needs the ata_piix and
    /// sd_mod modules, `kernel.modules: [ata_piix, sd_mod]`).
    pub interface: String,
}

/// Parse a `--disk` value.
pub fn parse_disk(s: &str) -> Result<Disk, Error> {
    let bad = |why: &str| Error::Command(format!("--disk {s:?}: {why} (want [file=]PATH[,size=N][,format=raw|qcow2])"));
    let mut d = Disk { path: PathBuf::new(), size: None, format: String::new(), interface: "virtio".into() };
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
    if d.format.is_empty() {
        d.format = if d.path.extension().is_some_and(|e| e == "qcow2") { "qcow2" } else { "raw" }.into();
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
    // romfile= : no iPXE option ROM (saves boot time). A (headless) VGA keeps SeaBIOS's screen-clearing output
    // off the serial console.
    c.args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0,romfile="]);
    c.args(["-device", "VGA"]);
    c.args(["-device", "virtio-rng-pci"]);
    // Data disks after the boot disk (virtio) or CD-ROM (ide): indexes per interface, past the boot medium's.
    let (mut virtio, mut ide) =
        (matches!(boot, Boot::Disk { .. }) as usize, matches!(boot, Boot::Cdrom { .. }) as usize);
    for d in &o.disks {
        let n = if d.interface == "ide" { &mut ide } else { &mut virtio };
        let mut drive = std::ffi::OsString::from("file=");
        drive.push(d.path.as_os_str());
        drive.push(format!(",format={},media=disk,if={},index={n}", d.format, d.interface));
        *n += 1;
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
        // --disk: a missing one without size is an error; bad options are errors; a `*.qcow2` is qcow2.
        assert!(prepare_disk(&parse_disk(&d.join("missing.img").display().to_string()).unwrap()).is_err());
        assert!(parse_disk("x.img,bogus=1").is_err());
        // Missing with a size: created by qemu-img (when installed), as `linuxkit run -disk`.
        let q = d.join("new.qcow2");
        let qd = parse_disk(&format!("{},size=16M", q.display())).unwrap();
        assert_eq!(qd.format, "qcow2");
        if Command::new("qemu-img").arg("--version").output().is_ok() {
            prepare_disk(&qd).unwrap();
            assert!(q.is_file());
        } else {
            eprintln!("SKIPPED (part): qemu-img not installed");
        }
        // Booting from a disk: a virtio data disk comes after it (vdb), an ide one after a CD-ROM.
        let o = RunOptions {
            dir: d.join("demo-efi.img"),
            uefi: Some(false),
            disks: vec![parse_disk("data.img").unwrap(), parse_disk("old.img,if=ide").unwrap()],
            ..Default::default()
        };
        let args: Vec<String> =
            qemu_command(&o).unwrap().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.iter().any(|a| a == "file=data.img,format=raw,media=disk,if=virtio,index=1"), "{args:?}");
        assert!(args.iter().any(|a| a == "file=old.img,format=raw,media=disk,if=ide,index=0"), "{args:?}");
        let o = RunOptions { dir: d.join("demo.iso"), disks: vec![parse_disk("old.img,if=ide").unwrap()], ..o };
        let args: Vec<String> =
            qemu_command(&o).unwrap().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.iter().any(|a| a == "file=old.img,format=raw,media=disk,if=ide,index=1"), "{args:?}");
        let _ = std::fs::remove_dir_all(&d);
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
