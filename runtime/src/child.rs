//! The container's setup child, from clone to exec: one path for create, run and exec, as a short sequence of named
//! steps (crun's `container_init_setup`). Everything it needs is prepared by the parent as a [`Plan`] (C strings,
//! masks, compiled seccomp) so this side only makes syscalls and never allocates. Each failure is reported as one
//! line on the status pipe ("what path: strerror (errno N)") and the child exits 127.
//!
//! Trust: the child is made non-dumpable before anything else, so until it execs the user's program no process of
//! the container can open its /proc/PID/{exe,fd,mem,cwd,root}; every fd but the ones it needs is closed before any
//! container code (a hook, the program) can run; every path inside the rootfs is resolved by fd inside the root
//! ([`crate::inroot`]); /proc writes go through a private, verified procfs ([`crate::procfs`]); the working directory
//! is checked to be inside the root. The runtime's own binary is a sealed memfd copy ([`crate::sealed`]), so even a
//! `#!/proc/self/exe` program reaches nothing it could write.

use std::ffi::{c_char, CString};
use std::fmt::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::caps::CapSets;
use crate::devices::DeviceStep;
use crate::hooks::PreparedHook;
use crate::namespaces::Join;
use crate::procfs::{self, FdPath};
use crate::rootfs::{self, MountStep};
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
    /// Build the rootfs (in a new or joined mount namespace); else if `chroot_only`, just chroot into it; neither:
    /// exec into a running container (the joined mount namespace is its root).
    pub setup_root: bool,
    pub chroot_only: bool,
    /// Propagation of "/" before the rootfs is bound (rslave, or linux.rootfsPropagation).
    pub root_propagation: libc::c_ulong,
    /// linux.rootfsPropagation, applied again to the new "/" after pivot_root (as runc: set before, it would have
    /// reached the host).
    pub reapply_propagation: Option<libc::c_ulong>,
    /// The mount containing the rootfs, made private first (runc's rootfsParentMountPrivate) when "/" was made
    /// shared or unbindable, so the rootfs bind neither propagates to the host nor fails and pivot_root accepts it.
    pub private_parent: Option<CString>,
    /// Host path of the rootfs (from the bundle, trusted); opened once bound, used by fd after that.
    pub rootfs: CString,
    pub mounts: Vec<MountStep>,
    pub devices: Vec<DeviceStep>,
    /// Symlinks (target, path inside the container).
    pub links: Vec<(CString, CString)>,
    /// Read-only tmpfs mounts made read-write so mount points and devices could be created beneath them: remounted
    /// read-only once the tree is complete (runc's finalizeRootfs). Paths inside the container.
    pub remount_ro: Vec<CString>,
    /// (key relative to /proc/sys, value).
    pub sysctl: Vec<(CString, CString)>,
    pub readonly_paths: Vec<CString>,
    pub masked_paths: Vec<CString>,
    pub no_pivot: bool,
    pub readonly_root: bool,
    pub hostname: Option<CString>,
    pub domainname: Option<CString>,
    /// Make the process a session and process-group leader (runc does for every container's first process; for
    /// exec only with a terminal).
    pub setsid: bool,
    pub process: ProcessPlan,
    /// runc create: (O_PATH fd of the exec fifo, its path for messages). The child reopens it for writing through
    /// its procfs and blocks until `start` opens it for reading; it holds no directory of the host.
    pub exec_fifo: Option<(i32, CString)>,
    pub ns_reaper: bool,
    /// The sealed memfd holding keel-reaper (see reaper.rs), or -1: the reaper then is a fork of this child.
    pub reaper_memfd: i32,
    pub create_container: Vec<PreparedHook>,
    pub start_container: Vec<PreparedHook>,
    pub state_prefix: Vec<u8>,
    pub state_suffix: Vec<u8>,
    /// Stop before pivot_root so the parent runs prestart/createRuntime hooks.
    pub runtime_hooks_sync: bool,
    /// Connected console socket (runc --console-socket with process.terminal), or -1; and the console size.
    pub console: i32,
    pub console_size: (u16, u16),
    /// Signals whose disposition the caller changed (bit `sig - 1`), and whether SIGPIPE is among them as ignored.
    pub changed_signals: u64,
    pub sigpipe_ignored: bool,
}

