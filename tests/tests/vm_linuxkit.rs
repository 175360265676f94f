//! VM tests of LinuxKit's own packages (issue 9): YAMLs shaped like LinuxKit's examples (getty.yml, sshd.yml,
//! minimal.yml; swap.yml / dm-crypt.yml for the disk), unchanged, built from stand-ins of LinuxKit's packages in an
//! image cache laid out as LinuxKit's (`$KEEL_IMAGE_CACHE`). Each stand-in is busybox plus a check script at the
//! package's entry point, and carries the package's real `org.mobyproject.config` label (taken from
//! images/tests/data/linuxkit/, i.e. from its build.yml). From inside each container the script checks what its
//! label asks: capabilities (CapEff), binds, devices, tmpfs, readonly root, oomScoreAdj; it prints its namespaces,
//! which the test compares with the host's (net/pid/ipc/uts host or new).
//!
//! A second test formats and mounts a `--disk` through format/mount-style packages and a later service reads it
//! (two boots: the file persists); a third runs LinuxKit's volumes test cases.
//!
//! Run with `make test-vm` (#[ignore]d in a plain `cargo test`); outside CI a missing qemu/kernel/init skips them.
//!
//! Also checks the runtime side: getty, sshd and metadata bind /sys:/sys with the default cgroup mount below it
//! (keel-runtime binds the container's own cgroup there, as runc does); the disk test needs mounts made in the
//! `mount` container (rootfsPropagation shared, /var rshared) to reach the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keel_image::config::ALL_CAPS;
use keel_image::run::{parse_disk, RunOptions};
use keel_image::testutil::{add_to_layout, busybox_layer, layer, Entry};
use keel_tests::vm::{self, Console, Vm};
use serde_json::{json, Value};

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// The check every stand-in runs (busybox sh). /check.env says what the label asks.
const CHECK: &str = r#"#!/bin/sh
. /check.env
once=""
for a in "$@"; do [ "$a" = "-1" ] && once=" once"; done
N="$PKG$once"
fails=0
fail() { echo "CHECK $N FAIL $*"; fails=$((fails+1)); }
mnt() { awk -v d="$1" '$5==d {print; f=1} END {exit !f}' /proc/self/mountinfo; }
eff=$(awk '/^CapEff/ {print $2}' /proc/self/status)
[ "$eff" = "$CAPEFF" ] || fail "caps: CapEff $eff, label asks $CAPEFF"
for b in $BINDS; do mnt "$b" >/dev/null || fail "bind $b: not mounted"; done
for t in $TMPFS; do
  l=$(mnt "$t") || { fail "tmpfs $t: not mounted"; continue; }
  case "$l" in *" - tmpfs "*) ;; *) fail "tmpfs $t: $l";; esac
done
for d in $DEVICES; do
  p=${d%%=*}; want=${d#*=}
  [ -c "$p" ] || [ -b "$p" ] || { fail "device $p: missing"; continue; }
  got=$(stat -c '%t:%T' "$p"); [ "$got" = "$want" ] || fail "device $p: $got, label asks $want"
done
if touch /.keel-rw-test 2>/dev/null; then rm -f /.keel-rw-test; ro=0; else ro=1; fi
[ "$ro" = "$READONLY" ] || fail "readonly root: $ro, label asks $READONLY"
if [ -n "$OOM" ]; then o=$(cat /proc/self/oom_score_adj); [ "$o" = "$OOM" ] || fail "oom_score_adj $o, label asks $OOM"; fi
ns() { for n in net pid ipc uts; do printf ' %s=%s' $n "$(readlink /proc/$1/ns/$n)"; done; }
echo "NS $N$(ns self)"
[ "$HOSTNS" = 1 ] && echo "HOSTNS$(ns 1)"
[ -n "$EXTRA" ] && eval "$EXTRA"
echo "CHECK $N done: $fails failures"
[ -n "$once$ONESHOT" ] && exit 0
exec sleep 2147483647
"#;

/// A stand-in package: (cache reference, fixture with the real label, entry points, extra checks, one-shot).
struct Pkg {
    reference: &'static str,
    pkg: &'static str,
    entrypoint: &'static [&'static str],
    cmd: &'static [&'static str],
    extra: &'static str,
    oneshot: bool,
}

