//! containerd's task service (`containerd.task.v2.Task`) over keel's runtime library.
//!
//! One service per shim process; it holds every container of its sandbox grouping. Containers are spawned
//! in-process with `keel_runtime::spawn` (create leaves the process blocked on the exec fifo; start opens it), and
//! the shim is their parent and subreaper: containerd_shim's reaper thread reaps every child and the exit thread
//! here (`on_exit`) routes each exit to the init or exec it belongs to, records it and publishes `/tasks/exit`.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse, DeleteRequest,
    DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest, PidsRequest, PidsResponse, ResizePtyRequest,
    ResumeRequest, ShutdownRequest, StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest,
    StatsResponse, Status as TaskStatus, UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::monitor::{monitor_subscribe, ExitEvent, Subject, Topic};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::shim::oci::Options as RuncOptions;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::{self, Code, Status as RpcStatus};
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::{error, info, warn, ExitSignal, Task, TtrpcContext, TtrpcResult};
use keel_runtime::cli::state_dir;
use keel_runtime::spawn::Status as SetupStatus;
use keel_runtime::{cgroups, Bundle, SpawnOptions, Spawned};

use crate::error::Error;
use crate::events::{now, Publisher};
use crate::process::{self, Proc, Status};
use crate::{cgroup, state, stdio};

/// A container (task) of this shim.
pub struct Container {
    pub id: String,
    pub bundle: Bundle,
    pub spawned: Spawned,
    pub state_dir: PathBuf,
    pub rootfs_mounted: bool,
    pub init: Proc,
    pub execs: HashMap<String, Proc>,
    /// Watches memory events for `/tasks/oom`.
    pub oom: Option<cgroup::OomWatch>,
}

impl Container {
    fn cgroup(&self) -> Option<&Path> {
        self.spawned.cgroup()
    }

    fn proc_(&self, exec_id: &str) -> TtrpcResult<&Proc> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs.get(exec_id).ok_or_else(|| not_found(format!("{}: exec {exec_id} not found", self.id)))
    }
}

#[derive(Default)]
pub struct Inner {
    pub containers: HashMap<String, Container>,
    /// Exits of pids not (yet) known: an exec that exited before Start recorded its pid, a process that died in setup.
    orphans: HashMap<i32, i32>,
}

/// The task service handed to ttrpc; the state lives in [`Core`], shared with the exits thread.
pub struct Service(Arc<Core>);

impl std::ops::Deref for Service {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.0
    }
}

pub struct Core {
    pub namespace: String,
    pub root: PathBuf,
    pub inner: Mutex<Inner>,
    /// Notified on every exit (Wait).
    pub exited: Condvar,
    pub events: Arc<Publisher>,
    pub exit: Arc<ExitSignal>,
}

fn rpc_err(code: Code, msg: String) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(RpcStatus { code: code.into(), message: msg, ..Default::default() })
}

fn not_found(msg: String) -> ttrpc::Error {
    rpc_err(Code::NOT_FOUND, msg)
}

pub fn internal(msg: String) -> ttrpc::Error {
    rpc_err(Code::INTERNAL, msg)
}

fn precondition(msg: String) -> ttrpc::Error {
    rpc_err(Code::FAILED_PRECONDITION, msg)
}

/// Runtime options containerd passes on Create (runc's `containerd.runc.v1.Options`: root, no_pivot_root).
fn runc_options(req: &CreateTaskRequest) -> Option<RuncOptions> {
    use containerd_shim::protos::protobuf::Message;
    let any = req.options.as_ref()?;
    if !any.type_url.ends_with("containerd.runc.v1.Options") {
        return None;
    }
    RuncOptions::parse_from_bytes(&any.value).ok()
}

