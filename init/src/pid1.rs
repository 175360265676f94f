//! PID 1's entry: block every signal first thing, install the panic hook, detect the mode, run the phases
//! (switch root, rc setup, discover units, banner) and hand over to the event loop. Never returns.
//!
//! Modes:
//! - machine (default): the real init of a (virtual) machine.
//! - sandbox: `KEEL_SANDBOX=1` and PID 1 of a fresh pid+mount namespace on a host (tests, e.g.
//!   `unshare --pid --fork --mount --mount-proc`). rc runs in sandbox mode (nothing host-global is touched),
//!   no switch root, no Ctrl-Alt-Del change, the console is stdout, no cgroups are created, and the end of a
//!   shutdown is exit(0) whatever the power action (poweroff, reboot and halt all print their name and exit 0).
//!
//! Kernel command line (machine mode): `keel.shutdown_timeout=SECONDS`, the whole shutdown's deadline (default 90);
//! `keel.tasks_max=N|P%|infinity`, the default task limit of every unit's cgroup (default 15 %: `crate::limits`).
//!
//! Machine mode, before any service: PID 1 locks its memory (mlockall with MCL_ONFAULT: every page it has used
//! stays resident however hard the services push memory, with swap or a disk-backed root too, so restarting a
//! service, answering keelctl and shutting down never wait for a page to come back; pages it never used are not
//! loaded), and prepares the units' parent cgroup `keel` (cpu, memory, pids, io).
//!
//! Environment overrides (any mode): `KEEL_CONTAINERS` (bundle tree, default /containers), `KEEL_RUN` (control and
//! notify sockets, default /run/keel), `KEEL_LOG_DIR` (NAME.log files; default /var/log, none in sandbox mode).
//! Sandbox only: `KEEL_TEST_PANIC=1` panics after the banner (tests the panic hook).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::console::{self, Console};
use crate::discover;
use crate::event_loop::{self, Config, Loop};
use crate::logs::Ring;
use crate::supervisor::{Kind, Level, Supervisor};
use crate::sys;
use crate::time;

/// The console fd the panic hook writes to.
static PANIC_FD: AtomicI32 = AtomicI32::new(2);
static SANDBOX: AtomicBool = AtomicBool::new(false);

/// Is this the sandbox mode?
pub fn sandbox_requested() -> bool {
    std::env::var_os("KEEL_SANDBOX").is_some_and(|v| v == "1")
}

/// PID 1. Never returns.
/// Re-execute from a copy of this binary nobody can write (unless already), so no container reaches PID 1's binary
/// through /proc/PID/exe of a setup child (CVE-2019-5736 class; see keel_runtime::sealed). Needs /proc: mounted here
/// if it is not yet (rc's mount table then finds it in place).
fn run_sealed() -> Result<(), crate::Error> {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self/exe").exists() {
        let _ = std::fs::create_dir(proc);
        // SAFETY: valid C strings; mounting procfs on /proc.
        let r = unsafe {
            libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(crate::Error::last("mount", "/proc"));
        }
    }
    // The seal without a copy is a private overlayfs (keel_runtime::sealed), a module in distribution kernels, which
    // the kernel cannot load on its own yet (rc sets its modprobe helper later): load it here. Without it the seal is
    // a memfd copy: 1.4 MiB more RAM, all of it resident in PID 1.
    if !keel_runtime::sealed::is_sealed() && !has_filesystem("overlay") {
        let _ = keel_rc::modules::load("overlay");
    }
    keel_runtime::sealed::ensure(&std::env::args_os().collect::<Vec<_>>())
        .map_err(|source| crate::Error::Runtime { unit: String::new(), source })
}

/// Does /proc/filesystems list `fs`?
fn has_filesystem(fs: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().last() == Some(fs)))
}

