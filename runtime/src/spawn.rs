//! Starting a bundle's process, parent side: turn the bundle into a [`child::Plan`] (everything prepared, so the
//! child never allocates), create the cgroup, do LinuxKit's runtime.json preparation, clone once with the CLONE_NEW*
//! flags (clone3 + CLONE_INTO_CGROUP where possible), finish what must happen outside (user namespace maps,
//! bindNS, prestart/createRuntime hooks) and return. The child side is in [`crate::child`].

use std::cell::RefCell;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::child::Plan;
use crate::hooks;
use crate::mounts::parse_options;
use crate::spec::{NamespaceType, Process};
use crate::{namespaces, sys, Bundle, Error};

/// How the caller wants the container's process wired up. `Default` gives runc-like behaviour.
#[derive(Debug, Default, Clone)]
pub struct SpawnOptions {
    /// Container id: names the default cgroup and appears in errors.
    pub id: String,
    /// fd to use as the container's stdin; `None` opens /dev/null.
    pub stdin: Option<RawFd>,
    /// fd to use as stdout; `None` inherits the caller's.
    pub stdout: Option<RawFd>,
    /// fd to use as stderr; `None` inherits the caller's.
    pub stderr: Option<RawFd>,
    /// fds passed to the container as 3, 4, ... in this order, close-on-exec cleared (runc --preserve-fds).
    pub preserve_fds: Vec<RawFd>,
    /// Extra `KEY=VALUE` environment entries; they override the same keys of process.env.
    pub env: Vec<String>,
    /// Extra bind mounts (host path, absolute path inside the container), made after the spec's mounts,
    /// e.g. a NOTIFY_SOCKET. The target is created (file or dir to match the source) if missing.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// When the bundle asks for a new pid namespace, run a tiny reaper as its pid 1 that forwards
    /// signals to the real process and reaps orphans (like `docker run --init`).
    pub ns_reaper: bool,
    /// Mount point of the cgroup v2 hierarchy (default: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
    pub cgroup_root: Option<PathBuf>,
    /// Cgroup used when config.json has no cgroupsPath, relative to the cgroup root (e.g. "keel/web").
    /// `None` leaves the process in the caller's cgroup unless cgroupsPath or resources ask otherwise.
    pub default_cgroup: Option<String>,
    /// runc `create`: the child blocks before exec until this fifo is opened for reading by `start`.
    pub exec_fifo: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (runc --no-pivot).
    pub no_pivot: bool,
    /// runc --console-socket: allocate a pty, send the master over this unix socket, use the slave as stdio.
    pub console_socket: Option<PathBuf>,
}

/// A started container process. The caller owns reaping `pid`.
#[derive(Debug)]
pub struct Spawned {
    /// Pid of the container's first process (the ns reaper if one was asked for), in the caller's pid namespace.
    pub pid: i32,
    /// Read end (O_NONBLOCK, O_CLOEXEC) of the setup status pipe: EOF with no data means the process exec'd;
    /// otherwise the child wrote one UTF-8 error line (what failed, path, errno) and exits 127.
    pub status: OwnedFd,
    /// What poll_status saw last, once final.
    seen: RefCell<Option<Status>>,
    /// Container id (for hook state).
    id: String,
    /// runtime.json mounts made in the host mount namespace, in order.
    rt_mounts: Vec<PathBuf>,
    /// The container's cgroup directory, if spawn created/used one.
    cgroup: Option<PathBuf>,
    /// A process exec'd into a running container: nothing of the container's to clean up.
    exec: bool,
}

/// What [`Spawned::poll_status`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Setup still running (no EOF yet).
    Pending,
    /// The process exec'd its binary.
    Started,
    /// Setup failed before exec; the message names what failed and the errno.
    Failed(String),
}

impl Spawned {
    /// Non-blocking read of the status pipe. Call it when the fd is readable (or polls as readable).
    pub fn poll_status(&self) -> Status {
        if let Some(s) = self.seen.borrow().as_ref() {
            return s.clone();
        }
        let mut buf = [0u8; 1024];
        let s = match sys::read(self.status.as_raw_fd(), &mut buf) {
            sys::Io::Closed => Status::Started,
            sys::Io::Done(n) => Status::Failed(String::from_utf8_lossy(&buf[..n]).trim_end().to_string()),
            sys::Io::WouldBlock => return Status::Pending,
            sys::Io::Err(e) => Status::Failed(format!("read status pipe: {}", sys::Errno(e))),
        };
        *self.seen.borrow_mut() = Some(s.clone());
        s
    }