impl Service {
    pub fn new(namespace: String, events: Arc<Publisher>, exit: Arc<ExitSignal>) -> Service {
        let svc = Arc::new(Core {
            root: PathBuf::from(state::DEFAULT_ROOT),
            namespace,
            inner: Mutex::new(Inner::default()),
            exited: Condvar::new(),
            events,
            exit,
        });
        // Exits come from containerd_shim's reaper through its monitor; subscribe before any child exists.
        match monitor_subscribe(Topic::All) {
            Ok(sub) => {
                let core = svc.clone();
                let r = std::thread::Builder::new().name("exits".into()).stack_size(128 * 1024).spawn(move || {
                    for ExitEvent { subject, exit_code } in sub.rx.iter() {
                        if let Subject::Pid(pid) = subject {
                            core.on_exit(pid, exit_code);
                        }
                    }
                });
                if let Err(e) = r {
                    error!("cannot start the exits thread: {e}");
                }
            }
            Err(e) => error!("cannot subscribe to exits: {e}"),
        }
        Service(svc)
    }
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn globals(&self) -> keel_runtime::cli::Globals {
        state::globals(&self.root, &self.namespace)
    }

    /// One child exited (`code` is containerd_shim's: exit code or 128 + signal).
    fn on_exit(&self, pid: i32, code: i32) {
        let mut g = self.lock();
        if !self.record_exit(&mut g, pid, code) {
            if g.orphans.len() > 1024 {
                g.orphans.clear();
            }
            g.orphans.insert(pid, code);
        }
    }

    /// Attribute an exit to a known process; publish `/tasks/exit`. False if `pid` is nobody's (yet).
    fn record_exit(&self, g: &mut Inner, pid: i32, code: i32) -> bool {
        let at = now();
        for c in g.containers.values_mut() {
            let cid = c.id.clone();
            let mut hit: Option<(String, &mut Proc)> = None;
            if c.init.pid == pid && c.init.status != Status::Stopped {
                hit = Some((cid.clone(), &mut c.init));
            } else if let Some((eid, p)) = c.execs.iter_mut().find(|(_, p)| p.pid == pid && p.status != Status::Stopped)
            {
                hit = Some((eid.clone(), p));
            }
            if let Some((id, p)) = hit {
                p.exited(code, at.clone());
                self.events.publish(
                    topics::TASK_EXIT_EVENT_TOPIC,
                    &TaskExit {
                        container_id: cid.clone(),
                        id,
                        pid: pid as u32,
                        exit_status: code as u32,
                        exited_at: Some(at).into(),
                        ..Default::default()
                    },
                );
                self.exited.notify_all();
                return true;
            }
        }
        false
    }

