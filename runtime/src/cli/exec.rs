//! `keel-runc exec [--process|-p FILE] [--tty|-t] [--console-socket S] [--detach|-d] [--pid-file F]
//! [--env|-e K=V]... [--cwd DIR] [--user|-u UID[:GID]] [--additional-gids|-g GID]... [--cap|-c CAP]...
//! [--no-new-privs] [--preserve-fds N] ID [CMD ARGS...]`: run another process in a running container.
//!
//! The new process joins the container's namespaces through /proc/PID/ns/* (the pid and time namespaces by the
//! keel-runc process itself before fork, since they only apply to children), its cgroup, and gets the identity,
//! capabilities, rlimits, no_new_privs and seccomp filter of process.json or, by default, of the container's own
//! process (runc semantics). Everything that allocates is prepared before fork; the child makes only raw syscalls.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::state_dir::{self, Status};
use super::{Args, CliResult, Globals};
use crate::spec::Process;
use crate::{cli_err, seccomp, Bundle};

const FLAGS: [&str; 14] = [
    "process|p=",
    "tty|t",
    "console-socket=",
    "detach|d",
    "pid-file=",
    "env|e=",
    "cwd=",
    "user|u=",
    "additional-gids|g=",
    "cap|c=",
    "no-new-privs",
    "preserve-fds=",
    "apparmor=",
    "process-label=",
];

/// Capability names in kernel order (bit n = CAP_n): the one table in caps.rs.
use crate::caps::NAMES as CAPS;

fn cap_mask(names: &[String], field: &str) -> CliResult<u64> {
    let mut m = 0u64;
    for n in names {
        let up = n.to_ascii_uppercase();
        let full = if up.starts_with("CAP_") { up } else { format!("CAP_{up}") };
        match CAPS.iter().position(|c| *c == full) {
            Some(i) => m |= 1 << i,
            None => return Err(cli_err!("{field}: unknown capability {n:?}")),
        }
    }
    Ok(m)
}

/// Everything the child needs, prepared before fork.
struct Plan {
    /// (fd, nstype) to setns into in the child, user first.
    ns: Vec<(OwnedFd, libc::c_int)>,
    cgroup_procs: Option<OwnedFd>,
    cgroup_procs_v1: Vec<OwnedFd>,
    cwd: CString,
    /// Candidate paths for execve (PATH search inside the container).
    paths: Vec<CString>,
    /// "exec ARG0", the child's message when no candidate path can be executed.
    exec_what: String,
    argv: Vec<CString>,
    envp: Vec<CString>,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    umask: Option<u32>,
    rlimits: Vec<(libc::c_int, libc::rlimit)>,
    caps: [u64; 5], // bounding, effective, permitted, inheritable, ambient
    no_new_privs: bool,
    seccomp: Option<(Vec<libc::sock_filter>, Vec<String>)>,
    tty_slave: Option<OwnedFd>,
    preserve_fds: i32,
}

fn build_process(a: &Args, bundle: &Bundle) -> CliResult<Process> {
    if let Some(f) = a.get("process") {
        let text = std::fs::read(f).map_err(|e| cli_err!("read process file {f}: {e}"))?;
        return serde_json::from_slice(&text).map_err(|e| cli_err!("process file {f}: {e}"));
    }
    let mut p = bundle.spec.process.clone().unwrap_or_default();
    p.args = a.pos[1..].to_vec();
    if p.args.is_empty() {
        return Err(cli_err!("exec: no command given (args or --process)"));
    }
    p.terminal = a.has("tty");
    for kv in a.all("env") {
        let key = kv.split('=').next().unwrap_or_default().to_string();
        p.env.retain(|e| e.split('=').next() != Some(key.as_str()));
        p.env.push(kv);
    }
    if let Some(c) = a.get("cwd") {
        p.cwd = c.to_string();
    }
    if let Some(u) = a.get("user") {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u, None),
        };
        p.user.uid = uid.parse().map_err(|_| cli_err!("--user {u:?}: numeric UID[:GID] expected"))?;
        p.user.gid = match gid {
            Some(g) => g.parse().map_err(|_| cli_err!("--user {u:?}: numeric UID[:GID] expected"))?,
            None => 0,
        };
    }
    for g in a.all("additional-gids") {
        p.user.additional_gids.push(g.parse().map_err(|_| cli_err!("--additional-gids {g:?}: not a number"))?);
    }
    if a.has("no-new-privs") {
        p.no_new_privileges = true;
    }
    let extra = a.all("cap");
    if !extra.is_empty() {
        let mut c = p.capabilities.clone().unwrap_or_default();
        for set in [&mut c.bounding, &mut c.effective, &mut c.permitted, &mut c.ambient] {
            set.extend(extra.iter().cloned());
        }
        p.capabilities = Some(c);
    }
    Ok(p)
}