    /// Block (up to `timeout_ms`) until the setup outcome is known. For tools like keel-runc; PID 1 polls instead.
    pub fn wait_status(&self, timeout_ms: i32) -> Status {
        // An error (EBADF, ENOMEM) is seen by the read below.
        let _ = sys::io::poll_in(self.status.as_raw_fd(), timeout_ms);
        self.poll_status()
    }

    /// Rebuild the handle of a container spawned by another process (keel-runc `delete` after `create`), for
    /// [`Spawned::cleanup`]: the runtime.json mounts and the cgroup are derived from the bundle and `opts` exactly as
    /// spawn derived them. The status fd is /dev/null (the real pipe is gone): poll_status says Started.
    pub fn rebuild(bundle: &Bundle, opts: &SpawnOptions, pid: i32) -> std::io::Result<Spawned> {
        // Any fd that reads EOF at once: a pipe whose write end is closed (else /dev/null).
        let status = match pipe_cloexec(0) {
            Ok((r, _)) => r,
            Err(_) => OwnedFd::from(std::fs::File::open("/dev/null")?),
        };
        let mut rt_mounts = Vec::new();
        if let Some(rt) = &bundle.runtime {
            for m in &rt.mounts {
                if !m.options.iter().any(|o| o == "remount") {
                    let d = &m.destination;
                    rt_mounts.push(if d.starts_with('/') { PathBuf::from(d) } else { bundle.rootfs.join(d) });
                }
            }
        }
        let cgroup = cgroup_rel(bundle, opts)
            .map(|rel| opts.cgroup_root.clone().unwrap_or_else(cg::default_root).join(rel.trim_start_matches('/')));
        Ok(Spawned {
            pid,
            status,
            seen: RefCell::new(Some(Status::Started)),
            id: opts.id.clone(),
            rt_mounts,
            cgroup,
            exec: false,
        })
    }

    /// The cgroup directory the container runs in, if any.
    pub fn cgroup(&self) -> Option<&Path> {
        self.cgroup.as_deref()
    }

    /// Undo what spawn set up outside the container (runtime.json mounts, cgroup dir, poststop hooks).
    /// Call after the caller has reaped `pid`. Returns every error met; never panics.
    pub fn cleanup(&self, bundle: &Bundle) -> Vec<Error> {
        let mut errs = Vec::new();
        if self.exec {
            return errs;
        }
        if let Some(h) = &bundle.spec.hooks {
            if let Err(e) = hooks::run_list("poststop", &h.poststop, bundle, &self.id, "stopped", self.pid) {
                errs.push(e);
            }
        }
        undo_runtime_mounts(&self.rt_mounts, &mut errs);
        if let Some(cg) = &self.cgroup {
            if let Err(e) = cg::remove(cg) {
                errs.push(e);
            }
        }
        errs
    }
}

fn undo_runtime_mounts(mounts: &[PathBuf], errs: &mut Vec<Error>) {
    for m in mounts.iter().rev() {
        if let Err(e) = sys::umount(m, libc::MNT_DETACH) {
            errs.push(Error::os(format!("unmount runtime.json mount {}", m.display()), e));
        }
    }
}

/// cgroup v2 handling (R2's module: create with limits, remove, default root detection).
use crate::cgroups as cg;

/// Load the overlay module ourselves before the first overlay mount of this process, if the kernel lacks overlay
/// and /lib/modules/$(uname -r) has it (it has no dependencies). Otherwise the mount makes the kernel exec the
/// usermode modprobe helper (/proc/sys/kernel/modprobe: keel's multi-call binary) to do the same: under QEMU TCG
/// that exec and its index reading cost ~40 ms of guest time on top of the ~35 ms of finit_module, on the critical
/// path of the first spawn. Any failure here is ignored: the mount then asks the kernel as before.
fn preload_overlay() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let have = std::fs::read_to_string("/proc/filesystems").map(|t| t.lines().any(|l| l.ends_with("\toverlay")));
        if have.unwrap_or(true) {
            return;
        }
        let release = sys::kernel_release();
        if release.is_empty() {
            return;
        }
        let ko = format!("/lib/modules/{release}/kernel/fs/overlayfs/overlay.ko");
        if let Ok(f) = std::fs::File::open(ko) {
            // SAFETY: finit_module on our open fd with an empty NUL-terminated parameter string.
            unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), 0) };
        }
    });
}

