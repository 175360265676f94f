//! A tiny PID 1 for trying rc in a VM by hand: switch root, full setup, module coldplug, an overlay mount that
//! makes the kernel call /sbin/modprobe (a link to this binary), then power off. Also `rc_probe write-index DIR`
//! (what the image builder calls) and, as `modprobe`, the modprobe entry point.

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().map(String::as_str).unwrap_or("");
    if argv0.ends_with("modprobe") {
        std::process::exit(keel_rc::modules::modprobe_main(&args));
    }
    if args.get(1).map(String::as_str) == Some("write-index") {
        let dir = args.get(2).map(String::as_str).unwrap_or(".");
        match keel_rc::modules::modinfo::write_index(Path::new(dir)) {
            Ok(()) => return,
            Err(e) => {
                eprintln!("write-index: {e}");
                std::process::exit(1);
            }
        }
    }
    let t0 = std::time::Instant::now();
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    eprintln!("probe: pid {} argv {:?} at boot+{}.{:06}s", std::process::id(), args, ts.tv_sec, ts.tv_nsec / 1000);
    match keel_rc::switch_root::maybe_switch() {
        Ok(b) => eprintln!("probe: maybe_switch -> Ok({b}) after {} us", t0.elapsed().as_micros()),
        Err(e) => eprintln!("probe: maybe_switch -> Err({e})"),
    }
    let s = keel_rc::setup(&mut |l, m| eprintln!("probe: [{l:?}] {m}"));
    eprintln!("probe: summary {s:?}");
    let up = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    eprintln!("probe: uptime {up}");
    eprintln!("probe: mountinfo:\n{}", std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
    eprintln!(
        "probe: net: {:?}",
        std::fs::read_dir("/sys/class/net").map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    eprintln!("probe: hostname {:?}", std::fs::read_to_string("/proc/sys/kernel/hostname"));
    eprintln!("probe: lo flags {:?}", std::fs::read_to_string("/sys/class/net/lo/flags"));
    eprintln!("probe: subtree_control {:?}", std::fs::read_to_string("/sys/fs/cgroup/cgroup.subtree_control"));
    eprintln!(
        "probe: nofile {:?}",
        std::fs::read_to_string("/proc/self/limits")
            .map(|l| l.lines().filter(|x| x.contains("open files")).collect::<String>())
    );
    for d in ["/tmp/lo", "/tmp/up", "/tmp/wk", "/tmp/ov"] {
        let _ = std::fs::create_dir_all(d);
    }
    let t = std::time::Instant::now();
    let r = std::process::Command::new("/bin/mount")
        .args(["-t", "overlay", "ov", "-o", "lowerdir=/tmp/lo,upperdir=/tmp/up,workdir=/tmp/wk", "/tmp/ov"])
        .status();
    eprintln!("probe: overlay mount {:?} in {} ms", r, t.elapsed().as_millis());
    eprintln!(
        "probe: modules {:?}",
        std::fs::read_to_string("/proc/modules")
            .map(|m| m.lines().map(|l| l.split(' ').next().unwrap_or("").to_string()).collect::<Vec<_>>())
    );
    let left = keel_rc::shutdown::unmount_all(std::time::Instant::now() + std::time::Duration::from_secs(2));
    eprintln!("probe: left mounted {left:?}");
    eprintln!("PROBE-DONE");
    // SAFETY: plain reboot(2) request.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
}