/// The process part of a plan: who the program runs as and what it runs (shared by create/run and exec).
pub struct ProcessPlan {
    pub rlimits: Vec<(libc::c_int, u64, u64)>,
    pub oom_score_adj: Option<CString>,
    pub personality: Option<libc::c_ulong>,
    pub umask: Option<libc::mode_t>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Option<Vec<libc::gid_t>>,
    pub caps: Option<CapSets>,
    pub last_cap: u32,
    pub no_new_privs: bool,
    pub seccomp: Option<Vec<libc::sock_filter>>,
    pub seccomp_flags: Vec<String>,
    pub cwd: CString,
    /// Create a missing cwd (runc does for the container's first process, not for exec).
    pub create_cwd: bool,
    pub arg0: CString,
    pub exec_paths: Vec<CString>,
    pub _argv: Vec<CString>,
    pub _envp: Vec<CString>,
    pub argv: Vec<*const c_char>,
    pub envp: Vec<*const c_char>,
}

/// The child's fds after [`arrange_fds`], all above the container's range (0..3+preserved).
struct Fds {
    status: i32,
    sync: i32,
    fifo: i32,
    console: i32,
    reaper_memfd: i32,
}

/// Run the child side. Never returns.
pub fn run(p: &Plan) -> ! {
    harden(p);
    join_cgroups(p);
    set_oom_score_adj(p);
    join_namespaces(p);
    let fds = arrange_fds(p);
    let host_pid = wait_parent(p, &fds);
    if p.setsid {
        // SAFETY: setsid affects this process only. It fails only for a group leader, which a fresh child is not.
        unsafe { libc::setsid() };
    }
    let mut proc_fd: Option<OwnedFd> = None;
    let root = if p.setup_root {
        let proc = open_procfs(fds.status);
        let root = prepare_root(p, &fds, &proc);
        mount_tree(p, &fds, root.as_fd());
        proc_fd = Some(proc);
        Some(root)
    } else {
        None
    };
    runtime_hooks(p, &fds, host_pid, root.as_ref());
    if let (Some(root), Some(proc)) = (&root, &proc_fd) {
        finish_tree(p, &fds, root.as_fd(), proc.as_fd());
        enter_root(p, &fds, root, proc.as_fd());
    }
    drop(root);
    if !p.setup_root && p.chroot_only {
        chroot(p, &fds);
    }
    setup_console(&fds, p.console_size, if p.setup_root { proc_fd.as_ref() } else { None });
    set_hostname(p, &fds);
    if p.ns_reaper {
        crate::reaper::fork_reaper(fds.status, fds.reaper_memfd);
    }
    setup_process(&p.process, fds.status);
    let exec_path = resolve_exec(&p.process, fds.status);
    wait_for_start(p, &fds, &mut proc_fd);
    for h in &p.start_container {
        run_hook(p, &fds, h, "startContainer", host_pid);
    }
    drop(proc_fd);
    exec(&p.process, fds.status, exec_path)
}

fn fail_at(fd: i32, what: &str, path: &CString, e: i32) -> ! {
    fail(fd, what, sys::show(path), e)
}

