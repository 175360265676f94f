//! Parent side, before clone: turn a bundle (or an exec request) into the child's [`Plan`], so the child never
//! allocates. Paths inside the container stay destinations (the child resolves them inside the root by fd when it
//! uses them); C strings with a NUL byte are errors naming their field, never silently changed.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::caps::{self, CapSets};
use crate::child::{Plan, ProcessPlan};
use crate::devices::{self, DeviceStep};
use crate::hooks::{self, PreparedHook};
use crate::mounts::parse_options;
use crate::rootfs::MountStep;
use crate::spec::{NamespaceType, Process};
use crate::{cgroups as cg, namespaces, Bundle, Error, SpawnOptions};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a plan's strings come from, for errors.
struct Ctx<'a> {
    cfg: &'a Path,
}

impl Ctx<'_> {
    fn invalid(&self, field: &str, msg: String) -> Error {
        Error::Invalid { path: self.cfg.to_path_buf(), field: field.into(), msg }
    }

    /// A C string of `s`; a NUL byte is an error naming `field`.
    fn c(&self, field: &str, s: impl AsRef<[u8]>) -> Result<CString, Error> {
        crate::sys::cstring(field, s).map_err(|e| self.err(e))
    }

    /// A keel-sys error as the runtime's: a NUL byte is `Invalid` in this config, naming the field.
    fn err(&self, e: crate::sys::Error) -> Error {
        match e {
            crate::sys::Error::Nul { field } => self.invalid(&field, "contains a NUL byte".into()),
            e => e.into(),
        }
    }

    fn cpath(&self, field: &str, p: &Path) -> Result<CString, Error> {
        self.c(field, p.as_os_str().as_bytes())
    }
}

/// Is this host cgroup2-only (cgroup2 mounted at /sys/fs/cgroup)? Asked once per process (the host's cgroup layout
/// is set up before anything is spawned).
pub fn cgroup2_only() -> bool {
    static ONLY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ONLY.get_or_init(|| Path::new("/sys/fs/cgroup/cgroup.controllers").exists())
}

/// A read-only tmpfs with mounts, devices or links to be made beneath it (LinuxKit's `readonly: true` puts `ro` on
/// the /dev tmpfs; a hybrid host's cgroup view is a read-only tmpfs of binds) cannot get its mount points: mount it
/// read-write and remount it read-only once everything is in place, as runc does in finalizeRootfs. Returns those
/// destinations, in order.
fn defer_readonly(mounts: &mut [MountStep], devs: &[DeviceStep], links: &[(CString, CString)]) -> Vec<CString> {
    let mut out = Vec::new();
    for i in 0..mounts.len() {
        let m = &mounts[i];
        let tmpfs = m.fstype.as_deref().map(|t| t.to_bytes()) == Some(b"tmpfs".as_slice());
        if m.flags & libc::MS_RDONLY == 0 || !tmpfs {
            continue;
        }
        let mut prefix = m.dest.as_bytes().to_vec();
        prefix.push(b'/');
        let below = |p: &CString| p.as_bytes().starts_with(&prefix);
        if mounts[i + 1..].iter().any(|l| below(&l.dest))
            || devs.iter().any(|d| below(&d.dest))
            || links.iter().any(|(_, l)| below(l))
        {
            mounts[i].flags &= !libc::MS_RDONLY;
            out.push(mounts[i].dest.clone());
        }
    }
    out
}

