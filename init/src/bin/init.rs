//! The in-image multi-call binary: PID 1 (`init`, or anything started as PID 1), `keelctl`, `modprobe` and
//! `keel-runc` (also as `runc`), chosen by argv[0]'s basename, or by the first argument (`init keelctl list`).
//!
//! One binary instead of two saves the image the code they share (~1 MB). PID 1 never runs the CLI code, and keeps
//! its RSS to the code it keeps running (keel_init::text: no read-ahead of its text, its code pages dropped once
//! boot is complete).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()).unwrap_or_default();
    // SAFETY: getpid has no memory effects.
    if unsafe { libc::getpid() } == 1 {
        keel_init::text::lean();
        keel_init::pid1::main();
    }
    let code = match base.as_str() {
        "keelctl" => keel_init::client::main(args.get(1..).unwrap_or(&[])),
        "modprobe" => keel_rc::modules::modprobe_main(&args),
        "keel-runc" | "runc" => keel_runtime::cli::main(std::env::args_os()),
        _ => match args.get(1).map(String::as_str) {
            Some("keelctl") => keel_init::client::main(args.get(2..).unwrap_or(&[])),
            Some("modprobe") => keel_rc::modules::modprobe_main(args.get(1..).unwrap_or(&[])),
            Some("keel-runc") => keel_runtime::cli::main(std::env::args_os().skip(1)),
            _ => {
                keel_init::text::lean();
                keel_init::pid1::main()
            }
        },
    };
    std::process::exit(code);
}