fn cstr(s: &str) -> CliResult<CString> {
    CString::new(s).map_err(|_| cli_err!("{s:?} contains a NUL byte"))
}

fn plan(a: &Args, g: &Globals, st: &state_dir::State, bundle: &Bundle, p: &Process) -> CliResult<Plan> {
    // Namespaces: those of the container's process that differ from ours.
    let mut ns = Vec::new();
    for (name, flag) in [
        ("user", libc::CLONE_NEWUSER),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("mnt", libc::CLONE_NEWNS),
    ] {
        let theirs = format!("/proc/{}/ns/{name}", st.pid);
        let Ok(m) = std::fs::metadata(&theirs) else { continue };
        let same = std::fs::metadata(format!("/proc/self/ns/{name}")).map(|o| o.ino() == m.ino()).unwrap_or(false);
        if !same {
            let f = std::fs::File::open(&theirs).map_err(|e| cli_err!("open {theirs}: {e}"))?;
            ns.push((OwnedFd::from(f), flag));
        }
    }
    let _ = g;
    let cgroup_procs = if st.cgroup.as_os_str().is_empty() {
        None
    } else {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(st.cgroup.join("cgroup.procs"))
            .map_err(|e| cli_err!("open {}/cgroup.procs: {e}", st.cgroup.display()))?;
        Some(OwnedFd::from(f))
    };
    // Hybrid host: the container's cgroups in the v1 hierarchies too.
    let mut cgroup_procs_v1 = Vec::new();
    if !st.cgroup.as_os_str().is_empty() {
        for d in crate::cgroups::v1_leaves(&st.cgroup) {
            let procs = d.join("cgroup.procs");
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&procs)
                .map_err(|e| cli_err!("open {}: {e}", procs.display()))?;
            cgroup_procs_v1.push(OwnedFd::from(f));
        }
    }
    let argv: Vec<CString> = p.args.iter().map(|s| cstr(s)).collect::<CliResult<_>>()?;
    let Some(arg0) = p.args.first() else { return Err(cli_err!("process.args must not be empty")) };
    let envp: Vec<CString> = p.env.iter().map(|s| cstr(s)).collect::<CliResult<_>>()?;
    let paths = if arg0.contains('/') {
        vec![cstr(arg0)?]
    } else {
        let path = p
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':').filter(|d| !d.is_empty()).map(|d| cstr(&format!("{d}/{arg0}"))).collect::<CliResult<_>>()?
    };
    let cwd = cstr(if p.cwd.is_empty() { "/" } else { &p.cwd })?;
    let mut rlimits = Vec::new();
    for r in &p.rlimits {
        let res =
            crate::rlimits::resource(&r.kind).ok_or_else(|| cli_err!("process.rlimits: unknown type {:?}", r.kind))?;
        rlimits.push((res, libc::rlimit { rlim_cur: r.soft, rlim_max: r.hard }));
    }
    let c = p.capabilities.clone().unwrap_or_default();
    let caps = [
        cap_mask(&c.bounding, "process.capabilities.bounding")?,
        cap_mask(&c.effective, "process.capabilities.effective")?,
        cap_mask(&c.permitted, "process.capabilities.permitted")?,
        cap_mask(&c.inheritable, "process.capabilities.inheritable")?,
        cap_mask(&c.ambient, "process.capabilities.ambient")?,
    ];
    let seccomp = match bundle.spec.linux.as_ref().and_then(|l| l.seccomp.as_ref()) {
        Some(s) => Some((seccomp::compile(s)?, s.flags.clone())),
        None => None,
    };
    let tty_slave = if p.terminal {
        match a.get("console-socket") {
            Some(sock) => Some(send_pty_master(sock)?),
            None => None, // no socket: the process shares keel-runc's terminal, if any
        }
    } else {
        None
    };
    let preserve_fds = match a.get("preserve-fds") {
        Some(n) => n.parse().map_err(|_| cli_err!("invalid value {n:?} for flag --preserve-fds"))?,
        None => 0,
    };
    Ok(Plan {
        ns,
        cgroup_procs,
        cgroup_procs_v1,
        cwd,
        exec_what: format!("exec {arg0}"),
        paths,
        argv,
        envp,
        uid: p.user.uid,
        gid: p.user.gid,
        groups: p.user.additional_gids.clone(),
        umask: p.user.umask,
        rlimits,
        caps,
        no_new_privs: p.no_new_privileges,
        seccomp,
        tty_slave,
        preserve_fds,
    })
}