/// The cgroup a container sees at a `cgroup`/`cgroup2` mount: only its own (CVE class: a container raising its own
/// limits or freezing the host's cgroups through the host's whole tree).
/// - cgroup2-only host: with a new cgroup namespace a fresh cgroup2 mount (its root is the container's cgroup);
///   without one a bind of the container's own cgroup directory. A fresh mount refused with EBUSY (the same cgroup2
///   already there, e.g. below a bind of the host's /sys) or EPERM falls back to that bind.
/// - hybrid host: a tmpfs with, per v1 hierarchy, a bind of the container's own cgroup in it (and `unified` for the
///   v2 one), plus the host's alias links (cpu -> cpu,cpuacct); `ro` applies to every bind and the tmpfs.
fn cgroup_view(
    cx: &Ctx,
    dest: &str,
    o: &crate::mounts::MountOpts,
    own: &OwnCgroup,
    new_cgroupns: bool,
    mounts: &mut Vec<MountStep>,
    links: &mut Vec<(CString, CString)>,
) -> Result<(), Error> {
    let field = "mounts.destination";
    let flags = o.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    let ro_extra = flags & (libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
    let bind = |src: &Path, d: &str| -> Result<MountStep, Error> {
        Ok(MountStep {
            source: Some(cx.cpath(field, src)?),
            dest: cx.c(field, d)?,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
            remount: (ro_extra != 0).then_some(ro_extra),
            propagation: 0,
            file: false,
            fallback_bind: None,
        })
    };
    if cgroup2_only() || own.v1.is_empty() {
        if new_cgroupns {
            mounts.push(MountStep {
                source: Some(c"cgroup2".into()),
                dest: cx.c(field, dest)?,
                fstype: Some(c"cgroup2".into()),
                flags,
                data: None,
                remount: None,
                propagation: o.propagation,
                file: false,
                fallback_bind: Some(cx.cpath(field, &own.v2)?),
            });
        } else {
            let mut m = bind(&own.v2, dest)?;
            m.propagation = o.propagation;
            mounts.push(m);
        }
        return Ok(());
    }
    mounts.push(MountStep {
        source: Some(c"tmpfs".into()),
        dest: cx.c(field, dest)?,
        fstype: Some(c"tmpfs".into()),
        flags: flags | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: Some(c"mode=755".into()),
        remount: None,
        propagation: o.propagation,
        file: false,
        fallback_bind: None,
    });
    let base = dest.trim_end_matches('/');
    for (name, src) in &own.v1 {
        mounts.push(bind(src, &format!("{base}/{name}"))?);
    }
    mounts.push(bind(&own.v2, &format!("{base}/unified"))?);
    for (name, target) in &own.aliases {
        links.push((cx.c(field, target)?, cx.c(field, format!("{base}/{name}"))?));
    }
    Ok(())
}

/// The container's own cgroup directories: v2, and on a hybrid host one per v1 hierarchy (name under
/// /sys/fs/cgroup, directory), with the host's alias links there.
struct OwnCgroup {
    v2: PathBuf,
    v1: Vec<(String, PathBuf)>,
    aliases: Vec<(String, String)>,
}

fn own_cgroup(cgroup: Option<&Path>, cg_root: &Path) -> OwnCgroup {
    let v2 = match cgroup {
        Some(c) => c.to_path_buf(),
        None => cg_root.join(cg::of_pid(std::process::id() as i32).unwrap_or_default().trim_start_matches('/')),
    };
    let mut v1 = Vec::new();
    let mut aliases = Vec::new();
    let hs = cg::v1::hierarchies();
    if !hs.is_empty() {
        let own_v1 = own_v1_paths();
        for h in hs {
            let Some(name) = h.mount.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
            let dir = match cgroup.and_then(|c| c.strip_prefix(cg_root).ok()) {
                Some(rel) if !rel.as_os_str().is_empty() => h.mount.join(rel),
                _ => {
                    let key = h.controllers.join(",");
                    let rel = own_v1.iter().find(|(k, _)| *k == key).map(|(_, p)| p.as_str()).unwrap_or("/");
                    h.mount.join(rel.trim_start_matches('/'))
                }
            };
            v1.push((name, dir));
        }
        if let Some(parent) = hs.first().and_then(|h| h.mount.parent()) {
            if let Ok(rd) = std::fs::read_dir(parent) {
                for e in rd.flatten() {
                    if let Ok(t) = std::fs::read_link(e.path()) {
                        aliases.push((e.file_name().to_string_lossy().into_owned(), t.to_string_lossy().into_owned()));
                    }
                }
            }
        }
    }
    OwnCgroup { v2, v1, aliases }
}

/// This process's v1 cgroups: (controllers as in /proc/self/cgroup, path).
fn own_v1_paths() -> Vec<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctl = it.next()?;
            let path = it.next()?;
            (!ctl.is_empty()).then(|| (ctl.to_string(), path.to_string()))
        })
        .collect()
}

