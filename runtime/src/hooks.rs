//! OCI hooks: preparing them (C strings built before clone) and running one with the container state on stdin and
//! an optional timeout. The runner does not allocate, so the container's setup child can use it for
//! createContainer/startContainer hooks; the parent uses it for prestart/createRuntime, poststart and poststop.

use std::ffi::{c_char, CString};
use std::fmt::Write;

use crate::spec::Hook;
use crate::sys::{self, StackBuf};
use crate::{Bundle, Error};

/// A hook ready to exec: NUL-terminated argv/envp arrays.
pub struct PreparedHook {
    pub path: CString,
    _args: Vec<CString>,
    _env: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    /// Milliseconds, or -1 for none.
    pub timeout_ms: i32,
}

impl std::fmt::Debug for PreparedHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PreparedHook({:?})", self.path)
    }
}

impl PreparedHook {
    /// Prepare `h`, which the config names `field` ("hooks.prestart[0]"): a NUL byte in its path, an argument or an
    /// environment entry is an error naming it.
    pub fn new(h: &Hook, field: &str) -> Result<PreparedHook, sys::Error> {
        let path = sys::cstring(&format!("{field}.path"), &h.path)?;
        let args: Vec<CString> = if h.args.is_empty() {
            vec![path.clone()]
        } else {
            let mut v = Vec::with_capacity(h.args.len());
            for (i, a) in h.args.iter().enumerate() {
                v.push(sys::cstring(&format!("{field}.args[{i}]"), a)?);
            }
            v
        };
        let mut env: Vec<CString> = Vec::with_capacity(h.env.len());
        for (i, e) in h.env.iter().enumerate() {
            env.push(sys::cstring(&format!("{field}.env[{i}]"), e)?);
        }
        let mut argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const c_char> = env.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        let timeout_ms = h.timeout.map(|t| (t.clamp(1, 2_000_000) * 1000) as i32).unwrap_or(-1);
        Ok(PreparedHook { path, _args: args, _env: env, argv, envp, timeout_ms })
    }
}

/// Why a hook failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookFailure {
    /// fork/pipe failed (errno).
    Spawn(i32),
    /// exec of the hook failed or it exited non-zero (exit code).
    Exit(i32),
    /// Killed by a signal.
    Signal(i32),
    /// Did not finish within its timeout (it was killed).
    Timeout,
}

impl HookFailure {
    /// Append "hook KIND PATH: reason" to `m`.
    pub fn describe(&self, m: &mut StackBuf, kind: &str, hook: &PreparedHook) {
        let p = sys::show(&hook.path);
        let _ = match *self {
            HookFailure::Spawn(e) => write!(m, "{kind} hook {p}: {} (errno {e})", sys::strerror(e)),
            HookFailure::Exit(c) => write!(m, "{kind} hook {p}: exited with status {c}"),
            HookFailure::Signal(s) => write!(m, "{kind} hook {p}: killed by signal {s}"),
            HookFailure::Timeout => write!(m, "{kind} hook {p}: timed out after {} ms", hook.timeout_ms),
        };
    }
}

