//! Seccomp: the spec's `linux.seccomp` types, a compiler from them to classic BPF, and installation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::Error;

/// `linux.seccomp` of config.json.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinuxSeccomp {
    /// e.g. "SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW".
    pub default_action: String,
    pub default_errno_ret: Option<u32>,
    /// e.g. "SCMP_ARCH_X86_64".
    pub architectures: Vec<String>,
    /// e.g. "SECCOMP_FILTER_FLAG_LOG".
    pub flags: Vec<String>,
    pub listener_path: Option<String>,
    pub syscalls: Vec<LinuxSyscall>,
}

/// One rule of `linux.seccomp.syscalls`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinuxSyscall {
    pub names: Vec<String>,
    pub action: String,
    pub errno_ret: Option<u32>,
    pub args: Vec<LinuxSeccompArg>,
}

/// An argument condition of a syscall rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinuxSeccompArg {
    pub index: u32,
    pub value: u64,
    pub value_two: u64,
    /// "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ".
    pub op: String,
}

// ---------------------------------------------------------------------------------------------------------------
// Compiler: linux.seccomp -> classic BPF (seccomp_data: nr @0, arch @4, ip @8, args[i] @16+8i, little endian).
// ---------------------------------------------------------------------------------------------------------------

/// `AUDIT_ARCH_X86_64` (EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE); not exported by libc.
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `AUDIT_ARCH_I386` (EM_386 | __AUDIT_ARCH_LE).
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// x32 syscalls are x86_64 syscalls with this bit set in `nr`.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// What a syscall of an architecture the filter does not list gets (libseccomp's default "bad arch" action).
const RET_BADARCH: u32 = libc::SECCOMP_RET_KILL_THREAD;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// x86_64 syscall names and numbers, sorted by name (a unit test checks the order) for binary search.
/// Generated from libc's `SYS_*` constants for x86_64.
static SYSCALLS: &[(&str, libc::c_long)] = &[
    ("_sysctl", libc::SYS__sysctl),
    ("accept", libc::SYS_accept),
    ("accept4", libc::SYS_accept4),
    ("access", libc::SYS_access),
    ("acct", libc::SYS_acct),
    ("add_key", libc::SYS_add_key),
    ("adjtimex", libc::SYS_adjtimex),
    ("afs_syscall", libc::SYS_afs_syscall),
    ("alarm", libc::SYS_alarm),
    ("arch_prctl", libc::SYS_arch_prctl),
    ("bind", libc::SYS_bind),
    ("bpf", libc::SYS_bpf),
    ("brk", libc::SYS_brk),
    ("capget", libc::SYS_capget),
    ("capset", libc::SYS_capset),
    ("chdir", libc::SYS_chdir),
    ("chmod", libc::SYS_chmod),
    ("chown", libc::SYS_chown),
    ("chroot", libc::SYS_chroot),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("clock_getres", libc::SYS_clock_getres),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("clock_nanosleep", libc::SYS_clock_nanosleep),
    ("clock_settime", libc::SYS_clock_settime),
    ("clone", libc::SYS_clone),
    ("clone3", libc::SYS_clone3),
    ("close", libc::SYS_close),
    ("close_range", libc::SYS_close_range),
    ("connect", libc::SYS_connect),
    ("copy_file_range", libc::SYS_copy_file_range),
    ("creat", libc::SYS_creat),
    ("delete_module", libc::SYS_delete_module),
    ("dup", libc::SYS_dup),
    ("dup2", libc::SYS_dup2),
    ("dup3", libc::SYS_dup3),
    ("epoll_create", libc::SYS_epoll_create),
    ("epoll_create1", libc::SYS_epoll_create1),
    ("epoll_ctl", libc::SYS_epoll_ctl),
    ("epoll_ctl_old", libc::SYS_epoll_ctl_old),
    ("epoll_pwait", libc::SYS_epoll_pwait),
    ("epoll_pwait2", libc::SYS_epoll_pwait2),
    ("epoll_wait", libc::SYS_epoll_wait),
    ("epoll_wait_old", libc::SYS_epoll_wait_old),
    ("eventfd", libc::SYS_eventfd),
    ("eventfd2", libc::SYS_eventfd2),
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    ("faccessat", libc::SYS_faccessat),
    ("faccessat2", libc::SYS_faccessat2),
    ("fadvise64", libc::SYS_fadvise64),
    ("fallocate", libc::SYS_fallocate),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("fanotify_mark", libc::SYS_fanotify_mark),
    ("fchdir", libc::SYS_fchdir),
    ("fchmod", libc::SYS_fchmod),
    ("fchmodat", libc::SYS_fchmodat),
    ("fchmodat2", libc::SYS_fchmodat2),
    ("fchown", libc::SYS_fchown),
    ("fchownat", libc::SYS_fchownat),
    ("fcntl", libc::SYS_fcntl),
    ("fdatasync", libc::SYS_fdatasync),
    ("fgetxattr", libc::SYS_fgetxattr),
    ("finit_module", libc::SYS_finit_module),
    ("flistxattr", libc::SYS_flistxattr),
    ("flock", libc::SYS_flock),
    ("fork", libc::SYS_fork),
    ("fremovexattr", libc::SYS_fremovexattr),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsetxattr", libc::SYS_fsetxattr),
    ("fsmount", libc::SYS_fsmount),
    ("fsopen", libc::SYS_fsopen),
    ("fspick", libc::SYS_fspick),
    ("fstat", libc::SYS_fstat),
    ("fstatfs", libc::SYS_fstatfs),
    ("fsync", libc::SYS_fsync),
    ("ftruncate", libc::SYS_ftruncate),
    ("futex", libc::SYS_futex),
    ("futex_waitv", libc::SYS_futex_waitv),
    ("futimesat", libc::SYS_futimesat),
    ("get_mempolicy", libc::SYS_get_mempolicy),
    ("get_robust_list", libc::SYS_get_robust_list),
    ("get_thread_area", libc::SYS_get_thread_area),
    ("getcpu", libc::SYS_getcpu),
    ("getcwd", libc::SYS_getcwd),
    ("getdents", libc::SYS_getdents),
    ("getdents64", libc::SYS_getdents64),
    ("getegid", libc::SYS_getegid),
    ("geteuid", libc::SYS_geteuid),
    ("getgid", libc::SYS_getgid),
    ("getgroups", libc::SYS_getgroups),
    ("getitimer", libc::SYS_getitimer),
    ("getpeername", libc::SYS_getpeername),
    ("getpgid", libc::SYS_getpgid),
    ("getpgrp", libc::SYS_getpgrp),
    ("getpid", libc::SYS_getpid),
    ("getpmsg", libc::SYS_getpmsg),
    ("getppid", libc::SYS_getppid),
    ("getpriority", libc::SYS_getpriority),
    ("getrandom", libc::SYS_getrandom),
    ("getresgid", libc::SYS_getresgid),
    ("getresuid", libc::SYS_getresuid),
    ("getrlimit", libc::SYS_getrlimit),
    ("getrusage", libc::SYS_getrusage),
    ("getsid", libc::SYS_getsid),
    ("getsockname", libc::SYS_getsockname),
    ("getsockopt", libc::SYS_getsockopt),
    ("gettid", libc::SYS_gettid),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("getuid", libc::SYS_getuid),
    ("getxattr", libc::SYS_getxattr),
    ("init_module", libc::SYS_init_module),
    ("inotify_add_watch", libc::SYS_inotify_add_watch),
    ("inotify_init", libc::SYS_inotify_init),
    ("inotify_init1", libc::SYS_inotify_init1),
    ("inotify_rm_watch", libc::SYS_inotify_rm_watch),
    ("io_cancel", libc::SYS_io_cancel),
    ("io_destroy", libc::SYS_io_destroy),
    ("io_getevents", libc::SYS_io_getevents),
    ("io_setup", libc::SYS_io_setup),
    ("io_submit", libc::SYS_io_submit),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("ioctl", libc::SYS_ioctl),
    ("ioperm", libc::SYS_ioperm),
    ("iopl", libc::SYS_iopl),
    ("ioprio_get", libc::SYS_ioprio_get),
    ("ioprio_set", libc::SYS_ioprio_set),
    ("kcmp", libc::SYS_kcmp),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("kexec_load", libc::SYS_kexec_load),
    ("keyctl", libc::SYS_keyctl),
    ("kill", libc::SYS_kill),
    ("landlock_add_rule", libc::SYS_landlock_add_rule),
    ("landlock_create_ruleset", libc::SYS_landlock_create_ruleset),
    ("landlock_restrict_self", libc::SYS_landlock_restrict_self),
    ("lchown", libc::SYS_lchown),
    ("lgetxattr", libc::SYS_lgetxattr),
    ("link", libc::SYS_link),
    ("linkat", libc::SYS_linkat),
    ("listen", libc::SYS_listen),
    ("listxattr", libc::SYS_listxattr),
    ("llistxattr", libc::SYS_llistxattr),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("lremovexattr", libc::SYS_lremovexattr),
    ("lseek", libc::SYS_lseek),
    ("lsetxattr", libc::SYS_lsetxattr),
    ("lstat", libc::SYS_lstat),
    ("madvise", libc::SYS_madvise),
    ("mbind", libc::SYS_mbind),
    ("membarrier", libc::SYS_membarrier),
    ("memfd_create", libc::SYS_memfd_create),
    ("memfd_secret", libc::SYS_memfd_secret),
    ("migrate_pages", libc::SYS_migrate_pages),
    ("mincore", libc::SYS_mincore),
    ("mkdir", libc::SYS_mkdir),
    ("mkdirat", libc::SYS_mkdirat),
    ("mknod", libc::SYS_mknod),
    ("mknodat", libc::SYS_mknodat),
    ("mlock", libc::SYS_mlock),
    ("mlock2", libc::SYS_mlock2),
    ("mlockall", libc::SYS_mlockall),
    ("mmap", libc::SYS_mmap),
    ("modify_ldt", libc::SYS_modify_ldt),
    ("mount", libc::SYS_mount),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("move_mount", libc::SYS_move_mount),
    ("move_pages", libc::SYS_move_pages),
    ("mprotect", libc::SYS_mprotect),
    ("mq_getsetattr", libc::SYS_mq_getsetattr),
    ("mq_notify", libc::SYS_mq_notify),
    ("mq_open", libc::SYS_mq_open),
    ("mq_timedreceive", libc::SYS_mq_timedreceive),
    ("mq_timedsend", libc::SYS_mq_timedsend),
    ("mq_unlink", libc::SYS_mq_unlink),
    ("mremap", libc::SYS_mremap),
    ("mseal", libc::SYS_mseal),
    ("msgctl", libc::SYS_msgctl),
    ("msgget", libc::SYS_msgget),
    ("msgrcv", libc::SYS_msgrcv),
    ("msgsnd", libc::SYS_msgsnd),
    ("msync", libc::SYS_msync),
    ("munlock", libc::SYS_munlock),
    ("munlockall", libc::SYS_munlockall),
    ("munmap", libc::SYS_munmap),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("nanosleep", libc::SYS_nanosleep),
    ("newfstatat", libc::SYS_newfstatat),
    ("nfsservctl", libc::SYS_nfsservctl),
    ("open", libc::SYS_open),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("open_tree", libc::SYS_open_tree),
    ("openat", libc::SYS_openat),
    ("openat2", libc::SYS_openat2),
    ("pause", libc::SYS_pause),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("personality", libc::SYS_personality),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("pidfd_open", libc::SYS_pidfd_open),
    ("pidfd_send_signal", libc::SYS_pidfd_send_signal),
    ("pipe", libc::SYS_pipe),
    ("pipe2", libc::SYS_pipe2),
    ("pivot_root", libc::SYS_pivot_root),
    ("pkey_alloc", libc::SYS_pkey_alloc),
    ("pkey_free", libc::SYS_pkey_free),
    ("pkey_mprotect", libc::SYS_pkey_mprotect),
    ("poll", libc::SYS_poll),
    ("ppoll", libc::SYS_ppoll),
    ("prctl", libc::SYS_prctl),
    ("pread64", libc::SYS_pread64),
    ("preadv", libc::SYS_preadv),
    ("preadv2", libc::SYS_preadv2),
    ("prlimit64", libc::SYS_prlimit64),
    ("process_madvise", libc::SYS_process_madvise),
    ("process_mrelease", libc::SYS_process_mrelease),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("pselect6", libc::SYS_pselect6),
    ("ptrace", libc::SYS_ptrace),
    ("putpmsg", libc::SYS_putpmsg),
    ("pwrite64", libc::SYS_pwrite64),
    ("pwritev", libc::SYS_pwritev),
    ("pwritev2", libc::SYS_pwritev2),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("read", libc::SYS_read),
    ("readahead", libc::SYS_readahead),
    ("readlink", libc::SYS_readlink),
    ("readlinkat", libc::SYS_readlinkat),
    ("readv", libc::SYS_readv),
    ("reboot", libc::SYS_reboot),
    ("recvfrom", libc::SYS_recvfrom),
    ("recvmmsg", libc::SYS_recvmmsg),
    ("recvmsg", libc::SYS_recvmsg),
    ("remap_file_pages", libc::SYS_remap_file_pages),
    ("removexattr", libc::SYS_removexattr),
    ("rename", libc::SYS_rename),
    ("renameat", libc::SYS_renameat),
    ("renameat2", libc::SYS_renameat2),
    ("request_key", libc::SYS_request_key),
    ("restart_syscall", libc::SYS_restart_syscall),
    ("rmdir", libc::SYS_rmdir),
    ("rseq", libc::SYS_rseq),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigpending", libc::SYS_rt_sigpending),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigqueueinfo", libc::SYS_rt_sigqueueinfo),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("rt_sigsuspend", libc::SYS_rt_sigsuspend),
    ("rt_sigtimedwait", libc::SYS_rt_sigtimedwait),
    ("rt_tgsigqueueinfo", libc::SYS_rt_tgsigqueueinfo),
    ("sched_get_priority_max", libc::SYS_sched_get_priority_max),
    ("sched_get_priority_min", libc::SYS_sched_get_priority_min),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("sched_getattr", libc::SYS_sched_getattr),
    ("sched_getparam", libc::SYS_sched_getparam),
    ("sched_getscheduler", libc::SYS_sched_getscheduler),
    ("sched_rr_get_interval", libc::SYS_sched_rr_get_interval),
    ("sched_setaffinity", libc::SYS_sched_setaffinity),
    ("sched_setattr", libc::SYS_sched_setattr),
    ("sched_setparam", libc::SYS_sched_setparam),
    ("sched_setscheduler", libc::SYS_sched_setscheduler),
    ("sched_yield", libc::SYS_sched_yield),
    ("seccomp", libc::SYS_seccomp),
    ("security", libc::SYS_security),
    ("select", libc::SYS_select),
    ("semctl", libc::SYS_semctl),
    ("semget", libc::SYS_semget),
    ("semop", libc::SYS_semop),
    ("semtimedop", libc::SYS_semtimedop),
    ("sendfile", libc::SYS_sendfile),
    ("sendmmsg", libc::SYS_sendmmsg),
    ("sendmsg", libc::SYS_sendmsg),
    ("sendto", libc::SYS_sendto),
    ("set_mempolicy", libc::SYS_set_mempolicy),
    ("set_mempolicy_home_node", libc::SYS_set_mempolicy_home_node),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("set_thread_area", libc::SYS_set_thread_area),
    ("set_tid_address", libc::SYS_set_tid_address),
    ("setdomainname", libc::SYS_setdomainname),
    ("setfsgid", libc::SYS_setfsgid),
    ("setfsuid", libc::SYS_setfsuid),
    ("setgid", libc::SYS_setgid),
    ("setgroups", libc::SYS_setgroups),
    ("sethostname", libc::SYS_sethostname),
    ("setitimer", libc::SYS_setitimer),
    ("setns", libc::SYS_setns),
    ("setpgid", libc::SYS_setpgid),
    ("setpriority", libc::SYS_setpriority),
    ("setregid", libc::SYS_setregid),
    ("setresgid", libc::SYS_setresgid),
    ("setresuid", libc::SYS_setresuid),
    ("setreuid", libc::SYS_setreuid),
    ("setrlimit", libc::SYS_setrlimit),
    ("setsid", libc::SYS_setsid),
    ("setsockopt", libc::SYS_setsockopt),
    ("settimeofday", libc::SYS_settimeofday),
    ("setuid", libc::SYS_setuid),
    ("setxattr", libc::SYS_setxattr),
    ("shmat", libc::SYS_shmat),
    ("shmctl", libc::SYS_shmctl),
    ("shmdt", libc::SYS_shmdt),
    ("shmget", libc::SYS_shmget),
    ("shutdown", libc::SYS_shutdown),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("signalfd", libc::SYS_signalfd),
    ("signalfd4", libc::SYS_signalfd4),
    ("socket", libc::SYS_socket),
    ("socketpair", libc::SYS_socketpair),
    ("splice", libc::SYS_splice),
    ("stat", libc::SYS_stat),
    ("statfs", libc::SYS_statfs),
    ("statx", libc::SYS_statx),
    ("swapoff", libc::SYS_swapoff),
    ("swapon", libc::SYS_swapon),
    ("symlink", libc::SYS_symlink),
    ("symlinkat", libc::SYS_symlinkat),
    ("sync", libc::SYS_sync),
    ("sync_file_range", libc::SYS_sync_file_range),
    ("syncfs", libc::SYS_syncfs),
    ("sysfs", libc::SYS_sysfs),
    ("sysinfo", libc::SYS_sysinfo),
    ("syslog", libc::SYS_syslog),
    ("tee", libc::SYS_tee),
    ("tgkill", libc::SYS_tgkill),
    ("time", libc::SYS_time),
    ("timer_create", libc::SYS_timer_create),
    ("timer_delete", libc::SYS_timer_delete),
    ("timer_getoverrun", libc::SYS_timer_getoverrun),
    ("timer_gettime", libc::SYS_timer_gettime),
    ("timer_settime", libc::SYS_timer_settime),
    ("timerfd_create", libc::SYS_timerfd_create),
    ("timerfd_gettime", libc::SYS_timerfd_gettime),
    ("timerfd_settime", libc::SYS_timerfd_settime),
    ("times", libc::SYS_times),
    ("tkill", libc::SYS_tkill),
    ("truncate", libc::SYS_truncate),
    ("tuxcall", libc::SYS_tuxcall),
    ("umask", libc::SYS_umask),
    ("umount2", libc::SYS_umount2),
    ("uname", libc::SYS_uname),
    ("unlink", libc::SYS_unlink),
    ("unlinkat", libc::SYS_unlinkat),
    ("unshare", libc::SYS_unshare),
    ("uselib", libc::SYS_uselib),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("ustat", libc::SYS_ustat),
    ("utime", libc::SYS_utime),
    ("utimensat", libc::SYS_utimensat),
    ("utimes", libc::SYS_utimes),
    ("vfork", libc::SYS_vfork),
    ("vhangup", libc::SYS_vhangup),
    ("vmsplice", libc::SYS_vmsplice),
    ("vserver", libc::SYS_vserver),
    ("wait4", libc::SYS_wait4),
    ("waitid", libc::SYS_waitid),
    ("write", libc::SYS_write),
    ("writev", libc::SYS_writev),
];

