//! Root tests of the device cgroup (issue 8): with Docker's default device rules a container cannot write the host's
//! /dev/kmsg (a node it makes itself with CAP_MKNOD) nor open a block device node shipped in its rootfs (a
//! throwaway loop device on a temp file, never a real disk), and can still use the default devices. Run on the
//! production path (this hybrid host: the v1 devices controller, as runc; a cgroup2-only host: the BPF program) and on the BPF program alone (a cgroup under the cgroup2 mount, given as SpawnOptions.cgroup_root through
//! a second mount point of it, so that no v1 cgroup is involved). The v1 writer is also checked alone. Each denial
//! is checked against a control run with allow-all rules, where the same attack gets through.

mod common;

use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use keel_runtime::cgroups::{self, bpf, devices, LinuxResources};
use keel_runtime::{SpawnOptions, Status};
use serde_json::{json, Value};

fn root_ok() -> bool {
    // SAFETY: geteuid has no side effects.
    if unsafe { libc::geteuid() } != 0 {
        skipped("device cgroup tests need root");
        return false;
    }
    true
}

/// Docker 20.10's default `linux.resources.devices` (moby oci/defaults.go); podman's is the same idea.
fn docker_rules() -> Value {
    json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
        {"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rwm"}
    ])
}

/// Docker's default capabilities (CAP_MKNOD among them).
const DOCKER_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A loop device on a 1 MiB temp file of a known pattern; detached and removed on drop.
struct Loop {
    dev: PathBuf,
    file: PathBuf,
    rdev: u64,
}

const PATTERN: &[u8] = b"keel-devcg-backing-file ";