/// LinuxKit runtime.json preparation in the host mount namespace: mounts (then mkdir), cgroups. Relative paths are
/// relative to the bundle's rootfs (LinuxKit's prepare.go). Pushes each mount made onto `done`.
fn prepare_runtime(bundle: &Bundle, cg_root: &Path, done: &mut Vec<PathBuf>) -> Result<(), Error> {
    let Some(rt) = &bundle.runtime else { return Ok(()) };
    let abs = |p: &str| if p.starts_with('/') { PathBuf::from(p) } else { bundle.rootfs.join(p) };
    for m in &rt.mounts {
        if m.kind.as_deref() == Some("overlay") {
            preload_overlay();
        }
        let dir = abs(&m.destination);
        for o in &m.options {
            if let Some((k, v)) = o.split_once('=') {
                if k == "upperdir" || k == "workdir" {
                    std::fs::create_dir_all(v).map_err(|err| Error::Io {
                        what: "runtime.json: create overlay dir",
                        path: PathBuf::from(v),
                        err,
                    })?;
                }
            }
        }
        let o = parse_options(&m.options);
        let kind = m.kind.as_deref().filter(|k| !k.is_empty());
        let src = m.source.as_deref().unwrap_or(kind.unwrap_or("none"));
        let data = (!o.data.is_empty()).then_some(o.data.as_str());
        // The mount point is created only when the mount says it is missing (it usually exists: one syscall).
        let mut created = false;
        let mut mount_retry = |f: &dyn Fn() -> Result<(), sys::Error>| -> Result<Result<(), sys::Error>, Error> {
            let r = f();
            if r.as_ref().err().and_then(sys::Error::errno) == Some(sys::Errno::ENOENT) && !created {
                created = true;
                std::fs::create_dir_all(&dir).map_err(|err| Error::Io {
                    what: "runtime.json: create mount point",
                    path: dir.clone(),
                    err,
                })?;
                return Ok(f());
            }
            Ok(r)
        };
        // Two calls when propagation is asked: one mount(2) combining MS_REMOUNT with MS_PRIVATE silently skips the
        // propagation change.
        if o.flags != 0 || o.propagation == 0 || !o.data.is_empty() || kind.is_some() {
            mount_retry(&|| sys::mount(src, &dir, kind.unwrap_or(""), o.flags, data.unwrap_or("")))?
                .map_err(|e| Error::os(format!("runtime.json: mount {} on {}", src, dir.display()), e))?;
            if o.flags & libc::MS_REMOUNT == 0 {
                done.push(dir.clone());
            }
        }
        if o.propagation != 0 {
            mount_retry(&|| sys::mount("", &dir, "", o.propagation, ""))?
                .map_err(|e| Error::os(format!("runtime.json: set propagation of {}", dir.display()), e))?;
        }
    }
    for d in &rt.mkdir {
        let dir = abs(d);
        std::fs::create_dir_all(&dir).map_err(|err| Error::Io { what: "runtime.json: mkdir", path: dir, err })?;
    }
    for c in &rt.cgroups {
        cg::create(cg_root, c, None)?;
    }
    Ok(())
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The cgroup (relative to the cgroup root) a bundle runs in: linux.cgroupsPath, else opts.default_cgroup, else
/// `keel/ID` when linux.resources asks for limits, else none (the caller's cgroup).
fn cgroup_rel(bundle: &Bundle, opts: &SpawnOptions) -> Option<String> {
    let linux = bundle.spec.linux.as_ref();
    linux
        .and_then(|l| l.cgroups_path.clone())
        .or_else(|| opts.default_cgroup.clone())
        .or_else(|| linux.and_then(|l| l.resources.as_ref()).map(|_| format!("keel/{}", opts.id)))
}

/// Start `bundle`'s process as described by `opts`. Returns once the process exists; setup errors
/// after clone arrive through [`Spawned::status`].
pub fn spawn(bundle: &Bundle, opts: &SpawnOptions) -> Result<Spawned, Error> {
    let linux = bundle.spec.linux.as_ref();
    let ns = namespaces::plan(linux)?;

    // cgroup, then runtime.json (it may mount the rootfs itself, e.g. LinuxKit's overlay for writable roots), then
    // the plan: mount targets are resolved against the rootfs as the container will see it.
    let cg_root = opts.cgroup_root.clone().unwrap_or_else(cg::default_root);
    let cgroup = match cgroup_rel(bundle, opts) {
        // No linux.resources still gets the device rules' defaults (deny, then runc's allowed list), as with runc.
        Some(rel) => {
            let none = cg::LinuxResources::default();
            Some(cg::create(&cg_root, &rel, Some(linux.and_then(|l| l.resources.as_ref()).unwrap_or(&none)))?)
        }
        None => None,
    };
    let mut rt_mounts = Vec::new();
    let undo = |rt_mounts: &[PathBuf], cgroup: &Option<PathBuf>| {
        let mut errs = Vec::new();
        undo_runtime_mounts(rt_mounts, &mut errs);
        if let Some(c) = cgroup {
            let _ = cg::remove(c);
        }
    };
    let res = prepare_runtime(bundle, &cg_root, &mut rt_mounts)
        .and_then(|()| crate::plan::for_bundle(bundle, opts, &ns, cgroup.as_deref(), &cg_root))
        .and_then(|mut plan| spawn_inner(bundle, opts, &ns, &mut plan, cgroup.as_deref(), None));
    match res {
        Ok((pid, status)) => {
            Ok(Spawned { pid, status, seen: RefCell::new(None), id: opts.id.clone(), rt_mounts, cgroup, exec: false })
        }
        Err(e) => {
            undo(&rt_mounts, &cgroup);
            Err(e)
        }
    }
}

/// `path` opened O_PATH (no read, no write, never blocks, not even on a fifo without a writer), not following a
/// final symlink. With open(2) itself, not `OpenOptions::custom_flags`: Rust's std clears the O_ACCMODE bits of
/// custom flags, and on musl O_ACCMODE is `03|O_SEARCH` with O_SEARCH == O_PATH, so the static musl build (the
/// in-image keel-runc, the containerd shim) silently opened the exec fifo O_RDONLY instead: that open blocks until
/// a writer comes, and the only writer is the child not cloned yet, so create hung forever.
pub(crate) fn open_o_path(path: &Path) -> Result<OwnedFd, sys::Error> {
    sys::io::open_path(path, libc::O_PATH | libc::O_NOFOLLOW, 0)
}

fn pipe_cloexec(extra: libc::c_int) -> Result<(OwnedFd, OwnedFd), Error> {
    sys::io::pipe2(libc::O_CLOEXEC | extra).map_err(|errno| Error::Sys { what: "pipe2".into(), errno })
}

/// Start another process in the running container `pid` of `bundle` (keel-runc exec): it joins the container's
/// namespaces and cgroup (`cgroup`, its v2 directory) and runs `process` through the same setup path as the
/// container's first process, minus the rootfs. The caller owns reaping; [`Spawned::cleanup`] does nothing for it.
pub fn exec(
    bundle: &Bundle,
    pid: i32,
    cgroup: Option<&Path>,
    process: &Process,
    opts: &SpawnOptions,
) -> Result<Spawned, Error> {
    let ns = namespaces::of_process(pid)?;
    let mut plan = crate::plan::for_exec(bundle, process, opts, &ns)?;
    let (pid, status) = spawn_inner(bundle, opts, &ns, &mut plan, cgroup, Some(process))?;
    Ok(Spawned {
        pid,
        status,
        seen: RefCell::new(None),
        id: opts.id.clone(),
        rt_mounts: Vec::new(),
        cgroup: None,
        exec: true,
    })
}

fn spawn_inner(
    bundle: &Bundle,
    opts: &SpawnOptions,
    ns: &namespaces::NsPlan,
    plan: &mut Plan,
    cgroup: Option<&Path>,
    exec: Option<&Process>,
) -> Result<(i32, OwnedFd), Error> {
    let fds = ParentFds::open(bundle, opts, ns, plan, exec)?;
    let cgroup_fds = CgroupFds::open(cgroup, plan)?;
    let pid = clone_child(bundle, ns, plan, cgroup, cgroup_fds)?;
    // Only the parent's ends stay open (the child has its own copies): a child that dies is then seen as EOF.
    let (status_r, sync_parent) = fds.into_parent_ends();
    if exec.is_some() {
        return Ok((pid, status_r));
    }
    if let Err(e) = after_clone(bundle, opts, pid, sync_parent.as_ref()) {
        // The child cannot go on without us: stop it and reap it ourselves (it is our child and nobody else has
        // seen its pid yet).
        let _ = sys::kill(pid, libc::SIGKILL);
        while sys::waitpid(pid, libc::__WALL) == Err(sys::Errno::EINTR) {}
        return Err(e);
    }
    // The status pipe was made O_NONBLOCK (both ends: the child writes at most one short line into the empty pipe).
    Ok((pid, status_r))
}

/// The fds the parent opens for the child and records in its plan: stdin (/dev/null unless given), the status pipe,
/// the console socket, the exec fifo (O_PATH), the sync socket where the parent has work after clone, and dups of
/// the namespace fds to join. Dropping it closes the parent's copies.
struct ParentFds {
    status_r: OwnedFd,
    sync_parent: Option<OwnedFd>,
    _status_w: OwnedFd,
    _devnull: Option<std::fs::File>,
    _console: Option<std::os::unix::net::UnixStream>,
    _fifo: Option<OwnedFd>,
    _sync_child: Option<OwnedFd>,
}

impl ParentFds {
    /// The status pipe's read end and the parent's sync socket; every other fd is closed here.
    fn into_parent_ends(self) -> (OwnedFd, Option<OwnedFd>) {
        let ParentFds { status_r, sync_parent, _status_w, _devnull, _console, _fifo, _sync_child } = self;
        drop((_status_w, _devnull, _console, _fifo, _sync_child));
        (status_r, sync_parent)
    }

    fn open(
        bundle: &Bundle,
        opts: &SpawnOptions,
        ns: &namespaces::NsPlan,
        plan: &mut Plan,
        exec: Option<&Process>,
    ) -> Result<ParentFds, Error> {
        let devnull = match opts.stdin {
            Some(fd) => {
                plan.stdio[0] = fd;
                None
            }
            None => {
                let f = std::fs::File::open("/dev/null").map_err(|err| Error::Io {
                    what: "open",
                    path: "/dev/null".into(),
                    err,
                })?;
                plan.stdio[0] = f.as_raw_fd();
                Some(f)
            }
        };
        let (status_r, status_w) = pipe_cloexec(libc::O_NONBLOCK)?;
        plan.status_w = status_w.as_raw_fd();
        // runc: a console socket is used only when process.terminal is true.
        let terminal = match exec {
            Some(p) => p.terminal,
            None => bundle.spec.process.as_ref().is_some_and(|p| p.terminal),
        };
        let console = match (&opts.console_socket, terminal) {
            (Some(path), true) => {
                let s = std::os::unix::net::UnixStream::connect(path).map_err(|err| Error::Io {
                    what: "connect console socket",
                    path: path.clone(),
                    err,
                })?;
                plan.console = s.as_raw_fd();
                Some(s)
            }
            _ => None,
        };
        // The fifo as an O_PATH fd: the child reopens it through its procfs and holds no directory of the host.
        let fifo = match &opts.exec_fifo {
            Some(f) => {
                let fd = open_o_path(f)?;
                plan.exec_fifo = Some((fd.as_raw_fd(), sys::cpath("exec fifo path", f)?));
                Some(fd)
            }
            None => None,
        };
        let has_ifaces = exec.is_none()
            && bundle
                .runtime
                .as_ref()
                .is_some_and(|r| !r.interfaces.is_empty() || r.bind_ns.entries().next().is_some());
        let need_sync = ns.new_user
            || has_ifaces
            || plan.runtime_hooks_sync
            || !plan.create_container.is_empty()
            || !plan.start_container.is_empty();
        let (sync_parent, sync_child) = if need_sync {
            let (a, b) = sys::io::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET)
                .map_err(|errno| Error::Sys { what: "socketpair for the sync socket".into(), errno })?;
            (Some(a), Some(b))
        } else {
            (None, None)
        };
        plan.sync = sync_child.as_ref().map_or(-1, |f| f.as_raw_fd());
        // Dups of the join fds go into the plan (the child setns's them).
        plan.joins = Vec::new();
        for j in &ns.joins {
            let fd = j.fd.try_clone().map_err(|err| Error::Io {
                what: "dup namespace fd",
                path: PathBuf::from(j.path.to_string_lossy().into_owned()),
                err,
            })?;
            plan.joins.push(namespaces::Join { fd, nstype: j.nstype, path: j.path.clone() });
        }
        Ok(ParentFds {
            status_r,
            sync_parent,
            _status_w: status_w,
            _devnull: devnull,
            _console: console,
            _fifo: fifo,
            _sync_child: sync_child,
        })
    }
}

