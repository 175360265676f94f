//! `keel-image`: build a LinuxKit-style image YAML into DIR/{kernel, initrd.img, cmdline}, and boot it in QEMU.
//!
//! ```text
//! keel-image build FILE.yml -o DIR [--init-binary PATH] [--kernel-cache DIR]
//! keel-image run DIR|FILE.yml [--kvm] [--forward HOST:GUEST]... [--timeout SECS] [--append ARGS]
//!                [--memory MB] [--smp N] [--autopoweroff|--no-autopoweroff]
//! ```

use std::path::PathBuf;
use std::process::exit;
use std::time::Duration;

use keel_image::build::{self, Options};
use keel_image::run::{self, RunOptions};

const USAGE: &str = "usage:
  keel-image kernel [--kernel-cache DIR]     (fetch + unpack Debian's kernel; prints its path and version)
  keel-image build FILE.yml -o DIR [--init-binary PATH] [--kernel-cache DIR] [--gzip-level N]
  keel-image run DIR|FILE.yml [--kvm] [--forward HOST:GUEST]... [--timeout SECS] [--append 'ARGS']
                 [--memory MB] [--smp N] [--autopoweroff|--no-autopoweroff]
                 [--disk FILE[,size=N][,format=raw|qcow2][,if=virtio|ide]]...
                 (a FILE.yml is built into build/NAME first; build options apply)
defaults: --init-binary $KEEL_INIT_BINARY, else build/bin/init (make build), else
          target/x86_64-unknown-linux-gnu/release/init, else keel-init or ../lib/keel/init beside
          keel-image, else the init and keel-runc embedded in keel-image (cargo install --path images),
          --kernel-cache build/kernel (or $KEEL_KERNEL_CACHE);
images named by reference (linuxkit/getty:TAG) come from the image cache: $KEEL_IMAGE_CACHE, else
          ~/.linuxkit/cache (LinuxKit's layout)";

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
    };
    let mut ro = RunOptions::default();
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
            "--kvm" => ro.kvm = true,
            "--forward" => {
                ro.forwards.push(run::parse_forward(&val(&mut i, &a)).unwrap_or_else(|e| die(&e.to_string())))
            }
            "--timeout" => {
                ro.timeout =
                    Some(Duration::from_secs(val(&mut i, &a).parse().unwrap_or_else(|_| die("--timeout: seconds"))))
            }
            "--append" => ro.append.push(val(&mut i, &a)),
            "--disk" => ro.disks.push(run::parse_disk(&val(&mut i, &a)).unwrap_or_else(|e| die(&e.to_string()))),
            "--memory" => ro.memory_mb = val(&mut i, &a).parse().unwrap_or_else(|_| die("--memory: MiB")),
            "--smp" => ro.smp = val(&mut i, &a).parse().unwrap_or_else(|_| die("--smp: count")),
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
            do_build(&mut bo, yaml, out);
        }
        "run" => {
            let [target] = positional.as_slice() else { die(USAGE) };
            let p = PathBuf::from(target);
            if p.is_dir() {
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
