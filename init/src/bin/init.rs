//! The in-image multi-call binary: PID 1 (`init`, or anything started as PID 1), `keelctl`, `keel-runc` and
//! `modprobe`, chosen by argv[0]'s basename, or by the first argument (`init keelctl list`).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()).unwrap_or_default();
    // SAFETY: getpid has no memory effects.
    if unsafe { libc::getpid() } == 1 {
        keel_init::pid1::main();
    }
    let code = match base.as_str() {
        "keelctl" => keel_init::client::main(args.get(1..).unwrap_or(&[])),
        "keel-runc" => keel_shim::cli::main(std::env::args_os()),
        "modprobe" => keel_rc::modules::modprobe_main(&args),
        _ => match args.get(1).map(String::as_str) {
            Some("keelctl") => keel_init::client::main(args.get(2..).unwrap_or(&[])),
            Some("keel-runc") => keel_shim::cli::main(std::env::args_os().skip(1)),
            Some("modprobe") => keel_rc::modules::modprobe_main(args.get(1..).unwrap_or(&[])),
            _ => keel_init::pid1::main(),
        },
    };
    std::process::exit(code);
}
