//! The in-image multi-call binary: PID 1 (`init`, or anything started as PID 1), `keelctl`, `modprobe` and
//! `keel-runc` (also as `runc`), chosen by argv[0]'s basename, or by the first argument (`init keelctl list`).
//!
//! One binary instead of two saves the image the code they share (~1 MB). PID 1 never runs the CLI code, and its
//! pages do not count in PID 1's RSS: PID 1 turns off fault-around for its own text (MADV_RANDOM), so only the
//! pages it executes are mapped, not the 64 KiB around each of them.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()).unwrap_or_default();
    // SAFETY: getpid has no memory effects.
    if unsafe { libc::getpid() } == 1 {
        lean_text();
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
                lean_text();
                keel_init::pid1::main()
            }
        },
    };
    std::process::exit(code);
}

extern "C" {
    /// Start of the executable's mappings and end of its text (GNU ld / lld symbols).
    static __executable_start: u8;
    static etext: u8;
}

/// MADV_RANDOM over this binary's text: no fault-around, so PID 1's RSS holds the code it runs and nothing else.
/// Best effort (the advice changes no behaviour, only what the kernel maps ahead).
fn lean_text() {
    // SAFETY: taking the addresses of linker-provided symbols; they are never read.
    let (start, end) = unsafe { (&__executable_start as *const u8 as usize, &etext as *const u8 as usize) };
    let page = 4096;
    let lo = start & !(page - 1);
    if end <= lo {
        return;
    }
    // SAFETY: advice over our own mapped text; MADV_RANDOM does not change memory contents.
    unsafe { libc::madvise(lo as *mut libc::c_void, end - lo, libc::MADV_RANDOM) };
}