/// Prepare the child's plan for a bundle (create/run). No side effects besides opening namespace files.
pub fn for_bundle(
    bundle: &Bundle,
    opts: &SpawnOptions,
    ns: &namespaces::NsPlan,
    cgroup: Option<&Path>,
    cg_root: &Path,
) -> Result<Plan, Error> {
    let cfg = bundle.dir.join("config.json");
    let cx = Ctx { cfg: &cfg };
    let spec = &bundle.spec;
    let process = spec.process.as_ref().ok_or_else(|| cx.invalid("process", "missing: nothing to run".into()))?;
    let linux = spec.linux.as_ref();
    if opts.preserve_fds.len() > 64 {
        return Err(
            cx.invalid("preserve_fds", format!("{} fds asked, at most 64 are supported", opts.preserve_fds.len()))
        );
    }
    // A joined mount namespace gets the bundle's root set up in it too (root.path is never ignored).
    let setup_root = ns.new_mount || ns.joined_mount;
    if !setup_root && !spec.mounts.is_empty() {
        return Err(
            cx.invalid("mounts", "mounts need a new mount namespace (linux.namespaces has no \"mount\")".into())
        );
    }
    let MountPlan { mut mounts, mut links, dev_tmpfs } = plan_mounts(&cx, bundle, opts, ns, cgroup, cg_root)?;
    let devices = plan_devices(&cx, linux, dev_tmpfs, &mut links)?;
    let remount_ro = defer_readonly(&mut mounts, &devices, &links);
    let paths = |field: &str, list: Option<&Vec<String>>| -> Result<Vec<CString>, Error> {
        list.map(|l| l.iter().map(|p| cx.c(field, p)).collect()).unwrap_or(Ok(Vec::new()))
    };
    let mut process_plan = process_plan(&cx, process, &opts.env, linux.and_then(|l| l.seccomp.as_ref()))?;
    process_plan.personality = plan_personality(&cx, linux)?;
    process_plan.create_cwd = true;
    let hooks = plan_hooks(&cx, bundle, opts)?;
    let propagation = plan_propagation(&cx, linux, setup_root, &bundle.rootfs)?;
    let new_pid = linux.and_then(|l| l.namespace(NamespaceType::Pid)).is_some_and(|n| n.path.is_none());
    let uts_name = |field: &str, v: Option<&String>| v.filter(|_| ns.new_uts).map(|h| cx.c(field, h)).transpose();
    let (changed_signals, sigpipe_ignored) = crate::sys::changed_signals();
    Ok(Plan {
        status_w: -1,
        sync: -1,
        new_user: ns.new_user,
        stdio: [-1, opts.stdout.unwrap_or(-1), opts.stderr.unwrap_or(-1)],
        preserve: opts.preserve_fds.clone(),
        cgroup_procs: -1,
        cgroup_procs_v1: Vec::new(),
        joins: Vec::new(),
        setup_root,
        chroot_only: !setup_root,
        root_propagation: propagation.root,
        reapply_propagation: propagation.configured,
        private_parent: propagation.private_parent,
        rootfs: cx.cpath("root.path", &bundle.rootfs)?,
        mounts,
        devices,
        links,
        remount_ro,
        sysctl: plan_sysctls(&cx, linux)?,
        readonly_paths: paths("linux.readonlyPaths", linux.map(|l| &l.readonly_paths))?,
        masked_paths: paths("linux.maskedPaths", linux.map(|l| &l.masked_paths))?,
        no_pivot: opts.no_pivot,
        readonly_root: spec.root.as_ref().is_some_and(|r| r.readonly),
        hostname: uts_name("hostname", spec.hostname.as_ref())?,
        domainname: uts_name("domainname", spec.domainname.as_ref())?,
        setsid: true,
        process: process_plan,
        exec_fifo: None,
        ns_reaper: opts.ns_reaper && new_pid,
        reaper_memfd: if opts.ns_reaper && new_pid { crate::reaper::prepare() } else { -1 },
        create_container: hooks.create_container,
        start_container: hooks.start_container,
        state_prefix: hooks.state_prefix,
        state_suffix: hooks.state_suffix,
        runtime_hooks_sync: hooks.runtime_hooks_sync,
        console: -1,
        console_size: process.console_size.map(|c| (c.height as u16, c.width as u16)).unwrap_or((0, 0)),
        changed_signals,
        sigpipe_ignored,
    })
}

