//! `keel-image`: build a LinuxKit-style image YAML into DIR/{kernel, initrd.img, cmdline}, and boot it in QEMU.
//!
//! ```text
//! keel-image build FILE.yml -o DIR [--init-binary PATH] [--kernel-cache DIR] [--cache DIR] [--offline]
//!                  [--format FORMAT]... [--name NAME]
//! keel-image pull REF... | keel-image cache ls | keel-image cache rm REF...
//! keel-image run DIR|FILE.yml [--kvm] [--forward HOST:GUEST]... [--timeout SECS] [--append ARGS]
//!                [--memory MB] [--smp N] [--autopoweroff|--no-autopoweroff] [--uefi|--no-uefi]
//!                [--disk FILE[,size=N][,format=raw|qcow2][,if=virtio|ide]]...
//! ```

use std::path::PathBuf;
use std::process::exit;
use std::time::Duration;

use keel_image::build::{self, Options};
use keel_image::cache::Layout;
use keel_image::reference::Reference;
use keel_image::registry::{self, PullOptions};
use keel_image::run::{self, RunOptions};

const USAGE: &str = "usage:
  keel-image kernel [--kernel-cache DIR]     (fetch + unpack Debian's kernel; prints its path and version)
  keel-image build FILE.yml -o DIR [--init-binary PATH] [--kernel-cache DIR] [--gzip-level N]
                 [--cache DIR] [--offline] [--pull] [--arch ARCH] [-q]
                 [--format FORMAT]... [--name NAME]   (LinuxKit's formats and file names, in DIR:
                 kernel+initrd, tar-kernel-initrd, raw-efi, qcow2-efi, iso-efi, iso-bios, raw-bios, qcow2-bios)
  keel-image pull REF... [--cache DIR] [--arch ARCH] [-q] (into the cache; verified)
  keel-image cache ls [--cache DIR]                       (cached images: name, digest, size)
  keel-image cache rm REF... [--cache DIR]                (drop them and the blobs nothing else needs)
  keel-image run IMAGE|FILE.yml [--kvm] [--forward HOST:GUEST]... [--timeout SECS] [--append 'ARGS']
                 [--memory MB] [--smp N] [--autopoweroff|--no-autopoweroff] [--uefi|--no-uefi]
                 [--disk FILE[,size=N][,format=raw|qcow2][,if=virtio|ide]]...
                 IMAGE: DIR (kernel, initrd.img, cmdline or one NAME-kernel), NAME (NAME-kernel...),
                 NAME-initrd.tar, NAME-efi.img, NAME-efi.qcow2, NAME-efi.iso (OVMF), NAME-bios.img, NAME.qcow2, NAME.iso
                 (a FILE.yml is built into build/NAME first; build options apply)
defaults: --init-binary $KEEL_INIT_BINARY, else build/bin/init (make build), else
          target/x86_64-unknown-linux-gnu/release/init, else keel-init or ../lib/keel/init beside
          keel-image, else the init and keel-runc embedded in keel-image (cargo install --path images),
          --kernel-cache build/kernel (or $KEEL_KERNEL_CACHE),
          --cache ~/.linuxkit/cache (LinuxKit's; or $KEEL_IMAGE_CACHE), --arch amd64,
          credentials from $DOCKER_CONFIG/config.json or ~/.docker/config.json;
images named by reference (linuxkit/getty:TAG) come from the cache (an OCI layout keyed by full reference, as
          LinuxKit's), pulled into it when missing unless --offline";

/// The in-image init when neither --init-binary nor $KEEL_INIT_BINARY says: `make build`'s build/bin/init (in
/// the project tree), the workspace's release build, an installed layout beside keel-image (`keel-init`, or
/// `../lib/keel/init`; keel-runc next to it), else empty = the binaries embedded in keel-image.
fn default_init() -> PathBuf {
    let mut candidates =
        vec![PathBuf::from("build/bin/init"), PathBuf::from("target/x86_64-unknown-linux-gnu/release/init")];
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(PathBuf::from)) {
        candidates.push(dir.join("keel-init"));
        candidates.push(dir.join("../lib/keel/init"));
    }
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_default()
}

fn die(msg: &str) -> ! {
    eprintln!("keel-image: {msg}");
    exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(verb) = args.first().cloned() else { die(USAGE) };
    let mut positional: Vec<String> = Vec::new();
    let mut out: Option<PathBuf> = None;
    let mut bo = Options {
        yaml: PathBuf::new(),
        out: PathBuf::new(),
        init_binary: std::env::var_os("KEEL_INIT_BINARY").map(PathBuf::from).unwrap_or_else(default_init),
        kernel_cache: std::env::var_os("KEEL_KERNEL_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("build/kernel")),
        gzip_level: 6,
        pull: PullOptions::default(),
    };
    let mut ro = RunOptions::default();
    let mut formats: Vec<String> = Vec::new();
    let mut name: Option<String> = None;
    let mut i = 1;
    let val = |i: &mut usize, flag: &str| -> String {
        *i += 1;
        args.get(*i).cloned().unwrap_or_else(|| die(&format!("{flag} needs a value")))
    };
    while i < args.len() {
        let a = args[i].clone();
        match a.as_str() {
            "-o" | "--output" => out = Some(PathBuf::from(val(&mut i, &a))),
            "--init-binary" => bo.init_binary = PathBuf::from(val(&mut i, &a)),
            "--kernel-cache" => bo.kernel_cache = PathBuf::from(val(&mut i, &a)),
            "--gzip-level" => bo.gzip_level = val(&mut i, &a).parse().unwrap_or_else(|_| die("--gzip-level: 0-9")),
            "--cache" => bo.pull.cache = PathBuf::from(val(&mut i, &a)),
            "--offline" => bo.pull.offline = true,
            "--pull" => bo.pull.always = true,
            "--arch" => bo.pull.arch = val(&mut i, &a),
            "--quiet" | "-q" => bo.pull.quiet = true,
            "--format" | "-format" => {
                formats.extend(val(&mut i, &a).split(',').filter(|f| !f.is_empty()).map(String::from))
            }
            "--name" | "-name" => name = Some(val(&mut i, &a)),
            "--kvm" => ro.kvm = true,
            "--forward" => {
                ro.forwards.push(run::parse_forward(&val(&mut i, &a)).unwrap_or_else(|e| die(&e.to_string())))
            }
            "--timeout" => {
                ro.timeout =
                    Some(Duration::from_secs(val(&mut i, &a).parse().unwrap_or_else(|_| die("--timeout: seconds"))))
            }
            "--append" => ro.append.push(val(&mut i, &a)),
            "--disk" | "-disk" => {
                ro.disks.push(run::parse_disk(&val(&mut i, &a)).unwrap_or_else(|e| die(&e.to_string())))
            }
            "--memory" => ro.memory_mb = val(&mut i, &a).parse().unwrap_or_else(|_| die("--memory: MiB")),
            "--smp" => ro.smp = val(&mut i, &a).parse().unwrap_or_else(|_| die("--smp: count")),
            "--uefi" => ro.uefi = Some(true),
            "--no-uefi" => ro.uefi = Some(false),
            "--autopoweroff" => ro.autopoweroff = Some(true),
            "--no-autopoweroff" => ro.autopoweroff = Some(false),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            s if s.starts_with('-') => die(&format!("unknown option {s}\n{USAGE}")),
            _ => positional.push(a),
        }
        i += 1;
    }
    let do_build = |bo: &mut Options, yaml: &str, out: PathBuf| {
        bo.yaml = PathBuf::from(yaml);
        bo.out = out;
        match build::build(bo) {
            Ok(s) => {
                for n in &s.notes {
                    eprintln!("keel-image: note: {n}");
                }
                eprintln!(
                    "keel-image: built {} ({} bundles, kernel {}, {} modules {} KiB, init {} KiB, initrd {} KiB gz / {} KiB)",
                    bo.out.display(),
                    s.bundles.len(),
                    s.kernel_version,
                    s.modules,
                    s.modules_bytes / 1024,
                    s.init_bytes / 1024,
                    s.initrd_bytes / 1024,
                    s.uncompressed_bytes / 1024
                );
            }
            Err(e) => {
                eprintln!("keel-image: {e}");
                exit(1)
            }
        }
    };
    match verb.as_str() {
        "build" => {
            let [yaml] = positional.as_slice() else { die(USAGE) };
            let out = out.unwrap_or_else(|| die("build needs -o DIR"));
            if formats.is_empty() {
                do_build(&mut bo, yaml, out);
                return;
            }
            for f in &formats {
                if let Err(e) = keel_image::outputs::check(f) {
                    die(&e.to_string())
                }
            }
            let name = name.unwrap_or_else(|| {
                PathBuf::from(yaml)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "image".into())
            });
            let staging = out.join(format!(".{name}.build"));
            do_build(&mut bo, yaml, staging.clone());
            for f in &formats {
                match keel_image::outputs::write(&staging, &out, &name, f) {
                    Ok(w) => eprintln!(
                        "keel-image: {f}: {} ({} KiB, {:.1} s)",
                        w.path.display(),
                        w.bytes / 1024,
                        w.took.as_secs_f64()
                    ),
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&staging);
                        eprintln!("keel-image: {f}: {e}");
                        exit(1)
                    }
                }
            }
            let _ = std::fs::remove_dir_all(&staging);
        }
        "run" => {
            let [target] = positional.as_slice() else { die(USAGE) };
            let p = PathBuf::from(target);
            let is_yaml = target.ends_with(".yml") || target.ends_with(".yaml");
            if !is_yaml {
                ro.dir = p;
            } else {
                let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
                let dir = out.clone().unwrap_or_else(|| PathBuf::from("build").join(stem));
                do_build(&mut bo, target, dir.clone());
                ro.dir = dir;
            }
            match run::run(&ro) {
                Ok(code) => exit(code),
                Err(e) => {
                    eprintln!("keel-image: {e}");
                    exit(1)
                }
            }
        }
        "pull" => {
            if positional.is_empty() {
                die(USAGE)
            }
            let mut o = bo.pull.clone();
            o.always = true;
            for spec in &positional {
                let r = Reference::parse(spec).unwrap_or_else(|e| die(&e.to_string()));
                match registry::pull(&r, &o) {
                    Ok(d) => println!("{} {}", r, d.digest()),
                    Err(e) => {
                        eprintln!("keel-image: {e}");
                        exit(1)
                    }
                }
            }
        }
        "cache" => cache_cmd(&positional, &bo.pull),
        "kernel" => match keel_image::kernel::debian(&bo.kernel_cache) {
            Ok(k) => println!("{} {}", k.image.display(), k.version),
            Err(e) => {
                eprintln!("keel-image: {e}");
                exit(1)
            }
        },
        "-h" | "--help" | "help" => println!("{USAGE}"),
        other => die(&format!("unknown command {other}\n{USAGE}")),
    }
}