pub fn main() -> ! {
    let start = Instant::now();
    let start_boot_ms = time::boot_ms();
    let sandbox = become_pid1();
    let early = early_setup(sandbox);
    let mut out = Out::open(sandbox);
    for (l, m) in early {
        out.say(l, &m);
    }
    let coldplug = run_rc(&mut out, sandbox);
    // The host's command line is not ours in sandbox mode.
    let cmdline = if sandbox { keel_rc::cmdline::Cmdline::default() } else { keel_rc::cmdline::Cmdline::read() };
    let (shutdown_timeout, bad) = crate::units::shutdown_timeout(cmdline.get("keel.shutdown_timeout"));
    if let Some(w) = bad {
        out.say(Level::Warn, &w);
    }
    let limits = if sandbox { Limits::sandbox() } else { machine_limits(&mut out, &cmdline) };
    if !sandbox {
        for failed in out.console.add_cmdline_consoles(&cmdline.consoles()) {
            out.say(Level::Warn, &format!("console {failed}: cannot open"));
        }
    }
    let (configs, bundles) = load_units(&mut out, sandbox);
    let cfg = Config {
        sandbox,
        run_dir: crate::control::run_dir(),
        log_dir: log_dir(&mut out, sandbox),
        start,
        start_boot_ms,
        cgroup_parent: limits.cgroup_parent,
        tasks_default: limits.tasks_default,
        tasks_what: limits.tasks_what,
    };
    let mut sup = Supervisor::new(configs);
    sup.set_shutdown_timeout(shutdown_timeout);
    match Loop::new(cfg, sup, bundles, out.console, out.ring) {
        Ok(mut l) => {
            if let Some(c) = coldplug {
                l.set_coldplug(c);
            }
            l.run()
        }
        Err(e) => fallback_loop(&format!("event loop: {e}")),
    }
}

/// Signals blocked before anything else, PID 1 checked, the panic hook set, Ctrl-Alt-Del made a signal. Returns
/// whether this is a sandbox (tests: KEEL_SANDBOX=1 in a pid namespace).
fn become_pid1() -> bool {
    sys::block_all_signals();
    let sandbox = sandbox_requested();
    SANDBOX.store(sandbox, Ordering::Relaxed);
    // SAFETY: getpid has no memory effects.
    if unsafe { libc::getpid() } != 1 {
        eprintln!("init: must run as PID 1 (for tests: KEEL_SANDBOX=1 unshare --pid --fork --mount --mount-proc init)");
        std::process::exit(1);
    }
    std::panic::set_hook(Box::new(panic_hook));
    if !sandbox {
        // Ctrl-Alt-Del arrives as SIGINT instead of an immediate reboot.
        // SAFETY: reboot(2) with CAD_OFF only changes the kernel's Ctrl-Alt-Del behaviour.
        unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_CAD_OFF) };
    }
    sandbox
}

/// Off the initramfs (machine mode), then re-executed sealed. What to say once the console is open.
fn early_setup(sandbox: bool) -> Vec<(Level, String)> {
    let mut early = Vec::new();
    if !sandbox {
        if let Err(e) = keel_rc::switch_root::maybe_switch() {
            early.push((Level::Error, format!("switch root: {e}; staying on the initramfs")));
        }
    }
    match run_sealed() {
        Err(e) => early.push((Level::Warn, format!("cannot run from a sealed copy of init: {e}"))),
        Ok(()) if keel_runtime::sealed::how() == keel_runtime::sealed::Sealing::Memfd => early.push((
            Level::Info,
            "init runs from a sealed memfd copy (no overlayfs): its whole binary stays resident".into(),
        )),
        Ok(()) => {}
    }
    early
}

/// Where PID 1's own lines go before the event loop: the console, and keel's ring (`keelctl logs keel`).
struct Out {
    console: Console,
    ring: Ring,
}

impl Out {
    fn open(sandbox: bool) -> Out {
        let console = if sandbox { Console::stdout() } else { Console::open_primary() };
        if let Some(fd) = console.primary_fd() {
            PANIC_FD.store(fd, Ordering::Relaxed);
        }
        Out { console, ring: Ring::new(32 * 1024, 300) }
    }