/// The mount steps of config.json's `mounts` (cgroup mounts become the container's own cgroup view) and of
/// SpawnOptions.binds, the symlinks they need, and whether /dev is a tmpfs (then the default devices are made).
fn plan_mounts(
    cx: &Ctx,
    bundle: &Bundle,
    opts: &SpawnOptions,
    ns: &namespaces::NsPlan,
    cgroup: Option<&Path>,
    cg_root: &Path,
) -> Result<MountPlan, Error> {
    let spec = &bundle.spec;
    let new_cgroupns = ns.clone_flags & libc::CLONE_NEWCGROUP as u64 != 0;
    let mut own: Option<OwnCgroup> = None;
    let mut mounts = Vec::with_capacity(spec.mounts.len() + opts.binds.len());
    let mut links = Vec::new();
    let mut dev_tmpfs = false;
    for (i, m) in spec.mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let kind = m.kind.as_deref().unwrap_or("");
        let o = parse_options(&m.options);
        if kind == "cgroup" || kind == "cgroup2" {
            let own = own.get_or_insert_with(|| own_cgroup(cgroup, cg_root));
            cgroup_view(cx, &m.destination, &o, own, new_cgroupns, &mut mounts, &mut links)?;
            continue;
        }
        let dest = cx.c(&format!("{field}.destination"), &m.destination)?;
        let step = if kind == "bind" || o.bind {
            let src = m.source.as_deref().unwrap_or("");
            let src = if src.starts_with('/') { PathBuf::from(src) } else { bundle.dir.join(src) };
            let extra = o.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
            MountStep {
                flags: libc::MS_BIND | (o.flags & libc::MS_REC),
                remount: (extra != 0).then_some(extra),
                propagation: o.propagation,
                ..bind_step(cx, &field, &src, dest)?
            }
        } else {
            if m.destination.trim_end_matches('/') == "/dev" && kind == "tmpfs" {
                dev_tmpfs = true;
            }
            MountStep {
                source: Some(cx.c(&format!("{field}.source"), m.source.as_deref().unwrap_or(kind))?),
                dest,
                fstype: (!kind.is_empty()).then(|| cx.c(&format!("{field}.type"), kind)).transpose()?,
                flags: o.flags,
                data: (!o.data.is_empty()).then(|| cx.c(&format!("{field}.options"), &o.data)).transpose()?,
                remount: None,
                propagation: o.propagation,
                file: false,
                fallback_bind: None,
            }
        };
        mounts.push(step);
    }
    for (src, dst) in &opts.binds {
        mounts.push(bind_step(cx, "binds", src, cx.cpath("binds", dst)?)?);
    }
    Ok(MountPlan { mounts, links, dev_tmpfs })
}

/// What [`plan_mounts`] gives: the mount steps, the symlinks (target, link) they need, and whether /dev is a tmpfs.
struct MountPlan {
    mounts: Vec<MountStep>,
    links: Vec<(CString, CString)>,
    dev_tmpfs: bool,
}

/// A recursive bind of `src` onto `dest` (a file bind when `src` is not a directory).
fn bind_step(cx: &Ctx, field: &str, src: &Path, dest: CString) -> Result<MountStep, Error> {
    let source_field = if field == "binds" { field.to_string() } else { format!("{field}.source") };
    Ok(MountStep {
        source: Some(cx.cpath(&source_field, src)?),
        dest,
        fstype: None,
        flags: libc::MS_BIND | libc::MS_REC,
        data: None,
        remount: None,
        propagation: 0,
        file: std::fs::metadata(src).map(|md| !md.is_dir()).unwrap_or(false),
        fallback_bind: None,
    })
}

