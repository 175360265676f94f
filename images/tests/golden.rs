//! Golden tests: LinuxKit-style YAML entries -> config.json / runtime.json, compared with the expected JSON in
//! tests/data (LinuxKit's ConfigToOCI defaults). Regenerate with KEEL_BLESS=1 after an intended change, and review
//! the diff against LinuxKit's src/cmd/linuxkit/moby/config.go.

use std::path::Path;

use keel_image::config::{oci_config, runtime_json};
use keel_image::sources::{ImageConfig, DEFAULT_PATH};
use keel_image::tree::Tree;
use keel_image::yaml::Moby;

#[test]
fn yaml_to_config_matches_golden() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let text = std::fs::read_to_string(data.join("golden.yml")).unwrap();
    let m = Moby::parse(&text, "golden.yml").unwrap();
    let img = ImageConfig { env: vec![DEFAULT_PATH.into()], cmd: vec!["sh".into()], ..Default::default() };
    for c in &m.services {
        let bundle = format!("/containers/services/{}", c.name);
        let ro = c.readonly.unwrap_or(false);
        let lower = format!("{bundle}/{}", if ro { "rootfs" } else { "lower" });
        // Compared as JSON values (keys sorted): the files' field order is Go's, see keel_image::spec.
        let got = serde_json::json!({
            "config.json": serde_json::to_value(oci_config(c, &img, &Tree::new(), &Default::default()).unwrap()).unwrap(),
            "runtime.json": serde_json::to_value(runtime_json(c, &bundle, &lower, ro)).unwrap(),
        });
        let path = data.join(format!("golden-{}.json", c.name));
        let got_s = serde_json::to_string_pretty(&got).unwrap() + "\n";
        if std::env::var_os("KEEL_BLESS").is_some() {
            std::fs::write(&path, &got_s).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (KEEL_BLESS=1 writes it)", path.display()));
        assert_eq!(got_s, want, "{} differs from the golden file", c.name);
    }
}