/// The x86_64 number of syscall `name`, if this libc knows it.
pub fn syscall_nr(name: &str) -> Option<u32> {
    SYSCALLS.binary_search_by(|(n, _)| (*n).cmp(name)).ok().map(|i| SYSCALLS[i].1 as u32)
}

fn invalid(field: String, msg: impl Into<String>) -> Error {
    Error::Invalid { path: PathBuf::from("config.json"), field, msg: msg.into() }
}

/// The SECCOMP_RET_* value of a spec action; `errno` is errnoRet (default EPERM) for ERRNO and TRACE.
pub fn action(name: &str, errno: Option<u32>, field: &str) -> Result<u32, Error> {
    let data = errno.unwrap_or(libc::EPERM as u32) & libc::SECCOMP_RET_DATA;
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => libc::SECCOMP_RET_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => libc::SECCOMP_RET_KILL_PROCESS,
        "SCMP_ACT_TRAP" => libc::SECCOMP_RET_TRAP,
        "SCMP_ACT_ERRNO" => libc::SECCOMP_RET_ERRNO | data,
        "SCMP_ACT_TRACE" => libc::SECCOMP_RET_TRACE | data,
        "SCMP_ACT_ALLOW" => libc::SECCOMP_RET_ALLOW,
        "SCMP_ACT_LOG" => libc::SECCOMP_RET_LOG,
        "SCMP_ACT_NOTIFY" => {
            return Err(invalid(field.into(), "SCMP_ACT_NOTIFY is not supported by keel (no seccomp agent)"))
        }
        other => return Err(invalid(field.into(), format!("unknown seccomp action {other:?}"))),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

#[derive(Debug, Clone, Copy)]
struct Cond {
    index: u32,
    op: Op,
    value: u64,
    value_two: u64,
}

#[derive(Debug, Clone)]
struct Rule {
    conds: Vec<Cond>,
    action: u32,
}

/// A jump target: the instruction after this one, or a label (always forward).
#[derive(Debug, Clone, Copy)]
enum Tgt {
    Next,
    L(usize),
}

#[derive(Debug, Clone, Copy)]
enum Item {
    /// Non-jump statement.
    Stmt(u16, u32),
    /// Conditional jump (BPF_JMP | op | BPF_K).
    Jmp {
        code: u16,
        k: u32,
        jt: Tgt,
        jf: Tgt,
        tramp_t: bool,
        tramp_f: bool,
    },
    /// Unconditional jump to a label.
    Ja(usize),
    Label(usize),
}

/// A tiny assembler with forward labels. Conditional jumps whose target is more than 255 instructions away get a
/// `JA` trampoline right after them (jt/jf are u8; JA's k is 32 bits); layout is iterated until it is stable.
#[derive(Default)]
struct Asm {
    items: Vec<Item>,
    nlabels: usize,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.nlabels += 1;
        self.nlabels - 1
    }
    fn place(&mut self, l: usize) {
        self.items.push(Item::Label(l));
    }
    fn stmt(&mut self, code: u32, k: u32) {
        self.items.push(Item::Stmt(code as u16, k));
    }
    fn ld(&mut self, off: u32) {
        self.stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, off);
    }
    fn ret(&mut self, k: u32) {
        self.stmt(libc::BPF_RET | libc::BPF_K, k);
    }
    fn jmp(&mut self, op: u32, k: u32, jt: Tgt, jf: Tgt) {
        let code = (libc::BPF_JMP | op | libc::BPF_K) as u16;
        self.items.push(Item::Jmp { code, k, jt, jf, tramp_t: false, tramp_f: false });
    }
    fn ja(&mut self, l: usize) {
        self.items.push(Item::Ja(l));
    }

    fn size(it: &Item) -> usize {
        match it {
            Item::Label(_) => 0,
            Item::Jmp { tramp_t, tramp_f, .. } => 1 + *tramp_t as usize + *tramp_f as usize,
            _ => 1,
        }
    }

    fn finish(mut self) -> Result<Vec<libc::sock_filter>, Error> {
        let mut lpos = vec![usize::MAX; self.nlabels];
        loop {
            let mut pos = 0;
            for it in &self.items {
                if let Item::Label(l) = it {
                    lpos[*l] = pos;
                }
                pos += Self::size(it);
            }
            let mut changed = false;
            let mut pos = 0;
            for it in self.items.iter_mut() {
                let sz = Self::size(it);
                if let Item::Jmp { jt, jf, tramp_t, tramp_f, .. } = it {
                    for (t, tr) in [(*jt, tramp_t), (*jf, tramp_f)] {
                        if let Tgt::L(l) = t {
                            if !*tr && lpos[l].saturating_sub(pos + 1) > 255 {
                                *tr = true;
                                changed = true;
                            }
                        }
                    }
                }
                pos += sz;
            }
            if !changed {
                break;
            }
        }
        let mut out = Vec::new();
        let ins = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
        for it in &self.items {
            let p = out.len();
            let rel = |target: usize, from: usize| -> Result<u32, Error> {
                target
                    .checked_sub(from + 1)
                    .map(|d| d as u32)
                    .ok_or_else(|| invalid("linux.seccomp".into(), "internal error: backward jump in BPF program"))
            };
            match *it {
                Item::Label(_) => {}
                Item::Stmt(code, k) => out.push(ins(code, 0, 0, k)),
                Item::Ja(l) => out.push(ins((libc::BPF_JMP | libc::BPF_JA) as u16, 0, 0, rel(lpos[l], p)?)),
                Item::Jmp { code, k, jt, jf, tramp_t, tramp_f } => {
                    let ntr = tramp_t as usize + tramp_f as usize;
                    let target = |t: Tgt| match t {
                        Tgt::Next => p + 1 + ntr,
                        Tgt::L(l) => lpos[l],
                    };
                    let jt_off = if tramp_t { 0 } else { rel(target(jt), p)? };
                    let jf_off = if tramp_f { tramp_t as u32 } else { rel(target(jf), p)? };
                    if jt_off > 255 || jf_off > 255 {
                        return Err(invalid("linux.seccomp".into(), "internal error: BPF jump out of range"));
                    }
                    out.push(ins(code, jt_off as u8, jf_off as u8, k));
                    if tramp_t {
                        let q = out.len();
                        out.push(ins((libc::BPF_JMP | libc::BPF_JA) as u16, 0, 0, rel(target(jt), q)?));
                    }
                    if tramp_f {
                        let q = out.len();
                        out.push(ins((libc::BPF_JMP | libc::BPF_JA) as u16, 0, 0, rel(target(jf), q)?));
                    }
                }
            }
        }
        if out.len() > libc::BPF_MAXINSNS as usize {
            return Err(invalid(
                "linux.seccomp".into(),
                format!("filter needs {} BPF instructions, the kernel allows {}", out.len(), libc::BPF_MAXINSNS),
            ));
        }
        Ok(out)
    }
}

