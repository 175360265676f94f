//! cgroup v2 device control: a BPF_PROG_TYPE_CGROUP_DEVICE program built from the effective rules (devices.rs),
//! hand-assembled as `struct bpf_insn`s, loaded with bpf(BPF_PROG_LOAD) and attached to the container's cgroup
//! directory with BPF_PROG_ATTACH (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, as runc does). Programs already attached
//! to that cgroup (a reused cgroup) are detached once the new one is in place, so there is never a moment without
//! a filter. No libbpf, no C toolchain.
//!
//! The program (context `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`):
//! ```text
//!   r2 = ctx->access_type & 0xffff      device type: 1 block, 2 char
//!   r3 = ctx->access_type >> 16         access: 1 mknod, 2 read, 4 write
//!   r4 = ctx->major; r5 = ctx->minor
//!   per exception:  if r2 != TYPE goto next
//!                   allow: if (r3 & ACC) != r3 goto next     every asked bit granted
//!                   deny:  if (r3 & ACC) == 0 goto next      any asked bit denied (v1's partial match)
//!                   if r4 != MAJOR goto next; if r5 != MINOR goto next   (omitted for a wildcard)
//!                   r0 = ACTION; exit
//!   r0 = DEFAULT; exit
//! ```
//! All exceptions carry the action opposite to the default, so their order does not matter: the emulator has
//! already made "the last matching rule wins" into that shape.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use keel_sys::Errno;

use super::devices::{Emulator, Kind, ACC_ALL};
use crate::Error;

/// `struct bpf_insn`: opcode, dst_reg (low nibble) / src_reg (high nibble), offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcode parts (linux/bpf_common.h, linux/bpf.h).
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

/// Opcodes used here.
pub const LDX_W: u8 = BPF_LDX | BPF_MEM | BPF_W;
pub const AND32_K: u8 = BPF_ALU | BPF_AND | BPF_K;
pub const RSH32_K: u8 = BPF_ALU | BPF_RSH | BPF_K;
pub const MOV32_K: u8 = BPF_ALU | BPF_MOV | BPF_K;
pub const MOV32_X: u8 = BPF_ALU | BPF_MOV | BPF_X;
pub const JNE_K: u8 = BPF_JMP | BPF_JNE | BPF_K;
pub const JNE_X: u8 = BPF_JMP | BPF_JNE | BPF_X;
pub const JEQ_K: u8 = BPF_JMP | BPF_JEQ | BPF_K;
pub const EXIT: u8 = BPF_JMP | BPF_EXIT;

/// BPF_DEVCG_DEV_BLOCK / BPF_DEVCG_DEV_CHAR.
pub const DEV_BLOCK: i32 = 1;
pub const DEV_CHAR: i32 = 2;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: dst | (src << 4), off, imm }
}

/// "if reg != value goto +off" for a u32 value (the registers hold zero-extended u32s; a JMP immediate is
/// sign-extended, so values above i32::MAX go through r1 set by a zero-extending 32-bit mov). 1 or 2 insns.
fn jne_u32(out: &mut Vec<Insn>, reg: u8, value: u32) {
    match i32::try_from(value) {
        Ok(v) => out.push(insn(JNE_K, reg, 0, 0, v)),
        Err(_) => {
            out.push(insn(MOV32_K, 1, 0, 0, value as i32));
            out.push(insn(JNE_X, reg, 1, 0, 0));
        }
    }
}