    fn say(&mut self, level: Level, msg: &str) {
        self.console.keel(level, msg);
        self.ring.push(time::boot_ms(), msg);
    }
}

/// Early system setup (keel_rc). In machine mode, module coldplug runs in a child in parallel with the boot
/// (crate::coldplug), returned for the event loop to follow; if it cannot be forked, in-line.
fn run_rc(out: &mut Out, sandbox: bool) -> Option<crate::coldplug::Coldplug> {
    let background = !sandbox && crate::coldplug::wanted();
    let opts = keel_rc::SetupOptions { sandbox, coldplug: !background };
    let mut rc_lines: Vec<(Level, String)> = Vec::new();
    let _summary = keel_rc::setup_with(&opts, &mut |lvl, msg| {
        let l = match lvl {
            keel_rc::Level::Info => Level::Info,
            keel_rc::Level::Warn => Level::Warn,
            keel_rc::Level::Error => Level::Error,
        };
        rc_lines.push((l, msg.to_string()));
    });
    for (l, m) in rc_lines {
        out.say(l, &m);
    }
    if !background {
        return None;
    }
    match crate::coldplug::start() {
        Ok(c) => Some(c),
        Err(e) => {
            out.say(Level::Warn, &format!("{e}; loading modules now"));
            let t0 = Instant::now();
            let mut lines: Vec<(Level, String)> = Vec::new();
            let n = keel_rc::modules::coldplug(&mut |_, m| lines.push((Level::Warn, m.to_string())));
            for (l, m) in lines {
                out.say(l, &m);
            }
            out.say(Level::Info, &format!("coldplug: {n} modules in {} ms", t0.elapsed().as_millis()));
            None
        }
    }
}

/// The machine's limits for services: PID 1's memory locked, the services' cgroup parent, the default task limit.
struct Limits {
    cgroup_parent: Option<std::path::PathBuf>,
    tasks_default: Option<u64>,
    tasks_what: String,
}

impl Limits {
    fn sandbox() -> Limits {
        Limits { cgroup_parent: None, tasks_default: None, tasks_what: "none (sandbox)".into() }
    }
}

fn machine_limits(out: &mut Out, cmdline: &keel_rc::cmdline::Cmdline) -> Limits {
    if let Err(e) = crate::sys::lock_memory() {
        out.say(Level::Warn, &format!("mlockall: {e}; PID 1's memory may be paged out under pressure"));
    }
    let root = keel_runtime::cgroups::default_root();
    if !keel_runtime::cgroups::is_cgroup2(&root) {
        out.say(Level::Warn, &format!("no cgroup2 at {}: services run without task limits", root.display()));
        return Limits { cgroup_parent: None, tasks_default: None, tasks_what: "none (no cgroup2)".into() };
    }
    let (parent, problems) = crate::limits::prepare_parent(&root);
    for p in problems {
        out.say(Level::Warn, &p);
    }
    let system = crate::limits::read_system_tasks_max();
    let (limit, what, bad) = crate::limits::machine_default(cmdline.get("keel.tasks_max"), system);
    if let Some(w) = bad {
        out.say(Level::Warn, &w);
    }
    Limits { cgroup_parent: Some(parent), tasks_default: limit, tasks_what: what }
}

