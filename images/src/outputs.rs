//! Output formats, as `linuxkit build --format` names and writes them, from a built kernel + initrd + cmdline:
//!
//! | format | file | what |
//! |---|---|---|
//! | `kernel+initrd` | `NAME-kernel`, `NAME-initrd.img`, `NAME-cmdline` | for `keel-image run NAME` / any loader |
//! | `tar-kernel-initrd` | `NAME-initrd.tar` | the three files (`kernel`, `initrd.img`, `cmdline`) in a tar |
//! | `raw-efi` | `NAME-efi.img` | GPT disk, one EFI system partition with a unified kernel image |
//! | `qcow2-efi` | `NAME-efi.qcow2` | the same disk as qcow2 (`qemu-img convert`) |
//! | `iso-efi` | `NAME-efi.iso` | ISO 9660 with that ESP as its El Torito EFI boot image (also bootable from USB) |
//! | `iso-bios` | `NAME.iso` | ISO 9660 booting with ISOLINUX (hybrid MBR: also bootable from USB) |
//! | `raw-bios` | `NAME-bios.img` | MBR disk, one FAT partition booting with SYSLINUX |
//! | `qcow2-bios` | `NAME.qcow2` | the same disk as qcow2 |
//!
//! The unified kernel image (`EFI/BOOT/BOOTX64.EFI`) is Debian's systemd-boot stub (`linuxx64.efi.stub`, package
//! systemd-boot-efi) with `.osrel`, `.cmdline`, `.linux` and `.initrd` sections added by `objcopy` (Debian 12 has
//! no `ukify`), placed after the stub's last section as systemd documents. Disks and ISOs are made by Debian's
//! tools: `mkfs.vfat` + `mtools`, `sfdisk`, `xorriso`, `syslinux`, `qemu-img`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{io, Error};

/// Every format keel-image writes.
pub const FORMATS: &[&str] =
    &["kernel+initrd", "tar-kernel-initrd", "raw-efi", "qcow2-efi", "iso-efi", "iso-bios", "raw-bios", "qcow2-bios"];

/// Where Debian's systemd-boot-efi puts the stub.
pub const EFI_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
/// ISOLINUX (package isolinux) and its hybrid MBR.
pub const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
pub const ISOHYBRID_MBR: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
/// SYSLINUX's modules and MBR (package syslinux-common).
pub const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
pub const SYSLINUX_MBR: &str = "/usr/lib/syslinux/mbr/mbr.bin";

/// The file a format writes, for image `name`.
pub fn file_name(format: &str, name: &str) -> Option<String> {
    Some(match format {
        "kernel+initrd" => format!("{name}-kernel"),
        "tar-kernel-initrd" => format!("{name}-initrd.tar"),
        "raw-efi" => format!("{name}-efi.img"),
        "qcow2-efi" => format!("{name}-efi.qcow2"),
        "iso-efi" => format!("{name}-efi.iso"),
        "iso-bios" => format!("{name}.iso"),
        "raw-bios" => format!("{name}-bios.img"),
        "qcow2-bios" => format!("{name}.qcow2"),
        _ => return None,
    })
}

/// The Debian tools (command, package) a format needs.
pub fn tools(format: &str) -> Vec<(&'static str, &'static str)> {
    let efi = [("objcopy", "binutils"), ("objdump", "binutils"), ("mkfs.vfat", "dosfstools"), ("mcopy", "mtools")];
    let mut v = Vec::new();
    match format {
        "raw-efi" => v.push(("sfdisk", "fdisk")),
        "qcow2-efi" => v.extend([("sfdisk", "fdisk"), ("qemu-img", "qemu-utils")]),
        "iso-efi" | "iso-bios" => v.push(("xorriso", "xorriso")),
        "raw-bios" | "qcow2-bios" => {
            v.extend([("sfdisk", "fdisk"), ("mkfs.vfat", "dosfstools"), ("mcopy", "mtools"), ("syslinux", "syslinux")]);
            if format == "qcow2-bios" {
                v.push(("qemu-img", "qemu-utils"));
            }
        }
        _ => {}
    }
    if format.ends_with("-efi") {
        v.extend(efi);
    }
    v
}