impl Loop {
    fn new(name: &str) -> Option<Loop> {
        if std::process::Command::new("losetup").arg("--version").output().is_err() {
            skipped("losetup (util-linux) is not installed");
            return None;
        }
        let file = std::env::temp_dir().join(format!("keel-devcg-{}-{name}.img", std::process::id()));
        let data: Vec<u8> = PATTERN.iter().copied().cycle().take(1 << 20).collect();
        std::fs::write(&file, &data).unwrap();
        let out = std::process::Command::new("losetup").args(["--find", "--show"]).arg(&file).output().unwrap();
        if !out.status.success() {
            let _ = std::fs::remove_file(&file);
            skipped(&format!("losetup --find --show failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
            return None;
        }
        let dev = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        let md = std::fs::metadata(&dev).unwrap();
        assert!(md.file_type().is_block_device(), "{} is not a block device", dev.display());
        Some(Loop { dev, file, rdev: md.rdev() })
    }

    fn backing_unchanged(&self) -> bool {
        let data = std::fs::read(&self.file).unwrap();
        data.len() == 1 << 20 && data.chunks(PATTERN.len()).all(|c| PATTERN.starts_with(c))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup").arg("-d").arg(&self.dev).status();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Whether the host's kernel log has a record containing `marker` (non-blocking read of /dev/kmsg).
fn kmsg_has(marker: &str) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg").unwrap();
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                if String::from_utf8_lossy(&buf[..n]).contains(marker) {
                    return true;
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue, // overwritten records
            Err(_) => return false,                                      // EAGAIN: the end
        }
    }
}

/// The attacks and the allowed devices, one line each.
const SCRIPT: &str = r#"
mknod /dev/kmsg c 1 11 && echo mknod-kmsg-ok
if echo "$MARKER" 2>/tmp/e >/dev/kmsg; then echo kmsg-write-ok; else echo "kmsg-write-denied: $(cat /tmp/e)"; fi
if echo pwned-by-container | dd of=/data/disk conv=notrunc 2>/tmp/e; then echo disk-write-ok; else echo "disk-write-denied: $(cat /tmp/e)"; fi
if head -c 16 /data/disk >/dev/null 2>/tmp/e; then echo disk-read-ok; else echo "disk-read-denied: $(cat /tmp/e)"; fi
mknod /tmp/mem c 1 1 && echo mknod-mem-ok
if head -c 1 /tmp/mem >/dev/null 2>/tmp/e; then echo mem-read-ok; else echo "mem-read-denied: $(cat /tmp/e)"; fi
echo x >/dev/null && echo null-ok
[ "$(head -c 8 /dev/zero | wc -c)" = 8 ] && echo zero-ok
[ "$(head -c 8 /dev/urandom | wc -c)" = 8 ] && echo urandom-ok
[ "$(head -c 8 /dev/random | wc -c)" = 8 ] && echo random-ok
echo x 2>/tmp/e >/dev/full; grep -q "No space" /tmp/e && echo full-ok
(: </dev/tty) 2>/tmp/e; grep -q "not permitted" /tmp/e && echo tty-denied || echo "tty-ok: $(cat /tmp/e)"
(: </dev/ptmx) && echo ptmx-ok
exit 0
"#;

struct Attack {
    /// Removed on drop.
    _tb: TestBundle,
    disk: Loop,
    marker: String,
}

fn attack_bundle(name: &str, rules: Value) -> Option<(Attack, keel_runtime::Bundle)> {
    let disk = Loop::new(name)?;
    let tb = TestBundle::new(&format!("devcg-{name}"));
    let root = tb.dir.join("rootfs");
    for a in ["mknod", "dd"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    // The image ships a block device node for the host's loop disk.
    let p = std::ffi::CString::new(root.join("data/disk").to_str().unwrap()).unwrap();
    // SAFETY: valid C string; creates a node in the test's own temp rootfs.
    assert_eq!(unsafe { libc::mknod(p.as_ptr(), libc::S_IFBLK | 0o666, disk.rdev) }, 0);
    let marker = format!("keel-devcg-{}-{name}", std::process::id());
    let mut c = config(&["sh", "-c", SCRIPT]);
    c["process"]["env"].as_array_mut().unwrap().push(json!(format!("MARKER={marker}")));
    c["process"]["capabilities"] = json!({"bounding": DOCKER_CAPS, "effective": DOCKER_CAPS, "permitted": DOCKER_CAPS});
    c["linux"]["resources"] = json!({"devices": rules});
    let b = tb.write(&c);
    Some((Attack { _tb: tb, disk, marker }, b))
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines().find(|l| l.starts_with(prefix)).unwrap_or("")
}

/// The container under Docker's rules: every attack denied with EPERM, every default device usable, host unchanged.
fn assert_contained(a: &Attack, out: &str) {
    assert!(out.contains("mknod-kmsg-ok"), "CAP_MKNOD and the 'c *:* m' rule allow the mknod:\n{out}");
    assert!(line(out, "kmsg-write-denied").contains("Operation not permitted"), "/dev/kmsg:\n{out}");
    assert!(line(out, "disk-write-denied").contains("Operation not permitted"), "block device write:\n{out}");
    assert!(line(out, "disk-read-denied").contains("Operation not permitted"), "block device read:\n{out}");
    assert!(line(out, "mem-read-denied").contains("Operation not permitted"), "/dev/mem:\n{out}");
    for ok in ["null-ok", "zero-ok", "urandom-ok", "random-ok", "full-ok", "ptmx-ok"] {
        assert!(out.lines().any(|l| l == ok), "{ok} missing:\n{out}");
    }
    assert!(out.contains("tty-ok"), "/dev/tty is allowed (no controlling tty: ENXIO, not EPERM):\n{out}");
    assert!(a.disk.backing_unchanged(), "the loop disk's backing file was changed");
    assert!(!kmsg_has(&a.marker), "the container's line reached the host's kernel log");
}

/// A second mount point of the cgroup2 hierarchy's directory `dir` (so that spawn treats it as a root of its own, with
/// no v1 cgroups); unmounted and removed on drop.
struct V2Root {
    dir: PathBuf,
    mnt: PathBuf,
}

impl V2Root {
    fn new(name: &str) -> Option<V2Root> {
        let v2 = cgroups::default_root();
        if !cgroups::is_cgroup2(&v2) {
            skipped(&format!("no cgroup2 mount at {}", v2.display()));
            return None;
        }
        let dir = v2.join(format!("keel-test-{}-{name}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let mnt = std::env::temp_dir().join(format!("keel-test-cg2-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&mnt).unwrap();
        keel_sys::mount(&dir.to_string_lossy(), &mnt, "", libc::MS_BIND, "").unwrap();
        Some(V2Root { dir, mnt })
    }
}

impl Drop for V2Root {
    fn drop(&mut self) {
        let _ = keel_sys::umount(&self.mnt, libc::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.mnt);
        let _ = cgroups::remove(&self.dir);
    }
}

/// What a run left to check: the attack, the container's output, its cgroup, and its v1 devices.list (hybrid).
type Ran = (Attack, String, Option<PathBuf>, Option<String>);

fn run_attack(name: &str, rules: Value, opts: SpawnOptions) -> Option<Ran> {
    let (a, b) = attack_bundle(name, rules)?;
    let r = run(&b, opts);
    // Whatever fails below, the cgroups go (v1 ones too).
    struct Gone(Option<PathBuf>);
    impl Drop for Gone {
        fn drop(&mut self) {
            if let Some(c) = &self.0 {
                let _ = cgroups::remove(c);
            }
        }
    }
    let _gone = Gone(r.spawned.cgroup().map(Path::to_path_buf));
    assert_eq!(r.status, Status::Started, "{}", r.out);
    assert_eq!(r.exit, 0, "{}", r.out);
    let cg = r.spawned.cgroup().map(Path::to_path_buf);
    // Checks on the live cgroup before cleanup: one enforcement point, as runc's: the v1 devices cgroup where the
    // container has one (hybrid host), else the BPF program on its v2 cgroup.
    let has_v1 =
        cg.as_deref().map(cgroups::v1_leaves).unwrap_or_default().iter().any(|d| d.join("devices.list").exists());
    if let Some(c) = &cg {
        let want = usize::from(!has_v1);
        assert_eq!(
            bpf::attached(c).unwrap().len(),
            want,
            "device programs on {} (v1 devices cgroup: {has_v1})",
            c.display()
        );
    }
    let v1_list = cg
        .as_deref()
        .map(cgroups::v1_leaves)
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.join("devices.list").exists())
        .map(|d| std::fs::read_to_string(d.join("devices.list")).unwrap());
    let errs = r.spawned.cleanup(&b);
    assert!(errs.is_empty(), "{errs:?}");
    Some((a, r.out, cg, v1_list))
}

/// Production path: the default cgroup root (hybrid: the v1 devices controller; cgroup2-only: the BPF program).
#[test]
fn docker_rules_contain_the_container_on_the_default_root() {
    if !root_ok() {
        return;
    }
    let rel = format!("keel-test-{}-devcg-default", std::process::id());
    let opts = SpawnOptions { default_cgroup: Some(rel.clone()), ..Default::default() };
    let Some((a, out, cg, v1_list)) = run_attack("default", docker_rules(), opts) else { return };
    assert_contained(&a, &out);
    if cgroups::v1::hierarchy_of(cgroups::v1::hierarchies(), "devices").is_some() {
        let list = v1_list.expect("the container's v1 devices cgroup");
        assert_eq!(list.lines().count(), 12, "{list}");
        assert!(list.lines().any(|l| l == "c 136:* rwm") && !list.contains("a *:*"), "{list}");
    }
    assert_eq!(cg.as_deref(), Some(cgroups::default_root().join(&rel).as_path()));
    assert!(!cgroups::default_root().join(&rel).exists());
}

/// The BPF program alone: a cgroup under the cgroup2 mount, no v1 cgroup for the container.
#[test]
fn docker_rules_contain_the_container_with_the_bpf_program_alone() {
    if !root_ok() {
        return;
    }
    let Some(v2) = V2Root::new("devcg-bpf") else { return };
    let opts =
        SpawnOptions { cgroup_root: Some(v2.mnt.clone()), default_cgroup: Some("c".into()), ..Default::default() };
    let Some((a, out, cg, v1_list)) = run_attack("bpf", docker_rules(), opts) else { return };
    assert_eq!(v1_list, None, "no v1 cgroup on this path");
    assert_eq!(cg.as_deref(), Some(v2.mnt.join("c").as_path()));
    assert_contained(&a, &out);
}

/// Control: with allow-all rules (Docker --privileged) the same attacks get through, so the denials above are the
/// device cgroup's doing. Writes one marker line to the host's kernel log and to the throwaway loop disk.
#[test]
fn allow_all_rules_let_the_same_attacks_through() {
    if !root_ok() {
        return;
    }
    let rel = format!("keel-test-{}-devcg-control", std::process::id());
    let opts = SpawnOptions { default_cgroup: Some(rel), ..Default::default() };
    let Some((a, out, _, v1_list)) = run_attack("control", json!([{"allow": true, "access": "rwm"}]), opts) else {
        return;
    };
    if let Some(list) = v1_list {
        assert_eq!(list.trim(), "a *:* rwm");
    }
    // (/dev/mem, c 1:1, is not compared: kernels without CONFIG_DEVMEM answer ENXIO once the cgroup lets it by.)
    for ok in ["kmsg-write-ok", "disk-write-ok", "disk-read-ok", "null-ok"] {
        assert!(out.lines().any(|l| l == ok), "{ok} missing:\n{out}");
    }
    assert!(!a.disk.backing_unchanged(), "the control run did write the loop disk");
    assert!(kmsg_has(&a.marker), "the control run's line is in the host's kernel log");
}

/// The v1 writer alone (hybrid hosts): the kernel's devices.list is the policy, and a process in that cgroup cannot
/// open /dev/kmsg while /dev/null works.
#[test]
fn v1_writer_alone_denies() {
    if !root_ok() {
        return;
    }
    let Some(h) = cgroups::v1::hierarchy_of(cgroups::v1::hierarchies(), "devices") else {
        not_applicable("no v1 devices hierarchy on this host (cgroup2-only: the BPF tests cover it)");
        return;
    };
    let dir = h.mount.join(format!("keel-test-{}-devcg-v1", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let res: LinuxResources = serde_json::from_value(json!({"devices": docker_rules()})).unwrap();
    let e = devices::Emulator::for_container(&res.devices, &dir).unwrap();
    let r = devices::apply_v1(&e, &dir);
    let list = std::fs::read_to_string(dir.join("devices.list")).unwrap_or_default();
    let probe = |path: &str| {
        let procs = dir.join("cgroup.procs");
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", &format!("echo $$ > {}; exec 3>{path}", procs.display())]);
        cmd.output().unwrap()
    };
    let kmsg = probe("/dev/kmsg");
    let null = probe("/dev/null");
    let _ = std::fs::remove_dir(&dir);
    r.unwrap();
    assert!(list.lines().any(|l| l == "c 1:3 rwm") && !list.contains("a *:*"), "{list}");
    assert_eq!(list.lines().count(), 12, "{list}");
    assert!(!kmsg.status.success() && String::from_utf8_lossy(&kmsg.stderr).contains("not permitted"), "{kmsg:?}");
    assert!(null.status.success(), "{null:?}");
}

/// The emulator is v1's own model: random rule sequences written raw, in order, to a real v1 devices cgroup leave
/// exactly the exceptions the emulator computes (sequences the emulator refuses, hole punches, are skipped: v1
/// ignores them silently).
#[test]
fn the_emulator_agrees_with_the_v1_kernel() {
    if !root_ok() {
        return;
    }
    let Some(h) = cgroups::v1::hierarchy_of(cgroups::v1::hierarchies(), "devices") else {
        not_applicable("no v1 devices hierarchy on this host (cgroup2-only)");
        return;
    };
    let dir = h.mount.join(format!("keel-test-{}-devcg-emu", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut compared, mut refused) = (0, 0);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..300 {
            let n = 1 + rnd(8);
            let mut rules = vec![json!({"allow": false, "access": "rwm"})];
            for _ in 0..n {
                let access = ["r", "w", "m", "rw", "rm", "wm", "rwm"][rnd(7) as usize];
                let mut r = json!({"allow": rnd(2) == 0, "access": access});
                if rnd(12) != 0 {
                    r["type"] = json!(["b", "c"][rnd(2) as usize]);
                    if let Some(m) = [None, Some(1), Some(5)][rnd(3) as usize] {
                        r["major"] = json!(m);
                    }
                    if let Some(m) = [None, Some(3), Some(9)][rnd(3) as usize] {
                        r["minor"] = json!(m);
                    }
                }
                rules.push(r);
            }
            let spec: Vec<cgroups::LinuxDeviceCgroup> = serde_json::from_value(json!(rules)).unwrap();
            let mut emu = devices::Emulator::default();
            let ok = spec.iter().all(|d| emu.apply(&devices::Rule::from_spec(d).unwrap()).is_ok());
            if !ok {
                refused += 1;
                continue;
            }
            for d in &spec {
                let r = devices::Rule::from_spec(d).unwrap();
                let file = if r.allow { "devices.allow" } else { "devices.deny" };
                std::fs::write(dir.join(file), r.cgroup_string()).unwrap_or_else(|e| panic!("{file} {r}: {e}"));
            }
            let list = std::fs::read_to_string(dir.join("devices.list")).unwrap();
            let kernel = devices::Emulator::from_v1_list(&list).unwrap();
            if emu.default_allow {
                assert!(kernel.default_allow, "{rules:?}: kernel {list:?}");
            } else {
                assert_eq!(kernel, emu, "{rules:?}: kernel {list:?}");
            }
            compared += 1;
        }
    }));
    let _ = std::fs::remove_dir(&dir);
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
    eprintln!("emulator vs v1 kernel: {compared} rule sequences agree, {refused} refused (hole punches)");
    assert!(compared > 100);
}

/// The BPF program, run by the kernel, decides as the emulator does: random rule sets attached to a cgroup2
/// directory, a shell in that cgroup (and in no restricted v1 cgroup) opening nodes of unassigned majors (240, 241:
/// no driver, so an allowed open fails ENXIO and a denied one EPERM) for read, write and both, and mknod'ing them.
#[test]
fn the_bpf_program_in_the_kernel_agrees_with_the_emulator() {
    use std::os::unix::process::CommandExt;
    if !root_ok() {
        return;
    }
    let v2 = cgroups::default_root();
    if !cgroups::is_cgroup2(&v2) {
        skipped(&format!("no cgroup2 mount at {}", v2.display()));
        return;
    }
    let pid = std::process::id();
    let dir = v2.join(format!("keel-test-{pid}-devcg-bpfk"));
    let nodes = std::env::temp_dir().join(format!("keel-devcg-nodes-{pid}"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir_all(&nodes).unwrap();
    let mut probes = Vec::new(); // (kind, major, minor, access, name)
    let mut script = String::from("d=\"$1\"\n");
    for (k, kind, ifmt) in [("b", devices::Kind::Block, libc::S_IFBLK), ("c", devices::Kind::Char, libc::S_IFCHR)] {
        for ma in [240u32, 241] {
            for mi in [0u32, 1] {
                let name = format!("{k}{ma}_{mi}");
                let p = std::ffi::CString::new(nodes.join(&name).to_str().unwrap()).unwrap();
                // SAFETY: valid C string; a node in the test's temp dir.
                assert_eq!(unsafe { libc::mknod(p.as_ptr(), ifmt | 0o666, libc::makedev(ma, mi)) }, 0);
                for (mode, redir, acc) in [
                    ("r", "<", devices::ACC_READ),
                    ("w", ">", devices::ACC_WRITE),
                    ("rw", "<>", devices::ACC_READ | devices::ACC_WRITE),
                ] {
                    script += &format!("echo \"{name} {mode} $( (exec 3{redir}\"$d/{name}\") 2>&1)\"\n");
                    probes.push((kind, ma, mi, acc, format!("{name} {mode} ")));
                }
                script +=
                    &format!("echo \"{name} m $(mknod \"$d/m{name}\" {k} {ma} {mi} 2>&1)\"; rm -f \"$d/m{name}\"\n");
                probes.push((kind, ma, mi, devices::ACC_MKNOD, format!("{name} m ")));
            }
        }
    }
    let procs = std::ffi::CString::new(dir.join("cgroup.procs").to_str().unwrap()).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut counts = [0; 2]; // allowed, denied
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for round in 0..30 {
            let mut emu = devices::Emulator::default();
            let mut rules = Vec::new();
            if round % 5 == 4 {
                rules.push(devices::Rule {
                    allow: true,
                    kind: devices::Kind::All,
                    major: None,
                    minor: None,
                    access: devices::ACC_ALL,
                });
            }
            for _ in 0..1 + rnd(6) {
                let r = devices::Rule {
                    allow: rnd(2) == 0,
                    kind: [devices::Kind::Block, devices::Kind::Char][rnd(2) as usize],
                    major: [None, Some(240), Some(241)][rnd(3) as usize],
                    minor: [None, Some(0), Some(1)][rnd(3) as usize],
                    access: 1 + rnd(7) as u8,
                };
                rules.push(r);
            }
            if !rules.iter().all(|r| emu.apply(r).is_ok()) {
                continue;
            }
            bpf::attach(&emu, &dir).unwrap();
            let mut cmd = std::process::Command::new("sh");
            cmd.args(["-c", &script, "sh", nodes.to_str().unwrap()]);
            let procs = procs.clone();
            // SAFETY: only open/write/close between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                    Ok(())
                })
            };
            let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
            for (kind, ma, mi, acc, prefix) in &probes {
                let l =
                    out.lines().find(|l| l.starts_with(prefix.as_str())).unwrap_or_else(|| panic!("{prefix}: {out}"));
                let denied = l.contains("not permitted");
                assert_eq!(!denied, emu.allows(*kind, *ma, *mi, *acc), "{l:?} with {rules:?} ({emu:?})");
                // Allowed: the open reaches the (absent) driver; mknod just works.
                let allowed_ok =
                    if *acc == devices::ACC_MKNOD { l.len() == prefix.len() } else { l.contains("No such device") };
                assert!(denied || allowed_ok, "{l:?}");
                counts[usize::from(denied)] += 1;
            }
        }
    }));
    let _ = std::fs::remove_dir_all(&nodes);
    let _ = cgroups::remove(&dir);
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
    eprintln!("BPF program in the kernel vs emulator: {} allowed and {} denied decisions agree", counts[0], counts[1]);
    assert!(counts[0] > 100 && counts[1] > 100, "{counts:?}");
}

