//! Kernel modules: the `modprobe` the kernel runs, and coldplug by device modalias.

/// Entry point when invoked as `modprobe` (argv as given). Returns the exit code.
pub fn modprobe_main(args: &[String]) -> i32 {
    let _ = args;
    1
}