fn on_path(cmd: &str) -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| d.join(cmd).is_file())
}

/// Check a format's tools and data files; the error names what to install.
pub fn check(format: &str) -> Result<(), Error> {
    if file_name(format, "x").is_none() {
        return Err(Error::Command(format!("unknown format {format:?} (formats: {})", FORMATS.join(", "))));
    }
    let mut missing: Vec<String> =
        tools(format).iter().filter(|(c, _)| !on_path(c)).map(|(c, p)| format!("{c} (apt-get install {p})")).collect();
    let files: &[(&str, &str)] = match format {
        "raw-efi" | "iso-efi" | "qcow2-efi" => &[(EFI_STUB, "systemd-boot-efi")],
        "iso-bios" => &[(ISOLINUX_BIN, "isolinux"), (ISOHYBRID_MBR, "isolinux"), (LDLINUX_C32, "syslinux-common")],
        "raw-bios" | "qcow2-bios" => &[(LDLINUX_C32, "syslinux-common"), (SYSLINUX_MBR, "syslinux-common")],
        _ => &[],
    };
    missing.extend(
        files.iter().filter(|(f, _)| !Path::new(f).is_file()).map(|(f, p)| format!("{f} (apt-get install {p})")),
    );
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Command(format!("format {format} needs {}", missing.join(", "))))
    }
}

/// What one format produced.
#[derive(Debug, Clone)]
pub struct Written {
    pub format: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub took: Duration,
}