    fn create_inner(&self, req: &CreateTaskRequest) -> Result<Container, Error> {
        let id = req.id.as_str();
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(Error::Invalid(format!("invalid container id {id:?}")));
        }
        let bundle_dir = PathBuf::from(&req.bundle);
        let opts = runc_options(req);
        let rootfs = bundle_dir.join("rootfs");
        let mut mounted = false;
        for m in &req.rootfs {
            if !rootfs.exists() {
                std::fs::create_dir_all(&rootfs).map_err(|e| Error::io("mkdir", &rootfs, e).context(id))?;
            }
            containerd_shim::mount::mount_rootfs(Some(&m.type_), Some(&m.source), &m.options, &rootfs).map_err(
                |e| {
                    let what = format!("{id}: mount {} {} on {}", m.type_, m.source, rootfs.display());
                    Error::Invalid(e.to_string()).context(what)
                },
            )?;
            mounted = true;
        }
        let g = self.globals();
        let r = (|| {
            let bundle = Bundle::load(&bundle_dir).map_err(|e| Error::Runtime(e).context(id))?;
            let dir = state::create_dir(&g, id)?;
            let r = self.spawn_init(id, req, bundle, &dir, opts.as_ref().is_some_and(|o| o.no_pivot_root));
            if r.is_err() {
                let _ = state::remove(&g, id);
            }
            r
        })();
        match r {
            Ok(mut c) => {
                c.rootfs_mounted = mounted;
                Ok(c)
            }
            Err(e) => {
                if mounted {
                    unmount_all(&rootfs);
                }
                Err(e)
            }
        }
    }

    fn spawn_init(
        &self,
        id: &str,
        req: &CreateTaskRequest,
        bundle: Bundle,
        dir: &Path,
        no_pivot: bool,
    ) -> Result<Container, Error> {
        let fifo = dir.join("exec.fifo");
        // As keel-runc create: mode 0622 whatever the umask, owned by the container's (mapped) root, so a process
        // running as another user, or a user-namespaced root, can open it.
        keel_runtime::cli::create::make_exec_fifo(&fifo, &bundle).map_err(|e| Error::State(e).context(id))?;
        let terminal = req.terminal && bundle.spec.process.as_ref().is_some_and(|p| p.terminal);
        let console = if terminal { Some(stdio::ConsoleSocket::new(dir.join("console.sock"))?) } else { None };
        let mut io =
            if terminal { stdio::Stdio::default() } else { stdio::open(id, &req.stdin, &req.stdout, &req.stderr)? };
        let pump = io.pump.take();
        let devnull = File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| Error::io("open", "/dev/null", e).context(id))?;
        let (i, o, e) = io.raw();
        let null = devnull.as_raw_fd();
        let opts = SpawnOptions {
            id: id.to_string(),
            stdin: Some(i.unwrap_or(null)),
            stdout: Some(o.unwrap_or(null)),
            stderr: Some(e.unwrap_or(null)),
            exec_fifo: Some(fifo.clone()),
            console_socket: console.as_ref().map(|c| c.path.clone()),
            no_pivot,
            cgroup_root: Some(cgroups::default_root()),
            default_cgroup: Some(format!("{}/{id}", self.namespace)),
            ..Default::default()
        };
        let spawned = keel_runtime::spawn(&bundle, &opts).map_err(|e| Error::Runtime(e).context(id))?;
        drop(io);
        drop(devnull);
        let pid = spawned.pid;
        let abort = |e: Error| {
            let _ = keel_sys::kill(pid, libc::SIGKILL);
            for e in spawned.cleanup(&bundle) {
                warn!("{id}: cleanup after failed create: {e}");
            }
            e
        };
        if let Err(e) = self.wait_blocked_on_fifo(&spawned) {
            return Err(abort(e.context(id)));
        }
        let master = match &console {
            Some(c) => match c.receive(10_000) {
                Ok(m) => Some(m),
                Err(e) => return Err(abort(e.context(id))),
            },
            None => None,
        };
        let mut init = Proc::new(&req.stdin, &req.stdout, &req.stderr, terminal);
        init.pid = pid;
        init.pump = pump;
        if let Some(m) = master {
            match stdio::wire_console(id, m, &req.stdin, &req.stdout) {
                Ok((m, p)) => {
                    init.console = Some(m);
                    init.pump = p;
                }
                Err(e) => return Err(abort(e)),
            }
        }
        let st = state::new_state(id, pid, &bundle, spawned.cgroup());
        if let Err(e) = state::save(&self.globals(), &st) {
            return Err(abort(e));
        }
        let oom = spawned.cgroup().and_then(|cg| cgroup::OomWatch::new(id, cg, &self.events));
        Ok(Container {
            id: id.to_string(),
            bundle,
            spawned,
            state_dir: dir.to_path_buf(),
            rootfs_mounted: false,
            init,
            execs: HashMap::new(),
            oom,
        })
    }

    /// Wait until the container's process is blocked on the exec fifo (create done) or setup failed.
    fn wait_blocked_on_fifo(&self, spawned: &Spawned) -> Result<(), Error> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match spawned.poll_status() {
                SetupStatus::Failed(msg) => return Err(Error::Process(msg)),
                SetupStatus::Started | SetupStatus::Pending if state_dir::blocked_on_fifo(spawned.pid) => return Ok(()),
                SetupStatus::Started => {
                    // EOF without exec: the process is gone (or about to be).
                    let gone = self.lock().orphans.contains_key(&spawned.pid)
                        || state_dir::proc_stat(spawned.pid).is_none_or(|(s, _)| s == 'Z' || s == 'X');
                    if gone {
                        return Err(Error::Process("container process ended during setup".into()));
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                SetupStatus::Pending => {
                    let _ = keel_sys::io::poll_in(spawned.status.as_raw_fd(), 1);
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::Process("container setup did not finish within 60 s".into()));
            }
        }
    }

    /// Release a created container: open its exec fifo, read to EOF (the process closes it at exec).
    fn release(&self, c: &Container) -> Result<(), Error> {
        let fifo = c.state_dir.join("exec.fifo");
        let f = File::options()
            .read(true)
            .custom_flags_nonblock()
            .open(&fifo)
            .map_err(|e| Error::io("open exec fifo", &fifo, e).context(c.id.as_str()))?;
        let pid = c.init.pid;
        let mut buf = [0u8; 64];
        let ok = process::wait_until(Duration::from_secs(10), || {
            // SAFETY: read into a valid buffer from our fd.
            let n = unsafe { libc::read(f.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            // EOF: the writer (the container process) closed it by exec'ing, or died.
            n == 0
                || (n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN))
                || state_dir::proc_stat(pid).is_none()
        });
        let _ = std::fs::remove_file(&fifo);
        if !ok {
            return Err(Error::Process(format!("{}: process {pid} did not exec within 10 s of start", c.id)));
        }
        Ok(())
    }

    fn delete_container(&self, g: &mut Inner, id: &str) -> TtrpcResult<DeleteResponse> {
        let c = g.containers.get(id).ok_or_else(|| not_found(format!("container {id} not found")))?;
        match c.init.status {
            Status::Running => {
                return Err(precondition(format!("{id}: cannot delete a running container (pid {})", c.init.pid)))
            }
            Status::Created => {
                return Err(precondition(format!("{id}: created process {} did not exit on SIGKILL", c.init.pid)))
            }
            Status::Stopped => {}
        }
        let Some(mut c) = g.containers.remove(id) else { return Err(not_found(format!("container {id} not found"))) };
        c.oom = None;
        c.init.console = None;
        for e in c.spawned.cleanup(&c.bundle) {
            warn!("{id}: cleanup: {e}");
        }
        if c.rootfs_mounted {
            unmount_all(&c.bundle.dir.join("rootfs"));
        }
        if let Err(e) = state::remove(&self.globals(), id) {
            warn!("{e}");
        }
        let resp = DeleteResponse {
            pid: c.init.pid as u32,
            exit_status: c.init.exit_status,
            exited_at: c.init.exited_at.clone().into(),
            ..Default::default()
        };
        self.events.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            &TaskDelete {
                container_id: id.to_string(),
                pid: resp.pid,
                exit_status: resp.exit_status,
                exited_at: resp.exited_at.clone(),
                id: id.to_string(),
                ..Default::default()
            },
        );
        Ok(resp)
    }
}