/// The label of a LinuxKit package, from the golden fixtures (its build.yml `config:`), or given.
fn label_of(pkg: &str) -> Value {
    let p = vm::root().join(format!("images/tests/data/linuxkit/{pkg}.json"));
    let f: Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(f["image"]["Labels"]["org.mobyproject.config"].as_str().unwrap_or("{}")).unwrap_or_default()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// CapEff as /proc/self/status prints it, for a label's capabilities.
fn cap_eff(caps: &[String]) -> String {
    let mut mask = 0u64;
    let all = caps.len() == 1 && caps[0].eq_ignore_ascii_case("all");
    for (i, c) in ALL_CAPS.iter().enumerate() {
        if all || caps.iter().any(|x| x == c) {
            mask |= 1 << i;
        }
    }
    format!("{mask:016x}")
}

/// /check.env for a label (plus YAML binds.add destinations).
fn check_env(p: &Pkg, label: &Value, binds_add: &[&str]) -> String {
    let binds: Vec<String> = strs(&label["binds"])
        .iter()
        .map(|b| b.split(':').nth(1).unwrap_or("").to_string())
        .chain(binds_add.iter().map(|b| b.split(':').nth(1).unwrap_or("").to_string()))
        .collect();
    let tmpfs: Vec<String> =
        strs(&label["tmpfs"]).iter().map(|t| t.split(':').next().unwrap_or("").to_string()).collect();
    let devices: Vec<String> = label["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["path"] != "all")
        .map(|d| {
            format!(
                "{}={:x}:{:x}",
                d["path"].as_str().unwrap_or(""),
                d["major"].as_u64().unwrap_or(0),
                d["minor"].as_u64().unwrap_or(0)
            )
        })
        .collect();
    let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    format!(
        "PKG={}\nCAPEFF={}\nBINDS={}\nTMPFS={}\nDEVICES={}\nREADONLY={}\nOOM={}\nHOSTNS={}\nONESHOT={}\nEXTRA={}\n",
        p.pkg,
        cap_eff(&strs(&label["capabilities"])),
        q(&binds.join(" ")),
        q(&tmpfs.join(" ")),
        q(&devices.join(" ")),
        if label["readonly"] == true { 1 } else { 0 },
        label["oomScoreAdj"].as_i64().map(|o| o.to_string()).unwrap_or_default(),
        if p.pkg == "getty" { 1 } else { 0 },
        if p.oneshot { "1" } else { "" },
        q(p.extra),
    )
}

/// Write the stand-ins into the cache at `cache` (LinuxKit's layout: index.json keyed by full reference).
fn make_stand_ins(cache: &Path, pkgs: &[Pkg], binds_add: &BTreeMap<&str, Vec<&str>>) {
    let bb = busybox_layer().unwrap_or_else(|e| panic!("busybox layer: {e}"));
    // /sbin/tini stand-in: drop options up to "--", run the rest.
    let tini = "#!/bin/sh\nwhile [ $# -gt 0 ]; do case \"$1\" in --) shift; break;; -*) shift;; *) break;; esac; done\nexec \"$@\"\n";
    let exec_check = "#!/bin/sh\nexec /check.sh \"$@\"\n";
    for p in pkgs {
        let label = label_of(p.pkg);
        let env = check_env(p, &label, binds_add.get(p.pkg).map(Vec::as_slice).unwrap_or(&[]));
        let mut entries = vec![
            Entry::File("check.sh", CHECK.as_bytes(), 0o755),
            Entry::File("check.env", env.as_bytes(), 0o644),
            Entry::Dir("sbin/"),
            Entry::Dir("usr/"),
            Entry::Dir("usr/bin/"),
            Entry::Dir("usr/sbin/"),
            Entry::File("sbin/tini", tini.as_bytes(), 0o755),
        ];
        let mut progs: Vec<&str> =
            p.entrypoint.iter().chain(p.cmd.iter()).copied().filter(|a| a.starts_with('/')).collect();
        progs.retain(|a| *a != "/sbin/tini");
        for prog in &progs {
            entries.push(Entry::File(prog.trim_start_matches('/'), exec_check.as_bytes(), 0o755));
        }
        let cfg = json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": p.entrypoint, "Cmd": p.cmd, "WorkingDir": "/",
            "Labels": {"org.mobyproject.config": label.to_string()},
        });
        add_to_layout(cache, &format!("docker.io/{}", p.reference), &[bb.clone(), layer(&entries)], cfg)
            .unwrap_or_else(|e| panic!("stand-in {}: {e}", p.reference));
    }
}