fn run(c: &mut Command) -> Result<Vec<u8>, Error> {
    c.env("MTOOLS_SKIP_CHECK", "1");
    let what = format!("{:?}", c).replace('"', "");
    let out = c.output().map_err(|e| Error::Command(format!("running {what}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Command(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// Write `format` for the image built in `built` (kernel, initrd.img, cmdline) as `dir/NAME…`. Work files go to
/// a temporary directory under `dir`, removed afterwards; the output is renamed into place when complete.
pub fn write(built: &Path, dir: &Path, name: &str, format: &str) -> Result<Written, Error> {
    check(format)?;
    let t0 = Instant::now();
    let file = file_name(format, name).unwrap_or_default();
    let dest = dir.join(&file);
    let work = dir.join(format!(".{file}.work"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io("creating", &work))?;
    let r = write_in(built, &work, &dest, name, format);
    let _ = std::fs::remove_dir_all(&work);
    r?;
    let bytes = std::fs::metadata(&dest).map_err(io("reading", &dest))?.len();
    Ok(Written { format: format.to_string(), path: dest, bytes, took: t0.elapsed() })
}

fn write_in(built: &Path, work: &Path, dest: &Path, name: &str, format: &str) -> Result<(), Error> {
    let kernel = built.join("kernel");
    let initrd = built.join("initrd.img");
    let cmdline = std::fs::read_to_string(built.join("cmdline")).map_err(io("reading", built.join("cmdline")))?;
    let cmdline = cmdline.trim();
    let tmp_out = work.join("out");
    match format {
        "kernel+initrd" => {
            let dir = dest.parent().unwrap_or(Path::new("."));
            for (src, suffix) in [(&kernel, "kernel"), (&initrd, "initrd.img")] {
                let t = work.join(suffix);
                std::fs::copy(src, &t).map_err(io("copying", src))?;
                let d = dir.join(format!("{name}-{suffix}"));
                std::fs::rename(&t, &d).map_err(io("renaming to", &d))?;
            }
            let c = dir.join(format!("{name}-cmdline"));
            std::fs::write(&c, format!("{cmdline}\n")).map_err(io("writing", &c))?;
            return Ok(());
        }
        "tar-kernel-initrd" => {
            let f = std::fs::File::create(&tmp_out).map_err(io("creating", &tmp_out))?;
            let mut b = tar::Builder::new(f);
            let add = |b: &mut tar::Builder<std::fs::File>, n: &str, data: &[u8]| {
                let mut h = tar::Header::new_ustar();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_mtime(0);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_cksum();
                b.append_data(&mut h, n, data).map_err(io("writing", dest))
            };
            add(&mut b, "kernel", &std::fs::read(&kernel).map_err(io("reading", &kernel))?)?;
            add(&mut b, "initrd.img", &std::fs::read(&initrd).map_err(io("reading", &initrd))?)?;
            add(&mut b, "cmdline", cmdline.as_bytes())?;
            b.into_inner().and_then(|f| f.sync_all()).map_err(io("writing", dest))?;
        }
        "raw-efi" | "qcow2-efi" => {
            let esp = esp_image(work, &kernel, &initrd, cmdline, name)?;
            let raw = if format == "raw-efi" { tmp_out.clone() } else { work.join("disk.raw") };
            gpt_disk(&raw, &esp)?;
            if format == "qcow2-efi" {
                run(Command::new("qemu-img").args(["convert", "-f", "raw", "-O", "qcow2"]).arg(&raw).arg(&tmp_out))?;
            }
        }
        "iso-efi" => {
            let root = work.join("iso");
            std::fs::create_dir_all(&root).map_err(io("creating", &root))?;
            let esp = esp_image(work, &kernel, &initrd, cmdline, name)?;
            std::fs::rename(&esp, root.join("efiboot.img")).map_err(io("moving", &esp))?;
            run(Command::new("xorriso")
                .args(["-as", "mkisofs", "-quiet", "-R", "-J", "-V", &volume_id(name)])
                .args(["-e", "efiboot.img", "-no-emul-boot", "-isohybrid-gpt-basdat", "-o"])
                .arg(&tmp_out)
                .arg(&root))?;
        }
        "iso-bios" => {
            let root = work.join("iso");
            let il = root.join("isolinux");
            std::fs::create_dir_all(&il).map_err(io("creating", &il))?;
            std::fs::copy(ISOLINUX_BIN, il.join("isolinux.bin")).map_err(io("copying", ISOLINUX_BIN))?;
            std::fs::copy(LDLINUX_C32, il.join("ldlinux.c32")).map_err(io("copying", LDLINUX_C32))?;
            std::fs::write(il.join("isolinux.cfg"), syslinux_cfg(cmdline)).map_err(io("writing", &il))?;
            std::fs::copy(&kernel, root.join("kernel")).map_err(io("copying", &kernel))?;
            std::fs::copy(&initrd, root.join("initrd.img")).map_err(io("copying", &initrd))?;
            run(Command::new("xorriso")
                .args(["-as", "mkisofs", "-quiet", "-R", "-J", "-V", &volume_id(name)])
                .args(["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot"])
                .args(["-boot-load-size", "4", "-boot-info-table", "-isohybrid-mbr", ISOHYBRID_MBR, "-o"])
                .arg(&tmp_out)
                .arg(&root))?;
        }
        "raw-bios" | "qcow2-bios" => {
            let part = work.join("part.img");
            let payload = file_len(&kernel)? + file_len(&initrd)? + 512 * 1024;
            mkfs_vfat(&part, payload, "KEEL")?;
            let cfg = work.join("syslinux.cfg");
            std::fs::write(&cfg, syslinux_cfg(cmdline)).map_err(io("writing", &cfg))?;
            mcopy(&part, &kernel, "::/kernel")?;
            mcopy(&part, &initrd, "::/initrd.img")?;
            mcopy(&part, &cfg, "::/syslinux.cfg")?;
            run(Command::new("syslinux").arg("--install").arg(&part))?;
            let raw = if format == "raw-bios" { tmp_out.clone() } else { work.join("disk.raw") };
            mbr_disk(&raw, &part)?;
            if format == "qcow2-bios" {
                run(Command::new("qemu-img").args(["convert", "-f", "raw", "-O", "qcow2"]).arg(&raw).arg(&tmp_out))?;
            }
        }
        other => return Err(Error::Command(format!("unknown format {other}"))),
    }
    std::fs::rename(&tmp_out, dest).map_err(io("renaming to", dest))
}

fn file_len(p: &Path) -> Result<u64, Error> {
    Ok(std::fs::metadata(p).map_err(io("reading", p))?.len())
}

fn volume_id(name: &str) -> String {
    let v: String =
        name.to_ascii_uppercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(32).collect();
    if v.is_empty() {
        "KEEL".into()
    } else {
        v
    }
}

fn syslinux_cfg(cmdline: &str) -> String {
    format!(
        "DEFAULT keel\nPROMPT 0\nTIMEOUT 0\nLABEL keel\n  KERNEL /kernel\n  INITRD /initrd.img\n  APPEND {cmdline}\n"
    )
}

/// A FAT file system image big enough for `payload` bytes of files (mkfs.vfat picks FAT12/16/32 by size).
fn mkfs_vfat(img: &Path, payload: u64, label: &str) -> Result<(), Error> {
    let mib = payload.div_ceil(1 << 20) + payload.div_ceil(1 << 20) / 20 + 2;
    let _ = std::fs::remove_file(img);
    run(Command::new("mkfs.vfat").args(["-C", "-n", label]).arg(img).arg((mib * 1024).to_string()))?;
    Ok(())
}

fn mcopy(img: &Path, src: &Path, dst: &str) -> Result<(), Error> {
    run(Command::new("mcopy").arg("-o").arg("-i").arg(img).arg(src).arg(dst)).map(|_| ())
}

/// The end of the stub's last section (VMA + size), from `objdump -h`.
fn stub_end(stub: &Path) -> Result<u64, Error> {
    let out = run(Command::new("objdump").args(["-h", "-w"]).arg(stub))?;
    let mut end = 0u64;
    for l in String::from_utf8_lossy(&out).lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Idx Name Size VMA LMA FileOff Algn Flags...
        if f.len() >= 7 && f[0].parse::<u32>().is_ok() {
            let size = u64::from_str_radix(f[2], 16).unwrap_or(0);
            let vma = u64::from_str_radix(f[3], 16).unwrap_or(0);
            end = end.max(vma + size);
        }
    }
    if end == 0 {
        return Err(Error::Command(format!("objdump -h {}: no sections found", stub.display())));
    }
    Ok(end)
}

fn align(n: u64, a: u64) -> u64 {
    n.div_ceil(a) * a
}

/// Build the unified kernel image: the stub plus .osrel, .cmdline, .linux and .initrd, each placed after the
/// previous one (aligned to 4 KiB).
pub fn uki(work: &Path, kernel: &Path, initrd: &Path, cmdline: &str, name: &str) -> Result<PathBuf, Error> {
    let stub = Path::new(EFI_STUB);
    let osrel = work.join("os-release");
    std::fs::write(
        &osrel,
        format!("NAME=\"keel\"\nID=keel\nPRETTY_NAME=\"keel {name}\"\nVERSION_ID={}\n", env!("CARGO_PKG_VERSION")),
    )
    .map_err(io("writing", &osrel))?;
    let cl = work.join("cmdline.txt");
    std::fs::write(&cl, cmdline).map_err(io("writing", &cl))?;
    let mut at = align(stub_end(stub)?, 0x1000);
    let mut c = Command::new("objcopy");
    for (sect, file) in
        [(".osrel", &osrel), (".cmdline", &cl), (".linux", &kernel.to_path_buf()), (".initrd", &initrd.to_path_buf())]
    {
        c.arg("--add-section").arg(format!("{sect}={}", file.display()));
        c.arg("--change-section-vma").arg(format!("{sect}={at:#x}"));
        at = align(at + file_len(file)?, 0x1000);
    }
    let out = work.join("BOOTX64.EFI");
    c.arg(stub).arg(&out);
    run(&mut c)?;
    Ok(out)
}

/// An EFI system partition image holding the unified kernel image as the removable-media default loader.
fn esp_image(work: &Path, kernel: &Path, initrd: &Path, cmdline: &str, name: &str) -> Result<PathBuf, Error> {
    let efi = uki(work, kernel, initrd, cmdline, name)?;
    let esp = work.join("esp.img");
    mkfs_vfat(&esp, file_len(&efi)?, "KEEL-ESP")?;
    run(Command::new("mmd").arg("-i").arg(&esp).args(["::/EFI", "::/EFI/BOOT"]))?;
    mcopy(&esp, &efi, "::/EFI/BOOT/BOOTX64.EFI")?;
    Ok(esp)
}

/// Copy `part` into `disk` at byte `offset`.
fn put_at(disk: &Path, part: &Path, offset: u64) -> Result<(), Error> {
    use std::io::{Seek, SeekFrom};
    let mut d = std::fs::OpenOptions::new().write(true).open(disk).map_err(io("opening", disk))?;
    d.seek(SeekFrom::Start(offset)).map_err(io("seeking", disk))?;
    let mut p = std::fs::File::open(part).map_err(io("opening", part))?;
    std::io::copy(&mut p, &mut d).map_err(io("writing", disk))?;
    d.sync_all().map_err(io("syncing", disk))
}

fn sfdisk(disk: &Path, script: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut child = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(disk)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::Command(format!("running sfdisk: {e} (apt-get install fdisk)")))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(script.as_bytes()).map_err(io("writing to sfdisk for", disk))?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Command(format!("sfdisk: {e}")))?;
    if !out.status.success() {
        return Err(Error::Command(format!(
            "sfdisk {}: {}",
            disk.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

const MIB: u64 = 1 << 20;

/// A GPT disk with `esp` as its only partition (EFI system, from 1 MiB).
fn gpt_disk(disk: &Path, esp: &Path) -> Result<(), Error> {
    let esp_len = align(file_len(esp)?, MIB);
    let f = std::fs::File::create(disk).map_err(io("creating", disk))?;
    f.set_len(MIB + esp_len + MIB).map_err(io("sizing", disk))?;
    drop(f);
    sfdisk(
        disk,
        &format!(
            "label: gpt\nstart=2048, size={}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI System\"\n",
            esp_len / 512
        ),
    )?;
    put_at(disk, esp, MIB)
}

/// An MBR disk with `part` as its only, bootable FAT partition (from 1 MiB) and SYSLINUX's MBR code.
fn mbr_disk(disk: &Path, part: &Path) -> Result<(), Error> {
    let len = align(file_len(part)?, MIB);
    let f = std::fs::File::create(disk).map_err(io("creating", disk))?;
    f.set_len(MIB + len).map_err(io("sizing", disk))?;
    drop(f);
    sfdisk(disk, &format!("label: dos\nstart=2048, size={}, type=c, bootable\n", len / 512))?;
    put_at(disk, part, MIB)?;
    // The MBR's boot code: its first 440 bytes (the partition table after it stays).
    let code = std::fs::read(SYSLINUX_MBR).map_err(io("reading", SYSLINUX_MBR))?;
    let tmp = disk.with_extension("mbr");
    std::fs::write(&tmp, &code[..code.len().min(440)]).map_err(io("writing", &tmp))?;
    let r = put_at(disk, &tmp, 0);
    let _ = std::fs::remove_file(&tmp);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linuxkit_file_names() {
        assert_eq!(file_name("kernel+initrd", "demo").unwrap(), "demo-kernel");
        assert_eq!(file_name("tar-kernel-initrd", "demo").unwrap(), "demo-initrd.tar");
        assert_eq!(file_name("raw-efi", "demo").unwrap(), "demo-efi.img");
        assert_eq!(file_name("qcow2-efi", "demo").unwrap(), "demo-efi.qcow2");
        assert_eq!(file_name("iso-efi", "demo").unwrap(), "demo-efi.iso");
        assert_eq!(file_name("iso-bios", "demo").unwrap(), "demo.iso");
        assert_eq!(file_name("raw-bios", "demo").unwrap(), "demo-bios.img");
        assert_eq!(file_name("qcow2-bios", "demo").unwrap(), "demo.qcow2");
        assert!(file_name("vhd", "demo").is_none());
        assert!(check("vhd").unwrap_err().to_string().contains("raw-efi"));
        assert_eq!(volume_id("my-demo"), "MY_DEMO");
    }
}