/// The device program for the policy `e`.
pub fn program(e: &Emulator) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    let action = i32::from(!e.default_allow);
    for r in e.exception_rules() {
        let mut b = Vec::with_capacity(9);
        let t = match r.kind {
            Kind::Block => DEV_BLOCK,
            Kind::Char => DEV_CHAR,
            Kind::All => continue, // never an exception (the emulator resets on "a")
        };
        b.push(insn(JNE_K, 2, 0, 0, t));
        if r.access != ACC_ALL {
            b.push(insn(MOV32_X, 1, 3, 0, 0));
            b.push(insn(AND32_K, 1, 0, 0, i32::from(r.access)));
            b.push(if r.allow { insn(JNE_X, 1, 3, 0, 0) } else { insn(JEQ_K, 1, 0, 0, 0) });
        }
        if let Some(m) = r.major {
            jne_u32(&mut b, 4, m);
        }
        if let Some(m) = r.minor {
            jne_u32(&mut b, 5, m);
        }
        b.push(insn(MOV32_K, 0, 0, 0, action));
        b.push(insn(EXIT, 0, 0, 0, 0));
        // Every conditional jump in the block goes to the first instruction after it.
        let n = b.len();
        for (i, ins) in b.iter_mut().enumerate() {
            if matches!(ins.code, JNE_K | JNE_X | JEQ_K) {
                ins.off = (n - i - 1) as i16;
            }
        }
        p.extend(b);
    }
    p.push(insn(MOV32_K, 0, 0, 0, i32::from(e.default_allow)));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

// bpf(2) commands, types and flags (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of `struct bpf_prog_info` (the kernel fills only info_len bytes).
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(cmd, attr, sizeof attr): the result, or the errno.
///
/// # Safety
/// `attr` must be the attribute struct of `cmd`, and every pointer in it valid for the kernel to read (or write, for
/// the log and query buffers) for the call's duration.
unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> Result<libc::c_long, Errno> {
    // SAFETY: per this function's contract.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

fn load_once(insns: &[Insn], log: Option<&mut [u8]>) -> Result<OwnedFd, Errno> {
    let license = c"Apache";
    let mut a = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    a.prog_name[..8].copy_from_slice(b"keel_dev");
    if let Some(buf) = log {
        a.log_level = 1;
        a.log_size = buf.len() as u32;
        a.log_buf = buf.as_mut_ptr() as u64;
    }
    // SAFETY: a is BPF_PROG_LOAD's attr; insns, license and log outlive the call.
    let fd = unsafe { bpf(BPF_PROG_LOAD, &mut a)? };
    // SAFETY: the kernel returned a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Load the program. Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK: on EPERM the limit is raised for the
/// load only and put back (runc raises it for good; here the container would inherit it). A failure carries the
/// verifier's log (the last lines) in its `what`.
pub fn load(insns: &[Insn]) -> Result<OwnedFd, Error> {
    match load_once(insns, None) {
        Ok(fd) => return Ok(fd),
        Err(Errno::EPERM) => {
            let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: plain out-parameter.
            if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut old) } == 0 {
                let inf = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
                // SAFETY: valid rlimit.
                if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &inf) } == 0 {
                    let r = load_once(insns, None);
                    // SAFETY: valid rlimit; lowering back is always allowed.
                    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &old) };
                    if let Ok(fd) = r {
                        return Ok(fd);
                    }
                }
            }
        }
        Err(_) => {}
    }
    let mut log = vec![0u8; 64 * 1024];
    match load_once(insns, Some(&mut log)) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let tail: Vec<&str> = text.lines().rev().take(3).collect::<Vec<_>>().into_iter().rev().collect();
            let n = insns.len();
            let what =
                format!("bpf(BPF_PROG_LOAD, BPF_PROG_TYPE_CGROUP_DEVICE, {n} insns) [verifier: {}]", tail.join("; "));
            Err(Error::Sys { what, errno: e })
        }
    }
}

