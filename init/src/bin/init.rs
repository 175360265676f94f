//! The in-image multi-call binary: PID 1 (`init`, or anything started as PID 1), `keelctl` and `modprobe`,
//! chosen by argv[0]'s basename, or by the first argument (`init keelctl list`).
//!
//! keel-runc (the runc-compatible CLI) is a binary of its own (runtime/src/bin/keel-runc.rs), also in the
//! image: its ~120 KiB of CLI code are never run by PID 1, but would still count in PID 1's RSS (the kernel maps
//! the pages around every page touched), which must stay under 1.5 MiB.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()).unwrap_or_default();
    // SAFETY: getpid has no memory effects.
    if unsafe { libc::getpid() } == 1 {
        keel_init::pid1::main();
    }
    let code = match base.as_str() {
        "keelctl" => keel_init::client::main(args.get(1..).unwrap_or(&[])),
        "modprobe" => keel_rc::modules::modprobe_main(&args),
        _ => match args.get(1).map(String::as_str) {
            Some("keelctl") => keel_init::client::main(args.get(2..).unwrap_or(&[])),
            Some("modprobe") => keel_rc::modules::modprobe_main(args.get(1..).unwrap_or(&[])),
            Some("keel-runc") => {
                eprintln!("keel-runc is a binary of its own: /usr/bin/keel-runc");
                2
            }
            _ => keel_init::pid1::main(),
        },
    };
    std::process::exit(code);
}