/// Set up the cache and HOME for a build (the test binary runs one test at a time: make test-vm).
fn prepare(name: &str) -> PathBuf {
    let d = vm::root().join("build/vm-tests").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("home/.ssh")).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    std::fs::write(d.join("home/.ssh/id_rsa.pub"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKEEL keel@test\n").unwrap();
    std::env::set_var("KEEL_IMAGE_CACHE", d.join("cache"));
    std::env::set_var("HOME", d.join("home"));
    d
}

/// Wait until every pattern is on the console, then stop the VM. Once keel reports the boot complete (with or
/// without failed units), the patterns still missing get at most `after_boot` more.
fn run_until(vm: Vm, pats: &[String], within: Duration, after_boot: Duration) -> Console {
    let mut vm = vm;
    let deadline = Instant::now() + within;
    let booted = vm.wait_for("keel: &boot complete", within);
    let deadline = if booted { deadline.min(Instant::now() + after_boot) } else { deadline };
    for p in pats {
        let left = deadline.saturating_duration_since(Instant::now());
        if !vm.wait_for(p, left) {
            break;
        }
    }
    vm.stop()
}

fn ns_of(c: &Console, who: &str) -> BTreeMap<String, String> {
    let prefix = format!("NS {who} ");
    let line = c
        .lines
        .iter()
        .find_map(|l| l.find(&prefix).map(|i| l[i + prefix.len()..].to_string()))
        .unwrap_or_else(|| panic!("no namespace line for {who}:\n{}", c.text()));
    line.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const GETTY_EXTRA: &str = r#"
grep -q 'nameserver 10.0.2.3' /etc/resolv.conf || fail "/etc/resolv.conf (written by dhcpcd through /run/resolvconf): $(cat /etc/resolv.conf 2>&1 | head -2)"
runc list >/dev/null 2>&1 || fail "runc list: $(runc list 2>&1 | head -1)"
ctr version 2>&1 | grep -q 'without containerd' || fail "ctr: $(ctr version 2>&1 | head -1)"
[ -s /hostroot/etc/hostname ] || fail "/hostroot/etc/hostname"
[ -e /containers/services/getty/config.json ] || fail "/containers"
[ -d /var/lib/containerd ] || fail "/var/lib/containerd"
echo "GETTY env INSECURE=$INSECURE"
"#;
const DHCPCD_EXTRA: &str = r#"
echo "nameserver 10.0.2.3" > /etc/resolv.conf || fail "write /etc/resolv.conf (the host's /run/resolvconf)"
"#;
const METADATA_EXTRA: &str = r#"
[ -s /etc/ssl/certs/ca-certificates.crt ] || fail "/etc/ssl/certs/ca-certificates.crt (from the ca-certificates init image)"
echo x > /tmp/x || fail "/tmp (tmpfs) not writable"
"#;
const SSHD_EXTRA: &str = r#"
grep -q keel@test /root/.ssh/authorized_keys || fail "/root/.ssh/authorized_keys (binds.add)"
"#;

#[test]
#[ignore = "VM test: make test-vm"]
fn linuxkit_packages_get_what_their_labels_ask() {
    let Some(env) = vm::env() else { return };
    if !Path::new("/bin/busybox").exists() {
        panic!("/bin/busybox missing (make deps)");
    }
    let d = prepare("linuxkit-packages");
    let pkgs = [
        Pkg {
            reference: "linuxkit/sysctl:43ac1d39da329c3567fcb9689e5ca99de6d169b6",
            pkg: "sysctl",
            entrypoint: &[],
            cmd: &["/usr/bin/sysctl"],
            extra: "",
            oneshot: true,
        },
        Pkg {
            reference: "linuxkit/rngd:984eb580ecb63986f07f626b61692a97aacd7198",
            pkg: "rngd",
            entrypoint: &[],
            cmd: &["/sbin/rngd"],
            extra: "",
            oneshot: false,
        },
        Pkg {
            reference: "linuxkit/dhcpcd:b87e9ececac55a65eaa592f4dd8b4e0c3009afdb",
            pkg: "dhcpcd",
            entrypoint: &[],
            cmd: &["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf"],
            extra: DHCPCD_EXTRA,
            oneshot: false,
        },
        Pkg {
            reference: "linuxkit/metadata:4bbf406678d376e1ae9c9efae6ca2421f63fb4ff",
            pkg: "metadata",
            entrypoint: &[],
            cmd: &["/usr/bin/metadata"],
            extra: METADATA_EXTRA,
            oneshot: true,
        },
        Pkg {
            reference: "linuxkit/getty:a86d74c8f89be8956330c3b115b0b1f2e09ef6e0",
            pkg: "getty",
            entrypoint: &["/sbin/tini", "-s", "-v", "--"],
            cmd: &["/usr/bin/rungetty.sh"],
            extra: GETTY_EXTRA,
            oneshot: false,
        },
        Pkg {
            reference: "linuxkit/sshd:08e5d4a46603eff485d5d1b14001cc932a530858",
            pkg: "sshd",
            entrypoint: &[],
            cmd: &["/sbin/tini", "-s", "/usr/bin/ssh.sh"],
            extra: SSHD_EXTRA,
            oneshot: false,
        },
    ];
    let binds_add = BTreeMap::from([("sshd", vec!["/root/.ssh:/root/.ssh"])]);
    make_stand_ins(&d.join("cache"), &pkgs, &binds_add);
    let certs = layer(&[
        Entry::Dir("etc/"),
        Entry::Dir("etc/ssl/"),
        Entry::Dir("etc/ssl/certs/"),
        Entry::File("etc/ssl/certs/ca-certificates.crt", b"-----BEGIN CERTIFICATE-----\nkeel test\n", 0o644),
    ]);
    add_to_layout(
        &d.join("cache"),
        "docker.io/linuxkit/ca-certificates:256f1950df59f2f209e9f0b81374177409eb11de",
        &[certs],
        json!({}),
    )
    .unwrap_or_else(|e| panic!("ca-certificates: {e}"));
    // examples/sshd.yml with examples/getty.yml's files and a metadata step (examples/platform-*.yml), unchanged.
    let yaml = d.join("linuxkit.yml");
    std::fs::write(
        &yaml,
        r#"kernel:
  image: linuxkit/kernel:6.12.59
  cmdline: "console=tty0 console=ttyS0 console=ttyAMA0"
init:
  - linuxkit/init:b5506cc74a6812dc40982cacfd2f4328f8a4b12a
  - linuxkit/runc:9442aa234715e751a16144f1d4ae3fd1a00fd492
  - linuxkit/containerd:ba19f64efd3331a8fd0a33e00eabd14f6ee1780e
  - linuxkit/ca-certificates:256f1950df59f2f209e9f0b81374177409eb11de
onboot:
  - name: sysctl
    image: linuxkit/sysctl:43ac1d39da329c3567fcb9689e5ca99de6d169b6
  - name: rngd1
    image: linuxkit/rngd:984eb580ecb63986f07f626b61692a97aacd7198
    command: ["/sbin/rngd", "-1"]
  - name: dhcpcd
    image: linuxkit/dhcpcd:b87e9ececac55a65eaa592f4dd8b4e0c3009afdb
    command: ["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"]
  - name: metadata
    image: linuxkit/metadata:4bbf406678d376e1ae9c9efae6ca2421f63fb4ff
services:
  - name: getty
    image: linuxkit/getty:a86d74c8f89be8956330c3b115b0b1f2e09ef6e0
    env:
     - INSECURE=true
  - name: rngd
    image: linuxkit/rngd:984eb580ecb63986f07f626b61692a97aacd7198
  - name: sshd
    image: linuxkit/sshd:08e5d4a46603eff485d5d1b14001cc932a530858
    binds.add:
      - /root/.ssh:/root/.ssh
files:
  - path: root/.ssh/authorized_keys
    source: ~/.ssh/id_rsa.pub
    mode: "0600"
    optional: true
  - path: etc/getty.shadow
    # sample sets password for root to "abcdefgh" (without quotes)
    contents: 'root:$6$6tPd2uhHrecCEKug$8mKfcgfwguP7f.BLdZsT1Wz7WIIJOBY1oUFHzIv9/O71M2J0EPdtFqFGTxB1UK5ejqQxRFQ.ZSG9YXR0SNsc11:17322:0:::::'
"#,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", yaml.display()));
    let dir = vm::build_image(&env, yaml.to_str().unwrap_or_default(), "linuxkit-packages-image");
    let who = ["sysctl", "rngd once", "dhcpcd once", "metadata", "getty", "rngd", "sshd"];
    let pats: Vec<String> = who.iter().map(|w| format!("CHECK {w} done:")).collect();
    let c = run_until(Vm::start(&dir, &[], &[], BOOT_TIMEOUT), &pats, BOOT_TIMEOUT, Duration::from_secs(30));

    // Every container ran its check; every label setting was there (the FAIL lines say which was not).
    let mut problems = Vec::new();
    for w in who {
        match c.lines.iter().find(|l| l.contains(&format!("CHECK {w} done:"))) {
            Some(l) if l.contains("done: 0 failures") => {}
            Some(l) => problems.push(format!("{w}: {l}")),
            None => problems.push(format!("{w}: did not run its check (did it start?)")),
        }
    }
    for l in c.lines.iter().filter(|l| l.contains(" FAIL ")) {
        problems.push(l.clone());
    }
    if !problems.is_empty() {
        let hint = if c.has("cannot start: mount /sys/fs/cgroup") {
            "\n(runtime side: a bind of the host's /sys with the cgroup mount below it; see the module doc)"
        } else {
            ""
        };
        panic!(
            "containers did not get what their labels ask:\n  {}{hint}\nconsole:\n{}",
            problems.join("\n  "),
            c.text()
        );
    }
    c.expect("GETTY env INSECURE=true");
    // Namespaces, against the host's (printed by getty: pid host, all capabilities).
    let host: BTreeMap<String, String> = {
        let line = c.lines.iter().find_map(|l| l.find("HOSTNS ").map(|i| l[i + 7..].to_string())).unwrap_or_default();
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(host.len(), 4, "no host namespaces from getty:\n{}", c.text());
    // (container, [(ns, host?)]) as their labels ask: net/ipc/uts host unless new; pid new unless host.
    let want: &[(&str, [(&str, bool); 4])] = &[
        ("sysctl", [("net", true), ("pid", true), ("ipc", true), ("uts", true)]),
        ("rngd", [("net", false), ("pid", false), ("ipc", false), ("uts", true)]),
        ("rngd once", [("net", false), ("pid", false), ("ipc", false), ("uts", true)]),
        ("dhcpcd once", [("net", true), ("pid", false), ("ipc", true), ("uts", true)]),
        ("metadata", [("net", true), ("pid", false), ("ipc", true), ("uts", true)]),
        ("getty", [("net", true), ("pid", true), ("ipc", true), ("uts", true)]),
        ("sshd", [("net", true), ("pid", true), ("ipc", true), ("uts", true)]),
    ];
    for (w, nss) in want {
        let got = ns_of(&c, w);
        for (ns, is_host) in nss {
            assert_eq!(
                got.get(*ns) == host.get(*ns),
                *is_host,
                "{w}: {ns} namespace {:?}, host's {:?}",
                got.get(*ns),
                host.get(*ns)
            );
        }
    }
    let _ = std::fs::remove_dir_all(d.join("cache"));
}

/// The stand-in format: LinuxKit's format partitions and formats the first empty disk (or the one given); this one
/// makes an ext2 file system on the whole device unless one is there (ext magic at byte 1080).
const FORMAT: &str = r#"#!/bin/sh
has_fs() { [ "$(dd if="$1" bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' ')" = "53ef" ]; }
dev=""
for a in "$@"; do case "$a" in /dev/*) dev=$a;; esac; done
if [ -z "$dev" ]; then for d in /dev/vda /dev/sda; do [ -b $d ] && { dev=$d; break; }; done; fi
[ -b "$dev" ] || { echo "FORMAT no disk"; exit 1; }
if has_fs "$dev"; then echo "FORMAT $dev already has a file system"; exit 0; fi
mke2fs -F -q "$dev" && echo "FORMAT $dev formatted"
"#;
/// The stand-in mountie: mount the first disk with a file system (or the device given) at the last argument.
const MOUNTIE: &str = r#"#!/bin/sh
has_fs() { [ "$(dd if="$1" bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' ')" = "53ef" ]; }
mnt=""; dev=""
for a in "$@"; do case "$a" in /dev/*) dev=$a;; /*) mnt=$a;; esac; done
if [ -z "$dev" ]; then for d in /dev/vda /dev/sda; do [ -b $d ] && has_fs $d && { dev=$d; break; }; done; fi
mkdir -p "$mnt" && mount -t ext4 "$dev" "$mnt" && echo "MOUNTIE $dev on $mnt"
"#;

#[test]
#[ignore = "VM test: make test-vm"]
fn format_and_mount_a_disk_for_later_services() {
    let Some(env) = vm::env() else { return };
    let d = prepare("linuxkit-disk");
    let cache = d.join("cache");
    let bb = busybox_layer().unwrap_or_else(|e| panic!("busybox layer: {e}"));
    for (r, pkg, path, script) in [
        ("linuxkit/format:4f779c0b0d0ba145b7f03211b5cbf59fbbe12e54", "format", "usr/bin/format", FORMAT),
        ("linuxkit/mount:bd1c3bb45e48e68e47a9456d1669f7119f855184", "mount", "usr/bin/mountie", MOUNTIE),
    ] {
        let l = layer(&[Entry::Dir("usr/"), Entry::Dir("usr/bin/"), Entry::File(path, script.as_bytes(), 0o755)]);
        let cfg = json!({"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": [format!("/{path}")], "WorkingDir": "/",
                         "Labels": {"org.mobyproject.config": label_of(pkg).to_string()}});
        add_to_layout(&cache, &format!("docker.io/{r}"), &[bb.clone(), l], cfg).unwrap_or_else(|e| panic!("{r}: {e}"));
    }
    // examples/swap.yml / dm-crypt.yml: format, mount at /var/external, a busybox step writing there, and a later
    // service reading it (through its own bind of /var). The step syncs: the test kills the VM (no clean
    // shutdown, whose sync would write it), and the second boot must find the file on the disk.
    let yaml = d.join("disk.yml");
    std::fs::write(
        &yaml,
        r#"kernel:
  image: linuxkit/kernel:6.12.59
  cmdline: "console=ttyS0"
init:
  - linuxkit/init:b5506cc74a6812dc40982cacfd2f4328f8a4b12a
  - linuxkit/runc:9442aa234715e751a16144f1d4ae3fd1a00fd492
  - linuxkit/containerd:ba19f64efd3331a8fd0a33e00eabd14f6ee1780e
onboot:
  - name: format
    image: linuxkit/format:4f779c0b0d0ba145b7f03211b5cbf59fbbe12e54
  - name: mount
    image: linuxkit/mount:bd1c3bb45e48e68e47a9456d1669f7119f855184
    command: ["/usr/bin/mountie", "/var/external"]
  - name: bbox
    image: busybox
    command: ["sh", "-c", "echo 'secret things' >>/var/external/secrets && sync"]
    binds:
      - /var:/var
services:
  - name: reader
    image: busybox
    binds:
      - /var:/var
    command: ["sh", "-c", "awk '$5==\"/var/external\" {print \"READER mount \" $0}' /proc/self/mountinfo; echo \"READER lines $(wc -l < /var/external/secrets)\"; exec sleep 2147483647"]
"#,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", yaml.display()));
    let dir = vm::build_image(&env, yaml.to_str().unwrap_or_default(), "linuxkit-disk-image");
    let disk = d.join("disk.img");
    let boot = |n: u32| -> Console {
        let o = RunOptions {
            dir: dir.clone(),
            autopoweroff: Some(false),
            disks: vec![parse_disk(&format!("{},size=64M", disk.display())).unwrap_or_else(|e| panic!("{e}"))],
            ..Default::default()
        };
        let c = run_until(
            Vm::start_with(&o, BOOT_TIMEOUT),
            &["READER lines".to_string()],
            BOOT_TIMEOUT,
            Duration::from_secs(30),
        );
        eprintln!("disk boot {n}: {:.1} s wall", c.wall.as_secs_f64());
        c
    };
    let c = boot(1);
    c.expect("FORMAT /dev/vda formatted");
    c.expect("MOUNTIE /dev/vda on /var/external");
    // The mount made inside the mount container reached the host: the reader (a later container with its own
    // bind of /var) sees it as an ext4 mount, and the file written by bbox is on it.
    if !c.has("READER mount& /var/external & - ext4 /dev/vda") {
        panic!(
            "the mount made in the `mount` container did not reach the host (runtime side: rootfsPropagation shared \
             and the rshared bind of /var must propagate it; see the module doc):\n{}",
            c.text()
        );
    }
    c.expect("READER lines 1");
    // Second boot, same disk: already formatted, the file is still there (it was on the disk).
    let c = boot(2);
    c.expect("FORMAT /dev/vda already has a file system");
    c.expect("READER mount& /var/external & - ext4 ");
    c.expect("READER lines 2");
    let _ = std::fs::remove_dir_all(&d);
}

/// LinuxKit's volumes test cases (test/cases/000_build/070_volumes: rw on rw, ro on rw, ro on ro, image, mount
/// types, binds.add) in one boot: keel's rc mounts /containers/volumes/NAME/merged at boot.
#[test]
#[ignore = "VM test: make test-vm"]
fn volumes_as_linuxkit_tests_use_them() {
    let Some(env) = vm::env() else { return };
    let d = prepare("linuxkit-volumes");
    let yaml = d.join("volumes.yml");
    std::fs::write(
        &yaml,
        r#"kernel:
  image: linuxkit/kernel:6.12.59
  cmdline: "console=ttyS0 console=ttyAMA0"
init:
  - linuxkit/init:b5506cc74a6812dc40982cacfd2f4328f8a4b12a
  - linuxkit/runc:9442aa234715e751a16144f1d4ae3fd1a00fd492
onboot:
  - name: test1
    image: busybox
    binds:
      - /write.sh:/write.sh
      - vola:/vola
    command: ["sh", "-c", "/write.sh"]
  - name: test2
    image: busybox
    binds:
      - vola:/vola
    command: ["sh", "-c", "echo \"VOL rw_on_rw $(cat /vola/mytestfile)\""]
  - name: test3
    image: busybox
    binds:
      - vola:/vola:ro
    command: ["sh", "-c", "echo x > /vola/other 2>/dev/null && echo 'VOL ro_on_rw wrote' || echo 'VOL ro_on_rw read-only'"]
  - name: test4
    image: busybox
    binds:
      - volb:/volb:ro
    command: ["sh", "-c", "echo x > /volb/other 2>/dev/null; [ -e /volb/other ] && echo 'VOL ro_on_ro wrote' || echo \"VOL ro_on_ro read-only image $(ls /volb/bin/busybox)\""]
  - name: testmounts
    image: busybox
    mounts:
      - type: bind
        source: volc
        destination: /volc
    command: ["sh", "-c", "echo \"VOL mount_types $(ls /volc/bin/busybox)\""]
  - name: testbindadds
    image: busybox
    binds.add:
      - volc:/volc
    command: ["sh", "-c", "echo \"VOL binds_add $(ls /volc/bin/busybox)\""]
volumes:
  - name: vola
  - name: volb
    image: busybox
    readonly: true
  - name: volc
    image: busybox
files:
  - path: write.sh
    contents: |
      #!/bin/sh
      echo -n "file" > /vola/mytestfile
    mode: "0700"
"#,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", yaml.display()));
    let dir = vm::build_image(&env, yaml.to_str().unwrap_or_default(), "linuxkit-volumes-image");
    let pats: Vec<String> =
        ["VOL rw_on_rw", "VOL ro_on_rw", "VOL ro_on_ro", "VOL mount_types", "VOL binds_add"].map(String::from).into();
    let c = run_until(Vm::start(&dir, &[], &[], BOOT_TIMEOUT), &pats, BOOT_TIMEOUT, Duration::from_secs(30));
    c.expect("VOL rw_on_rw file");
    c.expect("VOL ro_on_rw read-only");
    c.expect("VOL ro_on_ro read-only image /volb/bin/busybox");
    c.expect("VOL mount_types /volc/bin/busybox");
    c.expect("VOL binds_add /volc/bin/busybox");
    assert!(!c.has("rc: volume"), "rc could not mount a volume:\n{}", c.text());
    let _ = std::fs::remove_dir_all(&d);
}