/// The container's cgroups as fds: its v2 directory (O_PATH, for CLONE_INTO_CGROUP) and, on a hybrid host, the
/// cgroup.procs file of each v1 cgroup, which the child writes itself (recorded in the plan).
struct CgroupFds {
    v2: Option<OwnedFd>,
    _v1_procs: Vec<std::fs::File>,
}

impl CgroupFds {
    fn open(cgroup: Option<&Path>, plan: &mut Plan) -> Result<CgroupFds, Error> {
        let v2 = match cgroup {
            Some(c) => Some(
                sys::io::open_path(c, libc::O_PATH | libc::O_DIRECTORY, 0)
                    .map_err(|e| Error::os(format!("open cgroup {}", c.display()), e))?,
            ),
            None => None,
        };
        let mut v1_procs = Vec::new();
        for d in cgroup.map(cg::v1_leaves).unwrap_or_default() {
            let procs = d.join("cgroup.procs");
            let f = std::fs::OpenOptions::new().write(true).open(&procs).map_err(|err| Error::Io {
                what: "open",
                path: procs,
                err,
            })?;
            plan.cgroup_procs_v1.push(f.as_raw_fd());
            v1_procs.push(f);
        }
        Ok(CgroupFds { v2, _v1_procs: v1_procs })
    }
}