fn cache_cmd(args: &[String], o: &PullOptions) {
    let l = Layout::at(&o.cache);
    let fail = |e: keel_image::Error| -> ! {
        eprintln!("keel-image: cache {}: {e}", o.cache.display());
        exit(1)
    };
    match args.first().map(String::as_str) {
        Some("ls") => {
            let entries = l.entries().unwrap_or_else(|e| fail(e));
            println!("{:<60} {:<20} {:>8}", "NAME", "DIGEST", "SIZE");
            for e in entries {
                let d = e.descriptor.digest().to_string();
                let total = blobs_size(&l, &d);
                println!("{:<60} {:<20} {:>8}", e.name, &d[..d.len().min(19)], human(total));
            }
        }
        Some("rm") if args.len() > 1 => {
            let mut code = 0;
            for spec in &args[1..] {
                // Accept both the name as given and its normalised form.
                let name = Reference::parse(spec).map(|r| r.full()).unwrap_or_else(|_| spec.clone());
                let removed = l.remove(&name).unwrap_or_else(|e| fail(e))
                    || (name != *spec && l.remove(spec).unwrap_or_else(|e| fail(e)));
                if removed {
                    println!("removed {name}");
                } else {
                    eprintln!("keel-image: {name}: not in the cache {}", o.cache.display());
                    code = 1;
                }
            }
            exit(code)
        }
        _ => die(USAGE),
    }
}

/// Bytes of the blobs present under a root descriptor (index, manifests, configs, layers).
fn blobs_size(l: &Layout, digest: &str) -> u64 {
    let mut total = 0;
    let mut todo = vec![digest.to_string()];
    let mut seen = std::collections::HashSet::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        let Ok(p) = keel_image::cache::blob_path(&l.dir, &d) else { continue };
        let Ok(md) = std::fs::metadata(&p) else { continue };
        total += md.len();
        if md.len() > 4 << 20 {
            continue;
        }
        let Ok(data) = std::fs::read(&p) else { continue };
        todo.extend(keel_image::cache::blob_links(&data));
    }
    total
}

fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1}MB", n as f64 / 1048576.0)
    } else {
        format!("{:.1}kB", n as f64 / 1024.0)
    }
}
