//! Unit configuration from a bundle's OCI annotations (`keel.*`), for the supervisor.
//!
//! Bad values never stop a boot: each one becomes a warning line naming the unit, the key and the value, and the
//! default is used instead. Unknown `keel.*` keys are warned about too (a typo such as `keel.restarts` would
//! otherwise be silently ignored).
//!
//! Keys:
//! - `keel.restart` = no | on-failure | always (services; default on-failure)
//! - `keel.after` = comma-separated service names (services)
//! - `keel.ready` = fd:N (N >= 3) | notify (services; default: started = ready)
//! - `keel.stop-timeout` = seconds (default 10): grace between SIGTERM and SIGKILL
//! - `keel.timeout` = seconds (default 300): an onboot/onshutdown step's run time limit; for a service, how long
//!   it may take from spawn to ready before it is stopped and counted as a failure
//! - `keel.required` = true | false (onboot; default false): a failed step stops the boot (emergency shell)
//!
//! Seconds may be fractional ("0.5") and may end in "s"; they are capped at one year.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::supervisor::{Kind, Ready, Restart, UnitConfig};

/// Default `keel.stop-timeout`.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `keel.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest accepted duration (keeps `Instant + d` far from overflow).
const MAX_SECS: f64 = 365.0 * 24.0 * 3600.0;

const KNOWN: &[&str] =
    &["keel.restart", "keel.after", "keel.ready", "keel.stop-timeout", "keel.timeout", "keel.required"];

/// Build a unit's configuration from its annotations. `broken` is the one-line cause if the bundle could not be
/// loaded. Returns the config and one warning line per bad or misplaced annotation.
pub fn unit_config(
    kind: Kind,
    name: &str,
    annotations: &BTreeMap<String, String>,
    broken: Option<String>,
) -> (UnitConfig, Vec<String>) {
    let mut warnings = Vec::new();
    let mut config = UnitConfig {
        name: name.to_string(),
        kind,
        bundle: std::path::PathBuf::new(),
        restart: Restart::OnFailure,
        after: Vec::new(),
        ready: Ready::Started,
        stop_timeout: DEFAULT_STOP_TIMEOUT,
        timeout: DEFAULT_TIMEOUT,
        required: false,
        broken,
    };
    let is_service = kind == Kind::Service;
    for (key, value) in annotations {
        if !key.starts_with("keel.") {
            continue;
        }
        let mut bad = |expected: &str, default: &str| {
            warnings.push(format!("{name}: {key}='{value}': expected {expected}; using {default}"));
        };
        match key.as_str() {
            "keel.restart" => match value.trim() {
                "no" => config.restart = Restart::No,
                "on-failure" => config.restart = Restart::OnFailure,
                "always" => config.restart = Restart::Always,
                _ => bad("no, on-failure or always", "on-failure"),
            },
            "keel.after" => {
                for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    if part.contains(char::is_whitespace) || part.contains('/') {
                        warnings.push(format!("{name}: keel.after='{value}': '{part}' is not a service name; ignored"));
                    } else if !config.after.iter().any(|a| a == part) {
                        config.after.push(part.to_string());
                    }
                }
            }
            "keel.ready" => match parse_ready(value) {
                Some(r) => config.ready = r,
                None => bad("fd:N (N >= 3) or notify", "started = ready"),
            },
            "keel.stop-timeout" => match parse_secs(value) {
                Some(d) => config.stop_timeout = d,
                None => bad("seconds", "10 s"),
            },
            "keel.timeout" => match parse_secs(value) {
                Some(d) if !d.is_zero() => config.timeout = d,
                _ => bad("seconds > 0", "300 s"),
            },
            "keel.required" => match value.trim() {
                "true" => config.required = true,
                "false" => config.required = false,
                _ => bad("true or false", "false"),
            },
            _ => warnings
                .push(format!("{name}: unknown annotation {key}='{value}' ignored (known: {})", KNOWN.join(", "))),
        }
    }
    // Keys that mean nothing for this kind of unit: say so, keep the config clean.
    for (key, applies) in [
        ("keel.restart", "services"),
        ("keel.after", "services"),
        ("keel.ready", "services"),
        ("keel.required", "onboot steps"),
    ] {
        let fits = if applies == "services" { is_service } else { kind == Kind::Onboot };
        if let (false, Some(value)) = (fits, annotations.get(key)) {
            warnings.push(format!("{name}: {key}='{value}' only applies to {applies}; ignored"));
        }
    }
    if kind != Kind::Onboot {
        config.required = false;
    }
    if !is_service {
        config.restart = Restart::No;
        config.after.clear();
        config.ready = Ready::Started;
    }
    (config, warnings)
}

