//! Bundle loading: LinuxKit-generated configs, runtime.json, and error messages naming file, line and field.

use std::path::PathBuf;

use keel_runtime::{Bundle, Error};

fn bundle(name: &str, config: &str, runtime: Option<&str>) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("keel-parse-{}-{:?}", std::process::id(), std::thread::current().id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    if let Some(rt) = runtime {
        std::fs::write(dir.join("runtime.json"), rt).unwrap();
    }
    dir
}

/// Shaped like what LinuxKit's `moby`/`linuxkit build` writes for a service (capabilities in all four sets, the
/// default mount table, rlimits, masked/readonly paths, nulls where Go has nil slices).
const LINUXKIT: &str = r#"{
  "ociVersion": "1.0.2-dev",
  "process": {
    "user": {"uid": 0, "gid": 0},
    "args": ["/usr/sbin/sshd", "-D", "-e"],
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"],
      "inheritable": ["CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
    },
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}],
    "oomScoreAdj": -800,
    "noNewPrivileges": false
  },
  "root": {"path": "rootfs", "readonly": true},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "nodev", "noexec", "relatime"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    {"destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf", "options": ["rw", "rbind", "rprivate"]},
    {"destination": "/root/.ssh", "type": "bind", "source": "/root/.ssh", "options": ["rbind", "ro"], "uidMappings": null}
  ],
  "hooks": {"prestart": null},
  "linux": {
    "uidMappings": null,
    "resources": {"devices": [{"allow": false, "access": "rwm"}], "memory": {"limit": 104857600}},
    "cgroupsPath": "/sshd",
    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network", "path": "/proc/1/ns/net"}],
    "maskedPaths": ["/proc/kcore", "/proc/latency_stats", "/proc/timer_list", "/sys/firmware"],
    "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    "sysctl": {"net.ipv4.ip_forward": "1"},
    "rootfsPropagation": "rslave",
    "seccomp": null
  },
  "annotations": {"keel.restart": "always", "org.mobyproject.config": "{}"},
  "someFutureField": {"x": 1}
}"#;

#[test]
fn linuxkit_config_and_runtime_json_load() {
    let rt = r#"{"mounts": [{"type": "overlay", "source": "overlay", "destination": "rootfs",
        "options": ["lowerdir=lower", "upperdir=tmp/upper", "workdir=tmp/work"]}],
        "mkdir": ["/var/lib/docker"], "interfaces": [{"name": "eth1", "add": "veth", "peer": "eth1-p", "createInRoot": true}],
        "bindNS": {"net": "/run/netns/sshd", "uts": ""}, "namespace": "default"}"#;
    let dir = bundle("010-sshd", LINUXKIT, Some(rt));
    let b = Bundle::load(&dir).unwrap();
    assert_eq!(b.name, "sshd");
    let p = b.spec.process.as_ref().unwrap();
    assert_eq!(p.args[0], "/usr/sbin/sshd");
    assert_eq!(p.capabilities.as_ref().unwrap().bounding.len(), 4);
    assert_eq!(p.oom_score_adj, Some(-800));
    assert_eq!(b.spec.mounts.len(), 9);
    let l = b.spec.linux.as_ref().unwrap();
    assert_eq!(l.namespaces.len(), 3);
    assert_eq!(l.namespaces[2].path.as_deref(), Some("/proc/1/ns/net"));
    assert_eq!(l.resources.as_ref().unwrap().memory.as_ref().unwrap().limit, Some(104857600));
    assert_eq!(b.annotation("keel.restart"), Some("always"));
    let rt = b.runtime.as_ref().unwrap();
    assert_eq!(rt.mounts[0].kind.as_deref(), Some("overlay"));
    assert_eq!(rt.mkdir, ["/var/lib/docker"]);
    assert!(rt.interfaces[0].create_in_root);
    assert_eq!(rt.bind_ns.entries().collect::<Vec<_>>(), [("net", "/run/netns/sshd")]);
    assert_eq!(b.rootfs, dir.join("rootfs"));
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[test]
fn old_capability_list_form_loads() {
    let dir = bundle(
        "old",
        r#"{"process": {"args": ["/x"], "capabilities": ["CAP_SYS_ADMIN"]}, "root": {"path": "rootfs"}}"#,
        None,
    );
    let b = Bundle::load(&dir).unwrap();
    assert_eq!(b.spec.process.unwrap().capabilities.unwrap().permitted, ["CAP_SYS_ADMIN"]);
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[test]
fn syntax_error_names_file_and_line() {
    let dir = bundle("bad", "{\n  \"process\": {\n    \"args\": [\"/x\",]\n  }\n}", None);
    let e = Bundle::load(&dir).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
    assert!(e.contains("line 3"), "{e}");
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[test]
fn type_error_names_field() {
    let dir = bundle("type", "{\"process\": {\"args\": [\"/x\"],\n \"user\": {\"uid\": \"root\"}}}", None);
    let e = Bundle::load(&dir).unwrap_err();
    assert!(matches!(&e, Error::Json { field, .. } if field == "process.user.uid"), "{e:?}");
    let s = e.to_string();
    assert!(s.contains("config.json: process.user.uid: invalid type") && s.contains("line 2"), "{s}");
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();

    let dir = bundle("ns", r#"{"linux": {"namespaces": [{"type": "pid"}, {"type": "bogus"}]}}"#, None);
    let e = Bundle::load(&dir).unwrap_err();
    assert!(matches!(&e, Error::Json { field, .. } if field == "linux.namespaces[1].type"), "{e:?}");
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[test]
fn validation_errors() {
    let dir = bundle("noroot", r#"{"process": {"args": ["/x"]}, "root": {"path": "nope"}}"#, None);
    let e = Bundle::load(&dir).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("bundle noroot: rootfs {}: No such file or directory (os error 2)", dir.join("nope").display())
    );
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();

    for (cfg, field) in [
        (r#"{"process": {"args": []}}"#, "process.args"),
        (r#"{"mounts": [{"destination": "relative"}]}"#, "mounts[0].destination"),
        (r#"{"hooks": {"poststop": [{"path": "x"}]}}"#, "hooks.poststop[0].path"),
        (r#"{"linux": {"namespaces": [{"type": "pid"}, {"type": "pid"}]}}"#, "linux.namespaces[1]"),
        (
            r#"{"process": {"args": ["x"], "capabilities": {"ambient": ["CAP_NOPE"]}}}"#,
            "process.capabilities.ambient[0]",
        ),
        (r#"{"process": {"args": ["x"], "rlimits": [{"type": "RLIMIT_X"}]}}"#, "process.rlimits[0].type"),
    ] {
        let dir = bundle("inv", cfg, None);
        let e = Bundle::load(&dir).unwrap_err();
        assert!(matches!(&e, Error::Invalid { field: f, .. } if f == field), "{cfg}: {e:?}");
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}

#[test]
fn bad_runtime_json_names_it() {
    let dir = bundle("rt", r#"{"process": {"args": ["/x"]}}"#, Some(r#"{"mkdir": "notalist"}"#));
    let e = Bundle::load(&dir).unwrap_err();
    assert!(
        matches!(&e, Error::Json { path, field, .. } if path.ends_with("runtime.json") && field == "mkdir"),
        "{e:?}"
    );
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}
