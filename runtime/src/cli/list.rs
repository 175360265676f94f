//! `keel-runc list [--format|-f table|json] [--quiet|-q]`: every container under --root.

use super::state_dir;
use super::{Args, CliError, CliResult, Globals};

pub fn main(g: &Globals, argv: &[String]) -> CliResult<i32> {
    let a = Args::parse(argv, &["format|f=", "quiet|q"])?;
    let ids = state_dir::ids(g);
    if a.has("quiet") {
        for id in ids {
            println!("{id}");
        }
        return Ok(0);
    }
    let states: Vec<_> = ids.iter().filter_map(|id| state_dir::load(g, id).ok()).collect();
    match a.get("format").unwrap_or("table") {
        "json" => {
            let v: Vec<_> = states.iter().map(|s| super::state::to_out(g, s)).collect();
            println!("{}", serde_json::to_string(&v)?);
        }
        "table" => {
            let rows: Vec<[String; 6]> = states
                .iter()
                .map(|s| {
                    let status = state_dir::status(g, s);
                    let pid = if status == state_dir::Status::Stopped { 0 } else { s.pid };
                    [
                        s.id.clone(),
                        pid.to_string(),
                        status.as_str().into(),
                        s.bundle.display().to_string(),
                        s.created.clone(),
                        "root".into(),
                    ]
                })
                .collect();
            let head = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            let mut w = [0usize; 6];
            for r in std::iter::once(&head).chain(rows.iter()) {
                for (i, c) in r.iter().enumerate() {
                    w[i] = w[i].max(c.len());
                }
            }
            for r in std::iter::once(&head).chain(rows.iter()) {
                let line: Vec<String> =
                    r.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
                println!("{}", line.join("   ").trim_end());
            }
        }
        f => return Err(CliError::usage(format!("invalid format option {f:?}"))),
    }
    Ok(0)
}