/// Emit a 64-bit argument comparison that falls through when `c` holds and jumps to `fail` otherwise.
fn emit_cond(a: &mut Asm, c: &Cond, fail: usize) {
    let lo = OFF_ARGS + 8 * c.index;
    let hi = lo + 4;
    let (vhi, vlo) = ((c.value >> 32) as u32, c.value as u32);
    let f = Tgt::L(fail);
    let n = Tgt::Next;
    let (jeq, jgt, jge) = (libc::BPF_JEQ, libc::BPF_JGT, libc::BPF_JGE);
    match c.op {
        Op::Eq => {
            a.ld(hi);
            a.jmp(jeq, vhi, n, f);
            a.ld(lo);
            a.jmp(jeq, vlo, n, f);
        }
        Op::Ne => {
            let ok = a.label();
            a.ld(hi);
            a.jmp(jeq, vhi, n, Tgt::L(ok));
            a.ld(lo);
            a.jmp(jeq, vlo, f, n);
            a.place(ok);
        }
        Op::Gt | Op::Ge => {
            let ok = a.label();
            a.ld(hi);
            a.jmp(jgt, vhi, Tgt::L(ok), n);
            a.jmp(jeq, vhi, n, f);
            a.ld(lo);
            a.jmp(if c.op == Op::Gt { jgt } else { jge }, vlo, n, f);
            a.place(ok);
        }
        Op::Lt | Op::Le => {
            // a < v  <=>  !(a >= v);  a <= v  <=>  !(a > v)
            let ok = a.label();
            a.ld(hi);
            a.jmp(jgt, vhi, f, n);
            a.jmp(jeq, vhi, n, Tgt::L(ok));
            a.ld(lo);
            a.jmp(if c.op == Op::Lt { jge } else { jgt }, vlo, f, n);
            a.place(ok);
        }
        Op::MaskedEq => {
            let (mhi, mlo) = ((c.value >> 32) as u32, c.value as u32);
            let (dhi, dlo) = ((c.value_two >> 32) as u32, c.value_two as u32);
            a.ld(hi);
            a.stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, mhi);
            a.jmp(jeq, dhi, n, f);
            a.ld(lo);
            a.stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, mlo);
            a.jmp(jeq, dlo, n, f);
        }
    }
}

