//! keel-runc: a runc-compatible command line over the keel runtime. One file per verb; this file holds the
//! global flags, the small flag parser, logging (text or runc's JSON lines) and the dispatch.
//!
//! Errors are [`CliError`]s, reported as runc does: one message on stderr (and in the --log file, as a JSON line with
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

/// A CLI failure. Its Display is the one line runc would print (runc's wording where tools match on it: docker,
/// podman and containerd compare these texts); `source()` is the runtime or I/O error underneath, when there is one.
#[derive(Debug)]
pub enum CliError {
    /// The command line is wrong: unknown flag, missing value, invalid container id, unknown verb.
    Usage(String),
    /// The container's state does not allow the verb ("container does not exist", "container not running").
    State(String),
    /// A file operation of the CLI's own (state dir, exec fifo, pid file) failed: what, on which path (empty when the
    /// path is part of `what`), the I/O error.
    Io { what: String, path: PathBuf, source: std::io::Error },
    /// The runtime failed; `context` (empty, or e.g. "kill ID (pid N)") says what the CLI was doing.
    Runtime { context: String, source: crate::Error },
    /// A process failed: the container's setup or exec (the child's message, in runc's wording), or `ps`.
    Process(String),
    /// `delete` could not undo everything: every failure, joined with "; ".
    Cleanup { id: String, errors: Vec<CliError> },
}

impl CliError {
    /// A `Usage` error.
    pub fn usage(msg: impl Into<String>) -> CliError {
        CliError::Usage(msg.into())
    }
    /// A `State` error.
    pub fn state(msg: impl Into<String>) -> CliError {
        CliError::State(msg.into())
    }
    /// An `Io` error: `what` failed on `path`.
    pub fn io(what: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> CliError {
        CliError::Io { what: what.into(), path: path.into(), source }
    }
    /// A `Runtime` error with what the CLI was doing.
    pub fn runtime(context: impl Into<String>, source: impl Into<crate::Error>) -> CliError {
        CliError::Runtime { context: context.into(), source: source.into() }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) | CliError::State(m) | CliError::Process(m) => f.write_str(m),
            CliError::Io { what, path, source } if path.as_os_str().is_empty() => write!(f, "{what}: {source}"),
            CliError::Io { what, path, source } => write!(f, "{what} {}: {source}", path.display()),
            CliError::Runtime { context, source } if context.is_empty() => source.fmt(f),
            CliError::Runtime { context, source } => write!(f, "{context}: {source}"),
            CliError::Cleanup { id, errors } => {
                write!(f, "delete {id}: ")?;
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    e.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CliError::Io { source, .. } => Some(source),
            CliError::Runtime { source, .. } => Some(source),
            CliError::Cleanup { errors, .. } => errors.first().map(|e| e as _),
            CliError::Usage(_) | CliError::State(_) | CliError::Process(_) => None,
        }
    }
}

impl From<crate::Error> for CliError {
    fn from(e: crate::Error) -> CliError {
        CliError::Runtime { context: String::new(), source: e }
    }
}

impl From<keel_sys::Error> for CliError {
    fn from(e: keel_sys::Error) -> CliError {
        CliError::Runtime { context: String::new(), source: e.into() }
    }
}

/// Encoding JSON output (state, list, ps, features) failed.
impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> CliError {
        let field = "encode JSON".to_string();
        CliError::Runtime {
            context: String::new(),
            source: crate::Error::Invalid { path: PathBuf::new(), field, msg: e.to_string() },
        }
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

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
                return Err(CliError::usage(format!("flag provided but not defined: -{name}")));
            };
            let long = def.trim_end_matches('=').split('|').next().unwrap_or(name).to_string();
            if def.ends_with('=') {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        argv.get(i)
                            .cloned()
                            .ok_or_else(|| CliError::usage(format!("flag needs an argument: -{name}")))?
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
        let id = self.pos.first().ok_or_else(|| CliError::usage(format!("{verb}: container id cannot be empty")))?;
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
        Err(CliError::usage(format!("invalid container id format: {id:?}")))
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
            eprintln!("keel-runc: {e}");
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
            globals.log("error", &e.to_string());
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
        other => Err(CliError::usage(format!("No help topic for '{other}'"))),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            let msg = e.to_string();
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
        assert!(Args::parse(&v(&["--nope"]), &spec).unwrap_err().to_string().contains("not defined"));
        assert!(Args::parse(&v(&["--bundle"]), &spec).unwrap_err().to_string().contains("needs an argument"));
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

    #[test]
    fn errors_read_as_runc_and_chain() {
        use std::error::Error as _;
        assert_eq!(CliError::state("container does not exist").to_string(), "container does not exist");
        let e = CliError::io("read", "/run/x/state.json", std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(e.to_string().starts_with("read /run/x/state.json: Permission denied"), "{e}");
        assert!(e.source().is_some());
        let sys = keel_sys::Error::sys("kill", "", keel_sys::Errno(libc::ESRCH));
        let e = CliError::runtime("kill c1 (pid 7)", sys);
        assert_eq!(e.to_string(), format!("kill c1 (pid 7): kill: {}", keel_sys::Errno(libc::ESRCH)));
        assert!(e.source().and_then(|s| s.source()).is_some(), "runtime error -> errno");
        let e = CliError::Cleanup { id: "c1".into(), errors: vec![CliError::state("a"), CliError::state("b")] };
        assert_eq!(e.to_string(), "delete c1: a; b");
    }
}