/// Errors name the cgroup and the rule.
#[test]
fn a_bad_rule_fails_create_naming_path_and_rule_and_leaves_nothing() {
    if !root_ok() {
        return;
    }
    let root = cgroups::default_root();
    let rel = format!("keel-test-{}-devcg-bad", std::process::id());
    let res: LinuxResources = serde_json::from_value(json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 4, "access": "rw"},
        {"allow": false, "type": "c", "major": 4, "minor": 1, "access": "w"}]}))
    .unwrap();
    let e = cgroups::create(&root, &rel, Some(&res)).unwrap_err().to_string();
    assert!(e.contains(&rel) && e.contains("devices[2]") && e.contains("c 4:1 w"), "{e}");
    assert!(!root.join(&rel).exists());
    // A bpf(2) failure (here: not a cgroup directory) names the directory, the rules and the errno.
    let emu = devices::Emulator::for_container(&[], Path::new("/tmp")).unwrap();
    let e = bpf::attach(&emu, Path::new("/tmp")).unwrap_err().to_string();
    assert!(e.contains("/tmp") && e.contains("allow c 1:3 rwm") && e.contains("(errno "), "{e}");
    eprintln!("{e}");
}

/// A reused cgroup (create again after the container is gone) ends with exactly one device program: the same one
/// for the same rules, the new one for new rules.
#[test]
fn a_reused_cgroup_keeps_one_program() {
    if !root_ok() {
        return;
    }
    // Under a second mount of a cgroup2 directory: no v1 cgroups, so the BPF program is the enforcement point.
    let Some(v2) = V2Root::new("devcg-reuse") else { return };
    let root = v2.mnt.clone();
    let rel = "c".to_string();
    let docker: LinuxResources = serde_json::from_value(json!({"devices": docker_rules()})).unwrap();
    let all: LinuxResources = serde_json::from_value(json!({"devices": [{"allow": true, "access": "rwm"}]})).unwrap();
    let leaf = cgroups::create(&root, &rel, Some(&docker)).unwrap();
    let r = (|| {
        let first = bpf::attached(&leaf)?;
        cgroups::create(&root, &rel, Some(&docker))?;
        let same = bpf::attached(&leaf)?;
        cgroups::create(&root, &rel, Some(&all))?;
        let other = bpf::attached(&leaf)?;
        Ok::<_, keel_runtime::Error>((first, same, other))
    })();
    cgroups::remove(&leaf).unwrap();
    let (first, same, other) = r.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(same, first);
    assert_eq!(other.len(), 1);
    assert_ne!(other, first);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Per-spawn cost of the device cgroup for Docker's rules: cgroups::create with them minus create without
/// resources, and the two parts alone. Figures on stderr (run with --nocapture).
#[test]
fn cost_of_docker_rules() {
    if !root_ok() {
        return;
    }
    let root = cgroups::default_root();
    let res: LinuxResources = serde_json::from_value(json!({"devices": docker_rules()})).unwrap();
    let n = 40;
    let (mut with, mut without, mut v1, mut ebpf, mut load) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let v1_dir = cgroups::v1::hierarchy_of(cgroups::v1::hierarchies(), "devices").map(|h| h.mount.clone());
    for i in 0..n {
        let rel = format!("keel-test-{}-devcg-cost-{i}", std::process::id());
        let t = Instant::now();
        let leaf = cgroups::create(&root, &rel, None).unwrap();
        without.push(t.elapsed());
        cgroups::remove(&leaf).unwrap();
        let t = Instant::now();
        let leaf = cgroups::create(&root, &rel, Some(&res)).unwrap();
        with.push(t.elapsed());
        cgroups::remove(&leaf).unwrap();
        // The parts, on fresh directories.
        let leaf = cgroups::create(&root, &rel, None).unwrap();
        let e = devices::Emulator::for_container(&res.devices, &leaf).unwrap();
        if let Some(m) = &v1_dir {
            let t = Instant::now();
            devices::apply_v1(&e, &m.join(&rel)).unwrap();
            v1.push(t.elapsed());
        }
        let t = Instant::now();
        bpf::attach(&e, &leaf).unwrap();
        ebpf.push(t.elapsed());
        let t = Instant::now();
        drop(bpf::load(&bpf::program(&e)).unwrap());
        load.push(t.elapsed());
        cgroups::remove(&leaf).unwrap();
    }
    let (w, wo) = (median(with), median(without));
    let v1 = if v1.is_empty() { Duration::ZERO } else { median(v1) };
    let (attach, load) = (median(ebpf), median(load));
    eprintln!(
        "device cgroup cost, Docker's rules, median of {n}: cgroups::create {} us with vs {} us without: +{} us per \
         spawn with the program already loaded (PID 1 after its first spawn); v1 writes+check {} us, BPF query+attach \
         {} us, BPF load (verifier+JIT, once per process and rule set) {} us; a one-shot process (keel-runc create) \
         pays about {} us",
        w.as_micros(),
        wo.as_micros(),
        w.saturating_sub(wo).as_micros(),
        v1.as_micros(),
        attach.as_micros(),
        load.as_micros(),
        (v1 + attach + load).as_micros()
    );
    assert!(w.saturating_sub(wo) < Duration::from_millis(50), "device rules cost {:?}", w.saturating_sub(wo));
}
