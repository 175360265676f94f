//! `keel-runc spec [--bundle|-b DIR]`: write runc's default config.json (`runc spec`, not rootless) into the
//! bundle directory (default: the current directory).

use super::{Args, CliError, CliResult, Globals};

/// The config.json `runc spec` writes (runc 1.1), verbatim.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.json");

pub fn main(_g: &Globals, argv: &[String]) -> CliResult<i32> {
    let a = Args::parse(argv, &["bundle|b=", "rootless"])?;
    if a.has("rootless") {
        return Err(CliError::usage("spec --rootless is not supported by keel-runc"));
    }
    let dir = std::path::PathBuf::from(a.get("bundle").unwrap_or("."));
    let path = dir.join("config.json");
    if path.exists() {
        return Err(CliError::state(format!("File {} exists. Remove it first", path.display())));
    }
    std::fs::write(&path, DEFAULT_CONFIG).map_err(|e| CliError::io("write", &path, e))?;
    Ok(0)
}
