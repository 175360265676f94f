//! OCI runtime-spec config.json types (1.0.2 - 1.2). Unknown fields are ignored, as the spec says.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Spec {
    pub oci_version: String,
    pub annotations: BTreeMap<String, String>,
}
