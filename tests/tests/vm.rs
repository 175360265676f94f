//! VM tests: build images with keel-image, boot them under QEMU TCG, assert on the serial console.
//! Run with `make test-vm` (they are #[ignore]d in a plain `cargo test`). Each boot costs ~15-25 s of wall time,
//! so each test batches several assertions on one boot. Outside CI a missing qemu/kernel/init skips them.

use std::time::Duration;

use keel_image::testutil::{layer, write_oci_layout, Entry};
use keel_tests::vm::{self, Console, Vm};
use serde_json::json;

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

fn ordered(c: &Console, pats: &[&str]) {
    let mut last = 0;
    for p in pats {
        let i = c.find_from(last, p).unwrap_or_else(|| {
            panic!("{p:?} not found after line {last} (order {pats:?}):\n{}", c.text());
        });
        last = i + 1;
    }
}

fn powered_off(c: &Console) {
    assert!(!c.timed_out, "VM did not power off within {BOOT_TIMEOUT:?}:\n{}", c.text());
    c.expect("reboot: Power down");
    assert_eq!(c.exit, Some(0), "qemu exit code:\n{}", c.text());
}

/// An OCI image layout with busybox and a greeting, for the `oci:` source.
fn make_oci_hello() {
    let bb = std::fs::read("/bin/busybox").unwrap_or_else(|e| panic!("/bin/busybox: {e} (make deps)"));
    let l1 = layer(&[Entry::Dir("bin"), Entry::File("bin/busybox", &bb, 0o755), Entry::Symlink("bin/sh", "busybox")]);
    let l2 = layer(&[
        Entry::Dir("srv"),
        Entry::File("srv/hello.txt", b"hello from an OCI layout\n", 0o644),
        Entry::File("srv/.wh.gone", b"", 0o644),
    ]);
    let cfg = json!({
        "Env": ["PATH=/bin", "GREETING=hi"],
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["cat hello.txt; echo \"$GREETING from $(pwd)\"; exec sleep 2147483647"],
        "WorkingDir": "/srv",
    });
    let dir = vm::root().join("build/vm-tests/oci-hello");
    write_oci_layout(&dir, &[l1, l2], true, cfg, "v1").unwrap_or_else(|e| panic!("oci layout: {e}"));
}

#[test]
#[ignore = "VM test: make test-vm"]
fn linuxkit_yaml_boots_in_order_with_broken_bundles() {
    let Some(env) = vm::env() else { return };
    make_oci_hello();
    let dir = vm::build_image(&env, "images/test/linuxkit.yml", "linuxkit");
    let c = Vm::start(&dir, &[], &[], BOOT_TIMEOUT).finish();
    eprintln!("linuxkit.yml booted and powered off in {:.1} s wall", c.wall.as_secs_f64());
    // onboot, in name order, each to completion.
    ordered(
        &c,
        &[
            "onboot-one ran",
            "onboot-two ran, rootfs read-only",
            "onboot-three ran as third in /etc caps=0000000000000000",
            "talk 1",
        ],
    );
    // Broken bundles: one error line each, naming them; the rest boots.
    // (a missing binary may be caught before spawn — ERROR — or reported at exec: "failed to start")
    if !c.has("missingbin&ERROR") {
        c.expect("missingbin&failed to start&No such file");
    }
    c.expect("badjson&ERROR");
    // The OCI layout source: Entrypoint+Cmd, Env and WorkingDir from the image config.
    c.expect("ocihello&hello from an OCI layout");
    c.expect("ocihello&hi from /srv");
    // Live output: several talker lines before the shutdown starts.
    let stop = c.expect("stopper: sending SIGUSR2");
    let talks_before = c.lines[..stop].iter().filter(|l| l.contains("talk ")).count();
    assert!(talks_before >= 3, "only {talks_before} talker lines before shutdown:\n{}", c.text());
    // Shutdown: onshutdown steps in order, then power off.
    let mut last = stop;
    for p in ["onshutdown-one ran", "onshutdown-two ran", "reboot: Power down"] {
        last = c.find_from(last, p).unwrap_or_else(|| panic!("{p:?} missing after shutdown:\n{}", c.text()));
    }
    powered_off(&c);
}

#[test]
#[ignore = "VM test: make test-vm"]
fn supervision_restart_readiness_and_kill_after_stop_timeout() {
    let Some(env) = vm::env() else { return };
    let dir = vm::build_image(&env, "images/test/supervise.yml", "supervise");
    let c = Vm::start(&dir, &[], &[], BOOT_TIMEOUT).finish();
    eprintln!("supervise.yml booted and powered off in {:.1} s wall", c.wall.as_secs_f64());
    // Restart on failure.
    let runs = c.count("crasher&crasher run");
    assert!(runs >= 3, "crasher ran {runs} times (want >= 3 restarts on failure):\n{}", c.text());
    // A clean exit with on-failure: not restarted.
    assert_eq!(c.count("oneshot&oneshot done"), 1, "oneshot ran more than once:\n{}", c.text());
    // Readiness ordering: app starts only after db said ready on fd 3.
    ordered(&c, &["db&db warming up", "db&db ready now", "app&app started after db"]);
    // TERM ignored: KILL after keel.stop-timeout, and the machine still powers off.
    let stop = c.expect("stopper: sending SIGUSR2");
    let t = c.find_from(stop, "stubborn ignores TERM");
    assert!(t.is_some(), "stubborn never saw SIGTERM:\n{}", c.text());
    c.expect("stubborn&SIGKILL");
    powered_off(&c);
}

#[test]
#[ignore = "VM test: make test-vm"]
fn thirty_services_come_up() {
    let Some(env) = vm::env() else { return };
    let dir = vm::build_image(&env, "images/test/services30.yml", "services30");
    let c = Vm::start(&dir, &[], &[], BOOT_TIMEOUT).finish();
    eprintln!("services30.yml booted and powered off in {:.1} s wall", c.wall.as_secs_f64());
    for i in 1..=30 {
        c.expect(&format!("svc{i:02} up"));
    }
    c.expect("memstat: 30/30 services running");
    c.expect("memstat: done");
    powered_off(&c);
}

#[test]
#[ignore = "VM test: make test-vm"]
fn demo_web_answers_over_forwarded_port() {
    let Some(env) = vm::env() else { return };
    let dir = vm::build_image(&env, "images/demo.yml", "demo");
    let port = vm::free_port();
    // autopoweroff after 15 s, leaving time for the HTTP checks.
    let mut v = Vm::start(&dir, &["keel.autopoweroff=15"], &[(port, 80)], BOOT_TIMEOUT);
    assert!(v.wait_for("web&serving http on :80", Duration::from_secs(90)), "web never started");
    let mut body = String::new();
    for _ in 0..20 {
        match vm::http_get(port, "/", Duration::from_secs(20)) {
            Ok(r) if r.contains("ticker") && r.contains("running") => {
                body = r;
                break;
            }
            Ok(r) => body = r,
            Err(e) => body = format!("error: {e}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let c = v.finish();
    assert!(body.starts_with("HTTP/1.") && body.contains(" 200"), "bad HTTP answer: {body}\nconsole:\n{}", c.text());
    assert!(body.contains("keel demo") && body.contains("ticker") && body.contains("running"), "page: {body}");
    // The demo's onboot network setup and onshutdown step.
    c.expect("dhcp&lease 10.0.2.15");
    c.expect("goodbye&goodbye from");
    powered_off(&c);
}