/// `keel.shutdown_timeout=SECONDS` from the kernel command line: the whole shutdown's deadline. Absent: the
/// default; a bad value: the default and a warning line.
pub fn shutdown_timeout(value: Option<&str>) -> (Duration, Option<String>) {
    let default = crate::supervisor::DEFAULT_SHUTDOWN_TIMEOUT;
    match value.map(|v| (v, parse_secs(v))) {
        None => (default, None),
        Some((_, Some(d))) if !d.is_zero() => (d, None),
        Some((v, _)) => {
            let msg = format!("keel.shutdown_timeout='{v}': expected seconds > 0; using {} s", default.as_secs());
            (default, Some(msg))
        }
    }
}

fn parse_ready(value: &str) -> Option<Ready> {
    let v = value.trim();
    if v == "notify" {
        return Some(Ready::Notify);
    }
    let n: i32 = v.strip_prefix("fd:")?.trim().parse().ok()?;
    // 0-2 are stdio; keep N small enough to be a real descriptor number.
    (3..=1023).contains(&n).then_some(Ready::Fd(n))
}

fn parse_secs(value: &str) -> Option<Duration> {
    let v = value.trim();
    let v = v.strip_suffix('s').unwrap_or(v).trim();
    if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let secs: f64 = v.parse().ok()?;
    (secs.is_finite() && (0.0..=MAX_SECS).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults() {
        let (c, w) = unit_config(Kind::Service, "web", &BTreeMap::new(), None);
        assert_eq!(c.name, "web");
        assert_eq!(c.restart, Restart::OnFailure);
        assert_eq!(c.ready, Ready::Started);
        assert!(c.after.is_empty());
        assert_eq!(c.stop_timeout, Duration::from_secs(10));
        assert_eq!(c.timeout, Duration::from_secs(300));
        assert!(!c.required);
        assert!(c.broken.is_none());
        assert!(w.is_empty());
    }

    #[test]
    fn service_values() {
        let a = ann(&[
            ("keel.restart", "always"),
            ("keel.after", " db, cache,,db "),
            ("keel.ready", "fd:3"),
            ("keel.stop-timeout", "2.5"),
            ("keel.timeout", "30s"),
            ("org.opencontainers.x", "ignored"),
        ]);
        let (c, w) = unit_config(Kind::Service, "web", &a, Some("bad json".into()));
        assert_eq!(w, Vec::<String>::new());
        assert_eq!(c.restart, Restart::Always);
        assert_eq!(c.after, vec!["db", "cache"]);
        assert_eq!(c.ready, Ready::Fd(3));
        assert_eq!(c.stop_timeout, Duration::from_millis(2500));
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.broken.as_deref(), Some("bad json"));
        let (c, _) = unit_config(Kind::Service, "web", &ann(&[("keel.ready", "notify"), ("keel.restart", "no")]), None);
        assert_eq!(c.ready, Ready::Notify);
        assert_eq!(c.restart, Restart::No);
    }

    #[test]
    fn bad_values_warn_and_default() {
        let a = ann(&[
            ("keel.restart", "sometimes"),
            ("keel.ready", "fd:2"),
            ("keel.stop-timeout", "-1"),
            ("keel.timeout", "0"),
            ("keel.restarts", "no"),
        ]);
        let (c, w) = unit_config(Kind::Service, "web", &a, None);
        assert_eq!(c.restart, Restart::OnFailure);
        assert_eq!(c.ready, Ready::Started);
        assert_eq!(c.stop_timeout, Duration::from_secs(10));
        assert_eq!(c.timeout, Duration::from_secs(300));
        assert_eq!(w.len(), 5, "{w:?}");
        assert!(w.iter().all(|l| l.starts_with("web: ")), "{w:?}");
        assert!(w.iter().any(|l| l.contains("keel.restart='sometimes'")), "{w:?}");
        assert!(w.iter().any(|l| l.contains("keel.ready='fd:2'")), "{w:?}");
        assert!(w.iter().any(|l| l.contains("keel.stop-timeout='-1'")), "{w:?}");
        assert!(w.iter().any(|l| l.contains("keel.timeout='0'")), "{w:?}");
        assert!(w.iter().any(|l| l.contains("unknown annotation keel.restarts='no'")), "{w:?}");
        for bad in ["fd:", "fd:x", "fd:99999", "ready", "fd:-3"] {
            let (c, w) = unit_config(Kind::Service, "s", &ann(&[("keel.ready", bad)]), None);
            assert_eq!(c.ready, Ready::Started, "{bad}");
            assert_eq!(w.len(), 1, "{bad}");
        }
        for bad in ["", "ten", "1e3", "NaN", "inf", "99999999999"] {
            let (c, w) = unit_config(Kind::Service, "s", &ann(&[("keel.stop-timeout", bad)]), None);
            assert_eq!(c.stop_timeout, DEFAULT_STOP_TIMEOUT, "{bad}");
            assert_eq!(w.len(), 1, "{bad}");
        }
        let (c, w) = unit_config(Kind::Service, "s", &ann(&[("keel.stop-timeout", "0")]), None);
        assert_eq!((c.stop_timeout, w.len()), (Duration::ZERO, 0));
    }

    #[test]
    fn onboot_keys() {
        let a = ann(&[("keel.required", "true"), ("keel.timeout", "5")]);
        let (c, w) = unit_config(Kind::Onboot, "net", &a, None);
        assert!(c.required);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.restart, Restart::No);
        assert!(w.is_empty());
        let (c, w) = unit_config(Kind::Onboot, "net", &ann(&[("keel.required", "yes")]), None);
        assert!(!c.required);
        assert!(w[0].contains("net: keel.required='yes'"), "{w:?}");
    }

    #[test]
    fn misplaced_keys_are_ignored_with_a_warning() {
        let (c, w) = unit_config(Kind::Onboot, "net", &ann(&[("keel.after", "db"), ("keel.restart", "always")]), None);
        assert!(c.after.is_empty());
        assert_eq!(c.restart, Restart::No);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().all(|l| l.contains("only applies to services")), "{w:?}");
        let (c, w) = unit_config(Kind::Service, "web", &ann(&[("keel.required", "true")]), None);
        assert!(!c.required);
        assert!(w[0].contains("only applies to onboot steps"), "{w:?}");
        let (c, w) =
            unit_config(Kind::Onshutdown, "save", &ann(&[("keel.required", "true"), ("keel.timeout", "9")]), None);
        assert!(!c.required);
        assert_eq!(c.timeout, Duration::from_secs(9));
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn shutdown_timeout_from_the_command_line() {
        assert_eq!(shutdown_timeout(None), (Duration::from_secs(90), None));
        assert_eq!(shutdown_timeout(Some("30")), (Duration::from_secs(30), None));
        assert_eq!(shutdown_timeout(Some("2.5s")), (Duration::from_millis(2500), None));
        for bad in ["", "0", "soon", "-5"] {
            let (d, w) = shutdown_timeout(Some(bad));
            assert_eq!(d, Duration::from_secs(90), "{bad}");
            assert!(w.is_some_and(|w| w.starts_with("keel.shutdown_timeout=")), "{bad}");
        }
        let cmdline = keel_rc::cmdline::Cmdline::parse("console=ttyS0 keel.shutdown_timeout=15 quiet");
        assert_eq!(shutdown_timeout(cmdline.get("keel.shutdown_timeout")).0, Duration::from_secs(15));
    }

    #[test]
    fn after_rejects_non_names() {
        let (c, w) = unit_config(Kind::Service, "web", &ann(&[("keel.after", "db,a b,x/y")]), None);
        assert_eq!(c.after, vec!["db"]);
        assert_eq!(w.len(), 2, "{w:?}");
    }
}