/// Device nodes: runc's defaults (and their /dev links) when /dev is a tmpfs, unless the config lists the same
/// path, then `linux.devices`.
fn plan_devices(
    cx: &Ctx,
    linux: Option<&crate::spec::Linux>,
    dev_tmpfs: bool,
    links: &mut Vec<(CString, CString)>,
) -> Result<Vec<DeviceStep>, Error> {
    let mut devs = Vec::new();
    let spec_devices = linux.map(|l| l.devices.as_slice()).unwrap_or(&[]);
    if dev_tmpfs {
        for (name, major, minor) in devices::DEFAULT {
            let path = format!("/dev/{name}");
            if spec_devices.iter().any(|d| d.path == path) {
                continue;
            }
            let p = cx.c("linux.devices", &path)?;
            let dev = libc::makedev(major, minor);
            devs.push(DeviceStep { dest: p.clone(), host: p, mode: libc::S_IFCHR | 0o666, dev, uid: None, gid: None });
        }
        for (name, target) in devices::LINKS {
            links.push((cx.c("links", target)?, cx.c("links", format!("/dev/{name}"))?));
        }
    }
    for (i, d) in spec_devices.iter().enumerate() {
        let p = cx.c(&format!("linux.devices[{i}].path"), &d.path)?;
        devs.push(DeviceStep {
            dest: p.clone(),
            host: p,
            mode: devices::type_bits(&d.kind) | d.file_mode.unwrap_or(0o666) & 0o7777,
            dev: libc::makedev(d.major as u32, d.minor as u32),
            uid: d.uid,
            gid: d.gid,
        });
    }
    Ok(devs)
}

/// `linux.sysctl` as (path under /proc/sys, value); a name with an empty or `..` component is refused.
fn plan_sysctls(cx: &Ctx, linux: Option<&crate::spec::Linux>) -> Result<Vec<(CString, CString)>, Error> {
    let mut sysctl = Vec::new();
    for (k, v) in linux.map(|l| l.sysctl.iter()).into_iter().flatten() {
        let field = format!("linux.sysctl.{k}");
        let key = k.replace('.', "/");
        if key.split('/').any(|c| c.is_empty() || c == "..") {
            return Err(cx.invalid(&field, "not a sysctl name".into()));
        }
        sysctl.push((cx.c(&field, key)?, cx.c(&field, v)?));
    }
    Ok(sysctl)
}

/// `linux.personality` as the personality(2) argument.
fn plan_personality(cx: &Ctx, linux: Option<&crate::spec::Linux>) -> Result<Option<libc::c_ulong>, Error> {
    let Some(p) = linux.and_then(|l| l.personality.as_ref()) else { return Ok(None) };
    let mut v: libc::c_ulong = match p.domain.as_str() {
        "LINUX" => 0,
        "LINUX32" => 0x0008,
        d => return Err(cx.invalid("linux.personality.domain", format!("unknown domain {d:?}"))),
    };
    for f in &p.flags {
        v |= personality_flag(f).ok_or_else(|| cx.invalid("linux.personality.flags", format!("unknown flag {f:?}")))?;
    }
    Ok(Some(v))
}

/// The hooks the child runs itself (createContainer, startContainer), the state they read on stdin, and whether
/// the parent's hooks (prestart, createRuntime) need a sync point.
struct HookPlan {
    create_container: Vec<PreparedHook>,
    start_container: Vec<PreparedHook>,
    state_prefix: Vec<u8>,
    state_suffix: Vec<u8>,
    runtime_hooks_sync: bool,
}

fn plan_hooks(cx: &Ctx, bundle: &Bundle, opts: &SpawnOptions) -> Result<HookPlan, Error> {
    let h = bundle.spec.hooks.as_ref();
    let prepare = |kind: &str, list: Option<&Vec<crate::spec::Hook>>| -> Result<Vec<PreparedHook>, Error> {
        let list = list.map(Vec::as_slice).unwrap_or_default();
        list.iter()
            .enumerate()
            .map(|(i, h)| PreparedHook::new(h, &format!("hooks.{kind}[{i}]")).map_err(|e| cx.err(e)))
            .collect()
    };
    let create_container = prepare("createContainer", h.map(|h| &h.create_container))?;
    let start_container = prepare("startContainer", h.map(|h| &h.start_container))?;
    let (state_prefix, state_suffix) = if create_container.is_empty() && start_container.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        hooks::state_parts(bundle, &opts.id, "created")
    };
    Ok(HookPlan {
        create_container,
        start_container,
        state_prefix,
        state_suffix,
        runtime_hooks_sync: h.is_some_and(|h| !h.prestart.is_empty() || !h.create_runtime.is_empty()),
    })
}

/// The rootfs's propagation: the configured `linux.rootfsPropagation` (re-applied after pivot_root) or rslave, and
/// the rootfs's parent mount to make private first where a shared or unbindable propagation is configured.
struct Propagation {
    root: libc::c_ulong,
    configured: Option<libc::c_ulong>,
    private_parent: Option<CString>,
}