/// Ids of the device programs attached to the cgroup directory `dir_fd` itself.
fn query(dir_fd: &OwnedFd) -> Result<Vec<u32>, Errno> {
    let mut ids = [0u32; 64];
    let mut a = QueryAttr {
        target_fd: dir_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: a is BPF_PROG_QUERY's attr; ids outlives the call and holds prog_cnt entries.
    unsafe { bpf(BPF_PROG_QUERY, &mut a)? };
    Ok(ids[..(a.prog_cnt as usize).min(ids.len())].to_vec())
}

fn open_dir(dir: &Path) -> Result<OwnedFd, Error> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::Sys { what: format!("open cgroup {}", dir.display()), errno: Errno::EINVAL })?;
    // SAFETY: valid C string. A directory opened for reading (bpf refuses O_PATH fds).
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::Sys { what: format!("open cgroup {}", dir.display()), errno: Errno::last() });
    }
    // SAFETY: fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Ids of the BPF_CGROUP_DEVICE programs attached to the cgroup `dir` (not its ancestors).
pub fn attached(dir: &Path) -> Result<Vec<u32>, Error> {
    let fd = open_dir(dir)?;
    query(&fd).map_err(|errno| Error::Sys {
        what: format!("bpf(BPF_PROG_QUERY, BPF_CGROUP_DEVICE) on cgroup {}", dir.display()),
        errno,
    })
}

/// The kernel's id of a loaded program.
fn prog_id(fd: &OwnedFd) -> Result<u32, Errno> {
    let mut info = ProgInfo::default();
    let mut a = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    // SAFETY: a is BPF_OBJ_GET_INFO_BY_FD's attr; info outlives the call and is info_len bytes.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a)? };
    Ok(info.id)
}

/// Programs loaded by this process, by instructions, with their ids. A process that spawns many containers (as
/// PID 1 does) verifies each distinct program once and attaches it to every cgroup that needs it (the kernel's own
/// model: one program, many cgroups; a program stays loaded while a cgroup holds it). Bounded.
type Loaded = (Vec<Insn>, OwnedFd, u32);
static LOADED: std::sync::Mutex<Vec<Loaded>> = std::sync::Mutex::new(Vec::new());
const LOADED_MAX: usize = 8;