/// Not dumpable until exec: /proc/PID/{exe,fd,mem,environ,cwd,root} of this process (still a copy of the runtime,
/// holding host fds) are then out of reach of every process but root with CAP_SYS_PTRACE in the initial user
/// namespace (CVE-2019-5736, CVE-2016-9962). execve makes the user's program dumpable again. Then reset the signal
/// dispositions the caller changed: handlers are replaced at exec anyway but must not run here; ignored signals
/// would stay ignored across exec. SIGPIPE stays ignored until exec so a write to a closed pipe is an error.
fn harden(p: &Plan) {
    // SAFETY: prctl with integer arguments; changing dispositions of this process only.
    unsafe {
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            fail(p.status_w, "prctl(PR_SET_DUMPABLE)", "", sys::errno());
        }
        if !p.sigpipe_ignored {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGPIPE && p.changed_signals & sys::sig_bit(sig) != 0 {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

fn join_cgroups(p: &Plan) {
    if p.cgroup_procs >= 0 && !sys::write_all(p.cgroup_procs, b"0") {
        fail(p.status_w, "join cgroup", "cgroup.procs", sys::errno());
    }
    for &fd in &p.cgroup_procs_v1 {
        if !sys::write_all(fd, b"0") {
            fail(p.status_w, "join v1 cgroup", "cgroup.procs", sys::errno());
        }
    }
}

fn set_oom_score_adj(p: &Plan) {
    let Some(oom) = &p.process.oom_score_adj else { return };
    // Host /proc here (before any namespace is joined or the root changes): /proc/self is this process.
    // SAFETY: valid C strings.
    let fd = unsafe { libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 || !sys::write_all(fd, oom.as_bytes()) {
        fail(p.status_w, "write", "/proc/self/oom_score_adj", sys::errno());
    }
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
}

fn join_namespaces(p: &Plan) {
    for j in &p.joins {
        // SAFETY: setns on an fd prepared by the parent.
        if unsafe { libc::setns(j.fd.as_raw_fd(), j.nstype) } != 0 {
            fail_at(p.status_w, "setns", &j.path, sys::errno());
        }
    }
}

/// stdio and preserved fds into place (0, 1, 2, then 3..3+N with close-on-exec cleared), the child's own fds moved
/// above them, and every other fd closed: nothing of the caller's reaches the container (CVE-2024-21626).
fn arrange_fds(p: &Plan) -> Fds {
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
    let status = dup_high(p.status_w);
    let fds = Fds {
        status,
        sync: dup_high(p.sync),
        fifo: p.exec_fifo.as_ref().map_or(-1, |f| dup_high(f.0)),
        console: dup_high(p.console),
        reaper_memfd: dup_high(p.reaper_memfd),
    };
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
        // SAFETY: dup2 onto a target fd number (dup2 clears close-on-exec on the copy).
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
    sys::close_fds_from(base, &[fds.status, fds.sync, fds.fifo, fds.console, fds.reaper_memfd]);
    fds
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

/// Wait for the parent (user namespace maps, bindNS) when it asked for a sync; returns our pid as the host sees it.
fn wait_parent(p: &Plan, fds: &Fds) -> i32 {
    let mut host_pid = 0;
    if fds.sync >= 0 {
        let mut b = [0u8; 8];
        if sync_read(fds.sync, &mut b, fds.status) >= 4 {
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
    host_pid
}

fn open_procfs(status: i32) -> OwnedFd {
    match procfs::open() {
        Ok(fd) => fd,
        Err((what, e)) => fail(status, what, "", e),
    }
}

/// Propagation of "/", the rootfs's parent mount made private if needed, the rootfs bound on itself (a mount
/// point pivot_root accepts) and opened: from here on the root is an fd. The working directory becomes the private
/// procfs, from which `self/fd/N` mount targets are resolved.
fn prepare_root(p: &Plan, fds: &Fds, proc: &OwnedFd) -> OwnedFd {
    let status = fds.status;
    if p.root_propagation != 0 {
        // SAFETY: valid C strings; propagation change of our own mount namespace.
        if unsafe {
            libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), p.root_propagation, std::ptr::null())
        } != 0
        {
            fail(status, "set propagation of", "/", sys::errno());
        }
    }
    if let Some(mp) = &p.private_parent {
        // SAFETY: valid C string; propagation change in our own mount namespace.
        if unsafe { libc::mount(std::ptr::null(), mp.as_ptr(), std::ptr::null(), libc::MS_PRIVATE, std::ptr::null()) }
            != 0
        {
            fail_at(status, "make rootfs parent mount private", mp, sys::errno());
        }
    }
    // SAFETY: valid C strings; bind the rootfs on itself.
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
    // SAFETY: valid C string; a new fd or -1.
    let fd = unsafe { libc::open(p.rootfs.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        fail_at(status, "open rootfs", &p.rootfs, sys::errno());
    }
    // SAFETY: fchdir to our procfs fd.
    if unsafe { libc::fchdir(proc.as_raw_fd()) } != 0 {
        fail(status, "chdir to private procfs", "", sys::errno());
    }
    // SAFETY: a fresh fd we own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Spec mounts (and extra binds), device nodes, /dev symlinks: each target resolved inside the root when used.
fn mount_tree(p: &Plan, fds: &Fds, root: BorrowedFd) {
    let status = fds.status;
    for m in &p.mounts {
        if let Err((what, e)) = rootfs::mount(m, root) {
            let mut msg = StackBuf::new();
            let _ = write!(msg, "{what} {}: {} (errno {e})", sys::show(&m.dest), sys::strerror(e));
            sys::fail_msg(status, msg.as_bytes());
        }
    }
    if !p.devices.is_empty() {
        // umask 0 while creating nodes so mknod gives the exact mode (no chmod per node); the process's own umask is
        // set in setup_process.
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0) };
        for d in &p.devices {
            if let Err((what, e)) = crate::devices::create(d, root) {
                fail_at(status, what, &d.dest, e);
            }
        }
        // SAFETY: as above (createContainer hooks must see the caller's umask).
        unsafe { libc::umask(old) };
    }
    for (target, link) in &p.links {
        if let Err(e) = rootfs::symlink(root, target, link) {
            fail_at(status, "symlink", link, e);
        }
    }
}

/// prestart/createRuntime hooks (run by the parent while we wait), then createContainer hooks (here, in the
/// container's namespaces, before pivot_root, with the rootfs as working directory).
fn runtime_hooks(p: &Plan, fds: &Fds, host_pid: i32, root: Option<&OwnedFd>) {
    if p.runtime_hooks_sync && fds.sync >= 0 {
        if let Err(e) = sys::io::send(fds.sync, b"H") {
            fail(fds.status, "ask the runtime for the prestart/createRuntime hooks on the sync socket", "", e.0);
        }
        let mut b = [0u8; 1024];
        let n = sync_read(fds.sync, &mut b, fds.status);
        if !(n == 1 && b[0] == 0) {
            sys::fail_msg(fds.status, &b[..n]);
        }
    }
    if fds.sync >= 0 {
        // SAFETY: our fd; nothing more is said on it.
        unsafe { libc::close(fds.sync) };
    }
    if p.create_container.is_empty() {
        return;
    }
    if let Some(root) = root {
        // SAFETY: fchdir to our rootfs fd.
        unsafe { libc::fchdir(root.as_raw_fd()) };
    }
    for h in &p.create_container {
        run_hook(p, fds, h, "createContainer", host_pid);
    }
}

fn run_hook(p: &Plan, fds: &Fds, hook: &PreparedHook, kind: &str, host_pid: i32) {
    let mut num = [0u8; 24];
    let pid = sys::itoa(host_pid as i64, &mut num);
    if let Err(f) = crate::hooks::run(hook, &[&p.state_prefix, pid, &p.state_suffix]) {
        let mut m = StackBuf::new();
        f.describe(&mut m, kind, hook);
        sys::fail_msg(fds.status, m.as_bytes());
    }
}

/// Sysctls (through the private procfs, in the container's namespaces), readonly and masked paths, deferred
/// read-only remounts.
fn finish_tree(p: &Plan, fds: &Fds, root: BorrowedFd, proc: BorrowedFd) {
    let status = fds.status;
    // SAFETY: fchdir to our procfs fd (a createContainer hook may have moved us).
    if unsafe { libc::fchdir(proc.as_raw_fd()) } != 0 {
        fail(status, "chdir to private procfs", "", sys::errno());
    }
    for (key, value) in &p.sysctl {
        if let Err(e) = procfs::write_sysctl(proc, key, value.as_bytes()) {
            fail_at(status, "write sysctl /proc/sys/", key, e);
        }
    }
    for path in &p.readonly_paths {
        if let Err(e) = rootfs::readonly(root, path) {
            fail_at(status, "make readonly path", path, e);
        }
    }
    if !p.masked_paths.is_empty() {
        let null = open_null(status);
        for path in &p.masked_paths {
            if let Err(e) = rootfs::mask(root, path, null.as_raw_fd()) {
                fail_at(status, "mask path", path, e);
            }
        }
    }
    for path in &p.remount_ro {
        if let Err(e) = rootfs::remount_at(root, path, libc::MS_RDONLY) {
            fail_at(status, "remount read-only", path, e);
        }
    }
}

/// The null device to bind over masked files: /dev/null of our mount namespace (before pivot_root: the host's, or
/// the joined namespace's), checked to be the character device 1:3, so a link planted there never redirects the
/// mask (CVE-2025-31133). Opened here, not by the parent: a bind source must be in our own mount namespace.
fn open_null(status: i32) -> OwnedFd {
    // SAFETY: valid C string; a new fd or -1.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        fail(status, "open", "/dev/null", sys::errno());
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed out-parameter; fd is ours.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        fail(status, "stat", "/dev/null", sys::errno());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        fail(status, "mask paths: not the null device:", "/dev/null", libc::ENODEV);
    }
    fd
}

/// pivot_root into the rootfs (or move + chroot), the configured propagation on the new "/", readonly root.
fn enter_root(p: &Plan, fds: &Fds, root: &OwnedFd, proc: BorrowedFd) {
    if let Err((what, e)) = rootfs::switch_root(root.as_fd(), proc, p.no_pivot) {
        fail_at(fds.status, what, &p.rootfs, e);
    }
    if let Some(flags) = p.reapply_propagation {
        // SAFETY: valid C strings; propagation change of our own root.
        if unsafe { libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), flags, std::ptr::null()) } != 0 {
            fail(fds.status, "set rootfsPropagation of", "/", sys::errno());
        }
    }
    if p.readonly_root {
        // SAFETY: valid C string; a new fd or -1.
        let fd = unsafe { libc::open(c"/".as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        // `self/fd/N` is resolved from the procfs: work from there for this one call.
        // SAFETY: fchdir to our procfs fd.
        if fd < 0 || unsafe { libc::fchdir(proc.as_raw_fd()) } != 0 {
            fail(fds.status, "remount read-only", "/", sys::errno());
        }
        if let Err(e) = rootfs::remount(fd, libc::MS_RDONLY) {
            fail(fds.status, "remount read-only", "/", e);
        }
        // SAFETY: our fd; back to the root.
        unsafe {
            libc::close(fd);
            libc::chdir(c"/".as_ptr());
        }
    }
}

fn chroot(p: &Plan, fds: &Fds) {
    // SAFETY: valid C strings.
    if unsafe { libc::chroot(p.rootfs.as_ptr()) } != 0 || unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
        fail_at(fds.status, "chroot", &p.rootfs, sys::errno());
    }
}

/// runc's --console-socket: a pty opened in the container's devpts, its master sent to the caller, the slave our
/// stdio and controlling terminal; in a container of our own making it is also bound onto /dev/console (as runc).
fn setup_console(fds: &Fds, size: (u16, u16), proc: Option<&OwnedFd>) {
    if fds.console < 0 {
        return;
    }
    if let Err((what, e)) = crate::console::setup(fds.console, size.0, size.1) {
        fail(fds.status, what, "", e);
    }
    let Some(proc) = proc else { return };
    // SAFETY: valid C string; a new fd or -1.
    let root = unsafe { libc::open(c"/".as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if root < 0 {
        fail(fds.status, "open", "/", sys::errno());
    }
    // SAFETY: a fresh fd we own.
    let root = unsafe { OwnedFd::from_raw_fd(root) };
    let target = crate::inroot::open_or_create(root.as_fd(), c"/dev/console", crate::inroot::Kind::File)
        .unwrap_or_else(|e| fail(fds.status, "create", "/dev/console", e));
    // `self/fd/N` is resolved from the procfs: work from there for this one call. The slave is our fd 0 now.
    // SAFETY: fchdir to our procfs fd; valid C strings; then back to the root.
    let r = unsafe {
        if libc::fchdir(proc.as_raw_fd()) != 0 {
            -1
        } else {
            libc::mount(
                c"self/fd/0".as_ptr(),
                FdPath::new(target.as_raw_fd()).as_cstr().as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        }
    };
    if r != 0 {
        fail(fds.status, "bind the terminal on", "/dev/console", sys::errno());
    }
    // SAFETY: valid C string.
    unsafe { libc::chdir(c"/".as_ptr()) };
}

fn set_hostname(p: &Plan, fds: &Fds) {
    // SAFETY: valid C strings and lengths.
    unsafe {
        if let Some(h) = &p.hostname {
            if libc::sethostname(h.as_ptr(), h.as_bytes().len()) != 0 {
                fail_at(fds.status, "sethostname", h, sys::errno());
            }
        }
        if let Some(d) = &p.domainname {
            if libc::setdomainname(d.as_ptr(), d.as_bytes().len()) != 0 {
                fail_at(fds.status, "setdomainname", d, sys::errno());
            }
        }
    }
}

/// rlimits, personality, umask, working directory (checked inside the root), bounding set, seccomp when it needs
/// privileges, ids, capabilities, no_new_privs.
fn setup_process(p: &ProcessPlan, status: i32) {
    for &(res, soft, hard) in &p.rlimits {
        if let Err(e) = crate::rlimits::set(res, soft, hard) {
            fail(status, "setrlimit", "", e);
        }
    }
    // SAFETY: plain syscalls with integer arguments or valid C strings.
    unsafe {
        if let Some(pers) = p.personality {
            if libc::personality(pers) < 0 {
                fail(status, "personality", "", sys::errno());
            }
        }
        if let Some(m) = p.umask {
            libc::umask(m);
        }
        // A missing cwd of the container's first process is created (runc does too), while we are still root.
        if libc::chdir(p.cwd.as_ptr()) != 0
            && (!p.create_cwd
                || sys::errno() != libc::ENOENT
                || sys::mkdir_p(&p.cwd, 0o755).is_err()
                || libc::chdir(p.cwd.as_ptr()) != 0)
        {
            fail_at(status, "chdir", &p.cwd, sys::errno());
        }
    }
    if let Err(e) = rootfs::cwd_inside_root() {
        fail_at(status, "chdir (outside the container's root)", &p.cwd, e);
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
}

/// Resolve the program inside the new root before blocking on the exec fifo, as runc does (its LookPath): a
/// missing binary then fails `create` with the message, not the execve after `start` where nobody reads it.
fn resolve_exec(p: &ProcessPlan, status: i32) -> &CString {
    let mut err = libc::ENOENT;
    for path in &p.exec_paths {
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
        return path;
    }
    exec_failed(p, status, err)
}

/// runc's wording (Go's exec.LookPath errors), which Docker and podman match to pick exit codes 127 and 126:
/// `exec: "x": executable file not found in $PATH` for a bare name, `exec: "/x": stat /x: no such file or
/// directory`, `exec: "/x": permission denied`.
fn exec_failed(p: &ProcessPlan, status: i32, e: i32) -> ! {
    let mut m = StackBuf::new();
    let arg0 = sys::show(&p.arg0);
    let _ = write!(m, "exec: \"{arg0}\": ");
    let bare = !p.arg0.as_bytes().contains(&b'/');
    if bare && e == libc::ENOENT {
        let _ = m.write_str("executable file not found in $PATH");
    } else {
        if e == libc::ENOENT || e == libc::ENOTDIR {
            let _ = write!(m, "stat {arg0}: ");
        }
        let at = m.as_bytes().len();
        let _ = m.write_str(sys::strerror(e));
        m.lowercase_at(at);
    }
    let _ = write!(m, " (errno {e})");
    sys::fail_msg(status, m.as_bytes())
}

/// runc create: block until `start` opens the exec fifo for reading. The fifo is held as an O_PATH fd and reopened
/// for writing through the procfs (the child holds no directory of the host).
fn wait_for_start(p: &Plan, fds: &Fds, proc: &mut Option<OwnedFd>) {
    let Some((_, full)) = &p.exec_fifo else { return };
    if proc.is_none() {
        *proc = Some(open_procfs(fds.status));
    }
    let Some(procfd) = proc.as_ref() else { return };
    // Plain openat, not openat2: a seccomp filter without no_new_privs is already installed here, and older
    // profiles (Docker's before 20.10, runtime-tools') do not allow openat2. `self/fd/N` below a verified procfs.
    // SAFETY: valid dirfd and C string; a new fd or -1.
    let fd = unsafe {
        libc::openat(procfd.as_raw_fd(), FdPath::new(fds.fifo).as_cstr().as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC)
    };
    if fd < 0 {
        fail_at(fds.status, "open exec fifo", full, sys::errno());
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: our fd.
    unsafe { libc::close(fds.fifo) };
    if !sys::write_all(fd.as_raw_fd(), b"0") {
        fail_at(fds.status, "write exec fifo", full, sys::errno());
    }
}

fn install_seccomp(p: &ProcessPlan, status: i32) {
    if let Some(prog) = &p.seccomp {
        if let Err(e) = crate::seccomp::install(prog, &p.seccomp_flags) {
            fail(status, "install seccomp filter", "", e.0);
        }
    }
}

/// The last step: seccomp (with no_new_privs, as late as possible), default signal state, execve.
fn exec(p: &ProcessPlan, status: i32, path: &CString) -> ! {
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
    unsafe { libc::execve(path.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr()) };
    exec_failed(p, status, sys::errno())
}