fn plan_propagation(
    cx: &Ctx,
    linux: Option<&crate::spec::Linux>,
    setup_root: bool,
    rootfs: &Path,
) -> Result<Propagation, Error> {
    let configured = match linux.and_then(|l| l.rootfs_propagation.as_deref()).filter(|s| !s.is_empty()) {
        Some(name) => Some(
            crate::mounts::propagation_flag(name)
                .ok_or_else(|| cx.invalid("linux.rootfsPropagation", format!("unknown propagation {name:?}")))?,
        ),
        None => None,
    };
    // Only a configured propagation needs the mount table (to find the rootfs's parent mount and make it private:
    // a shared parent would carry the rootfs bind to the host, an unbindable one refuses it).
    let private_parent = if setup_root && configured.is_some_and(|f| f & (libc::MS_SHARED | libc::MS_UNBINDABLE) != 0) {
        parent_mount(rootfs).map(|p| cx.cpath("root.path", &p)).transpose()?
    } else {
        None
    };
    Ok(Propagation { root: configured.unwrap_or(libc::MS_SLAVE | libc::MS_REC), configured, private_parent })
}

/// Prepare the child's plan for `exec` into a running container: its namespaces (joined by the caller's plan),
/// no rootfs work, the process as given.
pub fn for_exec(
    bundle: &Bundle,
    process: &Process,
    opts: &SpawnOptions,
    ns: &namespaces::NsPlan,
) -> Result<Plan, Error> {
    let cfg = bundle.dir.join("config.json");
    let cx = Ctx { cfg: &cfg };
    if opts.preserve_fds.len() > 64 {
        return Err(cx.invalid("preserve_fds", "at most 64 are supported".into()));
    }
    let seccomp = bundle.spec.linux.as_ref().and_then(|l| l.seccomp.as_ref());
    let process_plan = process_plan(&cx, process, &opts.env, seccomp)?;
    let (changed_signals, sigpipe_ignored) = crate::sys::changed_signals();
    Ok(Plan {
        status_w: -1,
        sync: -1,
        new_user: false,
        stdio: [-1, opts.stdout.unwrap_or(-1), opts.stderr.unwrap_or(-1)],
        preserve: opts.preserve_fds.clone(),
        cgroup_procs: -1,
        cgroup_procs_v1: Vec::new(),
        joins: Vec::new(),
        setup_root: false,
        chroot_only: !ns.joined_mount,
        root_propagation: 0,
        reapply_propagation: None,
        private_parent: None,
        rootfs: cx.cpath("root.path", &bundle.rootfs)?,
        mounts: Vec::new(),
        devices: Vec::new(),
        links: Vec::new(),
        remount_ro: Vec::new(),
        sysctl: Vec::new(),
        readonly_paths: Vec::new(),
        masked_paths: Vec::new(),
        no_pivot: false,
        readonly_root: false,
        hostname: None,
        domainname: None,
        setsid: process.terminal,
        process: process_plan,
        exec_fifo: None,
        ns_reaper: false,
        reaper_memfd: -1,
        create_container: Vec::new(),
        start_container: Vec::new(),
        state_prefix: Vec::new(),
        state_suffix: Vec::new(),
        runtime_hooks_sync: false,
        console: -1,
        console_size: process.console_size.map(|c| (c.height as u16, c.width as u16)).unwrap_or((0, 0)),
        changed_signals,
        sigpipe_ignored,
    })
}

