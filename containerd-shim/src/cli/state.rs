//! `keel-runc state ID`: runc's state JSON.

use serde_json::json;

use super::state_dir::{self, State, Status};
use super::{Args, CliResult, Globals};

/// runc's JSON for one container (also used by `list --format json`).
pub fn to_json(g: &Globals, st: &State) -> serde_json::Value {
    let status = state_dir::status(g, st);
    let mut v = json!({
        "ociVersion": if st.oci_version.is_empty() { "1.2.0" } else { st.oci_version.as_str() },
        "id": st.id,
        "pid": if status == Status::Stopped { 0 } else { st.pid },
        "status": status.as_str(),
        "bundle": st.bundle,
        "rootfs": st.rootfs,
        "created": st.created,
        "owner": "",
    });
    if !st.annotations.is_empty() {
        v["annotations"] = json!(st.annotations);
    }
    v
}

pub fn main(g: &Globals, argv: &[String]) -> CliResult<i32> {
    let a = Args::parse(argv, &[])?;
    let id = a.id("state")?;
    let st = state_dir::load(g, &id)?;
    println!("{}", serde_json::to_string_pretty(&to_json(g, &st))?);
    Ok(0)
}
