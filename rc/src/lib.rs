//! keel's early system setup ("rc"): knows the kernel and the filesystem, nothing of containers or services.
//!
//! Public contract used by `init`:
//! - [`switch_root::maybe_switch`]: if `/` is the initramfs rootfs, copy it into a fresh tmpfs, make that `/`
//!   and re-exec init there (does not return on success).
//! - [`setup`]: the declarative mount table, hostname, sysctls, loopback, rlimits, module coldplug; every step's
//!   outcome goes to `log` as one line; nothing here panics or exits.
//! - [`cmdline::Cmdline`]: the kernel command line, parsed once.
//! - [`shutdown::unmount_all`]: unmount everything in reverse order before reboot(2).
//! - [`modules::modprobe_main`]: the `modprobe` the kernel calls (/proc/sys/kernel/modprobe).

pub mod cmdline;
pub mod modules;
pub mod shutdown;
pub mod switch_root;

/// Severity of an rc log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Run early setup. Each step reports through `log`; a failing step never stops the others.
pub fn setup(log: &mut dyn FnMut(Level, &str)) {
    let _ = log;
}