/// The process part of a plan (create/run and exec alike).
fn process_plan(
    cx: &Ctx,
    process: &Process,
    extra_env: &[String],
    seccomp: Option<&crate::seccomp::LinuxSeccomp>,
) -> Result<ProcessPlan, Error> {
    let mut rlimits = Vec::with_capacity(process.rlimits.len());
    for (i, r) in process.rlimits.iter().enumerate() {
        let res = crate::rlimits::resource(&r.kind)
            .ok_or_else(|| cx.invalid(&format!("process.rlimits[{i}].type"), format!("unknown rlimit {:?}", r.kind)))?;
        rlimits.push((res, r.soft, r.hard));
    }
    let last_cap = caps::last_cap();
    let known = if last_cap >= 63 { u64::MAX } else { (1u64 << (last_cap + 1)) - 1 };
    let caps = {
        let c = process.capabilities.clone().unwrap_or_default();
        let m = |field: &str, names: &[String]| {
            caps::mask(names)
                .map(|m| m & known)
                .map_err(|n| cx.invalid(&format!("process.capabilities.{field}"), format!("unknown capability {n:?}")))
        };
        CapSets {
            bounding: m("bounding", &c.bounding)?,
            effective: m("effective", &c.effective)?,
            permitted: m("permitted", &c.permitted)?,
            inheritable: m("inheritable", &c.inheritable)?,
            ambient: m("ambient", &c.ambient)?,
        }
    };
    let seccomp_prog = match seccomp {
        Some(s) => Some(crate::seccomp::compile(s)?),
        None => None,
    };
    let seccomp_flags = seccomp.map(|s| s.flags.clone()).unwrap_or_default();

    // Environment: process.env, then extra entries overriding the same keys.
    let mut env: Vec<String> = process.env.clone();
    for e in extra_env {
        let key = e.split('=').next().unwrap_or("");
        match env.iter_mut().find(|x| x.split('=').next() == Some(key)) {
            Some(x) => *x = e.clone(),
            None => env.push(e.clone()),
        }
    }
    // Bundle::load checks this too, but Bundle's fields are public: never index on faith.
    let Some(arg0) = process.args.first() else {
        return Err(cx.invalid("process.args", "must not be empty".into()));
    };
    let exec_paths: Vec<CString> = if arg0.contains('/') {
        vec![cx.c("process.args[0]", arg0)?]
    } else {
        let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
        path.split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| cx.c("process.args[0]", format!("{d}/{arg0}")))
            .collect::<Result<_, _>>()?
    };
    let argv_c: Vec<CString> = process
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| cx.c(&format!("process.args[{i}]"), a))
        .collect::<Result<_, _>>()?;
    let envp_c: Vec<CString> =
        env.iter().enumerate().map(|(i, e)| cx.c(&format!("process.env[{i}]"), e)).collect::<Result<_, _>>()?;
    let mut argv: Vec<_> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<_> = envp_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    Ok(ProcessPlan {
        rlimits,
        oom_score_adj: process.oom_score_adj.map(|v| cx.c("process.oomScoreAdj", v.to_string())).transpose()?,
        personality: None,
        umask: Some(process.user.umask.unwrap_or(0o022) as libc::mode_t),
        uid: process.user.uid,
        gid: process.user.gid,
        groups: Some(process.user.additional_gids.clone()),
        caps: Some(caps),
        last_cap,
        no_new_privs: process.no_new_privileges,
        seccomp: seccomp_prog,
        seccomp_flags,
        cwd: cx.c("process.cwd", if process.cwd.is_empty() { "/" } else { &process.cwd })?,
        create_cwd: false,
        arg0: cx.c("process.args[0]", arg0)?,
        exec_paths,
        _argv: argv_c,
        _envp: envp_c,
        argv,
        envp,
    })
}

/// The mount point of the mount that contains `path` (longest mount point prefix in /proc/self/mountinfo).
fn parent_mount(path: &Path) -> Option<PathBuf> {
    let path = std::fs::canonicalize(path).ok()?;
    crate::sys::mountinfo::read()
        .ok()?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|mp| path.starts_with(mp))
        .max_by_key(|mp| mp.as_os_str().len())
}

/// A personality(2) flag by its name in <linux/personality.h>.
fn personality_flag(name: &str) -> Option<libc::c_ulong> {
    Some(match name {
        "UNAME26" => 0x0020000,
        "ADDR_NO_RANDOMIZE" => 0x0040000,
        "FDPIC_FUNCPTRS" => 0x0080000,
        "MMAP_PAGE_ZERO" => 0x0100000,
        "ADDR_COMPAT_LAYOUT" => 0x0200000,
        "READ_IMPLIES_EXEC" => 0x0400000,
        "ADDR_LIMIT_32BIT" => 0x0800000,
        "SHORT_INODE" => 0x1000000,
        "WHOLE_SECONDS" => 0x2000000,
        "STICKY_TIMEOUTS" => 0x4000000,
        "ADDR_LIMIT_3GB" => 0x8000000,
        _ => return None,
    })
}