/// Binary-search dispatch on the syscall number in A to the rule block of each number; others -> `default`.
fn emit_dispatch(a: &mut Asm, nrs: &[(u32, usize)], default: usize) {
    if nrs.len() <= 4 {
        for (i, (nr, l)) in nrs.iter().enumerate() {
            let jf = if i + 1 == nrs.len() { Tgt::L(default) } else { Tgt::Next };
            a.jmp(libc::BPF_JEQ, *nr, Tgt::L(*l), jf);
        }
        if nrs.is_empty() {
            a.ja(default);
        }
        return;
    }
    let mid = nrs.len() / 2;
    let high = a.label();
    a.jmp(libc::BPF_JGE, nrs[mid].0, Tgt::L(high), Tgt::Next);
    emit_dispatch(a, &nrs[..mid], default);
    a.place(high);
    emit_dispatch(a, &nrs[mid..], default);
}

fn parse_op(op: &str, field: &str) -> Result<Op, Error> {
    Ok(match op {
        "SCMP_CMP_NE" => Op::Ne,
        "SCMP_CMP_LT" => Op::Lt,
        "SCMP_CMP_LE" => Op::Le,
        "SCMP_CMP_EQ" => Op::Eq,
        "SCMP_CMP_GE" => Op::Ge,
        "SCMP_CMP_GT" => Op::Gt,
        "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
        other => return Err(invalid(field.into(), format!("unknown seccomp operator {other:?}"))),
    })
}