/// Open a pty, send its master over the unix socket at `path` (SCM_RIGHTS, as runc's --console-socket), return
/// the slave.
fn send_pty_master(path: &str) -> CliResult<OwnedFd> {
    let pty = nix::pty::openpty(None, None).map_err(|e| cli_err!("openpty: {e}"))?;
    let sock = std::os::unix::net::UnixStream::connect(path).map_err(|e| cli_err!("connect {path}: {e}"))?;
    let fds = [pty.master.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(b"/dev/ptmx")];
    nix::sys::socket::sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, nix::sys::socket::MsgFlags::empty(), None)
        .map_err(|e| cli_err!("send pty master to {path}: {e}"))?;
    Ok(pty.slave)
}

/// Child side: never returns. Writes "what\0errno" to `err_fd` and exits 127 on failure.
fn child(p: &Plan, err_fd: RawFd) -> ! {
    let fail = |what: &str, errno: i32| -> ! {
        let mut buf = [0u8; 128];
        let w = what.as_bytes();
        let n = w.len().min(120);
        buf[..n].copy_from_slice(&w[..n]);
        buf[n..n + 4].copy_from_slice(&errno.to_le_bytes());
        // SAFETY: write/_exit are async-signal-safe; buf is valid for n+4 bytes.
        unsafe {
            libc::write(err_fd, buf.as_ptr().cast(), n + 4);
            libc::_exit(127)
        }
    };
    let errno = || Errno::last_raw();
    // SAFETY: raw syscalls on fds and pointers prepared before fork; nothing here allocates or locks.
    unsafe {
        // Default signal dispositions and an empty mask (keel-runc's forwarding handlers must not leak in).
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        if let Some(fd) = &p.cgroup_procs {
            if libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                fail("join the container's cgroup", errno());
            }
        }
        for fd in &p.cgroup_procs_v1 {
            if libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                fail("join the container's v1 cgroup", errno());
            }
        }
        for (fd, flag) in &p.ns {
            if libc::setns(fd.as_raw_fd(), *flag) != 0 {
                fail("setns", errno());
            }
        }
        if let Some(slave) = &p.tty_slave {
            libc::setsid();
            if libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) != 0 {
                fail("ioctl(TIOCSCTTY)", errno());
            }
            for i in 0..3 {
                libc::dup2(slave.as_raw_fd(), i);
            }
        }
        if libc::chdir(p.cwd.as_ptr()) != 0 {
            fail("chdir to process.cwd", errno());
        }
        for (res, lim) in &p.rlimits {
            // __rlimit_resource_t (u32) on glibc, c_int on musl.
            if libc::setrlimit(*res as _, lim) != 0 {
                fail("setrlimit", errno());
            }
        }
        if let Some(m) = p.umask {
            libc::umask(m as libc::mode_t);
        }
        // Bounding set first (needs CAP_SETPCAP, still held as root).
        for cap in 0..64u64 {
            if p.caps[0] & (1 << cap) == 0 && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                if errno() == libc::EINVAL {
                    break; // past the kernel's last capability
                }
                fail("prctl(PR_CAPBSET_DROP)", errno());
            }
        }
        // Without no_new_privs the filter needs CAP_SYS_ADMIN: install it while still root (as runc does); the
        // identity and capability syscalls below then go through it.
        if !p.no_new_privs {
            if let Some((prog, flags)) = &p.seccomp {
                if let Err(e) = seccomp::install(prog, flags) {
                    fail("seccomp", e as i32);
                }
            }
        }
        if libc::setgroups(p.groups.len(), p.groups.as_ptr()) != 0 {
            fail("setgroups", errno());
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
        if libc::syscall(libc::SYS_setresgid, p.gid, p.gid, p.gid) != 0 {
            fail("setresgid", errno());
        }
        if libc::syscall(libc::SYS_setresuid, p.uid, p.uid, p.uid) != 0 {
            fail("setresuid", errno());
        }
        #[repr(C)]
        struct Hdr {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        struct Data {
            e: u32,
            p: u32,
            i: u32,
        }
        let hdr = Hdr { version: 0x2008_0522, pid: 0 };
        let [_, eff, perm, inh, amb] = p.caps;
        let data = [
            Data { e: eff as u32, p: perm as u32, i: inh as u32 },
            Data { e: (eff >> 32) as u32, p: (perm >> 32) as u32, i: (inh >> 32) as u32 },
        ];
        if libc::syscall(libc::SYS_capset, &hdr as *const Hdr, data.as_ptr()) != 0 {
            fail("capset", errno());
        }
        for cap in 0..64u64 {
            if amb & (1 << cap) != 0
                && libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap as libc::c_ulong, 0, 0) != 0
            {
                fail("prctl(PR_CAP_AMBIENT_RAISE)", errno());
            }
        }
        if p.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail("prctl(PR_SET_NO_NEW_PRIVS)", errno());
        }
        // Extra fds 3..3+N survive exec.
        for fd in 3..3 + p.preserve_fds {
            let fl = libc::fcntl(fd, libc::F_GETFD);
            if fl >= 0 {
                libc::fcntl(fd, libc::F_SETFD, fl & !libc::FD_CLOEXEC);
            }
        }
        let mut argv: [*const libc::c_char; 256] = [std::ptr::null(); 256];
        for (i, a) in p.argv.iter().take(255).enumerate() {
            argv[i] = a.as_ptr();
        }
        let mut envp: [*const libc::c_char; 512] = [std::ptr::null(); 512];
        for (i, e) in p.envp.iter().take(511).enumerate() {
            envp[i] = e.as_ptr();
        }
        if p.no_new_privs {
            if let Some((prog, flags)) = &p.seccomp {
                if let Err(e) = seccomp::install(prog, flags) {
                    fail("seccomp", e as i32);
                }
            }
        }
        let mut last = libc::ENOENT;
        for path in &p.paths {
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            last = errno();
            if last != libc::ENOENT && last != libc::ENOTDIR && last != libc::EACCES {
                break;
            }
        }
        fail(&p.exec_what, last)
    }
}

