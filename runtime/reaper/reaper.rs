//! keel-reaper: the pid 1 of a container's pid namespace (`SpawnOptions::ns_reaper`), as a tiny freestanding
//! program. runtime/build.rs compiles it (no std, no libc, static, non-PIE, a few KiB) and the runtime
//! execs it from a sealed memfd, so each container pays ~10-20 KiB of RSS instead of a copy of its caller.
//!
//! Usage: `keel-reaper PID` where PID (in this pid namespace) is the real process, our child. The runtime blocks
//! every signal before forking us, so nothing is lost before the loop starts (a namespace's pid 1 would drop
//! signals it has no handler for). The loop takes signals synchronously with rt_sigtimedwait:
//! - SIGCHLD: reap every exited child (orphans of the namespace included); when PID exits, exit with its exit code,
//!   or 128+signal (tini/catatonit convention). Exiting kills the rest of the namespace.
//! - SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT: forwarded to PID only (tini's default).
//! - anything else is consumed and ignored.
//!
//! It holds no fds (stdio closed too, so a log pipe is not kept open by it) and allocates nothing.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

const SYS_CLOSE: usize = 3;
const SYS_RT_SIGPROCMASK: usize = 14;
const SYS_KILL: usize = 62;
const SYS_WAIT4: usize = 61;
const SYS_EXIT_GROUP: usize = 231;
const SYS_RT_SIGTIMEDWAIT: usize = 128;
const SYS_CLOSE_RANGE: usize = 436;
const SYS_PRCTL: usize = 157;
const PR_SET_NAME: usize = 15;

const SIG_BLOCK: usize = 0;
const SIGHUP: usize = 1;
const SIGINT: usize = 2;
const SIGQUIT: usize = 3;
const SIGUSR1: usize = 10;
const SIGUSR2: usize = 12;
const SIGTERM: usize = 15;
const SIGCHLD: usize = 17;
const SIGCONT: usize = 18;
const SIGWINCH: usize = 28;
const WNOHANG: usize = 1;
const EINTR: isize = 4;

/// Signals forwarded to the real process.
const FORWARD: [usize; 8] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT];

// Entry point: the kernel leaves argc at (%rsp), then argv[], NULL, envp[]. Pass the stack pointer to main with
// the stack aligned as the ABI wants at a call.
global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {main}",
    "ud2",
    main = sym reaper_main,
);

#[inline(always)]
unsafe fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes arguments valid for syscall `n`; the kernel clobbers rcx and r11 only.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

fn exit(code: usize) -> ! {
    // SAFETY: exit_group takes an integer and does not return.
    unsafe { syscall4(SYS_EXIT_GROUP, code, 0, 0, 0) };
    loop {}
}

/// Decimal digits of a NUL-terminated C string; None if empty, not a number or not positive.
fn parse_pid(mut p: *const u8) -> Option<usize> {
    if p.is_null() {
        return None;
    }
    let mut n: usize = 0;
    let mut digits = 0;
    loop {
        // SAFETY: p points into a NUL-terminated argv string; we stop at the NUL.
        let c = unsafe { *p };
        if c == 0 {
            break;
        }
        if !c.is_ascii_digit() || digits >= 10 {
            return None;
        }
        n = n * 10 + (c - b'0') as usize;
        digits += 1;
        // SAFETY: not past the NUL yet.
        p = unsafe { p.add(1) };
    }
    (n > 0 && n < (1 << 22) + 1).then_some(n)
}

extern "C" fn reaper_main(sp: *const usize) -> ! {
    // SAFETY: the kernel's initial stack: argc, then argc argv pointers and a NULL.
    let (argc, argv) = unsafe { (*sp, sp.add(1) as *const *const u8) };
    // SAFETY: argv[1] exists when argc >= 2.
    let real = if argc >= 2 { parse_pid(unsafe { *argv.add(1) }) } else { None };
    let Some(real) = real else { exit(127) };

    // exec from an fd names the process after the fd number ("5"): say what we are in ps and /proc/PID/comm.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { syscall4(SYS_PRCTL, PR_SET_NAME, b"keel-reaper\0".as_ptr() as usize, 0, 0) };

    // Every signal blocked (the runtime did it already; be sure), then hold no fds at all.
    let all: u64 = !0;
    // SAFETY: valid sigset pointer and size; close_range takes integers. Kernels before 5.9 lack close_range:
    // close the low fds one by one then (the runtime keeps nothing above a few dozen open across exec).
    unsafe {
        syscall4(SYS_RT_SIGPROCMASK, SIG_BLOCK, &all as *const u64 as usize, 0, 8);
        if syscall4(SYS_CLOSE_RANGE, 0, !0u32 as usize, 0, 0) != 0 {
            for fd in 0..1024 {
                syscall4(SYS_CLOSE, fd, 0, 0, 0);
            }
        }
    }

    let mut info = [0u64; 16]; // siginfo_t: 128 bytes
    loop {
        // SAFETY: valid sigset and siginfo buffers; no timeout (NULL) blocks until a signal is pending.
        let sig =
            unsafe { syscall4(SYS_RT_SIGTIMEDWAIT, &all as *const u64 as usize, info.as_mut_ptr() as usize, 0, 8) };
        if sig == -EINTR || sig <= 0 {
            continue;
        }
        let sig = sig as usize;
        if sig == SIGCHLD {
            loop {
                let mut st: i32 = 0;
                // SAFETY: wait4 on our own children with a valid status pointer.
                let pid = unsafe { syscall4(SYS_WAIT4, -1isize as usize, &mut st as *mut i32 as usize, WNOHANG, 0) };
                if pid <= 0 {
                    break;
                }
                if pid as usize == real {
                    let st = st as usize;
                    let code = if st & 0x7f == 0 { (st >> 8) & 0xff } else { 128 + (st & 0x7f) };
                    exit(code);
                }
            }
        } else if FORWARD.contains(&sig) {
            // SAFETY: kill takes integers; `real` is our child.
            unsafe { syscall4(SYS_KILL, real, sig, 0, 0) };
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(127)
}

/// The compiler may call these for array copies and zeroing; there is no libc to provide them.
///
/// # Safety
/// `d` must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(d: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees `d..d+n` is writable; rep stosb writes exactly n bytes.
    unsafe {
        asm!("rep stosb", inout("rdi") d => _, inout("rcx") n => _, in("al") c as u8, options(nostack));
    }
    d
}

/// # Safety
/// `d` and `s` must be valid for `n` bytes and not overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(d: *mut u8, s: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid; rep movsb copies exactly n bytes forwards.
    unsafe {
        asm!("rep movsb", inout("rdi") d => _, inout("rsi") s => _, inout("rcx") n => _, options(nostack));
    }
    d
}