/// Build, load and attach the device program of `e` to the cgroup2 directory `dir`, then detach whatever device
/// programs were attached there before. Errors name the cgroup, the rules and carry the errno.
pub fn attach(e: &Emulator, dir: &Path) -> Result<(), Error> {
    let rules = || {
        let mut s = if e.default_allow { "default allow".to_string() } else { "default deny".to_string() };
        for r in e.exception_rules() {
            s.push_str(", ");
            s.push_str(&r.to_string());
        }
        s
    };
    let fail = |what: &str, errno: Errno| Error::Sys {
        what: format!("device cgroup v2: {what} on cgroup {} (rules: {})", dir.display(), rules()),
        errno,
    };
    let dir_fd = open_dir(dir)?;
    let old = query(&dir_fd).map_err(|e| fail("bpf(BPF_PROG_QUERY, BPF_CGROUP_DEVICE)", e))?;
    let insns = program(e);
    let mut cache = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    let i = match cache.iter().position(|(p, _, _)| *p == insns) {
        Some(i) => i,
        None => {
            let fd = load(&insns).map_err(|e| match e {
                Error::Sys { what, errno } => fail(&what, errno),
                e => e,
            })?;
            let id = prog_id(&fd).map_err(|e| fail("bpf(BPF_OBJ_GET_INFO_BY_FD) of the new program", e))?;
            if cache.len() >= LOADED_MAX {
                cache.remove(0);
            }
            cache.push((insns, fd, id));
            cache.len() - 1
        }
    };
    let (prog, id) = (&cache[i].1, cache[i].2);
    // A reused cgroup may hold this very program already: it stays, only the others go.
    if !old.contains(&id) {
        let mut a = AttachAttr {
            target_fd: dir_fd.as_raw_fd() as u32,
            attach_bpf_fd: prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: BPF_F_ALLOW_MULTI,
            ..Default::default()
        };
        // SAFETY: a is BPF_PROG_ATTACH's attr with two fds we hold.
        unsafe { bpf(BPF_PROG_ATTACH, &mut a) }
            .map_err(|e| fail("bpf(BPF_PROG_ATTACH, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)", e))?;
    }
    drop(cache);
    for &old_id in old.iter().filter(|&&o| o != id) {
        let mut g = GetFdAttr { prog_id: old_id, ..Default::default() };
        // SAFETY: g is BPF_PROG_GET_FD_BY_ID's attr.
        let fd = match unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut g) } {
            // SAFETY: a new fd we own.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
            // Gone meanwhile, or hidden by an LSM (runc skips those too: extra programs only restrict).
            Err(Errno::ENOENT | Errno::EPERM | Errno::EACCES) => continue,
            Err(e) => return Err(fail(&format!("bpf(BPF_PROG_GET_FD_BY_ID, {old_id})"), e)),
        };
        let mut d = AttachAttr {
            target_fd: dir_fd.as_raw_fd() as u32,
            attach_bpf_fd: fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        // SAFETY: d is BPF_PROG_DETACH's attr with two fds we hold.
        match unsafe { bpf(BPF_PROG_DETACH, &mut d) } {
            Ok(_) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(fail(&format!("bpf(BPF_PROG_DETACH, old program {old_id})"), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::devices::{Rule, ACC_MKNOD, ACC_READ, ACC_WRITE, DEFAULT_ALLOWED};
    use super::*;

    /// Run a program of the opcodes above against one request (a test-only interpreter).
    fn run(p: &[Insn], ty: i32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | ty as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 10_000, "no exit");
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            let jump = |cond: bool, pc: &mut usize| {
                if cond {
                    *pc = (*pc as i64 + i.off as i64) as usize
                }
            };
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1);
                    r[dst] = ctx[i.off as usize / 4] as u64
                }
                AND32_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                RSH32_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                MOV32_K => r[dst] = i.imm as u32 as u64,
                MOV32_X => r[dst] = r[src] as u32 as u64,
                JNE_K => jump(r[dst] != i.imm as i64 as u64, &mut pc),
                JEQ_K => jump(r[dst] == i.imm as i64 as u64, &mut pc),
                JNE_X => jump(r[dst] != r[src], &mut pc),
                EXIT => return r[0],
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    fn emu(rules: &[Rule]) -> Emulator {
        let mut e = Emulator::default();
        for r in rules {
            e.apply(r).unwrap();
        }
        e
    }

    #[test]
    fn exact_instructions_for_a_small_rule_set() {
        // deny all; allow c 1:3 rwm; allow b 8:* r.
        let e = emu(&[
            Rule { allow: true, kind: Kind::Char, major: Some(1), minor: Some(3), access: ACC_ALL },
            Rule { allow: true, kind: Kind::Block, major: Some(8), minor: None, access: ACC_READ },
        ]);
        let p = program(&e);
        let want = [
            insn(LDX_W, 2, 1, 0, 0),
            insn(AND32_K, 2, 0, 0, 0xffff),
            insn(LDX_W, 3, 1, 0, 0),
            insn(RSH32_K, 3, 0, 0, 16),
            insn(LDX_W, 4, 1, 4, 0),
            insn(LDX_W, 5, 1, 8, 0),
            // c 1:3 rwm (sorted first: major 1 < 8)
            insn(JNE_K, 2, 0, 4, DEV_CHAR),
            insn(JNE_K, 4, 0, 3, 1),
            insn(JNE_K, 5, 0, 2, 3),
            insn(MOV32_K, 0, 0, 0, 1),
            insn(EXIT, 0, 0, 0, 0),
            // b 8:* r
            insn(JNE_K, 2, 0, 6, DEV_BLOCK),
            insn(MOV32_X, 1, 3, 0, 0),
            insn(AND32_K, 1, 0, 0, ACC_READ as i32),
            insn(JNE_X, 1, 3, 3, 0),
            insn(JNE_K, 4, 0, 2, 8),
            insn(MOV32_K, 0, 0, 0, 1),
            insn(EXIT, 0, 0, 0, 0),
            // default deny
            insn(MOV32_K, 0, 0, 0, 0),
            insn(EXIT, 0, 0, 0, 0),
        ];
        assert_eq!(p, want);
        // Allow-all: just "return 1".
        let p = program(&emu(&[Rule { allow: true, kind: Kind::All, major: None, minor: None, access: ACC_ALL }]));
        assert_eq!(p[6..], [insn(MOV32_K, 0, 0, 0, 1), insn(EXIT, 0, 0, 0, 0)]);
        // A deny exception in allow-all mode tests for any asked bit; a huge major goes through r1.
        let e = emu(&[
            Rule { allow: true, kind: Kind::All, major: None, minor: None, access: ACC_ALL },
            Rule { allow: false, kind: Kind::Char, major: Some(u32::MAX), minor: None, access: ACC_WRITE },
        ]);
        assert_eq!(
            program(&e)[6..],
            [
                insn(JNE_K, 2, 0, 7, DEV_CHAR),
                insn(MOV32_X, 1, 3, 0, 0),
                insn(AND32_K, 1, 0, 0, ACC_WRITE as i32),
                insn(JEQ_K, 1, 0, 4, 0),
                insn(MOV32_K, 1, 0, 0, -1),
                insn(JNE_X, 4, 1, 2, 0),
                insn(MOV32_K, 0, 0, 0, 0),
                insn(EXIT, 0, 0, 0, 0),
                insn(MOV32_K, 0, 0, 0, 1),
                insn(EXIT, 0, 0, 0, 0),
            ]
        );
    }

    /// The program decides every request exactly as the emulator (v1's semantics) does.
    #[test]
    fn program_agrees_with_the_emulator() {
        let sets: Vec<Vec<Rule>> = vec![
            DEFAULT_ALLOWED.to_vec(),
            {
                let mut v = vec![Rule { allow: true, kind: Kind::All, major: None, minor: None, access: ACC_ALL }];
                v.push(Rule { allow: false, kind: Kind::Char, major: Some(1), minor: None, access: ACC_WRITE });
                v.push(Rule { allow: false, kind: Kind::Block, major: None, minor: Some(0), access: ACC_MKNOD });
                v.push(Rule { allow: false, kind: Kind::Char, major: Some(7), minor: Some(3), access: ACC_ALL });
                v.push(Rule { allow: false, kind: Kind::Block, major: Some(3_000_000_000), minor: None, access: 3 });
                v
            },
            vec![
                Rule { allow: true, kind: Kind::Char, major: Some(1), minor: None, access: ACC_READ },
                Rule { allow: true, kind: Kind::Char, major: Some(1), minor: Some(3), access: ACC_WRITE },
                Rule { allow: true, kind: Kind::Block, major: None, minor: Some(3), access: ACC_READ | ACC_MKNOD },
                Rule { allow: true, kind: Kind::Block, major: Some(3_000_000_000), minor: Some(u32::MAX), access: 7 },
                Rule { allow: false, kind: Kind::Char, major: Some(1), minor: Some(3), access: ACC_WRITE },
            ],
        ];
        let values = [0u32, 1, 3, 5, 7, 8, 136, 3_000_000_000, u32::MAX];
        for rules in sets {
            let e = emu(&rules);
            let p = program(&e);
            for (kind, ty) in [(Kind::Block, DEV_BLOCK), (Kind::Char, DEV_CHAR)] {
                for &ma in &values {
                    for &mi in &values {
                        for acc in 1..=7u8 {
                            let want = e.allows(kind, ma, mi, acc);
                            let got = run(&p, ty, acc as u32, ma, mi) == 1;
                            assert_eq!(got, want, "{kind:?} {ma}:{mi} access {acc} with {e:?}");
                        }
                    }
                }
            }
        }
    }
}
