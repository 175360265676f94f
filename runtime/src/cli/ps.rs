//! `keel-runc ps [--format|-f table|json] ID [ps options]`: the processes in the container's cgroup; table
//! format runs the host's `ps` (default `-ef`) and keeps the header and the container's lines, as runc does.

use super::state_dir::{self, Status};
use super::{Args, CliError, CliResult, Globals};
use crate::cgroups;

pub fn main(g: &Globals, argv: &[String]) -> CliResult<i32> {
    let a = Args::parse(argv, &["format|f="])?;
    let id = a.id("ps")?;
    let st = state_dir::load(g, &id)?;
    let mut pids = if st.cgroup.as_os_str().is_empty() { Vec::new() } else { cgroups::procs_recursive(&st.cgroup) };
    if pids.is_empty() && state_dir::status(g, &st) != Status::Stopped {
        pids.push(st.pid);
    }
    pids.sort();
    match a.get("format").unwrap_or("table") {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            let ps_args: Vec<String> = if a.pos.len() > 1 { a.pos[1..].to_vec() } else { vec!["-ef".to_string()] };
            let out = std::process::Command::new("ps")
                .args(&ps_args)
                .output()
                .map_err(|e| CliError::io(format!("ps {}", ps_args.join(" ")), "", e))?;
            if !out.status.success() {
                return Err(CliError::Process(format!(
                    "ps {}: {}",
                    ps_args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let col = header
                .split_whitespace()
                .position(|c| c == "PID")
                .ok_or_else(|| CliError::Process("couldn't find PID field in ps output".into()))?;
            println!("{header}");
            for l in lines {
                if let Some(p) = l.split_whitespace().nth(col).and_then(|p| p.parse::<i32>().ok()) {
                    if pids.contains(&p) {
                        println!("{l}");
                    }
                }
            }
        }
        f => return Err(CliError::usage(format!("invalid format option {f:?}"))),
    }
    Ok(0)
}