/// clone3 the child into its namespaces and, with CLONE_INTO_CGROUP, its v2 cgroup (where refused: an old kernel
/// or a v1 hierarchy, the child writes cgroup.procs itself). The child runs `child::run` and never returns here.
fn clone_child(
    bundle: &Bundle,
    ns: &namespaces::NsPlan,
    plan: &mut Plan,
    cgroup: Option<&Path>,
    cgroup_fds: CgroupFds,
) -> Result<i32, Error> {
    namespaces::enter_for_children(ns)?;
    let mut args = CloneArgs { flags: ns.clone_flags, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    if let Some(fd) = &cgroup_fds.v2 {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    let clone3 = |args: &CloneArgs| {
        // SAFETY: clone3 without a stack behaves like fork: the child gets a copy of our address space and runs
        // `child::run`, which never returns and only makes syscalls on the prepared plan.
        unsafe { libc::syscall(libc::SYS_clone3, args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) }
    };
    let mut pid = clone3(&args);
    let mut procs_fd = None;
    if pid < 0 && cgroup_fds.v2.is_some() {
        let e = sys::Errno::last();
        let procs = cgroup.map(|c| c.join("cgroup.procs")).unwrap_or_default();
        match std::fs::OpenOptions::new().write(true).open(&procs) {
            Ok(f) => {
                plan.cgroup_procs = f.as_raw_fd();
                procs_fd = Some(f);
                args.flags &= !CLONE_INTO_CGROUP;
                args.cgroup = 0;
                pid = clone3(&args);
            }
            Err(_) => {
                namespaces::leave_for_children(ns);
                return Err(Error::Sys {
                    what: format!("clone3 into cgroup {}", cgroup.unwrap_or(Path::new("")).display()),
                    errno: e,
                });
            }
        }
    }
    if pid == 0 {
        crate::child::run(plan);
    }
    let errno = sys::Errno::last();
    namespaces::leave_for_children(ns);
    drop(procs_fd);
    drop(cgroup_fds);
    if pid < 0 {
        return Err(Error::Sys { what: format!("clone3 for bundle {}", bundle.name), errno });
    }
    Ok(pid as i32)
}

/// Parent-side steps after clone: user namespace maps, release the child, bindNS, runtime hooks.
fn after_clone(bundle: &Bundle, opts: &SpawnOptions, pid: i32, sync: Option<&OwnedFd>) -> Result<(), Error> {
    let linux = bundle.spec.linux.as_ref();
    if let Some(l) = linux {
        let new_user = l.namespace(NamespaceType::User).is_some_and(|n| n.path.is_none());
        if new_user {
            let fmt = |maps: &[crate::spec::IdMapping]| {
                maps.iter().map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size)).collect::<String>()
            };
            if !l.uid_mappings.is_empty() {
                sys::write_file(Path::new(&format!("/proc/{pid}/uid_map")), fmt(&l.uid_mappings).as_bytes())?;
            }
            if !l.gid_mappings.is_empty() {
                sys::write_file(Path::new(&format!("/proc/{pid}/gid_map")), fmt(&l.gid_mappings).as_bytes())?;
            }
        }
    }
    if let Some(rt) = &bundle.runtime {
        crate::interfaces::setup(&rt.interfaces, pid)?;
    }
    // bindNS while the child still waits for its pid on the sync socket: once released it may exec and exit, and
    // /proc/PID/ns is gone with it (a short-lived container lost the race now and then).
    if let Some(rt) = &bundle.runtime {
        for (nsname, target) in rt.bind_ns.entries() {
            let t = Path::new(target);
            if let Some(dir) = t.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if !t.exists() {
                std::fs::File::create(t).map_err(|err| Error::Io {
                    what: "runtime.json bindNS: create",
                    path: t.to_path_buf(),
                    err,
                })?;
            }
            let src = format!("/proc/{pid}/ns/{nsname}");
            sys::mount(&src, t, "", libc::MS_BIND, "")
                .map_err(|e| Error::os(format!("runtime.json bindNS: bind {src} on {target}"), e))?;
        }
    }
    if let Some(s) = sync {
        // The child waits for this: without it, it would wait forever (or until its parent dies).
        sys::io::send(s.as_raw_fd(), &pid.to_ne_bytes())
            .map_err(|errno| Error::Sys { what: format!("send pid {pid} to the child on the sync socket"), errno })?;
    }
    if let (Some(s), Some(h)) = (sync, bundle.spec.hooks.as_ref()) {
        if !h.prestart.is_empty() || !h.create_runtime.is_empty() {
            let ready = sys::io::poll_in(s.as_raw_fd(), 10_000)
                .map_err(|errno| Error::Sys { what: "poll the sync socket".into(), errno })?;
            let mut b = [0u8; 4];
            let n = if ready { sys::io::recv(s.as_raw_fd(), &mut b).ok() } else { None };
            if n == Some(1) && b[0] == b'H' {
                let res = hooks::run_list("prestart", &h.prestart, bundle, &opts.id, "created", pid).and_then(|_| {
                    hooks::run_list("createRuntime", &h.create_runtime, bundle, &opts.id, "created", pid)
                });
                let reply = match &res {
                    Ok(()) => vec![0u8],
                    Err(Error::Setup { msg, .. }) => msg.clone().into_bytes(),
                    Err(e) => e.to_string().into_bytes(),
                };
                sys::io::send(s.as_raw_fd(), &reply).map_err(|errno| Error::Sys {
                    what: "send the hooks' outcome to the child on the sync socket".into(),
                    errno,
                })?;
            } else if !ready {
                return Err(Error::Setup {
                    bundle: bundle.name.clone(),
                    msg: "setup did not reach the createRuntime hooks within 10 s".into(),
                });
            }
            // n == 0: the child failed before; its status line says why.
        }
    }
    Ok(())
}

