//! Real seccomp: compile a filter, install it in a forked child, and observe the errno the kernel returns.

use keel_runtime::seccomp::{compile, install, LinuxSeccomp};

/// Fork; in the child set no_new_privs, install `prog`, run `f` and exit with its result. Returns the exit code.
fn in_child(prog: &[libc::sock_filter], flags: &[String], f: impl Fn() -> i32) -> i32 {
    // SAFETY: the child only makes raw syscalls (prctl, seccomp, mkdir, umask) and _exit; nothing it uses allocates
    // or takes locks held by other test threads.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            // SAFETY: _exit in the forked child.
            unsafe { libc::_exit(200) };
        }
        let code = match install(prog, flags) {
            Ok(()) => f(),
            Err(e) => 200 + (e as i32).min(50),
        };
        // SAFETY: _exit in the forked child (no atexit handlers, no unwinding into the test harness).
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
    libc::WEXITSTATUS(status)
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[test]
fn mkdir_denied_with_eperm_and_masked_arg_rule() {
    let dir = std::env::temp_dir().join(format!("keel-seccomp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let a = std::ffi::CString::new(dir.join("a").to_str().unwrap()).unwrap();
    let b = std::ffi::CString::new(dir.join("b").to_str().unwrap()).unwrap();
    let spec: LinuxSeccomp = serde_json::from_str(
        r#"{
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 1, "value": 64, "valueTwo": 64, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28, "args": [
                {"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]},
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}
        ]}"#,
    )
    .unwrap();
    let prog = compile(&spec).unwrap();
    // mode 0o777 has bit 0o100 (=64): denied with EPERM by the MASKED_EQ rule.
    let code = in_child(&prog, &spec.flags, || {
        // SAFETY: mkdir with a valid C string.
        let r = unsafe { libc::mkdir(a.as_ptr(), 0o777) };
        if r == 0 {
            0
        } else {
            errno()
        }
    });
    assert_eq!(code, libc::EPERM);
    assert!(!dir.join("a").exists());
    // mode 0o077 (no 0o100 bit, not 511): allowed.
    let code = in_child(&prog, &spec.flags, || {
        // SAFETY: mkdir with a valid C string.
        let r = unsafe { libc::mkdir(b.as_ptr(), 0o077) };
        if r == 0 {
            0
        } else {
            errno()
        }
    });
    assert_eq!(code, 0);
    assert!(dir.join("b").is_dir());
    // rmdir denied without args, default errno EPERM; flags TSYNC|LOG accepted by the kernel.
    let flags = vec!["SECCOMP_FILTER_FLAG_TSYNC".to_string(), "SECCOMP_FILTER_FLAG_LOG".to_string()];
    let code = in_child(&prog, &flags, || {
        // SAFETY: rmdir with a valid C string.
        let r = unsafe { libc::rmdir(b.as_ptr()) };
        if r == 0 {
            0
        } else {
            errno()
        }
    });
    assert_eq!(code, libc::EPERM);
    assert!(dir.join("b").is_dir());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errno_default_action_allow_list() {
    let spec: LinuxSeccomp = serde_json::from_str(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [{"names": ["exit", "exit_group", "getpid", "write"], "action": "SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    let prog = compile(&spec).unwrap();
    let code = in_child(&prog, &[], || {
        // SAFETY: plain syscalls.
        let pid = unsafe { libc::getpid() };
        // SAFETY: getppid is not allowed: ENOSYS (38) from the default action.
        let r = unsafe { libc::syscall(libc::SYS_getppid) };
        if pid > 0 && r == -1 {
            errno()
        } else {
            1
        }
    });
    assert_eq!(code, 38);
}
