//! keel's early system setup ("rc"): knows the kernel and the filesystem, nothing of containers or services.
//!
//! Public contract used by `init`:
//! - [`switch_root::maybe_switch`]: if `/` is the initramfs rootfs, copy it into a fresh tmpfs, make that `/`
//!   and re-exec init there (does not return on success).
//! - [`setup`] / [`setup_with`]: the declarative mount table, hostname, sysctls, loopback, rlimits, module
//!   coldplug (unless [`SetupOptions::coldplug`] is false: then the caller runs [`modules::coldplug`] itself,
//!   e.g. in a background process); every failing step writes one line to `log`; nothing here panics or exits.
//! - [`cmdline::Cmdline`]: the kernel command line, parsed once.
//! - [`shutdown::unmount_all`]: unmount everything in reverse order before reboot(2).
//! - [`modules::modprobe_main`]: the `modprobe` the kernel calls (/proc/sys/kernel/modprobe).

// PID 1 must never panic: no unwrap/expect/panic! outside tests (enforced by clippy; CI runs it).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
// Numeric casts that may truncate, wrap or lose a sign are explicit conversions here (try_from with a stated
// fallback, or a byte reinterpretation), as in Firecracker. `make lint` turns these warnings into errors.
#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

pub mod cgroups;
pub mod cmdline;
pub mod devlinks;
pub mod error;
pub mod hostname;
pub mod linuxkit;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod rlimits;
pub mod shutdown;
pub mod switch_root;
pub mod sysctl;

pub use error::Error;
/// Every syscall goes through keel-sys.
use keel_sys as sys;
/// The one /proc/self/mountinfo parser (keel-sys).
pub use keel_sys::mountinfo;

use std::path::Path;
use std::time::{Duration, Instant};

/// Severity of an rc log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// How [`setup_with`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupOptions {
    /// init is PID 1 of a fresh pid+mount namespace on a host (tests): mount only what is private to the
    /// namespace (proc, /run, /tmp after making `/` rprivate) and never touch host-global state (no sysctl,
    /// hostname, loopback, modules, cgroup2, /dev).
    pub sandbox: bool,
    /// Run module coldplug as the last step (default true). false: skip it (PID 1 runs [`modules::coldplug`] in
    /// a child, in parallel with the boot). kernel.modprobe is set either way, so the kernel's on-demand modprobe
    /// works during and after a background coldplug. No effect in sandbox mode (no modules there).
    pub coldplug: bool,
}

impl Default for SetupOptions {
    fn default() -> SetupOptions {
        SetupOptions { sandbox: false, coldplug: true }
    }
}

impl SetupOptions {
    /// Does [`setup_with`] run coldplug with these options?
    pub fn runs_coldplug(&self) -> bool {
        self.coldplug && !self.sandbox
    }
}