/// Compile `linux.seccomp` into a classic BPF program for x86_64.
///
/// Semantics (runc + libseccomp): the native arch x86_64 is always in the filter; `SCMP_ARCH_X32` adds x32
/// (nr | 0x40000000, matched against the x86_64 numbers); `SCMP_ARCH_X86` lets i386 syscalls through to the
/// default action (keel has no i386 table: if the default action allows, i386 is killed instead, so a deny-list
/// cannot be bypassed with `int 0x80`); any other arch is killed (libseccomp's bad-arch action). Unknown syscall
/// names are skipped (as runc does for names the kernel lacks). Rules for one syscall are tried in file order;
/// the conditions of one rule are ANDed, unless one argument index appears twice: then each condition is a rule
/// of its own (ORed), as runc does. Rules whose action is the default action are dropped.
pub fn compile(s: &LinuxSeccomp) -> Result<Vec<libc::sock_filter>, Error> {
    let default = action(&s.default_action, s.default_errno_ret, "linux.seccomp.defaultAction")?;
    let (mut x86, mut x32) = (false, false);
    for (i, arch) in s.architectures.iter().enumerate() {
        match arch.as_str() {
            "SCMP_ARCH_X86_64" => {}
            "SCMP_ARCH_X86" => x86 = true,
            "SCMP_ARCH_X32" => x32 = true,
            a if a.starts_with("SCMP_ARCH_") => {} // other machines: never seen on x86_64
            a => return Err(invalid(format!("linux.seccomp.architectures[{i}]"), format!("unknown arch {a:?}"))),
        }
    }
    for (i, f) in s.flags.iter().enumerate() {
        if filter_flag(f).is_none() {
            return Err(invalid(format!("linux.seccomp.flags[{i}]"), format!("unknown seccomp flag {f:?}")));
        }
    }
    let mut rules: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
    for (i, sc) in s.syscalls.iter().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let act = action(&sc.action, sc.errno_ret, &format!("{field}.action"))?;
        let mut conds = Vec::new();
        for (j, arg) in sc.args.iter().enumerate() {
            let af = format!("{field}.args[{j}]");
            if arg.index > 5 {
                return Err(invalid(format!("{af}.index"), format!("argument index {} is not 0..5", arg.index)));
            }
            let op = parse_op(&arg.op, &format!("{af}.op"))?;
            conds.push(Cond { index: arg.index, op, value: arg.value, value_two: arg.value_two });
        }
        if act == default {
            continue;
        }
        let repeated = conds.iter().enumerate().any(|(j, c)| conds[..j].iter().any(|d| d.index == c.index));
        let group: Vec<Rule> = if repeated {
            conds.iter().map(|c| Rule { conds: vec![*c], action: act }).collect()
        } else {
            vec![Rule { conds, action: act }]
        };
        for name in &sc.names {
            if let Some(nr) = syscall_nr(name) {
                rules.entry(nr).or_default().extend(group.iter().cloned());
            }
        }
    }

    let mut a = Asm::default();
    let bad = a.label();
    let def = a.label();
    let i386 = a.label();
    a.ld(OFF_ARCH);
    a.jmp(libc::BPF_JEQ, AUDIT_ARCH_X86_64, Tgt::Next, Tgt::L(if x86 { i386 } else { bad }));
    a.ld(OFF_NR);
    if x32 {
        let main = a.label();
        a.jmp(libc::BPF_JGE, X32_SYSCALL_BIT, Tgt::Next, Tgt::L(main));
        a.stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, !X32_SYSCALL_BIT);
        a.place(main);
    } else {
        a.jmp(libc::BPF_JGE, X32_SYSCALL_BIT, Tgt::L(bad), Tgt::Next);
    }
    let blocks: Vec<(u32, usize)> = rules.keys().map(|nr| (*nr, a.label())).collect();
    emit_dispatch(&mut a, &blocks, def);
    for (nr, l) in &blocks {
        a.place(*l);
        for r in rules.get(nr).map(Vec::as_slice).unwrap_or_default() {
            if r.conds.is_empty() {
                a.ret(r.action);
                break;
            }
            let fail = a.label();
            for c in &r.conds {
                emit_cond(&mut a, c, fail);
            }
            a.ret(r.action);
            a.place(fail);
        }
        a.ja(def);
    }
    a.place(def);
    a.ret(default);
    a.place(i386);
    a.jmp(libc::BPF_JEQ, AUDIT_ARCH_I386, Tgt::Next, Tgt::L(bad));
    let permissive = default == libc::SECCOMP_RET_ALLOW || default == libc::SECCOMP_RET_LOG;
    a.ret(if permissive && !rules.is_empty() { RET_BADARCH } else { default });
    a.place(bad);
    a.ret(RET_BADARCH);
    a.finish()
}

