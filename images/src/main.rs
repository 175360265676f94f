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

/// The command line: the verb, its positional arguments and every option.
struct Cli {
    verb: String,
    positional: Vec<String>,
    out: Option<PathBuf>,
    build: Options,
    run: RunOptions,
    formats: Vec<String>,
    name: Option<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cli) = parse(&args) else {
        println!("{USAGE}");
        return;
    };
    match cli.verb.as_str() {
        "build" => build_cmd(cli),
        "run" => run_cmd(cli),
        "pull" => pull_cmd(&cli),
        "cache" => cache_cmd(&cli.positional, &cli.build.pull),
        "kernel" => match keel_image::kernel::debian(&cli.build.kernel_cache) {
            Ok(k) => println!("{} {}", k.image.display(), k.version),
            Err(e) => fail(&e),
        },
        "-h" | "--help" | "help" => println!("{USAGE}"),
        other => die(&format!("unknown command {other}\n{USAGE}")),
    }
}

/// Parse the command line; None for --help.
fn parse(args: &[String]) -> Option<Cli> {
    let Some(verb) = args.first().cloned() else { die(USAGE) };
    let mut cli = Cli {
        verb,
        positional: Vec::new(),
        out: None,
        build: Options {
            yaml: PathBuf::new(),
            out: PathBuf::new(),
            init_binary: std::env::var_os("KEEL_INIT_BINARY").map(PathBuf::from).unwrap_or_else(default_init),
            kernel_cache: std::env::var_os("KEEL_KERNEL_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("build/kernel")),
            gzip_level: 6,
            pull: PullOptions::default(),
        },
        run: RunOptions::default(),
        formats: Vec::new(),
        name: None,
    };
    let (bo, ro) = (&mut cli.build, &mut cli.run);
    let mut i = 1;
    let val = |i: &mut usize, flag: &str| -> String {
        *i += 1;
        args.get(*i).cloned().unwrap_or_else(|| die(&format!("{flag} needs a value")))
    };
    while i < args.len() {
        let a = args[i].clone();
        match a.as_str() {
            "-o" | "--output" => cli.out = Some(PathBuf::from(val(&mut i, &a))),
            "--init-binary" => bo.init_binary = PathBuf::from(val(&mut i, &a)),
            "--kernel-cache" => bo.kernel_cache = PathBuf::from(val(&mut i, &a)),
            "--gzip-level" => bo.gzip_level = num(val(&mut i, &a), "--gzip-level: 0-9"),
            "--cache" => bo.pull.cache = PathBuf::from(val(&mut i, &a)),
            "--offline" => bo.pull.offline = true,
            "--pull" => bo.pull.always = true,
            "--arch" => bo.pull.arch = val(&mut i, &a),
            "--quiet" | "-q" => bo.pull.quiet = true,
            "--format" | "-format" => {
                cli.formats.extend(val(&mut i, &a).split(',').filter(|f| !f.is_empty()).map(String::from))
            }
            "--name" | "-name" => cli.name = Some(val(&mut i, &a)),
            "--kvm" => ro.kvm = true,
            "--forward" => {
                ro.forwards.push(run::parse_forward(&val(&mut i, &a)).unwrap_or_else(|e| die(&e.to_string())))
            }
            "--timeout" => ro.timeout = Some(Duration::from_secs(num(val(&mut i, &a), "--timeout: seconds"))),
            "--append" => ro.append.push(val(&mut i, &a)),
            "--disk" | "-disk" => {
                ro.disks.push(run::parse_disk(&val(&mut i, &a)).unwrap_or_else(|e| die(&e.to_string())))
            }
            "--memory" => ro.memory_mb = num(val(&mut i, &a), "--memory: MiB"),
            "--smp" => ro.smp = num(val(&mut i, &a), "--smp: count"),
            "--uefi" => ro.uefi = Some(true),
            "--no-uefi" => ro.uefi = Some(false),
            "--autopoweroff" => ro.autopoweroff = Some(true),
            "--no-autopoweroff" => ro.autopoweroff = Some(false),
            "-h" | "--help" => return None,
            s if s.starts_with('-') => die(&format!("unknown option {s}\n{USAGE}")),
            _ => cli.positional.push(a),
        }
        i += 1;
    }
    Some(cli)
}

/// A number option's value, or exit 2 saying what is expected.
fn num<T: std::str::FromStr>(v: String, what: &str) -> T {
    v.parse().unwrap_or_else(|_| die(what))
}

/// Print the error and exit 1.
fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("keel-image: {e}");
    exit(1)
}

/// Build the image of `yaml` into `out` and print what went in (exit 1 on failure).
fn do_build(bo: &mut Options, yaml: &str, out: PathBuf) {
    bo.yaml = PathBuf::from(yaml);
    bo.out = out;
    let s = build::build(bo).unwrap_or_else(|e| fail(&e));
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

/// `build YAML -o DIR [--format F,...]`: the image directory, or each output format written from a staging build.
fn build_cmd(mut cli: Cli) {
    let [yaml] = cli.positional.as_slice() else { die(USAGE) };
    let out = cli.out.take().unwrap_or_else(|| die("build needs -o DIR"));
    if cli.formats.is_empty() {
        do_build(&mut cli.build, yaml, out);
        return;
    }
    for f in &cli.formats {
        if let Err(e) = keel_image::outputs::check(f) {
            die(&e.to_string())
        }
    }
    let name = cli.name.clone().unwrap_or_else(|| {
        PathBuf::from(yaml).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into())
    });
    let staging = out.join(format!(".{name}.build"));
    do_build(&mut cli.build, yaml, staging.clone());
    for f in &cli.formats {
        match keel_image::outputs::write(&staging, &out, &name, f) {
            Ok(w) => {
                eprintln!(
                    "keel-image: {f}: {} ({} KiB, {:.1} s)",
                    w.path.display(),
                    w.bytes / 1024,
                    w.took.as_secs_f64()
                )
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                fail(&format!("{f}: {e}"))
            }
        }
    }
    let _ = std::fs::remove_dir_all(&staging);
}

/// `run DIR|YAML`: boot an image directory (a YAML is built first, into -o DIR or build/NAME).
fn run_cmd(mut cli: Cli) {
    let [target] = cli.positional.as_slice() else { die(USAGE) };
    let p = PathBuf::from(target);
    if target.ends_with(".yml") || target.ends_with(".yaml") {
        let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
        let dir = cli.out.clone().unwrap_or_else(|| PathBuf::from("build").join(stem));
        do_build(&mut cli.build, target, dir.clone());
        cli.run.dir = dir;
    } else {
        cli.run.dir = p;
    }
    match run::run(&cli.run) {
        Ok(code) => exit(code),
        Err(e) => fail(&e),
    }
}

/// `pull REF...`: pull each image into the cache, printing its digest.
fn pull_cmd(cli: &Cli) {
    if cli.positional.is_empty() {
        die(USAGE)
    }
    let mut o = cli.build.pull.clone();
    o.always = true;
    for spec in &cli.positional {
        let r = Reference::parse(spec).unwrap_or_else(|e| die(&e.to_string()));
        match registry::pull(&r, &o) {
            Ok(d) => println!("{} {}", r, d.digest()),
            Err(e) => fail(&e),
        }
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