/// The bundles under /containers: their configs for the supervisor and the loaded bundles for spawning; the banner.
/// Broken bundles are reported by the supervisor (one ERROR line each) when it fails them at boot.
fn load_units(out: &mut Out, sandbox: bool) -> (Vec<crate::supervisor::UnitConfig>, Vec<Option<keel_runtime::Bundle>>) {
    let root = discover::containers_dir();
    let (found, dir_errors) = discover::discover(&root);
    for e in dir_errors {
        out.say(Level::Error, &e);
    }
    out.console.name_width = console::name_width(found.iter().map(|f| f.config.name.as_str()));
    let n_onboot = found.iter().filter(|f| f.config.kind == Kind::Onboot).count();
    let n_services = found.iter().filter(|f| f.config.kind == Kind::Service).count();
    let banner = format!(
        "keel {} starting (kernel {}, {n_onboot} onboot, {n_services} services{})",
        env!("CARGO_PKG_VERSION"),
        keel_sys::kernel_release(),
        if sandbox { ", sandbox" } else { "" }
    );
    out.say(Level::Info, &banner);
    if sandbox && std::env::var_os("KEEL_TEST_PANIC").is_some_and(|v| v == "1") {
        // ok: a deliberate panic, sandbox-only, to test the panic hook (tests/pid1.rs).
        #[allow(clippy::panic)]
        {
            panic!("KEEL_TEST_PANIC is set");
        }
    }
    let mut configs = Vec::with_capacity(found.len());
    let mut bundles = Vec::with_capacity(found.len());
    for f in found {
        for w in &f.warnings {
            out.say(Level::Warn, w);
        }
        configs.push(f.config);
        bundles.push(f.bundle);
    }
    (configs, bundles)
}

/// Where services' log files go (KEEL_LOG_DIR, else /var/log; none in a sandbox), created if missing.
fn log_dir(out: &mut Out, sandbox: bool) -> Option<std::path::PathBuf> {
    let d = match std::env::var_os("KEEL_LOG_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None if sandbox => return None,
        None => std::path::PathBuf::from("/var/log"),
    };
    if let Err(e) = std::fs::create_dir_all(&d) {
        out.say(Level::Warn, &format!("log dir {}: {e}; no log files", d.display()));
    }
    Some(d)
}

fn write_fd(fd: i32, s: &str) {
    let mut b = s.as_bytes();
    let mut tries = 0;
    while !b.is_empty() && tries < 100 {
        match sys::write(fd, b) {
            sys::Io::Done(n) => b = &b[n..],
            sys::Io::WouldBlock => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => return,
        }
    }
}

fn panic_hook(info: &std::panic::PanicHookInfo<'_>) {
    let fd = PANIC_FD.load(Ordering::Relaxed);
    write_fd(fd, &console::format_keel(time::boot_ms(), Level::Error, &format!("PANIC: {info}")));
    fallback_loop_fd(fd)
}

fn fallback_loop(msg: &str) -> ! {
    let fd = PANIC_FD.load(Ordering::Relaxed);
    write_fd(fd, &console::format_keel(time::boot_ms(), Level::Error, msg));
    fallback_loop_fd(fd)
}

/// Last resort after a panic or a failed loop set-up: keep reaping and honour power signals; never return.
fn fallback_loop_fd(fd: i32) -> ! {
    write_fd(fd, &console::format_keel(time::boot_ms(), Level::Error, "still reaping; send a power signal to end"));
    loop {
        while sys::reap_one().is_some() {}
        // SAFETY: sigset_t is plain data; sigtimedwait only reads the set and fills info.
        let sig = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &s in event_loop::SIGNALS {
                libc::sigaddset(&mut set, s);
            }
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let ts = libc::timespec { tv_sec: 1, tv_nsec: 0 };
            libc::sigtimedwait(&set, &mut info, &ts)
        };
        let cmd = match sig {
            libc::SIGUSR2 | libc::SIGPWR => libc::LINUX_REBOOT_CMD_POWER_OFF,
            libc::SIGTERM | libc::SIGINT => libc::LINUX_REBOOT_CMD_RESTART,
            libc::SIGUSR1 => libc::LINUX_REBOOT_CMD_HALT,
            _ => continue,
        };
        if SANDBOX.load(Ordering::Relaxed) {
            std::process::exit(0);
        }
        crate::shutdown::sync_bounded(crate::shutdown::SYNC_TIMEOUT);
        // SAFETY: reboot(2) has no memory effects.
        unsafe { libc::reboot(cmd) };
    }
}
