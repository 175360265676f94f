//! Root tests of cgroup v2 handling against the real hierarchy (pure v2 or this host's hybrid layout).

use std::path::Path;

use keel_runtime::cgroups::{self, LinuxResources};

fn root_or_skip() -> Option<std::path::PathBuf> {
    // SAFETY: geteuid has no side effects.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return None;
    }
    let root = cgroups::default_root();
    if !cgroups::is_cgroup2(&root) {
        eprintln!("skipped: no cgroup2 mount at {}", root.display());
        return None;
    }
    Some(root)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().to_string()
}

fn available(root: &Path) -> Vec<String> {
    read(&root.join("cgroup.controllers")).split_whitespace().map(str::to_string).collect()
}

fn uniq(name: &str) -> String {
    format!("keel-test-{}-{name}", std::process::id())
}

#[test]
fn create_writes_limits_and_remove_leaves_nothing() {
    let Some(root) = root_or_skip() else { return };
    let have = available(&root);
    let parent = uniq("limits");
    let mut json = serde_json::json!({"unified": {"cgroup.max.descendants": "3", "cgroup.max.depth": "2"}});
    if have.iter().any(|c| c == "hugetlb") {
        json["hugepageLimits"] = serde_json::json!([{"pageSize": "2MB", "limit": 4194304}]);
    }
    if have.iter().any(|c| c == "memory") {
        json["memory"] = serde_json::json!({"limit": 67108864, "reservation": 1048576});
        json["unified"]["memory.high"] = "50000000".into();
    }
    if have.iter().any(|c| c == "pids") {
        json["pids"] = serde_json::json!({"limit": 42});
    }
    if have.iter().any(|c| c == "cpu") {
        json["cpu"] = serde_json::json!({"shares": 1024, "quota": 20000, "period": 100000});
    }
    let res: LinuxResources = serde_json::from_value(json.clone()).unwrap();
    let leaf = cgroups::create(&root, &format!("/{parent}/c1"), Some(&res)).unwrap();
    assert_eq!(leaf, root.join(&parent).join("c1"));
    assert_eq!(read(&leaf.join("cgroup.max.descendants")), "3");
    assert_eq!(read(&leaf.join("cgroup.max.depth")), "2");
    if json.get("hugepageLimits").is_some() {
        assert_eq!(read(&leaf.join("hugetlb.2MB.max")), "4194304");
        assert!(read(&root.join(&parent).join("cgroup.subtree_control")).contains("hugetlb"));
    }
    if json.get("memory").is_some() {
        assert_eq!(read(&leaf.join("memory.max")), "67108864");
        assert_eq!(read(&leaf.join("memory.low")), "1048576");
        assert_eq!(read(&leaf.join("memory.high")), "49999872"); // rounded down to pages
    }
    if json.get("pids").is_some() {
        assert_eq!(read(&leaf.join("pids.max")), "42");
    }
    if json.get("cpu").is_some() {
        assert_eq!(read(&leaf.join("cpu.weight")), "39");
        assert_eq!(read(&leaf.join("cpu.max")), "20000 100000");
    }

    // A process inside is killed by remove, and the tree is gone.
    let mut child = std::process::Command::new("sleep").arg("100").spawn().unwrap();
    cgroups::add_pid(&leaf, child.id() as i32).unwrap();
    assert_eq!(cgroups::procs(&leaf), vec![child.id() as i32]);
    cgroups::remove(&root.join(&parent)).unwrap();
    let st = child.wait().unwrap();
    assert!(!st.success());
    assert!(!root.join(&parent).exists());
    // Removing again is fine.
    cgroups::remove(&root.join(&parent)).unwrap();
}

#[test]
fn missing_controller_is_an_error_naming_it_and_leaves_nothing() {
    let Some(root) = root_or_skip() else { return };
    let have = available(&root);
    // Missing in v2 and, on a hybrid host, in v1 too (a v1 controller takes the limit instead).
    let v1 = cgroups::v1::hierarchies();
    let missing = ["pids", "memory", "cpu", "io"]
        .into_iter()
        .find(|c| !have.iter().any(|h| h == c) && cgroups::v1::hierarchy_of(v1, c).is_none());
    let Some(missing) = missing else {
        eprintln!("skipped: every controller is available here");
        return;
    };
    let json = match missing {
        "pids" => serde_json::json!({"pids": {"limit": 5}}),
        "memory" => serde_json::json!({"memory": {"limit": 1048576}}),
        "cpu" => serde_json::json!({"cpu": {"shares": 100}}),
        _ => serde_json::json!({"blockIO": {"weight": 100}}),
    };
    let res: LinuxResources = serde_json::from_value(json).unwrap();
    let parent = uniq("missing");
    let e = cgroups::create(&root, &format!("{parent}/x"), Some(&res)).unwrap_err().to_string();
    assert!(e.contains(&format!("{missing:?}")) && e.contains("cgroup.controllers"), "{e}");
    assert!(!root.join(&parent).exists(), "left {parent} behind");
    // Without limits, the same path works though the controller is missing.
    let leaf = cgroups::create(&root, &format!("{parent}/x"), None).unwrap();
    assert!(leaf.is_dir());
    cgroups::remove(&root.join(&parent)).unwrap();
    assert!(!root.join(&parent).exists());
}

#[test]
fn bad_paths_and_values_are_rejected() {
    let Some(root) = root_or_skip() else { return };
    assert!(cgroups::create(&root, "../etc", None).is_err());
    assert!(cgroups::create(&root, "/", None).is_err());
    let parent = uniq("badval");
    let res: LinuxResources =
        serde_json::from_value(serde_json::json!({"unified": {"cgroup.max.depth": "not-a-number"}})).unwrap();
    let e = cgroups::create(&root, &parent, Some(&res)).unwrap_err().to_string();
    assert!(e.contains("cgroup.max.depth") && e.contains("errno"), "{e}");
    assert!(!root.join(&parent).exists());
}

#[test]
fn freeze_and_thaw() {
    let Some(root) = root_or_skip() else { return };
    let name = uniq("freeze");
    let leaf = cgroups::create(&root, &name, None).unwrap();
    let mut child = std::process::Command::new("sleep").arg("100").spawn().unwrap();
    cgroups::add_pid(&leaf, child.id() as i32).unwrap();
    cgroups::freeze(&leaf, true).unwrap();
    assert!(cgroups::is_frozen(&leaf));
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
    assert!(!stat.is_empty());
    cgroups::freeze(&leaf, false).unwrap();
    assert!(!cgroups::is_frozen(&leaf));
    cgroups::remove(&leaf).unwrap();
    let _ = child.wait();
    assert!(!leaf.exists());
}