pub fn main(g: &Globals, argv: &[String]) -> CliResult<i32> {
    let a = Args::parse(argv, &FLAGS)?;
    let id = a.id("exec")?;
    let st = state_dir::load(g, &id)?;
    match state_dir::status(g, &st) {
        Status::Running | Status::Created => {}
        s => return Err(cli_err!("cannot exec in a {} container", s.as_str())),
    }
    let bundle = Bundle::load(&st.bundle)?;
    let process = build_process(&a, &bundle)?;
    let plan = plan(&a, g, &st, &bundle, &process)?;
    // pid and time namespaces apply to children only: join them here, before fork.
    for (name, flag) in [("pid", libc::CLONE_NEWPID), ("time", 0x80)] {
        let theirs = format!("/proc/{}/ns/{name}", st.pid);
        let Ok(m) = std::fs::metadata(&theirs) else { continue };
        let mine = format!("/proc/self/ns/{}", if name == "pid" { "pid_for_children" } else { "time_for_children" });
        if std::fs::metadata(&mine).map(|o| o.ino() == m.ino()).unwrap_or(false) {
            continue;
        }
        let f = std::fs::File::open(&theirs).map_err(|e| cli_err!("open {theirs}: {e}"))?;
        // SAFETY: setns on a valid namespace fd; only affects children created from now on.
        if unsafe { libc::setns(f.as_raw_fd(), flag) } != 0 {
            return Err(cli_err!("setns {theirs}: {}", Errno::last()));
        }
    }
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| cli_err!("pipe: {e}"))?;
    if !a.has("detach") {
        super::run::install_forwarding();
    }
    // SAFETY: keel-runc is single-threaded here; the child only makes raw syscalls on prepared data.
    let pid = match unsafe { libc::fork() } {
        -1 => return Err(cli_err!("fork: {}", Errno::last())),
        0 => child(&plan, wr.as_raw_fd()),
        pid => pid,
    };
    drop(wr);
    drop(plan);
    // EOF: exec'd. Otherwise "what" + errno.
    let mut buf = [0u8; 128];
    // SAFETY: read into a valid buffer from our pipe end.
    let n = unsafe { libc::read(rd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: taking back ownership to close it.
    drop(unsafe { OwnedFd::from_raw_fd(rd.into_raw_fd()) });
    if n > 4 {
        let n = n as usize;
        let what = String::from_utf8_lossy(&buf[..n - 4]).into_owned();
        let errno = i32::from_le_bytes([buf[n - 4], buf[n - 3], buf[n - 2], buf[n - 1]]);
        let _ = waitpid(Pid::from_raw(pid), None);
        return Err(cli_err!("exec failed: {what}: {} (errno {errno})", Errno::from_raw(errno).desc()));
    }
    if let Some(f) = a.get("pid-file").filter(|s| !s.is_empty()) {
        state_dir::write_pid_file(std::path::Path::new(f), pid)?;
    }
    if a.has("detach") {
        return Ok(0);
    }
    super::run::set_forward_target(pid);
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, c)) => return Ok(c),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(cli_err!("waitpid {pid}: {e}")),
        }
    }
}
