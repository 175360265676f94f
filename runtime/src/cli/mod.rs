//! keel-runc: a runc-compatible command line over the keel runtime. One file per verb; this file holds the
//! global flags, the small flag parser, logging (text or runc's JSON lines) and the dispatch.
//!
//! Errors are reported as runc does: one message on stderr (and in the --log file, as a JSON line with
//! --log-format json), exit code 1.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

pub mod create;
pub mod delete;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod state_dir;

/// The global flags, for the hook warning sink (a plain fn).
static LOG: std::sync::OnceLock<Globals> = std::sync::OnceLock::new();

/// Default state root, like runc's /run/runc.
pub const DEFAULT_ROOT: &str = "/run/keel-runc";

/// A CLI failure: the message runc would print.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// Shorthand for an error with a formatted message.
#[macro_export]
macro_rules! cli_err {
    ($($t:tt)*) => { $crate::cli::CliError(format!($($t)*)) };
}

/// Global flags.
#[derive(Debug, Clone)]
pub struct Globals {
    pub root: PathBuf,
    pub log: Option<PathBuf>,
    pub log_json: bool,
    pub debug: bool,
}

impl Globals {
    /// Write one log line (level "error", "warning", "info" or "debug") to the --log file, if any.
    pub fn log(&self, level: &str, msg: &str) {
        if level == "debug" && !self.debug {
            return;
        }
        let Some(path) = &self.log else { return };
        let line = if self.log_json {
            serde_json::json!({"level": level, "msg": msg, "time": state_dir::rfc3339_now()}).to_string()
        } else {
            format!("time=\"{}\" level={level} msg={:?}", state_dir::rfc3339_now(), msg)
        };
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Parsed flags of one verb: flags given (by their long name) and the positional arguments.
#[derive(Debug, Default)]
pub struct Args {
    pub flags: Vec<(String, String)>,
    pub pos: Vec<String>,
}

impl Args {
    /// Parse `argv` for a verb whose flags are `spec`: each entry is "long|s" (optional short alias) followed by
    /// '=' if the flag takes a value. Flags stop at the first positional argument (so `exec ID sh -c x` keeps
    /// `-c` for the command) or at `--`.
    pub fn parse(argv: &[String], spec: &[&str]) -> CliResult<Args> {
        let mut out = Args::default();
        let mut i = 0;
        while i < argv.len() {
            let a = &argv[i];
            if a == "--" {
                out.pos.extend(argv[i + 1..].iter().cloned());
                break;
            }
            if !a.starts_with('-') || a == "-" {
                out.pos.extend(argv[i..].iter().cloned());
                break;
            }
            let body = a.trim_start_matches('-');
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let def = spec.iter().find(|s| {
                let names = s.trim_end_matches('=');
                names.split('|').any(|n| n == name)
            });
            let Some(def) = def else {
                return Err(cli_err!("flag provided but not defined: -{name}"));
            };
            let long = def.trim_end_matches('=').split('|').next().unwrap_or(name).to_string();
            if def.ends_with('=') {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        argv.get(i).cloned().ok_or_else(|| cli_err!("flag needs an argument: -{name}"))?
                    }
                };
                out.flags.push((long, v));
            } else {
                let v = inline.unwrap_or_else(|| "true".into());
                out.flags.push((long, v));
            }
            i += 1;
        }
        Ok(out)
    }

    /// Last value of a flag.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.flags.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable flag.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.flags.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
    }

    /// A boolean flag.
    pub fn has(&self, name: &str) -> bool {
        matches!(self.get(name), Some(v) if v != "false")
    }

    /// The container id: the first positional argument, validated like runc.
    pub fn id(&self, verb: &str) -> CliResult<String> {
        let id = self.pos.first().ok_or_else(|| cli_err!("{verb}: container id cannot be empty"))?;
        validate_id(id)?;
        Ok(id.clone())
    }
}

/// runc's rule: ^[\w+-\.]+$, and not "." or "..".
pub fn validate_id(id: &str) -> CliResult {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(cli_err!("invalid container id format: {id:?}"))
    }
}

const USAGE: &str = "usage: keel-runc [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND [ARGS]
commands: create start state kill delete run list ps exec pause resume features spec";

/// Run the CLI with `args` (argv[0] first). Returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args: Vec<OsString> = args.into_iter().collect();
    let argv: Vec<String> = args.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let gspec =
        ["root=", "log=", "log-format=", "debug", "systemd-cgroup", "criu=", "rootless=", "help|h", "version|v"];
    let g = match Args::parse(&argv, &gspec) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("keel-runc: {}", e.0);
            return 1;
        }
    };
    let globals = Globals {
        root: PathBuf::from(g.get("root").unwrap_or(DEFAULT_ROOT)),
        log: g.get("log").filter(|s| !s.is_empty()).map(PathBuf::from),
        log_json: g.get("log-format") == Some("json"),
        debug: g.has("debug"),
    };
    if g.has("version") {
        println!("keel-runc version {}\nspec: 1.2.0", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let Some((verb, rest)) = g.pos.split_first() else {
        eprintln!("{USAGE}");
        return if g.has("help") { 0 } else { 1 };
    };
    // Verbs that start container processes run from a sealed copy of keel-runc (CVE-2019-5736: see sealed.rs).
    if matches!(verb.as_str(), "create" | "run" | "exec") {
        if let Err(e) = crate::sealed::ensure(&args) {
            globals.log("error", &e);
            eprintln!("keel-runc: {e}");
            return 1;
        }
    }
    globals.log("debug", &format!("{verb} {rest:?}"));
    // Failed poststart/poststop hooks are warnings (runtime-spec): on stderr and in the --log file, as runc does.
    let _ = LOG.set(globals.clone());
    crate::hooks::set_warning_sink(|msg| {
        if let Some(g) = LOG.get() {
            g.log("warning", msg);
        }
        eprintln!("warning: {msg}");
    });
    let r = match verb.as_str() {
        "create" => create::main(&globals, rest),
        "start" => start::main(&globals, rest),
        "state" => state::main(&globals, rest),
        "kill" => kill::main(&globals, rest),
        "delete" => delete::main(&globals, rest),
        "run" => run::main(&globals, rest),
        "list" => list::main(&globals, rest),
        "ps" => ps::main(&globals, rest),
        "exec" => exec::main(&globals, rest),
        "pause" => pause::main(&globals, rest, true),
        "resume" => pause::main(&globals, rest, false),
        "features" => features::main(&globals, rest),
        "spec" => spec::main(&globals, rest),
        "help" => {
            println!("{USAGE}");
            Ok(0)
        }
        other => Err(cli_err!("No help topic for '{other}'")),
    };
    match r {
        Ok(code) => code,
        Err(CliError(msg)) => {
            globals.log("error", &msg);
            eprintln!("{msg}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_and_positionals() {
        let spec = ["bundle|b=", "detach|d", "env|e="];
        let a = Args::parse(&v(&["-b", "/x", "--detach", "--env=A=1", "-e", "B=2", "id", "-c", "x"]), &spec).unwrap();
        assert_eq!(a.get("bundle"), Some("/x"));
        assert!(a.has("detach"));
        assert_eq!(a.all("env"), ["A=1", "B=2"]);
        assert_eq!(a.pos, ["id", "-c", "x"]);
        assert!(Args::parse(&v(&["--nope"]), &spec).unwrap_err().0.contains("not defined"));
        assert!(Args::parse(&v(&["--bundle"]), &spec).unwrap_err().0.contains("needs an argument"));
        let a = Args::parse(&v(&["--", "-x"]), &spec).unwrap();
        assert_eq!(a.pos, ["-x"]);
    }

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
