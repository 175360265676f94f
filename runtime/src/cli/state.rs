//! `keel-runc state ID`: runc's state JSON (fields in runc's order).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::state_dir::{self, State, Status};
use super::{Args, CliResult, Globals};

/// runc's state of one container (also the items of `list --format json`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateOut {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: &'static str,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The runc view of `st`, with its live status.
pub fn to_out(g: &Globals, st: &State) -> StateOut {
    let status = state_dir::status(g, st);
    StateOut {
        oci_version: if st.oci_version.is_empty() { "1.2.0".into() } else { st.oci_version.clone() },
        id: st.id.clone(),
        pid: if status == Status::Stopped { 0 } else { st.pid },
        status: status.as_str(),
        bundle: st.bundle.clone(),
        rootfs: st.rootfs.clone(),
        created: st.created.clone(),
        owner: String::new(),
        annotations: st.annotations.clone(),
    }
}

pub fn main(g: &Globals, argv: &[String]) -> CliResult<i32> {
    let a = Args::parse(argv, &[])?;
    let id = a.id("state")?;
    let st = state_dir::load(g, &id)?;
    println!("{}", serde_json::to_string_pretty(&to_out(g, &st))?);
    Ok(0)
}