/// Run the bundle's poststart hooks (re-exported for callers).
pub use crate::hooks::run_poststart;

#[cfg(test)]
mod tests {
    use super::*;

    /// The exec fifo is opened O_PATH: at once although nobody writes it (the writer is the child, cloned later).
    /// A plain O_RDONLY open (what `OpenOptions::custom_flags(O_PATH)` gave on musl) blocks here: run this test on
    /// the musl target too (`cargo test -p keel-runtime --lib --target x86_64-unknown-linux-musl open_o_path`).
    #[test]
    fn open_o_path_does_not_block_on_a_fifo_without_writer() {
        let dir = std::env::temp_dir().join(format!("keel-opath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("exec.fifo");
        sys::fs::mkfifo(&fifo, 0o622).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let f2 = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(open_o_path(&f2).map(|fd| {
                // SAFETY: F_GETFL on our fd.
                unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }
            }));
        });
        let r = rx.recv_timeout(std::time::Duration::from_secs(5));
        if r.is_err() {
            // Unblock the stuck open so the test process can exit.
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
        }
        let _ = std::fs::remove_dir_all(&dir);
        let flags = r.expect("open of the exec fifo blocked: not O_PATH").unwrap();
        assert_ne!(flags & libc::O_PATH, 0, "flags {flags:#x} lack O_PATH");
        assert!(open_o_path(&dir.join("missing")).is_err());
    }
}
