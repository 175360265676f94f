//! The container's setup child, from clone to exec. Everything it needs is prepared by the parent as a [`Plan`]
//! (C strings, masks, compiled seccomp) so this side only makes syscalls and never allocates. Each failure is
//! reported as one line on the status pipe ("what path: strerror (errno N)") and the child exits 127.
//!
//! Order (runc/youki, see field-notes): cgroup, join namespaces, fds, wait for the parent (user ns maps), make `/`
//! rslave, bind the rootfs, spec mounts, extra binds, devices, createRuntime sync, createContainer hooks, sysctls,
//! readonly and masked paths, deferred read-only tmpfs remounts, pivot_root, readonly root, hostname, ns reaper fork, rlimits, personality, umask, cwd,
//! ids, capabilities, no_new_privs, resolve the program, exec fifo, startContainer hooks, seccomp, signals, exec.

use std::ffi::{c_char, CString};
use std::fmt::Write;

use crate::caps::CapSets;
use crate::devices::DeviceStep;
use crate::hooks::PreparedHook;
use crate::namespaces::Join;
use crate::rootfs::MountStep;
use crate::sys::{self, fail, StackBuf};

/// Everything the child does, prepared before clone.
pub struct Plan {
    pub status_w: i32,
    /// SEQPACKET socket to the parent, or -1.
    pub sync: i32,
    /// A new user namespace: become its root once the parent has written the maps.
    pub new_user: bool,
    /// stdin/stdout/stderr sources (stdout/stderr -1: keep the inherited one).
    pub stdio: [i32; 3],
    pub preserve: Vec<i32>,
    pub cgroup_procs: i32,
    /// Hybrid host: cgroup.procs of the container's cgroup in each v1 hierarchy, joined first thing (clone3's
    /// CLONE_INTO_CGROUP covers only v2).
    pub cgroup_procs_v1: Vec<i32>,
    pub joins: Vec<Join>,
    /// Build the rootfs in a new mount namespace; else if `chroot_only`, just chroot into it.
    pub setup_root: bool,
    pub chroot_only: bool,
    pub root_propagation: libc::c_ulong,
    /// With a shared root propagation: the mount containing the rootfs, made private first (runc's
    /// rootfsParentMountPrivate) so the rootfs bind does not propagate to the host and pivot_root accepts it.
    pub private_parent: Option<CString>,
    pub rootfs: CString,
    pub mounts: Vec<MountStep>,
    pub devices: Vec<DeviceStep>,
    pub links: Vec<(CString, CString)>,
    /// Read-only tmpfs mounts made read-write so mount points and devices could be created beneath them: remounted
    /// read-only once the tree is complete (runc's finalizeRootfs).
    pub remount_ro: Vec<(CString, CString)>,
    pub sysctl: Vec<(CString, CString)>,
    pub readonly_paths: Vec<CString>,
    pub masked_paths: Vec<CString>,
    pub no_pivot: bool,
    pub readonly_root: bool,
    pub hostname: Option<CString>,
    pub domainname: Option<CString>,
    pub rlimits: Vec<(libc::c_int, u64, u64)>,
    pub oom_score_adj: Option<CString>,
    pub personality: Option<libc::c_ulong>,
    pub umask: libc::mode_t,
    pub uid: u32,
    pub gid: u32,
    pub groups: Option<Vec<libc::gid_t>>,
    pub caps: Option<CapSets>,
    pub last_cap: u32,
    pub no_new_privs: bool,
    pub seccomp: Option<Vec<libc::sock_filter>>,
    pub seccomp_flags: Vec<String>,
    pub cwd: CString,
    pub arg0: CString,
    pub exec_paths: Vec<CString>,
    pub _argv: Vec<CString>,
    pub _envp: Vec<CString>,
    pub argv: Vec<*const c_char>,
    pub envp: Vec<*const c_char>,
    /// runc create: (fd of the fifo's directory, fifo file name, full path for messages). A directory fd because
    /// the host path is out of reach after pivot_root; openat through it still works.
    pub exec_fifo: Option<(i32, CString, CString)>,
    pub ns_reaper: bool,
    /// The sealed memfd holding keel-reaper (see reaper.rs), or -1: the reaper then is a fork of this child.
    pub reaper_memfd: i32,
    pub create_container: Vec<PreparedHook>,
    pub start_container: Vec<PreparedHook>,
    pub state_prefix: Vec<u8>,
    pub state_suffix: Vec<u8>,
    /// Stop before pivot_root so the parent runs prestart/createRuntime hooks.
    pub runtime_hooks_sync: bool,
    pub dev_null: CString,
    /// Connected console socket (runc --console-socket with process.terminal), or -1; and the console size.
    pub console: i32,
    pub console_size: (u16, u16),
    /// Signals whose disposition the caller changed (bit `sig - 1`), and whether SIGPIPE is among them as ignored.
    pub changed_signals: u64,
    pub sigpipe_ignored: bool,
}