/// What [`setup_with`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Mounts made now.
    pub mounted: usize,
    /// Mounts that were already there (or skipped by their rule).
    pub already: usize,
    /// Optional filesystems the kernel lacks.
    pub unsupported: Vec<String>,
    /// Every failure, as logged (one line each).
    pub failures: Vec<String>,
    /// sysctl keys written.
    pub sysctls: usize,
    /// cgroup v2 controllers enabled at the root.
    pub controllers: Vec<String>,
    /// The hostname set, if any.
    pub hostname: Option<String>,
    /// Modules loaded by coldplug.
    pub modules_loaded: usize,
    /// Mounts that took longer than 10 ms (target, time): a hint for boot-time tuning.
    pub slow_mounts: Vec<(&'static str, Duration)>,
    /// Wall time of each step, in order ("mounts", "linuxkit", "rlimits", "rshared", "devlinks", "cgroups", "hostname",
    /// "loopback", "sysctl", "modprobe-path", "volumes", "coldplug").
    pub steps: Vec<(&'static str, Duration)>,
    /// Wall time of the whole setup.
    pub elapsed: Duration,
}

const SLOW_MOUNT: Duration = Duration::from_millis(10);

/// Run early setup of a real (virtual) machine. Same as `setup_with(&SetupOptions::default(), log)`.
pub fn setup(log: &mut dyn FnMut(Level, &str)) -> Summary {
    setup_with(&SetupOptions::default(), log)
}

/// Run early setup. Each failing step writes exactly one line to `log` (what, path, errno); a failing step never
/// stops the others; success is silent except for one summary line.
pub fn setup_with(opts: &SetupOptions, log: &mut dyn FnMut(Level, &str)) -> Summary {
    let t0 = Instant::now();
    let mut s = Summary::default();
    let mut fail = |s: &mut Summary, lvl: Level, msg: String| {
        log(lvl, &msg);
        s.failures.push(msg);
    };
    let root = Path::new("/");
    if opts.sandbox {
        // A new mount namespace copies the host's propagation: with a shared `/`, every mount below would
        // appear on the host too (the reason unshare(1) makes `/` private by default).
        if let Err(e) = sys::mount("", root, "", libc::MS_REC | libc::MS_PRIVATE, "") {
            fail(&mut s, Level::Error, format!("rc: make / rprivate: {e}"));
        }
    }
    let mut t = Instant::now();
    let mut lap = |s: &mut Summary, name: &'static str| {
        s.steps.push((name, t.elapsed()));
        t = Instant::now();
    };
    let table = if opts.sandbox { mounts::SANDBOX } else { mounts::FULL };
    // proc comes first (tested). Until the modules are indexed and coldplugged, the kernel must not run the
    // usermode modprobe: mounting bpf alone makes it request bpf_preload, an exec of /sbin/modprobe costing
    // ~90 ms of guest time under TCG for a debug convenience. An empty kernel.modprobe makes such requests fail
    // at once; the "modprobe-path" step below sets the real one.
    let (first, rest) = table.split_at(1.min(table.len()));
    let mut applied = mounts::apply(first, root, opts.sandbox);
    let modprobe_sysctl = Path::new("/proc/sys/kernel/modprobe");
    if !opts.sandbox {
        let _ = sys::write_file(modprobe_sysctl, b"\n");
    }
    applied.extend(mounts::apply(rest, root, opts.sandbox));
    for (row, o, took) in applied {
        if took > SLOW_MOUNT {
            s.slow_mounts.push((row.target, took));
        }
        match o {
            mounts::Outcome::Mounted => s.mounted += 1,
            mounts::Outcome::AlreadyThere => s.already += 1,
            mounts::Outcome::Unsupported => s.unsupported.push(row.fstype.to_string()),
            mounts::Outcome::Failed(e) => {
                let lvl = if row.optional { Level::Warn } else { Level::Error };
                fail(&mut s, lvl, format!("rc: mount {} on {}: {e}", row.fstype, row.target))
            }
        }
    }
    lap(&mut s, "mounts");
    if !opts.sandbox {
        // What LinuxKit's packages bind: /var's directories, /run/resolvconf, volumes.
        for e in linuxkit::var_dirs(root).into_iter().chain(linuxkit::resolv_conf(root)) {
            fail(&mut s, Level::Warn, e);
        }
        lap(&mut s, "linuxkit");
    }
    if let Err(e) = rlimits::raise_nofile() {
        fail(&mut s, Level::Warn, format!("rc: {e}"));
    }
    lap(&mut s, "rlimits");
    if !opts.sandbox {
        // LinuxKit does this too: containers with rootfsPropagation=shared/slave need a shared parent.
        if let Err(e) = sys::mount("", root, "", libc::MS_REC | libc::MS_SHARED, "") {
            fail(&mut s, Level::Warn, format!("rc: make / rshared: {e}"));
        }
        lap(&mut s, "rshared");
        for e in devlinks::create(Path::new("/dev")) {
            fail(&mut s, Level::Warn, format!("rc: /dev link: {e}"));
        }
        lap(&mut s, "devlinks");
        let (ok, errs) = cgroups::enable_controllers(Path::new("/sys/fs/cgroup"));
        s.controllers = ok;
        for e in errs {
            fail(&mut s, Level::Warn, format!("rc: cgroup controller: {e}"));
        }
        lap(&mut s, "cgroups");
        match hostname::set_from(Path::new("/etc/hostname")) {
            Ok(h) => s.hostname = Some(h),
            Err(e) => fail(&mut s, Level::Warn, format!("rc: hostname: {e}")),
        }
        lap(&mut s, "hostname");
        if let Err(e) = net::loopback_up() {
            fail(&mut s, Level::Warn, format!("rc: loopback up: {e}"));
        }
        lap(&mut s, "loopback");
        let (n, errs) = sysctl::apply(root);
        s.sysctls = n;
        for e in errs {
            fail(&mut s, Level::Warn, format!("rc: sysctl: {e}"));
        }
        lap(&mut s, "sysctl");
        if let Err(e) = sys::write_file(modprobe_sysctl, modules::MODPROBE_PATH.as_bytes()) {
            fail(&mut s, Level::Warn, format!("rc: set modprobe helper: {e}"));
        }
        lap(&mut s, "modprobe-path");
        // LinuxKit's volumes: overlay mounts, so after the modprobe helper is set (overlay may be a module).
        let (_, errs) = linuxkit::volumes(root);
        for e in errs {
            fail(&mut s, Level::Error, e);
        }
        lap(&mut s, "volumes");
        if opts.runs_coldplug() {
            let mut lines: Vec<(Level, String)> = Vec::new();
            s.modules_loaded = modules::coldplug(&mut |l, m| lines.push((l, m.to_string())));
            for (l, m) in lines {
                fail(&mut s, l, m);
            }
            lap(&mut s, "coldplug");
        }
    }
    s.elapsed = t0.elapsed();
    log(Level::Info, &summary_line(&s, opts));
    s
}

/// The one summary line of [`setup_with`]: "rc: 14 mounts, 3 sysctls, 9 modules, 0 failures in 412 ms" (no
/// module count when coldplug was left to the caller).
pub fn summary_line(s: &Summary, opts: &SetupOptions) -> String {
    let modules = if opts.runs_coldplug() { format!("{} modules, ", s.modules_loaded) } else { String::new() };
    format!(
        "rc: {} mounts, {} sysctls, {modules}{} failures in {} ms",
        s.mounted,
        s.sysctls,
        s.failures.len(),
        s.elapsed.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coldplug_option() {
        let d = SetupOptions::default();
        assert!(d.coldplug && !d.sandbox, "default is today's behaviour: coldplug in setup");
        assert!(d.runs_coldplug());
        assert!(!SetupOptions { coldplug: false, ..d }.runs_coldplug(), "PID 1 runs it in the background");
        assert!(!SetupOptions { sandbox: true, ..d }.runs_coldplug(), "never in sandbox mode");
        let s = Summary {
            mounted: 14,
            sysctls: 3,
            modules_loaded: 9,
            elapsed: Duration::from_millis(412),
            ..Default::default()
        };
        assert_eq!(summary_line(&s, &d), "rc: 14 mounts, 3 sysctls, 9 modules, 0 failures in 412 ms");
        let bg = SetupOptions { coldplug: false, ..d };
        assert_eq!(summary_line(&s, &bg), "rc: 14 mounts, 3 sysctls, 0 failures in 412 ms");
    }
}
