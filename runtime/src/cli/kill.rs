//! `keel-runc kill [--all|-a] ID [SIGNAL]`: signal the container's process (or, with --all, every process in its
//! cgroup). SIGNAL is a name with or without SIG, or a number; default SIGTERM.

use super::state_dir::{self, Status};
use super::{Args, CliError, CliResult, Globals};
use crate::cgroups;

/// Parse a signal as runc does: "TERM", "SIGTERM", "sigterm", "15", "RTMIN+2".
pub fn parse_signal(s: &str) -> CliResult<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(CliError::usage(format!("unknown signal {s:?}")));
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(off) = name.strip_prefix("RTMIN") {
        let n = if off.is_empty() { 0 } else { off.trim_start_matches('+').parse().unwrap_or(-1) };
        let sig = libc::SIGRTMIN() + n;
        if n >= 0 && sig <= libc::SIGRTMAX() {
            return Ok(sig);
        }
    }
    keel_sys::signal_by_name(name).ok_or_else(|| CliError::usage(format!("unknown signal {s:?}")))
}

fn send(pid: i32, sig: i32) -> std::io::Result<()> {
    Ok(keel_sys::kill(pid, sig)?)
}

pub fn main(g: &Globals, argv: &[String]) -> CliResult<i32> {
    let a = Args::parse(argv, &["all|a", "signal|s="])?;
    let id = a.id("kill")?;
    let sig = parse_signal(a.pos.get(1).map(String::as_str).or(a.get("signal")).unwrap_or("TERM"))?;
    let st = state_dir::load(g, &id)?;
    if state_dir::status(g, &st) == Status::Stopped {
        return Err(CliError::state("container not running"));
    }
    if a.has("all") && !st.cgroup.as_os_str().is_empty() {
        for pid in cgroups::procs_recursive(&st.cgroup) {
            let _ = send(pid, sig);
        }
        return Ok(0);
    }
    send(st.pid, sig).map_err(|e| CliError::io(format!("kill {} (pid {})", id, st.pid), "", e))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGKILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("sigusr1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
