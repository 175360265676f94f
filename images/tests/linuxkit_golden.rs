//! Golden tests against LinuxKit itself: for each of LinuxKit's own packages (getty, sshd, dhcpcd, rngd, sysctl,
//! metadata, format, mount, swap, dm-crypt, openntpd, acpid), used as LinuxKit's examples use them
//! (tests/data/linuxkit/packages.yml), the config.json and runtime.json keel writes equal the ones `linuxkit build`
//! writes, field by field.
//!
//! Each tests/data/linuxkit/NAME.json holds the stand-in image config (the package's Dockerfile ENTRYPOINT/CMD,
//! BuildKit's default PATH, and its real `org.mobyproject.config` label: the `config:` of its build.yml, as
//! `linuxkit pkg build` marshals it) and the expected files, derived by hand from LinuxKit's rules
//! (ConfigToOCI in src/cmd/linuxkit/moby/config.go, ImageBundle in moby/build/image.go: Go's omitempty shape,
//! runtime-spec 1.2.1).
//!
//! keel differs on purpose in one place, checked explicitly here: every container also gets a cgroup namespace
//! (LinuxKit has none: "TODO cgroup namespaces"); the builder prints a note saying so.

use std::collections::HashMap;
use std::path::Path;

use keel_image::build::bundle_paths;
use keel_image::config::{assigned_ids, oci_config, runtime_json, CGROUP_NS_NOTE};
use keel_image::label;
use keel_image::sources::parse_image_config;
use keel_image::tree::Tree;
use keel_image::yaml::Moby;
use serde_json::{json, Value};

/// The stand-in's image config (the `config` object of an image config blob), parsed as keel parses blobs.
fn image_config(config: &Value) -> keel_image::sources::ImageConfig {
    parse_image_config(&serde_json::to_vec(&json!({"config": config})).unwrap(), "stand-in config").unwrap()
}

fn data() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/linuxkit")
}

/// Field-by-field differences between two JSON values (paths like `process.capabilities.effective[3]`).
fn diff(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => diff(&format!("{path}.{k}"), gv, wv, out),
                    None => out.push(format!("{path}.{k}: missing (LinuxKit writes {wv})")),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k) {
                    out.push(format!("{path}.{k}: keel writes {gv}, LinuxKit writes nothing"));
                }
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                diff(&format!("{path}[{i}]"), gv, wv, out);
            }
        }
        _ if got == want => {}
        _ => out.push(format!("{path}: keel writes {got}, LinuxKit writes {want}")),
    }
}

#[test]
fn linuxkit_packages_config_json_equals_linuxkit_build() {
    let text = std::fs::read_to_string(data().join("packages.yml")).unwrap();
    let m = Moby::parse(&text, "packages.yml").unwrap();
    let ids = assigned_ids(&m);
    let mut first_copy: HashMap<String, String> = HashMap::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (bundle, c) in bundle_paths(&m) {
        let path = data().join(format!("{}.json", c.name));
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
                .unwrap();
        let img = image_config(&fixture["image"]);
        assert!(img.labels.contains_key(label::LABEL), "{}: stand-in without a label", c.name);
        let (merged, note) = label::resolve(c, &img).unwrap();
        assert!(note.is_some(), "{}: no note about the label", c.name);
        let mut cfg = serde_json::to_value(oci_config(&merged, &img, &Tree::new(), &ids).unwrap()).unwrap();

        // keel's deliberate difference: a cgroup namespace, last. Checked, then taken out for the comparison.
        let ns = cfg["linux"]["namespaces"].as_array_mut().unwrap();
        assert_eq!(ns.last(), Some(&json!({"type": "cgroup"})), "{}: keel's cgroup namespace", c.name);
        ns.pop();

        let readonly = merged.readonly.unwrap_or(false);
        let own = format!("{bundle}/{}", if readonly { "rootfs" } else { "lower" });
        let lower = first_copy.entry(c.image.clone()).or_insert(own).clone();
        let rt =
            serde_json::to_value(runtime_json(&merged, &format!("/{bundle}"), &format!("/{lower}"), readonly)).unwrap();

        let mut d = Vec::new();
        diff("config.json", &cfg, &fixture["config.json"], &mut d);
        diff("runtime.json", &rt, &fixture["runtime.json"], &mut d);
        if !d.is_empty() {
            failures.push(format!("{} ({}):\n    {}", c.name, c.image, d.join("\n    ")));
        }
        checked += 1;
    }
    assert_eq!(checked, 13, "every entry of packages.yml checked");
    assert!(failures.is_empty(), "keel's bundles differ from linuxkit build's:\n{}", failures.join("\n"));
    assert!(CGROUP_NS_NOTE.contains("cgroup namespace"));
}

#[test]
fn linuxkit_package_notes() {
    let text = std::fs::read_to_string(data().join("packages.yml")).unwrap();
    let m = Moby::parse(&text, "packages.yml").unwrap();
    let note = |name: &str| {
        let c = m.services.iter().chain(m.onboot.iter()).find(|c| c.name == name).unwrap();
        let f: Value =
            serde_json::from_str(&std::fs::read_to_string(data().join(format!("{name}.json"))).unwrap()).unwrap();
        label::resolve(c, &image_config(&f["image"])).unwrap().1.unwrap()
    };
    assert_eq!(note("getty"), "getty: from label: capabilities all, 11 binds, 5 devices, net host, pid host");
    assert_eq!(note("sshd"), "sshd: from label: capabilities all, 11 binds (+1 from binds.add), 1 device, pid host");
    assert_eq!(
        note("rngd1"),
        "rngd1: from label: capabilities SYS_ADMIN, net new, ipc new, readonly, oomScoreAdj -800"
    );
    assert_eq!(
        note("mount"),
        "mount: from label: capabilities SYS_ADMIN, 3 binds, 1 device, net new, ipc new, rootfsPropagation shared"
    );
}