fn fail_at(fd: i32, what: &str, path: &CString, e: i32) -> ! {
    fail(fd, what, sys::show(path), e)
}

/// Read one message from the sync socket; EOF or error means the parent is gone.
fn sync_read(fd: i32, buf: &mut [u8], status: i32) -> usize {
    loop {
        // SAFETY: buf is a valid writable slice.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            sys::fail_msg(status, b"setup: lost the runtime (sync socket closed)");
        }
        return n as usize;
    }
}

/// Run the child side. Never returns.
pub fn run(p: &Plan) -> ! {
    let mut status = p.status_w;
    // Only dispositions the caller changed need a reset (the parent found them once per process, see
    // `sys::changed_signals`): handlers are replaced at exec anyway, but must not run here; ignored signals would
    // stay ignored across exec. SIGPIPE stays ignored until exec so a write to a closed pipe is an error, not death.
    // SAFETY: changing dispositions of this process only.
    unsafe {
        if !p.sigpipe_ignored {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGPIPE && p.changed_signals & sys::sig_bit(sig) != 0 {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }

    if p.cgroup_procs >= 0 && !sys::write_all(p.cgroup_procs, b"0") {
        fail(status, "join cgroup", "cgroup.procs", sys::errno());
    }
    for &fd in &p.cgroup_procs_v1 {
        if !sys::write_all(fd, b"0") {
            fail(status, "join v1 cgroup", "cgroup.procs", sys::errno());
        }
    }
    if let Some(oom) = &p.oom_score_adj {
        // Host /proc here (before any pivot): /proc/self is this process.
        // SAFETY: valid C strings.
        let fd = unsafe { libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 || !sys::write_all(fd, oom.as_bytes()) {
            fail(status, "write", "/proc/self/oom_score_adj", sys::errno());
        }
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
    }
    for j in &p.joins {
        // SAFETY: setns on an fd prepared by the parent.
        if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&j.fd), j.nstype) } != 0 {
            fail_at(status, "setns", &j.path, sys::errno());
        }
    }

    // fds: copy every source above the target range, then dup2 into place (clears CLOEXEC), close the rest.
    let n = 3 + p.preserve.len() as i32;
    let base = n.max(3);
    let dup_high = |fd: i32| -> i32 {
        if fd < 0 {
            return -1;
        }
        // The raw syscall: musl's fcntl(F_DUPFD_CLOEXEC) follows it with a redundant F_SETFD.
        // SAFETY: duplicating an fd we hold.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fcntl,
                fd as libc::c_long,
                libc::F_DUPFD_CLOEXEC as libc::c_long,
                base as libc::c_long,
            )
        } as i32;
        if r < 0 {
            fail(p.status_w, "dup fd", "", sys::errno());
        }
        r
    };
    status = dup_high(status);
    let sync = dup_high(p.sync);
    let fifo_dir = p.exec_fifo.as_ref().map_or(-1, |f| dup_high(f.0));
    let console = dup_high(p.console);
    let reaper_memfd = dup_high(p.reaper_memfd);
    let mut src = [0i32; 3];
    for (i, s) in p.stdio.iter().enumerate() {
        src[i] = if *s >= 0 { dup_high(*s) } else { dup_high(i as i32) };
    }
    let mut pres_buf = [0i32; 64];
    let np = p.preserve.len().min(64);
    for (slot, fd) in pres_buf.iter_mut().zip(&p.preserve) {
        *slot = dup_high(*fd);
    }
    for (i, s) in src.iter().enumerate() {
        // SAFETY: dup2 onto a target fd number.
        if unsafe { libc::dup2(*s, i as i32) } < 0 {
            fail(status, "dup2 stdio", "", sys::errno());
        }
    }
    for (i, s) in pres_buf[..np].iter().enumerate() {
        // SAFETY: as above.
        if unsafe { libc::dup2(*s, 3 + i as i32) } < 0 {
            fail(status, "dup2 preserved fd", "", sys::errno());
        }
    }
    sys::close_fds_from(base, &[status, sync, fifo_dir, console, reaper_memfd]);

    let mut host_pid: i32 = 0;
    if sync >= 0 {
        let mut b = [0u8; 8];
        if sync_read(sync, &mut b, status) >= 4 {
            host_pid = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    if p.new_user {
        // Until now our ids are unmapped in the new namespace (mkdir would fail with EOVERFLOW): become its root, as
        // runc does. Fails harmlessly if the maps do not include id 0; the final ids are set later anyway.
        // SAFETY: credential syscalls on this process only.
        unsafe {
            libc::syscall(libc::SYS_setresgid, 0, 0, 0);
            libc::syscall(libc::SYS_setresuid, 0, 0, 0);
        }
    }

    if p.setup_root {
        if p.root_propagation != 0 {
            // SAFETY: valid C strings; propagation change of our own (new) mount namespace.
            if unsafe {
                libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), p.root_propagation, std::ptr::null())
            } != 0
            {
                fail(status, "set propagation of", "/", sys::errno());
            }
        }
        if let Some(mp) = &p.private_parent {
            // SAFETY: valid C string; propagation change in our own mount namespace.
            if unsafe {
                libc::mount(std::ptr::null(), mp.as_ptr(), std::ptr::null(), libc::MS_PRIVATE, std::ptr::null())
            } != 0
            {
                fail_at(status, "make rootfs parent mount private", mp, sys::errno());
            }
        }
        // SAFETY: valid C strings; bind the rootfs on itself so it is a mount point pivot_root accepts.
        if unsafe {
            libc::mount(
                p.rootfs.as_ptr(),
                p.rootfs.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
        } != 0
        {
            fail_at(status, "bind rootfs", &p.rootfs, sys::errno());
        }
        for m in &p.mounts {
            if let Err((what, e)) = crate::rootfs::mount(m) {
                let mut msg = StackBuf::new();
                let _ = write!(msg, "{what} {}: {} (errno {e})", sys::show(&m.display), sys::strerror(e));
                sys::fail_msg(status, msg.as_bytes());
            }
        }
        if !p.devices.is_empty() {
            // umask 0 while creating nodes so mknod gives the exact mode (no chmod per node). It is set to the
            // process's umask further down; only createContainer hooks run in between and must see the old one.
            // SAFETY: umask only changes this process's file creation mask.
            let old = unsafe { libc::umask(0) };
            for d in &p.devices {
                if let Err((what, e)) = crate::devices::create(d) {
                    fail_at(status, what, &d.display, e);
                }
            }
            if !p.create_container.is_empty() {
                // SAFETY: as above.
                unsafe { libc::umask(old) };
            }
        }
        for (target, link) in &p.links {
            // SAFETY: valid C strings. An existing entry is left alone.
            if unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) } != 0 && sys::errno() != libc::EEXIST {
                fail_at(status, "symlink", link, sys::errno());
            }
        }
    }

    let write_state = |hook: &PreparedHook, kind: &str| {
        let mut num = [0u8; 24];
        let pid = sys::itoa(host_pid as i64, &mut num);
        if let Err(f) = crate::hooks::run(hook, &[&p.state_prefix, pid, &p.state_suffix]) {
            let mut m = StackBuf::new();
            f.describe(&mut m, kind, hook);
            sys::fail_msg(status, m.as_bytes());
        }
    };
    if p.runtime_hooks_sync && sync >= 0 {
        // SAFETY: sending one byte on our socket.
        unsafe { libc::send(sync, b"H".as_ptr().cast(), 1, libc::MSG_NOSIGNAL) };
        let mut b = [0u8; 1024];
        let n = sync_read(sync, &mut b, status);
        if !(n == 1 && b[0] == 0) {
            sys::fail_msg(status, &b[..n]);
        }
    }
    for h in &p.create_container {
        write_state(h, "createContainer");
    }

    if p.setup_root {
        for (path, value) in &p.sysctl {
            // SAFETY: valid C string.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC | libc::O_TRUNC) };
            if fd < 0 || !sys::write_all(fd, value.as_bytes()) {
                fail_at(status, "write sysctl", path, sys::errno());
            }
            // SAFETY: our fd.
            unsafe { libc::close(fd) };
        }
        for path in &p.readonly_paths {
            if let Err(e) = crate::rootfs::readonly(path) {
                fail_at(status, "make readonly path", path, e);
            }
        }
        for path in &p.masked_paths {
            if let Err(e) = crate::rootfs::mask(path, &p.dev_null) {
                fail_at(status, "mask path", path, e);
            }
        }
        for (path, display) in &p.remount_ro {
            if let Err(e) = crate::rootfs::remount(path, libc::MS_RDONLY) {
                fail_at(status, "remount read-only", display, e);
            }
        }
        if let Err((what, e)) = crate::rootfs::switch_root(&p.rootfs, p.no_pivot) {
            fail_at(status, what, &p.rootfs, e);
        }
        if p.readonly_root {
            if let Err(e) = crate::rootfs::remount(c"/", libc::MS_RDONLY) {
                fail(status, "remount read-only", "/", e);
            }
        }
    } else if p.chroot_only {
        // SAFETY: valid C strings.
        if unsafe { libc::chroot(p.rootfs.as_ptr()) } != 0 || unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
            fail_at(status, "chroot", &p.rootfs, sys::errno());
        }
    }

    if console >= 0 {
        if let Err((what, e)) = crate::console::setup(console, p.console_size.0, p.console_size.1) {
            fail(status, what, "", e);
        }
    }

    // SAFETY: valid C strings and lengths.
    unsafe {
        if let Some(h) = &p.hostname {
            if libc::sethostname(h.as_ptr(), h.as_bytes().len()) != 0 {
                fail_at(status, "sethostname", h, sys::errno());
            }
        }
        if let Some(d) = &p.domainname {
            if libc::setdomainname(d.as_ptr(), d.as_bytes().len()) != 0 {
                fail_at(status, "setdomainname", d, sys::errno());
            }
        }
    }

    if p.ns_reaper {
        crate::reaper::fork_reaper(status, reaper_memfd);
    }

    for &(res, soft, hard) in &p.rlimits {
        if let Err(e) = crate::rlimits::set(res, soft, hard) {
            fail(status, "setrlimit", "", e);
        }
    }
    // SAFETY: plain syscalls with integer arguments.
    unsafe {
        if let Some(pers) = p.personality {
            if libc::personality(pers) < 0 {
                fail(status, "personality", "", sys::errno());
            }
        }
        libc::umask(p.umask);
        // A missing cwd is created (runc does too), while we are still root.
        if libc::chdir(p.cwd.as_ptr()) != 0
            && (sys::errno() != libc::ENOENT
                || sys::mkdir_p(&p.cwd, 0o755).is_err()
                || libc::chdir(p.cwd.as_ptr()) != 0)
        {
            fail_at(status, "chdir", &p.cwd, sys::errno());
        }
    }
    if let Some(c) = &p.caps {
        if let Err((cap, e)) = crate::caps::drop_bounding(c.bounding, p.last_cap) {
            fail(status, "drop bounding capability", crate::caps::name(cap).unwrap_or("?"), e);
        }
    }
    // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it while we still have it (runc does too).
    if !p.no_new_privs {
        install_seccomp(p, status);
    }
    if let Err((what, e)) = crate::identity::set(p.uid, p.gid, p.groups.as_deref()) {
        fail(status, what, "", e);
    }
    if let Some(c) = &p.caps {
        if let Err((what, e)) = crate::caps::apply(c, p.last_cap) {
            fail(status, what, "", e);
        }
    }
    // SAFETY: prctl with integer arguments.
    if p.no_new_privs && unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        fail(status, "prctl(PR_SET_NO_NEW_PRIVS)", "", sys::errno());
    }
    if sync >= 0 {
        // SAFETY: our fd.
        unsafe { libc::close(sync) };
    }
    // Resolve the program inside the new root before blocking on the exec fifo, as runc does (its LookPath): a
    // missing binary then fails `create` with the message, not the execve after `start` where nobody reads it.
    let exec_path = match resolve_exec(&p.exec_paths) {
        Ok(path) => path,
        Err(e) => fail_at(status, "exec", &p.arg0, e),
    };
    if let Some((_, name, full)) = &p.exec_fifo {
        // Blocks until `start` opens it for reading (runc create semantics).
        // SAFETY: valid C string; fifo_dir is our directory fd.
        let fd = unsafe { libc::openat(fifo_dir, name.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            fail_at(status, "open exec fifo", full, sys::errno());
        }
        // SAFETY: our fd.
        unsafe { libc::close(fifo_dir) };
        sys::write_all(fd, b"0");
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
    }
    // startContainer hooks are part of `start` (runtime-spec: called as part of the start operation, before the
    // user program): after the exec fifo, so `keel-runc create` does not run them.
    for h in &p.start_container {
        write_state(h, "startContainer");
    }
    if p.no_new_privs {
        install_seccomp(p, status);
    }
    // SAFETY: restoring the default signal state the new program expects, then exec.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    // SAFETY: argv/envp are NULL-terminated arrays of valid C strings owned by the plan.
    unsafe { libc::execve(exec_path.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr()) };
    fail_at(status, "exec", &p.arg0, sys::errno())
}

/// The first candidate that is an executable non-directory (Go's exec.LookPath, which runc uses); else the errno
/// to report: ENOENT, or EACCES/another error met on the way.
fn resolve_exec(paths: &[CString]) -> Result<&CString, i32> {
    let mut err = libc::ENOENT;
    for path in paths {
        // SAFETY: stat into a zeroed struct we own; path is a valid C string.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::stat(path.as_ptr(), &mut st) } != 0 {
            let e = sys::errno();
            if e != libc::ENOENT && e != libc::ENOTDIR {
                err = e;
            }
            continue;
        }
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR || st.st_mode & 0o111 == 0 {
            err = libc::EACCES;
            continue;
        }
        return Ok(path);
    }
    Err(err)
}

fn install_seccomp(p: &Plan, status: i32) {
    if let Some(prog) = &p.seccomp {
        if let Err(e) = crate::seccomp::install(prog, &p.seccomp_flags) {
            fail(status, "install seccomp filter", "", e as i32);
        }
    }
}