/// Run one hook, writing `state` (concatenated parts) to its stdin, and wait for it (bounded by its timeout).
pub fn run(hook: &PreparedHook, state: &[&[u8]]) -> Result<(), HookFailure> {
    let mut sv = [0i32; 2];
    // A socketpair rather than a pipe: send(MSG_NOSIGNAL) cannot raise SIGPIPE if the hook ignores its stdin.
    // SAFETY: sv is a valid 2-int array.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) } != 0 {
        return Err(HookFailure::Spawn(sys::errno()));
    }
    // SAFETY: fork-like clone; the child only calls async-signal-safe functions (dup2, execve, _exit).
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0) } as i32;
    if pid < 0 {
        let e = sys::errno();
        // SAFETY: closing our own fds.
        unsafe {
            libc::close(sv[0]);
            libc::close(sv[1]);
        }
        return Err(HookFailure::Spawn(e));
    }
    if pid == 0 {
        // SAFETY: child of the clone above: set stdin, restore default signal state, exec, or exit.
        unsafe {
            libc::dup2(sv[1], 0);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            libc::execve(hook.path.as_ptr(), hook.argv.as_ptr(), hook.envp.as_ptr());
            libc::_exit(127);
        }
    }
    // SAFETY: closing our copy of the child's end.
    unsafe { libc::close(sv[1]) };
    for part in state {
        let mut buf = *part;
        while !buf.is_empty() {
            // SAFETY: buf is a valid slice; MSG_NOSIGNAL avoids SIGPIPE.
            let n = unsafe { libc::send(sv[0], buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
            if n <= 0 {
                if n < 0 && sys::errno() == libc::EINTR {
                    continue;
                }
                break;
            }
            buf = &buf[n as usize..];
        }
    }
    // SAFETY: our end; closing gives the hook EOF on stdin.
    unsafe { libc::close(sv[0]) };
    wait_pid(pid, hook.timeout_ms)
}

/// Wait for `pid` (our own child) with an optional timeout in ms (-1: none); kill it on timeout.
pub fn wait_pid(pid: i32, timeout_ms: i32) -> Result<(), HookFailure> {
    if timeout_ms >= 0 {
        // SAFETY: pidfd_open on our own child; returns a new fd or -1.
        let pfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        if pfd >= 0 {
            let mut p = libc::pollfd { fd: pfd, events: libc::POLLIN, revents: 0 };
            let r = loop {
                // SAFETY: p is a valid pollfd.
                let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
                if r < 0 && sys::errno() == libc::EINTR {
                    continue;
                }
                break r;
            };
            // SAFETY: our fd.
            unsafe { libc::close(pfd) };
            if r == 0 {
                // SAFETY: pid is our child, not yet reaped.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
                return Err(HookFailure::Timeout);
            }
        }
    }
    let mut st = 0;
    loop {
        // SAFETY: waiting for our own child only.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
        if r < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        if r < 0 {
            return Err(HookFailure::Spawn(sys::errno()));
        }
        break;
    }
    if libc::WIFEXITED(st) {
        match libc::WEXITSTATUS(st) {
            0 => Ok(()),
            c => Err(HookFailure::Exit(c)),
        }
    } else {
        Err(HookFailure::Signal(libc::WTERMSIG(st)))
    }
}

/// The OCI state JSON, split around the pid so the child can fill it in without allocating:
/// `prefix + PID + suffix`.
pub fn state_parts(bundle: &Bundle, id: &str, status: &str) -> (Vec<u8>, Vec<u8>) {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let prefix = format!(r#"{{"ociVersion":"1.2.0","id":{},"status":{},"pid":"#, q(id), q(status));
    let annotations = serde_json::to_string(&bundle.spec.annotations).unwrap_or_else(|_| "{}".into());
    let suffix = format!(r#","bundle":{},"annotations":{}}}"#, q(&bundle.dir.to_string_lossy()), annotations);
    (prefix.into_bytes(), suffix.into_bytes())
}

/// The complete state JSON.
pub fn state_json(bundle: &Bundle, id: &str, status: &str, pid: i32) -> Vec<u8> {
    let (mut p, s) = state_parts(bundle, id, status);
    p.extend_from_slice(pid.to_string().as_bytes());
    p.extend_from_slice(&s);
    p
}

/// Where warnings about failed poststart/poststop hooks go (default: stderr). keel-runc sends them to its log too.
static WARN: std::sync::OnceLock<fn(&str)> = std::sync::OnceLock::new();

/// Route hook warnings to `f` (first call wins).
pub fn set_warning_sink(f: fn(&str)) {
    let _ = WARN.set(f);
}

fn warn(msg: &str) {
    match WARN.get() {
        Some(f) => f(msg),
        None => eprintln!("warning: {msg}"),
    }
}

/// Whether a failure of this kind of hook only warns (runtime-spec: "If any poststart hook fails, the runtime MUST
/// log a warning, but the remaining hooks and lifecycle continue as if the hook had succeeded"; poststop alike).
pub fn failure_only_warns(kind: &str) -> bool {
    matches!(kind, "poststart" | "poststop")
}

/// Run a list of hooks in the runtime namespace (parent side). prestart/createRuntime: stop at the first failure
/// and return it. poststart/poststop: run every hook, log a warning for each failure, return Ok.
pub fn run_list(kind: &str, hooks: &[Hook], bundle: &Bundle, id: &str, status: &str, pid: i32) -> Result<(), Error> {
    if hooks.is_empty() {
        return Ok(());
    }
    let state = state_json(bundle, id, status, pid);
    for (i, h) in hooks.iter().enumerate() {
        let p = PreparedHook::new(h, &format!("hooks.{kind}[{i}]"))?;
        if let Err(f) = run(&p, &[&state]) {
            let mut m = StackBuf::new();
            f.describe(&mut m, kind, &p);
            let msg = String::from_utf8_lossy(m.as_bytes()).into_owned();
            if failure_only_warns(kind) {
                warn(&format!("container {id}: {msg}"));
                continue;
            }
            return Err(Error::Setup { bundle: bundle.name.clone(), msg });
        }
    }
    Ok(())
}

/// Run the bundle's poststart hooks for the container process `pid` (state "running"). For callers of spawn, after
/// [`crate::Spawned::poll_status`] says Started. Failures only warn (see [`run_list`]).
pub fn run_poststart(bundle: &Bundle, pid: i32) -> Result<(), Error> {
    run_poststart_for(bundle, &bundle.name, pid)
}

/// [`run_poststart`] with the container id the state JSON names (keel-runc's id rather than the bundle's name).
pub fn run_poststart_for(bundle: &Bundle, id: &str, pid: i32) -> Result<(), Error> {
    let Some(h) = &bundle.spec.hooks else { return Ok(()) };
    run_list("poststart", &h.poststart, bundle, id, "running", pid)
}