/// File::options() with O_NONBLOCK.
trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
    }
}

/// Unmount everything at `target` (stacked mounts included), lazily.
pub fn unmount_all(target: &Path) {
    for _ in 0..16 {
        if keel_sys::umount(target, libc::MNT_DETACH).is_err() {
            break;
        }
    }
}

fn status_of(c: &Container, p: &Proc) -> TaskStatus {
    match p.status {
        Status::Created => TaskStatus::CREATED,
        Status::Stopped => TaskStatus::STOPPED,
        Status::Running => {
            if c.cgroup().is_some_and(cgroups::is_frozen) {
                TaskStatus::PAUSED
            } else {
                TaskStatus::RUNNING
            }
        }
    }
}

impl Task for Service {
    fn create(&self, _ctx: &TtrpcContext, req: CreateTaskRequest) -> TtrpcResult<CreateTaskResponse> {
        info!("create {} bundle {}", req.id, req.bundle);
        if self.lock().containers.contains_key(&req.id) {
            return Err(rpc_err(Code::ALREADY_EXISTS, format!("container {} already exists", req.id)));
        }
        let c = self.create_inner(&req).map_err(|e| {
            error!("create: {e}");
            ttrpc::Error::from(e)
        })?;
        let pid = c.init.pid;
        let mut g = self.lock();
        // An exit during creation (killed right away) may already be among the orphans.
        let early = g.orphans.remove(&pid);
        g.containers.insert(req.id.clone(), c);
        self.events.publish(
            topics::TASK_CREATE_EVENT_TOPIC,
            &TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: Some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                })
                .into(),
                checkpoint: req.checkpoint.clone(),
                pid: pid as u32,
                ..Default::default()
            },
        );
        if let Some(code) = early {
            self.record_exit(&mut g, pid, code);
        }
        Ok(CreateTaskResponse { pid: pid as u32, ..Default::default() })
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        if req.exec_id.is_empty() {
            // One lock from release to the start event: the exits thread, which needs it, cannot publish this
            // process's exit before its start.
            let mut g = self.lock();
            let c =
                g.containers.get_mut(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
            if c.init.status != Status::Created {
                return Err(precondition(format!("{}: cannot start a {:?} container", req.id, c.init.status)));
            }
            self.release(c)?;
            let pid = c.init.pid;
            c.init.status = Status::Running;
            if let Err(e) = keel_runtime::run_poststart(&c.bundle, pid) {
                warn!("{}: poststart hook: {e}", req.id);
            }
            self.events.publish(
                topics::TASK_START_EVENT_TOPIC,
                &TaskStart { container_id: req.id.clone(), pid: pid as u32, ..Default::default() },
            );
            return Ok(StartResponse { pid: pid as u32, ..Default::default() });
        }
        // Exec: the process was recorded by Exec; run it now, in-process (keel_runtime::exec). The lock is not held
        // while the process sets up (other calls go on); its exit, if it comes first, waits among the orphans.
        let (job_bundle, init_pid, cgroup, dir, proc_) = {
            let g = self.lock();
            let c = g.containers.get(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
            if c.init.status != Status::Running {
                return Err(precondition(format!("{}: cannot exec in a stopped or created container", req.id)));
            }
            let p = c.proc_(&req.exec_id)?;
            if p.status != Status::Created {
                return Err(precondition(format!("{}/{}: already started", req.id, req.exec_id)));
            }
            let mut copy = Proc::new(&p.stdin, &p.stdout, &p.stderr, p.terminal);
            copy.spec = p.spec.clone();
            (c.bundle.clone(), c.init.pid, c.cgroup().map(Path::to_path_buf), c.state_dir.clone(), copy)
        };
        let job = process::ExecJob {
            bundle: &job_bundle,
            init_pid,
            cgroup: cgroup.as_deref(),
            state_dir: &dir,
            container: &req.id,
            exec_id: &req.exec_id,
            proc_: &proc_,
        };
        let (pid, master, mut pump) = process::start_exec(&job).map_err(|(pid, e)| {
            error!("{e}");
            if pid > 0 {
                // A setup failure: the process exits at once and its exit is nobody's (it never ran). Consume it, so
                // a later process reusing the pid is not taken for exited.
                process::wait_until(Duration::from_secs(2), || self.lock().orphans.remove(&pid).is_some());
            }
            ttrpc::Error::from(e)
        })?;
        let console = match master {
            Some(m) => {
                let (m, p) = stdio::wire_console(&req.exec_id, m, &proc_.stdin, &proc_.stdout)?;
                pump = p;
                Some(m)
            }
            None => None,
        };
        let mut g = self.lock();
        let early = g.orphans.remove(&pid);
        if let Some(p) = g.containers.get_mut(&req.id).and_then(|c| c.execs.get_mut(&req.exec_id)) {
            p.pid = pid;
            p.status = Status::Running;
            p.console = console;
            p.pump = pump;
        }
        self.events.publish(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            &TaskExecStarted {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                pid: pid as u32,
                ..Default::default()
            },
        );
        if let Some(code) = early {
            self.record_exit(&mut g, pid, code);
        }
        Ok(StartResponse { pid: pid as u32, ..Default::default() })
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        if !req.exec_id.is_empty() {
            let mut g = self.lock();
            let c =
                g.containers.get_mut(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
            let p = c.proc_(&req.exec_id)?;
            if p.status == Status::Running {
                return Err(precondition(format!("{}/{}: cannot delete a running process", req.id, req.exec_id)));
            }
            let p = c.execs.remove(&req.exec_id).ok_or_else(|| not_found(req.exec_id.clone()))?;
            return Ok(DeleteResponse {
                pid: p.pid as u32,
                exit_status: p.exit_status,
                exited_at: p.exited_at.into(),
                ..Default::default()
            });
        }
        // A created (never started) container is killed first.
        let created_pid = {
            let g = self.lock();
            let c = g.containers.get(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
            (c.init.status == Status::Created).then_some(c.init.pid)
        };
        if let Some(pid) = created_pid {
            let _ = keel_sys::kill(pid, libc::SIGKILL);
            let mut g = self.lock();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while g.containers.get(&req.id).is_some_and(|c| c.init.status != Status::Stopped)
                && std::time::Instant::now() < deadline
            {
                g = self
                    .exited
                    .wait_timeout(g, Duration::from_millis(100))
                    .map(|r| r.0)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        }
        let mut g = self.lock();
        let r = self.delete_container(&mut g, &req.id);
        if r.is_ok() {
            info!("deleted {}", req.id);
        }
        r
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let mut g = self.lock();
        let c = g.containers.get_mut(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
        if c.init.status == Status::Stopped {
            return Err(precondition(format!("{}: container is stopped", req.id)));
        }
        if c.execs.contains_key(&req.exec_id) {
            return Err(rpc_err(Code::ALREADY_EXISTS, format!("{}: exec {} already exists", req.id, req.exec_id)));
        }
        let mut p = Proc::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        p.spec = req.spec.as_ref().map(|a| a.value.clone()).unwrap_or_default();
        if p.spec.is_empty() {
            return Err(rpc_err(
                Code::INVALID_ARGUMENT,
                format!("{}/{}: exec without a process spec", req.id, req.exec_id),
            ));
        }
        c.execs.insert(req.exec_id.clone(), p);
        self.events.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            &TaskExecAdded { container_id: req.id.clone(), exec_id: req.exec_id.clone(), ..Default::default() },
        );
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        let g = self.lock();
        let c = g.containers.get(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
        let p = c.proc_(&req.exec_id)?;
        match &p.console {
            Some(m) => stdio::resize(m, req.width, req.height).map_err(|e| internal(format!("{}: {e}", req.id)))?,
            None => return Err(precondition(format!("{}: process has no terminal", req.id))),
        }
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        // Without a terminal the process holds the stdin FIFO itself and sees EOF when containerd's writer closes;
        // with one, the copy thread ends on that EOF. Nothing to do but check the process exists.
        let g = self.lock();
        let c = g.containers.get(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
        c.proc_(&req.exec_id)?;
        Ok(Empty::new())
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let g = self.lock();
        let c = g.containers.get(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
        let p = c.proc_(&req.exec_id)?;
        let sig = req.signal as i32;
        if req.all && req.exec_id.is_empty() {
            if let Some(cg) = c.cgroup() {
                for pid in cgroups::procs_recursive(cg) {
                    // SAFETY: kill(2) with plain integers.
                    unsafe { libc::kill(pid, sig) };
                }
                return Ok(Empty::new());
            }
        }
        if p.status == Status::Stopped || p.pid <= 0 {
            return Err(not_found(format!("{}: process already finished", req.id)));
        }
        // SAFETY: kill(2) with plain integers; the pid is our child, not yet reaped (status not Stopped).
        if unsafe { libc::kill(p.pid, sig) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Err(not_found(format!("{}: process {} already finished", req.id, p.pid)));
            }
            return Err(internal(format!("{}: kill {} signal {sig}: {e}", req.id, p.pid)));
        }
        Ok(Empty::new())
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let g = self.lock();
        let c = g.containers.get(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
        let mut pids = match c.cgroup() {
            Some(cg) => cgroups::procs_recursive(cg),
            None => Vec::new(),
        };
        if pids.is_empty() && c.init.status != Status::Stopped {
            pids.push(c.init.pid);
        }
        pids.sort_unstable();
        pids.dedup();
        let processes = pids.into_iter().map(|pid| ProcessInfo { pid: pid as u32, ..Default::default() }).collect();
        Ok(PidsResponse { processes, ..Default::default() })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        let g = self.lock();
        let c = g.containers.get(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
        let cg = c.cgroup().ok_or_else(|| precondition(format!("{}: no cgroup to freeze", req.id)))?;
        cgroups::freeze(cg, true).map_err(|e| internal(format!("{}: pause: {e}", req.id)))?;
        self.events.publish(
            topics::TASK_PAUSED_EVENT_TOPIC,
            &TaskPaused { container_id: req.id.clone(), ..Default::default() },
        );
        Ok(Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        let g = self.lock();
        let c = g.containers.get(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
        let cg = c.cgroup().ok_or_else(|| precondition(format!("{}: no cgroup to thaw", req.id)))?;
        cgroups::freeze(cg, false).map_err(|e| internal(format!("{}: resume: {e}", req.id)))?;
        self.events.publish(
            topics::TASK_RESUMED_EVENT_TOPIC,
            &TaskResumed { container_id: req.id.clone(), ..Default::default() },
        );
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let g = self.lock();
        let c = g.containers.get(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
        let cg = c.cgroup().ok_or_else(|| precondition(format!("{}: no cgroup to update", req.id)))?;
        let value = req.resources.as_ref().map(|a| a.value.as_slice()).unwrap_or_default();
        cgroup::update(cg, value).map_err(|e| internal(format!("{}: update: {e}", req.id)))?;
        Ok(Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let mut g = self.lock();
        loop {
            let c = g.containers.get(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
            let p = c.proc_(&req.exec_id)?;
            if p.status == Status::Stopped {
                return Ok(WaitResponse {
                    exit_status: p.exit_status,
                    exited_at: p.exited_at.clone().into(),
                    ..Default::default()
                });
            }
            g = self.exited.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let g = self.lock();
        let c = g.containers.get(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
        let p = c.proc_(&req.exec_id)?;
        Ok(StateResponse {
            id: if req.exec_id.is_empty() { req.id.clone() } else { req.exec_id.clone() },
            bundle: c.bundle.dir.to_string_lossy().into_owned(),
            pid: p.pid.max(0) as u32,
            status: status_of(c, p).into(),
            stdin: p.stdin.clone(),
            stdout: p.stdout.clone(),
            stderr: p.stderr.clone(),
            terminal: p.terminal,
            exit_status: p.exit_status,
            exited_at: match &p.exited_at {
                Some(t) => MessageField::some(t.clone()),
                None => MessageField::none(),
            },
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let g = self.lock();
        let c = g.containers.get(&req.id).ok_or_else(|| not_found(format!("container {} not found", req.id)))?;
        let cg = c.cgroup().ok_or_else(|| precondition(format!("{}: no cgroup", req.id)))?;
        let any = cgroup::stats(cg).map_err(|e| internal(format!("{}: stats: {e}", req.id)))?;
        Ok(StatsResponse { stats: Some(any).into(), ..Default::default() })
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let g = self.lock();
        let task_pid = g.containers.get(&req.id).map(|c| c.init.pid.max(0) as u32).unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        let g = self.lock();
        if !req.now && !g.containers.is_empty() {
            return Ok(Empty::new());
        }
        info!("shutdown ({} containers left)", g.containers.len());
        self.exit.signal();
        Ok(Empty::new())
    }
}