/// SECCOMP_FILTER_FLAG_* value of a spec flag name.
pub fn filter_flag(name: &str) -> Option<libc::c_ulong> {
    match name {
        "SECCOMP_FILTER_FLAG_TSYNC" => Some(libc::SECCOMP_FILTER_FLAG_TSYNC),
        "SECCOMP_FILTER_FLAG_LOG" => Some(libc::SECCOMP_FILTER_FLAG_LOG),
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => Some(libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW),
        _ => None,
    }
}

/// Install `prog` as this thread's seccomp filter with seccomp(2) and the spec's `flags`; falls back to
/// prctl(PR_SET_SECCOMP) (flags ignored) on kernels without seccomp(2). The caller must have set no_new_privs
/// (or hold CAP_SYS_ADMIN). Allocation-free, so it may run in a freshly cloned child.
pub fn install(prog: &[libc::sock_filter], flags: &[String]) -> Result<(), nix::errno::Errno> {
    let mut bits: libc::c_ulong = 0;
    for f in flags {
        bits |= filter_flag(f).ok_or(nix::errno::Errno::EINVAL)?;
    }
    let fprog = libc::sock_fprog { len: prog.len() as libc::c_ushort, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: fprog points to `prog`, which outlives the call; the kernel copies the program.
    let r = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, bits, &fprog as *const libc::sock_fprog)
    };
    if r == 0 {
        return Ok(());
    }
    let e = nix::errno::Errno::last();
    if e != nix::errno::Errno::ENOSYS {
        return Err(e);
    }
    // SAFETY: as above; PR_SET_SECCOMP copies the program.
    let r = unsafe {
        libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog as *const libc::sock_fprog, 0, 0)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the subset the compiler emits; returns the SECCOMP_RET_* value.
    pub(crate) fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        for _ in 0..100_000 {
            let ins = prog[pc];
            let code = ins.code as u32;
            pc += 1;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    let k = ins.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => acc &= ins.k,
                c if c == libc::BPF_RET | libc::BPF_K => return ins.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += ins.k as usize,
                c if c & 0x07 == libc::BPF_JMP => {
                    let cond = match c & 0xf0 {
                        x if x == libc::BPF_JEQ => acc == ins.k,
                        x if x == libc::BPF_JGT => acc > ins.k,
                        x if x == libc::BPF_JGE => acc >= ins.k,
                        x if x == libc::BPF_JSET => acc & ins.k != 0,
                        _ => panic!("bad jump {c:#x}"),
                    };
                    pc += if cond { ins.jt } else { ins.jf } as usize;
                }
                _ => panic!("unexpected opcode {code:#x} at {}", pc - 1),
            }
        }
        panic!("program did not return");
    }

    fn nr(name: &str) -> u32 {
        syscall_nr(name).unwrap()
    }

    fn rule(names: &[&str], action: &str, errno: Option<u32>, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
        LinuxSyscall {
            names: names.iter().map(|s| s.to_string()).collect(),
            action: action.into(),
            errno_ret: errno,
            args,
        }
    }

    fn arg(index: u32, op: &str, value: u64, value_two: u64) -> LinuxSeccompArg {
        LinuxSeccompArg { index, value, value_two, op: op.into() }
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const X64: u32 = AUDIT_ARCH_X86_64;

    #[test]
    fn table_is_sorted_and_known() {
        assert!(SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(syscall_nr("read"), Some(0));
        assert_eq!(syscall_nr("mkdir"), Some(83));
        assert_eq!(syscall_nr("no_such_syscall"), None);
    }

    #[test]
    fn default_and_simple_rules() {
        let s = LinuxSeccomp {
            default_action: "SCMP_ACT_ALLOW".into(),
            syscalls: vec![
                rule(&["mkdir", "rmdir", "bogus_name"], "SCMP_ACT_ERRNO", None, vec![]),
                rule(&["reboot"], "SCMP_ACT_ERRNO", Some(libc::ENOSYS as u32), vec![]),
                rule(&["kexec_load"], "SCMP_ACT_KILL_PROCESS", None, vec![]),
                rule(&["ptrace"], "SCMP_ACT_TRAP", None, vec![]),
                rule(&["getpid"], "SCMP_ACT_LOG", None, vec![]),
                rule(&["getppid"], "SCMP_ACT_TRACE", Some(7), vec![]),
            ],
            ..Default::default()
        };
        let p = compile(&s).unwrap();
        assert_eq!(run(&p, X64, nr("mkdir"), [0; 6]), EPERM);
        assert_eq!(run(&p, X64, nr("rmdir"), [0; 6]), EPERM);
        assert_eq!(run(&p, X64, nr("reboot"), [0; 6]), libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
        assert_eq!(run(&p, X64, nr("kexec_load"), [0; 6]), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run(&p, X64, nr("ptrace"), [0; 6]), libc::SECCOMP_RET_TRAP);
        assert_eq!(run(&p, X64, nr("getpid"), [0; 6]), libc::SECCOMP_RET_LOG);
        assert_eq!(run(&p, X64, nr("getppid"), [0; 6]), libc::SECCOMP_RET_TRACE | 7);
        assert_eq!(run(&p, X64, nr("read"), [0; 6]), ALLOW);
        assert_eq!(run(&p, X64, 9999, [0; 6]), ALLOW);
        // foreign arch and x32 (not listed) are killed
        assert_eq!(run(&p, 0x4000_00B7, nr("read"), [0; 6]), libc::SECCOMP_RET_KILL_THREAD);
        assert_eq!(run(&p, X64, X32_SYSCALL_BIT | nr("read"), [0; 6]), libc::SECCOMP_RET_KILL_THREAD);
        // i386 not listed: killed
        assert_eq!(run(&p, AUDIT_ARCH_I386, 1, [0; 6]), libc::SECCOMP_RET_KILL_THREAD);
    }

    #[test]
    fn arches_x32_and_i386() {
        let s = LinuxSeccomp {
            default_action: "SCMP_ACT_ERRNO".into(),
            default_errno_ret: Some(38),
            architectures: vec!["SCMP_ARCH_X86_64".into(), "SCMP_ARCH_X86".into(), "SCMP_ARCH_X32".into()],
            syscalls: vec![rule(&["read", "write"], "SCMP_ACT_ALLOW", None, vec![])],
            ..Default::default()
        };
        let p = compile(&s).unwrap();
        let enosys = libc::SECCOMP_RET_ERRNO | 38;
        assert_eq!(run(&p, X64, nr("read"), [0; 6]), ALLOW);
        assert_eq!(run(&p, X64, X32_SYSCALL_BIT | nr("write"), [0; 6]), ALLOW);
        assert_eq!(run(&p, X64, X32_SYSCALL_BIT | nr("mkdir"), [0; 6]), enosys);
        assert_eq!(run(&p, X64, nr("mkdir"), [0; 6]), enosys);
        assert_eq!(run(&p, AUDIT_ARCH_I386, 3, [0; 6]), enosys);
        assert_eq!(run(&p, 0x4000_00B7, 3, [0; 6]), libc::SECCOMP_RET_KILL_THREAD);
    }

    #[test]
    fn i386_cannot_bypass_a_deny_list() {
        let s = LinuxSeccomp {
            default_action: "SCMP_ACT_ALLOW".into(),
            architectures: vec!["SCMP_ARCH_X86_64".into(), "SCMP_ARCH_X86".into()],
            syscalls: vec![rule(&["mkdir"], "SCMP_ACT_ERRNO", None, vec![])],
            ..Default::default()
        };
        let p = compile(&s).unwrap();
        assert_eq!(run(&p, AUDIT_ARCH_I386, 39, [0; 6]), libc::SECCOMP_RET_KILL_THREAD);
    }

    /// Every operator, checked against a Rust model on values around the boundaries of both 32-bit halves.
    #[test]
    fn argument_operators_match_a_model() {
        let vals: [u64; 9] =
            [0, 1, 5, 0xffff_ffff, 0x1_0000_0000, 0x1_0000_0005, 0x2_0000_0000, u64::MAX - 1, u64::MAX];
        let ops = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT"];
        for op in ops {
            for &v in &vals {
                let s = LinuxSeccomp {
                    default_action: "SCMP_ACT_ALLOW".into(),
                    syscalls: vec![rule(&["write"], "SCMP_ACT_ERRNO", None, vec![arg(2, op, v, 0)])],
                    ..Default::default()
                };
                let p = compile(&s).unwrap();
                for &a in &vals {
                    let want = match op {
                        "SCMP_CMP_NE" => a != v,
                        "SCMP_CMP_LT" => a < v,
                        "SCMP_CMP_LE" => a <= v,
                        "SCMP_CMP_EQ" => a == v,
                        "SCMP_CMP_GE" => a >= v,
                        _ => a > v,
                    };
                    let got = run(&p, X64, nr("write"), [0, 0, a, 0, 0, 0]) == EPERM;
                    assert_eq!(got, want, "{op} arg={a:#x} value={v:#x}");
                }
            }
        }
        // MASKED_EQ: (arg & value) == valueTwo
        let s = LinuxSeccomp {
            default_action: "SCMP_ACT_ALLOW".into(),
            syscalls: vec![rule(
                &["clone"],
                "SCMP_ACT_ERRNO",
                None,
                vec![arg(
                    0,
                    "SCMP_CMP_MASKED_EQ",
                    0x1_0000_0000 | libc::CLONE_NEWUSER as u64,
                    libc::CLONE_NEWUSER as u64,
                )],
            )],
            ..Default::default()
        };
        let p = compile(&s).unwrap();
        let cl = |a: u64| run(&p, X64, nr("clone"), [a, 0, 0, 0, 0, 0]);
        assert_eq!(cl(libc::CLONE_NEWUSER as u64 | 0x11), EPERM);
        assert_eq!(cl(0x11), ALLOW);
        assert_eq!(cl(0x1_0000_0000 | libc::CLONE_NEWUSER as u64), ALLOW);
    }

    #[test]
    fn and_within_rule_or_for_repeated_index_and_order() {
        let s = LinuxSeccomp {
            default_action: "SCMP_ACT_ERRNO".into(),
            syscalls: vec![
                // personality(0) or personality(8): repeated index -> OR (docker's profile relies on this)
                rule(
                    &["personality"],
                    "SCMP_ACT_ALLOW",
                    None,
                    vec![arg(0, "SCMP_CMP_EQ", 0, 0), arg(0, "SCMP_CMP_EQ", 8, 0)],
                ),
                // socket(AF_UNIX, x, 0): AND
                rule(
                    &["socket"],
                    "SCMP_ACT_ALLOW",
                    None,
                    vec![arg(0, "SCMP_CMP_EQ", 1, 0), arg(2, "SCMP_CMP_EQ", 0, 0)],
                ),
                // first matching rule wins: socket(AF_INET, ...) -> ENOSYS, later catch-all rule -> LOG
                rule(&["socket"], "SCMP_ACT_ERRNO", Some(38), vec![arg(0, "SCMP_CMP_EQ", 2, 0)]),
                rule(&["socket"], "SCMP_ACT_LOG", None, vec![]),
            ],
            ..Default::default()
        };
        let p = compile(&s).unwrap();
        let pers = |a: u64| run(&p, X64, nr("personality"), [a, 0, 0, 0, 0, 0]);
        assert_eq!(pers(0), ALLOW);
        assert_eq!(pers(8), ALLOW);
        assert_eq!(pers(4), EPERM);
        let sock = |a: u64, c: u64| run(&p, X64, nr("socket"), [a, 1, c, 0, 0, 0]);
        assert_eq!(sock(1, 0), ALLOW);
        assert_eq!(sock(1, 5), libc::SECCOMP_RET_LOG);
        assert_eq!(sock(2, 0), libc::SECCOMP_RET_ERRNO | 38);
        assert_eq!(sock(10, 0), libc::SECCOMP_RET_LOG);
    }

    /// Every known syscall in an allow-list with argument rules: long jumps need trampolines; the decision for
    /// every number must still be right.
    #[test]
    fn big_program_long_jumps() {
        let mut syscalls: Vec<LinuxSyscall> = SYSCALLS
            .iter()
            .filter(|(n, _)| *n != "mkdir")
            .map(|(n, _)| rule(&[n], "SCMP_ACT_ALLOW", None, vec![]))
            .collect();
        syscalls.insert(0, rule(&["mkdir"], "SCMP_ACT_ALLOW", None, vec![arg(1, "SCMP_CMP_EQ", 0o700, 0)]));
        for i in 0..40 {
            syscalls
                .insert(0, rule(&["ioctl"], "SCMP_ACT_ERRNO", Some(i + 1), vec![arg(1, "SCMP_CMP_EQ", i as u64, 0)]));
        }
        let s = LinuxSeccomp { default_action: "SCMP_ACT_KILL_PROCESS".into(), syscalls, ..Default::default() };
        let p = compile(&s).unwrap();
        assert!(p.len() < libc::BPF_MAXINSNS as usize, "{} instructions", p.len());
        for (name, n) in SYSCALLS {
            let want = match *name {
                "mkdir" | "ioctl" => continue,
                _ => ALLOW,
            };
            assert_eq!(run(&p, X64, *n as u32, [0; 6]), want, "{name}");
        }
        assert_eq!(run(&p, X64, nr("mkdir"), [0, 0o700, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(&p, X64, nr("mkdir"), [0, 0o755, 0, 0, 0, 0]), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run(&p, X64, nr("ioctl"), [0, 7, 0, 0, 0, 0]), libc::SECCOMP_RET_ERRNO | 8);
        assert_eq!(run(&p, X64, nr("ioctl"), [0, 100, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(&p, X64, 1000, [0; 6]), libc::SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn too_big_is_an_error_not_a_bad_program() {
        let args: Vec<LinuxSeccompArg> = (0..6).map(|i| arg(i, "SCMP_CMP_LT", 5, 0)).collect();
        let syscalls: Vec<LinuxSyscall> =
            SYSCALLS.iter().map(|(n, _)| rule(&[n], "SCMP_ACT_ALLOW", None, args.clone())).collect();
        let s = LinuxSeccomp { default_action: "SCMP_ACT_ERRNO".into(), syscalls, ..Default::default() };
        let e = compile(&s).unwrap_err().to_string();
        assert!(e.contains("BPF instructions"), "{e}");
    }

    #[test]
    fn bad_input_names_the_field() {
        let mut s = LinuxSeccomp { default_action: "SCMP_ACT_NOTIFY".into(), ..Default::default() };
        assert!(compile(&s).unwrap_err().to_string().contains("SCMP_ACT_NOTIFY is not supported"));
        s.default_action = "SCMP_ACT_ALLOW".into();
        s.syscalls = vec![rule(&["read"], "SCMP_ACT_BOGUS", None, vec![])];
        assert!(compile(&s).unwrap_err().to_string().contains("linux.seccomp.syscalls[0].action"));
        s.syscalls = vec![rule(&["read"], "SCMP_ACT_ERRNO", None, vec![arg(6, "SCMP_CMP_EQ", 0, 0)])];
        assert!(compile(&s).unwrap_err().to_string().contains("syscalls[0].args[0].index"));
        s.syscalls = vec![rule(&["read"], "SCMP_ACT_ERRNO", None, vec![arg(0, "SCMP_CMP_XX", 0, 0)])];
        assert!(compile(&s).unwrap_err().to_string().contains("syscalls[0].args[0].op"));
        s.syscalls = vec![];
        s.flags = vec!["SECCOMP_FILTER_FLAG_BOGUS".into()];
        assert!(compile(&s).unwrap_err().to_string().contains("flags[0]"));
    }
}
