//! Kernel modules: the `modprobe` the kernel runs, and coldplug by device modalias.

/// Where the kernel is told to find modprobe (the image builder links it to the multi-call init binary).
pub const MODPROBE_PATH: &str = "/sbin/modprobe";

/// Entry point when invoked as `modprobe` (argv as given). Returns the exit code.
pub fn modprobe_main(args: &[String]) -> i32 {
    let _ = args;
    1
}

/// Load modules for every device modalias; returns the number loaded.
pub fn coldplug(log: &mut dyn FnMut(crate::Level, &str)) -> usize {
    let _ = log;
    0
}
