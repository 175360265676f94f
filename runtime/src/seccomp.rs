//! Seccomp: the spec's `linux.seccomp` types, a compiler from them to classic BPF, and installation.

use std::collections::BTreeMap;

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
//
// The verdicts are libseccomp's as runc drives it (runc 1.1 + libseccomp 2.5; checked syscall by syscall against
// Debian's libseccomp in runtime/tests/seccomp.rs):
// - The native arch is always in the filter; each listed arch gets the rules with its own numbers. A name the
//   table does not know is skipped; a name known but not a syscall of one arch is skipped for that arch.
// - x86_64 and x32 share AUDIT_ARCH_X86_64; x32 calls have nr | 0x40000000. x86_64 without x32: nr >= 0x40000000
//   gets the bad-arch action, except nr == -1 (a tracer skipping a call), which gets the default action. Both
//   listed: one table of both number sets, the rest gets the default action.
// - i386 (x86), x32 and arm compare the low 32 bits of arguments only. On i386 a rule for a socket or SysV IPC
//   call also applies to socketcall(2)/ipc(2) with argument 0 == the call's multiplexer number (the rule's own
//   condition on argument 0, if any, is replaced), as libseccomp does.
// - MASKED_EQ compares (arg & mask) == (value & mask); a condition that is always true is dropped.
// - Per syscall: the first unconditional rule wins and later rules are ignored; an unconditional rule replaces
//   earlier conditional ones; conditional rules are tried in file order. One known difference: conditional rules
//   of one syscall that overlap with different actions. libseccomp merges them into a tree ordered by argument,
//   operator and value (GT 2 -> ERRNO then LT 5 -> LOG: LOG for 3; NE 2 -> ALLOW then NE 3 -> LOG: LOG for 0) or
//   refuses them (EEXIST: runc fails); keel takes the first rule that matches (ERRNO, ALLOW). And rules ORed on one
//   argument (runc splits repeated indexes) are each evaluated exactly: libseccomp 2.5.4 merges 64-bit ranges
//   lossily (arg4 < 0xffffffff or arg4 <= 0x100000005 misses 0xffffffff).
// - Any other arch gets the bad-arch action: SECCOMP_RET_KILL_THREAD (libseccomp's default, runc keeps it).
// - runc's -ENOSYS stub: unless the default action is ALLOW, LOG or TRACE, a syscall numbered above the largest
//   number the profile names on that arch returns ENOSYS (so libc falls back from syscalls newer than the
//   profile, e.g. clone3), x86_64 and x32 counted separately.
// ---------------------------------------------------------------------------------------------------------------

mod tables;

/// `AUDIT_ARCH_X86_64` (EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE); not exported by libc.
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `AUDIT_ARCH_I386` (EM_386 | __AUDIT_ARCH_LE).
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `AUDIT_ARCH_AARCH64` (EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE).
pub const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
/// `AUDIT_ARCH_ARM` (EM_ARM | __AUDIT_ARCH_LE): 32-bit EABI programs on aarch64.
pub const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
/// x32 syscalls are x86_64 syscalls with this bit set in `nr`.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// What a syscall of an architecture the filter does not list gets (libseccomp's default "bad arch" action).
const RET_BADARCH: u32 = libc::SECCOMP_RET_KILL_THREAD;
/// runc's stub answer for syscalls newer than the profile.
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
/// Linux release of keel's syscall table.
pub const SYSCALL_TABLE_KERNEL: &str = tables::KERNEL;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// Architectures keel has syscall numbers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arch {
    X86_64,
    X86,
    X32,
    Aarch64,
    Arm,
}

impl Arch {
    /// The arch keel runs on: always in the filter.
    #[cfg(target_arch = "aarch64")]
    pub const NATIVE: Arch = Arch::Aarch64;
    /// The arch keel runs on: always in the filter.
    #[cfg(not(target_arch = "aarch64"))]
    pub const NATIVE: Arch = Arch::X86_64;

    /// The arch of a spec name; `Ok(None)` for an arch libseccomp knows and keel has no table for.
    pub fn from_spec(name: &str) -> Result<Option<Arch>, Error> {
        Ok(Some(match name {
            "SCMP_ARCH_X86_64" => Arch::X86_64,
            "SCMP_ARCH_X86" => Arch::X86,
            "SCMP_ARCH_X32" => Arch::X32,
            "SCMP_ARCH_AARCH64" => Arch::Aarch64,
            "SCMP_ARCH_ARM" => Arch::Arm,
            "SCMP_ARCH_MIPS"
            | "SCMP_ARCH_MIPS64"
            | "SCMP_ARCH_MIPS64N32"
            | "SCMP_ARCH_MIPSEL"
            | "SCMP_ARCH_MIPSEL64"
            | "SCMP_ARCH_MIPSEL64N32"
            | "SCMP_ARCH_PPC"
            | "SCMP_ARCH_PPC64"
            | "SCMP_ARCH_PPC64LE"
            | "SCMP_ARCH_S390"
            | "SCMP_ARCH_S390X"
            | "SCMP_ARCH_PARISC"
            | "SCMP_ARCH_PARISC64"
            | "SCMP_ARCH_RISCV64"
            | "SCMP_ARCH_LOONGARCH64"
            | "SCMP_ARCH_M68K"
            | "SCMP_ARCH_SH"
            | "SCMP_ARCH_SHEB" => return Ok(None),
            _ => return Err(Error::invalid(format!("unknown arch {name:?}"))),
        }))
    }

    /// `seccomp_data.arch` of this arch.
    pub fn audit(self) -> u32 {
        match self {
            Arch::X86_64 | Arch::X32 => AUDIT_ARCH_X86_64,
            Arch::X86 => AUDIT_ARCH_I386,
            Arch::Aarch64 => AUDIT_ARCH_AARCH64,
            Arch::Arm => AUDIT_ARCH_ARM,
        }
    }

    /// Arguments are 32 bits wide (libseccomp's ARCH_SIZE_32): only their low half is compared.
    fn args32(self) -> bool {
        matches!(self, Arch::X86 | Arch::X32 | Arch::Arm)
    }

    /// The `seccomp_data.nr` of syscall `name` on this arch (x32: with `X32_SYSCALL_BIT`).
    pub fn nr(self, name: &str) -> Option<u32> {
        let i = tables::SYSCALLS.binary_search_by(|e| e.0.cmp(name)).ok()?;
        self.nr_at(i)
    }

    fn nr_at(self, i: usize) -> Option<u32> {
        let (_, x86_64, x86, x32, aarch64, arm) = tables::SYSCALLS[i];
        let n = match self {
            Arch::X86_64 => x86_64,
            Arch::X86 => x86,
            Arch::X32 => x32,
            Arch::Aarch64 => aarch64,
            Arch::Arm => arm,
        };
        if n == tables::N {
            None
        } else if self == Arch::X32 {
            Some(n | X32_SYSCALL_BIT)
        } else {
            Some(n)
        }
    }

    /// Every (name, nr) of this arch, in name order.
    pub fn syscalls(self) -> impl Iterator<Item = (&'static str, u32)> {
        (0..tables::SYSCALLS.len()).filter_map(move |i| Some((tables::SYSCALLS[i].0, self.nr_at(i)?)))
    }
}

/// The number of syscall `name` on the native arch (x86_64), if keel's table has one.
pub fn syscall_nr(name: &str) -> Option<u32> {
    Arch::NATIVE.nr(name)
}

/// Every syscall name keel's table knows (on any arch), sorted.
pub fn syscall_names() -> impl Iterator<Item = &'static str> {
    tables::SYSCALLS.iter().map(|e| e.0)
}

/// i386 socketcall(2) and ipc(2) multiplexer numbers of the calls they carry (linux/net.h, linux/ipc.h).
const X86_SOCKETCALL: u32 = 102;
const X86_IPC: u32 = 117;
fn x86_mux(name: &str) -> Option<(u32, u64)> {
    // sorted by name for binary search: (name, multiplexer, call number)
    const MUX: [(&str, u32, u64); 32] = [
        ("accept", X86_SOCKETCALL, 5),
        ("accept4", X86_SOCKETCALL, 18),
        ("bind", X86_SOCKETCALL, 2),
        ("connect", X86_SOCKETCALL, 3),
        ("getpeername", X86_SOCKETCALL, 7),
        ("getsockname", X86_SOCKETCALL, 6),
        ("getsockopt", X86_SOCKETCALL, 15),
        ("listen", X86_SOCKETCALL, 4),
        ("msgctl", X86_IPC, 14),
        ("msgget", X86_IPC, 13),
        ("msgrcv", X86_IPC, 12),
        ("msgsnd", X86_IPC, 11),
        ("recv", X86_SOCKETCALL, 10),
        ("recvfrom", X86_SOCKETCALL, 12),
        ("recvmmsg", X86_SOCKETCALL, 19),
        ("recvmsg", X86_SOCKETCALL, 17),
        ("semctl", X86_IPC, 3),
        ("semget", X86_IPC, 2),
        ("semop", X86_IPC, 1),
        ("semtimedop", X86_IPC, 4),
        ("send", X86_SOCKETCALL, 9),
        ("sendmmsg", X86_SOCKETCALL, 20),
        ("sendmsg", X86_SOCKETCALL, 16),
        ("sendto", X86_SOCKETCALL, 11),
        ("setsockopt", X86_SOCKETCALL, 14),
        ("shmat", X86_IPC, 21),
        ("shmctl", X86_IPC, 24),
        ("shmdt", X86_IPC, 22),
        ("shmget", X86_IPC, 23),
        ("shutdown", X86_SOCKETCALL, 13),
        ("socket", X86_SOCKETCALL, 1),
        ("socketpair", X86_SOCKETCALL, 8),
    ];
    let i = MUX.binary_search_by(|m| m.0.cmp(name)).ok()?;
    Some((MUX[i].1, MUX[i].2))
}

fn invalid(field: String, msg: impl Into<String>) -> Error {
    Error::invalid(msg).at("config.json", field)
}

/// The SECCOMP_RET_* value of a spec action; `errno` is errnoRet (default EPERM) for ERRNO and TRACE.
pub fn action(name: &str, errno: Option<u32>, field: &str) -> Result<u32, Error> {
    action_value(name, errno).map_err(|e| e.at("config.json", field))
}

fn action_value(name: &str, errno: Option<u32>) -> Result<u32, Error> {
    let data = errno.unwrap_or(libc::EPERM as u32) & libc::SECCOMP_RET_DATA;
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => libc::SECCOMP_RET_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => libc::SECCOMP_RET_KILL_PROCESS,
        "SCMP_ACT_TRAP" => libc::SECCOMP_RET_TRAP,
        "SCMP_ACT_ERRNO" => libc::SECCOMP_RET_ERRNO | data,
        "SCMP_ACT_TRACE" => libc::SECCOMP_RET_TRACE | data,
        "SCMP_ACT_ALLOW" => libc::SECCOMP_RET_ALLOW,
        "SCMP_ACT_LOG" => libc::SECCOMP_RET_LOG,
        "SCMP_ACT_NOTIFY" => return Err(Error::invalid("SCMP_ACT_NOTIFY is not supported by keel (no seccomp agent)")),
        other => return Err(Error::invalid(format!("unknown seccomp action {other:?}"))),
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

/// One argument condition as the spec says it (64-bit values).
#[derive(Debug, Clone, Copy)]
struct Cond {
    index: u32,
    op: Op,
    value: u64,
    value_two: u64,
}

/// A condition lowered for one arch: `wide` false compares the low 32 bits only; `mask` is for MaskedEq
/// (`value` is already masked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ArchCond {
    index: u32,
    op: Op,
    value: u64,
    mask: u64,
    wide: bool,
}

impl Cond {
    /// Lower for an arch; None if the condition always holds there (libseccomp drops those).
    fn lower(&self, args32: bool) -> Option<ArchCond> {
        let cut = |v: u64| if args32 { v & 0xffff_ffff } else { v };
        let (value, mask) = match self.op {
            Op::MaskedEq => {
                let m = cut(self.value);
                if m == 0 {
                    return None;
                }
                (cut(self.value_two) & m, m)
            }
            _ => (cut(self.value), 0),
        };
        Some(ArchCond { index: self.index, op: self.op, value, mask, wide: !args32 })
    }
}

#[derive(Debug, Clone)]
struct Rule {
    conds: Vec<ArchCond>,
    action: u32,
}

/// The rules of one syscall on one arch, merged as libseccomp's db does (`Cond`: indices of rules, in order).
#[derive(Debug, Clone)]
enum Entry {
    Always(u32),
    Cond(Vec<u32>),
}

/// Merge the rule hits of one arch (nr, file order, index in `store`) as libseccomp's db does, per number: the
/// first unconditional rule wins; an unconditional rule replaces earlier conditional ones; conditional rules
/// are kept in file order. Returns entries sorted by number.
fn merge_rules(mut hits: Vec<(u32, u32, u32)>, store: &[Rule]) -> Vec<(u32, Entry)> {
    hits.sort_unstable();
    let mut out: Vec<(u32, Entry)> = Vec::new();
    for (nr, _, r) in hits {
        let rule = &store[r as usize];
        match out.last_mut() {
            Some((n, e)) if *n == nr => match e {
                Entry::Always(_) => {}
                Entry::Cond(_) if rule.conds.is_empty() => *e = Entry::Always(rule.action),
                Entry::Cond(v) => v.push(r),
            },
            _ => out.push((nr, if rule.conds.is_empty() { Entry::Always(rule.action) } else { Entry::Cond(vec![r]) })),
        }
    }
    out
}

/// Where a syscall number goes: a return value, or the rule block of a syscall with conditional rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Ret(u32),
    Block(u32),
}

/// The filter section of one `seccomp_data.arch` value (x86_64 and x32 share one).
struct Section {
    audit: u32,
    /// Sorted by number.
    rules: Vec<(u32, Entry)>,
    /// nr ranges (inclusive) with a fixed answer, applied in order before the rules (first wins).
    pre: Vec<(u32, u32, u32)>,
    /// nr ranges (inclusive) with a fixed answer when no rule matches the number.
    post: Vec<(u32, u32, u32)>,
}

impl Section {
    /// The partition of all u32 numbers into ranges with one target each: (first nr, target), ascending.
    fn partition(&self, default: u32) -> Vec<(u32, Target)> {
        let mut cuts: Vec<u32> = vec![0];
        for &(lo, hi, _) in self.pre.iter().chain(&self.post) {
            cuts.push(lo);
            cuts.extend(hi.checked_add(1));
        }
        for &(nr, _) in &self.rules {
            cuts.push(nr);
            cuts.extend(nr.checked_add(1));
        }
        cuts.sort_unstable();
        cuts.dedup();
        let find = |ranges: &[(u32, u32, u32)], n: u32| ranges.iter().find(|r| r.0 <= n && n <= r.1).map(|r| r.2);
        let mut out: Vec<(u32, Target)> = Vec::with_capacity(cuts.len());
        let mut next = 0;
        for n in cuts {
            let t = if let Some(k) = find(&self.pre, n) {
                Target::Ret(k)
            } else {
                while next < self.rules.len() && self.rules[next].0 < n {
                    next += 1;
                }
                match self.rules.get(next) {
                    Some((r, Entry::Always(k))) if *r == n => Target::Ret(*k),
                    Some((r, Entry::Cond(_))) if *r == n => Target::Block(n),
                    _ => Target::Ret(find(&self.post, n).unwrap_or(default)),
                }
            };
            if out.last().map(|l| l.1) != Some(t) {
                out.push((n, t));
            }
        }
        out
    }
}

fn parse_op(op: &str) -> Result<Op, Error> {
    Ok(match op {
        "SCMP_CMP_NE" => Op::Ne,
        "SCMP_CMP_LT" => Op::Lt,
        "SCMP_CMP_LE" => Op::Le,
        "SCMP_CMP_EQ" => Op::Eq,
        "SCMP_CMP_GE" => Op::Ge,
        "SCMP_CMP_GT" => Op::Gt,
        "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
        other => return Err(Error::invalid(format!("unknown seccomp operator {other:?}"))),
    })
}

/// Compile `linux.seccomp` into a classic BPF program (semantics: see the comment at the top of this section).
pub fn compile(s: &LinuxSeccomp) -> Result<Vec<libc::sock_filter>, Error> {
    let default = action(&s.default_action, s.default_errno_ret, "linux.seccomp.defaultAction")?;
    let mut arches = vec![Arch::NATIVE];
    for (i, name) in s.architectures.iter().enumerate() {
        match Arch::from_spec(name) {
            Ok(Some(a)) => arches.push(a),
            // an arch keel has no table for (never reported on x86_64 or aarch64): the bad-arch action
            Ok(None) => {}
            Err(e) => return Err(e.at("config.json", format!("linux.seccomp.architectures[{i}]"))),
        }
    }
    arches.sort_unstable();
    arches.dedup();
    for (i, f) in s.flags.iter().enumerate() {
        if filter_flag(f).is_none() {
            return Err(invalid(format!("linux.seccomp.flags[{i}]"), format!("unknown seccomp flag {f:?}")));
        }
    }

    // Rule hits per arch (nr, file order, rule), and the largest number each arch's names reach (runc's stub).
    let mut store: Vec<Rule> = Vec::new();
    let names: usize = s.syscalls.iter().map(|c| c.names.len()).sum();
    let mut hits: Vec<Vec<(u32, u32, u32)>> = vec![Vec::with_capacity(names + 8); arches.len()];
    let mut largest: Vec<u32> = vec![0; arches.len()];
    let has_x86 = arches.contains(&Arch::X86);
    let mut seq = 0u32;
    for (i, sc) in s.syscalls.iter().enumerate() {
        let field = || format!("linux.seccomp.syscalls[{i}]");
        let act =
            action_value(&sc.action, sc.errno_ret).map_err(|e| e.at("config.json", format!("{}.action", field())))?;
        let mut conds = Vec::with_capacity(sc.args.len());
        for (j, arg) in sc.args.iter().enumerate() {
            if arg.index > 5 {
                let msg = format!("argument index {} is not 0..5", arg.index);
                return Err(invalid(format!("{}.args[{j}].index", field()), msg));
            }
            let op = parse_op(&arg.op).map_err(|e| e.at("config.json", format!("{}.args[{j}].op", field())))?;
            conds.push(Cond { index: arg.index, op, value: arg.value, value_two: arg.value_two });
        }
        if let Some(j) = sc.names.iter().position(String::is_empty) {
            return Err(invalid(format!("{}.names[{j}]", field()), "empty syscall name"));
        }
        // runc: conditions on one argument index twice -> one rule per condition (ORed); else one rule (ANDed).
        // Each group is lowered once per argument width: store[first..] holds (64-bit, 32-bit) pairs.
        let repeated = conds.iter().enumerate().any(|(j, c)| conds[..j].iter().any(|d| d.index == c.index));
        let first = store.len() as u32;
        if act != default {
            let groups: Vec<&[Cond]> =
                if repeated { conds.iter().map(std::slice::from_ref).collect() } else { vec![&conds[..]] };
            for g in groups {
                for args32 in [false, true] {
                    let conds = g.iter().filter_map(|c| c.lower(args32)).collect();
                    store.push(Rule { conds, action: act });
                }
            }
        }
        let last = store.len() as u32;
        for name in &sc.names {
            let Ok(ti) = tables::SYSCALLS.binary_search_by(|e| e.0.cmp(name)) else {
                continue; // unknown to the table: skipped, as runc does with libseccomp
            };
            let mux = if has_x86 { x86_mux(name) } else { None };
            for (ai, arch) in arches.iter().enumerate() {
                let nr = arch.nr_at(ti);
                let mux = if *arch == Arch::X86 { mux } else { None };
                if let (Some(n), None) = (nr, mux) {
                    // libseccomp resolves i386 socket/ipc names to pseudo numbers: runc's stub does not count them.
                    largest[ai] = largest[ai].max(n);
                }
                // (no rules when the action repeats the default: runc skips those)
                for r in (first..last).step_by(2) {
                    let r = r + arch.args32() as u32;
                    if let Some((mux_nr, call)) = mux {
                        let mut conds = vec![ArchCond { index: 0, op: Op::Eq, value: call, mask: 0, wide: false }];
                        conds.extend(store[r as usize].conds.iter().filter(|c| c.index != 0).copied());
                        store.push(Rule { conds, action: act });
                        hits[ai].push((mux_nr, seq, store.len() as u32 - 1));
                        seq += 1;
                    }
                    if let Some(n) = nr {
                        hits[ai].push((n, seq, r));
                        seq += 1;
                    }
                }
            }
        }
    }
    let mut rules: Vec<Vec<(u32, Entry)>> = hits.into_iter().map(|h| merge_rules(h, &store)).collect();

    // One section per seccomp_data.arch value.
    let stub = !matches!(s.default_action.as_str(), "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG" | "SCMP_ACT_TRACE");
    let max_of = |a: Arch| arches.iter().position(|x| *x == a).map(|i| largest[i]).filter(|m| *m != 0);
    let mut sections: Vec<Section> = Vec::new();
    let mut rules_of = |a: Arch| arches.iter().position(|x| *x == a).map(|i| std::mem::take(&mut rules[i]));
    let (r64, r32) = (rules_of(Arch::X86_64), rules_of(Arch::X32));
    if r64.is_some() || r32.is_some() {
        let mut sec = Section { audit: AUDIT_ARCH_X86_64, rules: Vec::new(), pre: vec![], post: vec![] };
        let (has64, has32) = (r64.is_some(), r32.is_some());
        if stub {
            // runc tests bit 30 (jset), not nr >= 0x40000000: numbers 0x80000000.. count as x86_64 calls.
            let ranges64 = [(0, X32_SYSCALL_BIT - 1), (0x8000_0000, 0xbfff_ffff)];
            let ranges32 = [(X32_SYSCALL_BIT, 0x7fff_ffff), (0xc000_0000, u32::MAX)];
            if let Some(m) = max_of(Arch::X86_64).filter(|_| has64) {
                sec.pre.extend(ranges64.iter().filter(|r| r.1 > m).map(|r| (r.0.max(m + 1), r.1, RET_ENOSYS)));
            }
            if let Some(m) = max_of(Arch::X32).filter(|_| has32) {
                sec.pre.extend(ranges32.iter().filter(|r| r.1 > m).map(|r| (r.0.max(m + 1), r.1, RET_ENOSYS)));
            }
        }
        match (has64, has32) {
            (true, false) => sec.post.push((X32_SYSCALL_BIT, u32::MAX - 1, RET_BADARCH)),
            (false, true) => sec.post.push((0, X32_SYSCALL_BIT - 1, RET_BADARCH)),
            _ => {}
        }
        sec.rules = r64.unwrap_or_default();
        sec.rules.extend(r32.unwrap_or_default()); // x32 numbers are above all x86_64 ones: still sorted
        sections.push(sec);
    }
    for a in [Arch::X86, Arch::Aarch64, Arch::Arm] {
        if let Some(r) = rules_of(a) {
            let mut sec = Section { audit: a.audit(), rules: r, pre: vec![], post: vec![] };
            if let Some(m) = max_of(a).filter(|_| stub) {
                sec.pre.push((m + 1, u32::MAX, RET_ENOSYS));
            }
            sections.push(sec);
        }
    }
    emit(&sections, default, &store)
}

/// Lay out the program: arch dispatch, then per section a binary search over the nr partition, then the rule
/// blocks, then one `ret` per distinct return value.
fn emit(sections: &[Section], default: u32, store: &[Rule]) -> Result<Vec<libc::sock_filter>, Error> {
    let mut a = Asm::default();
    let mut rets: BTreeMap<u32, usize> = BTreeMap::new();
    let mut ret_label = |a: &mut Asm, k: u32| *rets.entry(k).or_insert_with(|| a.label());
    let bad = ret_label(&mut a, RET_BADARCH);
    let def = ret_label(&mut a, default);
    let sec_labels: Vec<usize> = sections.iter().map(|_| a.label()).collect();
    a.ld(OFF_ARCH);
    for (i, sec) in sections.iter().enumerate() {
        let jf = if i + 1 == sections.len() { Tgt::L(bad) } else { Tgt::Next };
        a.jmp(libc::BPF_JEQ, sec.audit, Tgt::L(sec_labels[i]), jf);
    }
    if sections.is_empty() {
        a.ja(bad);
    }
    for (sec, l) in sections.iter().zip(&sec_labels) {
        a.place(*l);
        a.ld(OFF_NR);
        let part = sec.partition(default);
        let mut blocks: BTreeMap<u32, usize> = BTreeMap::new();
        let labels: Vec<(u32, usize)> = part
            .iter()
            .map(|(lo, t)| {
                let l = match *t {
                    Target::Ret(k) => ret_label(&mut a, k),
                    Target::Block(nr) => *blocks.entry(nr).or_insert_with(|| a.label()),
                };
                (*lo, l)
            })
            .collect();
        emit_search(&mut a, &labels);
        for (nr, l) in &blocks {
            a.place(*l);
            let i = sec.rules.binary_search_by_key(nr, |e| e.0).ok();
            if let Some((_, Entry::Cond(rs))) = i.map(|i| &sec.rules[i]) {
                for r in rs.iter().map(|r| &store[*r as usize]) {
                    let fail = a.label();
                    for c in &r.conds {
                        emit_cond(&mut a, c, fail);
                    }
                    a.ret(r.action);
                    a.place(fail);
                }
            }
            a.ja(def);
        }
    }
    for (k, l) in rets {
        a.place(l);
        a.ret(k);
    }
    a.finish()
}

/// Binary search on A (the nr) over `segs` (first nr of each range, label of its target), ascending, covering
/// all of u32; jumps to the target of the range holding A.
fn emit_search(a: &mut Asm, segs: &[(u32, usize)]) {
    if segs.len() == 1 {
        a.ja(segs[0].1);
        return;
    }
    let mid = segs.len() / 2;
    let (left, right) = segs.split_at(mid);
    let rt = if right.len() == 1 { Tgt::L(right[0].1) } else { Tgt::L(a.label()) };
    let lt = if left.len() == 1 { Tgt::L(left[0].1) } else { Tgt::Next };
    a.jmp(libc::BPF_JGE, right[0].0, rt, lt);
    if left.len() > 1 {
        emit_search(a, left);
    }
    if right.len() > 1 {
        if let Tgt::L(l) = rt {
            a.place(l);
        }
        emit_search(a, right);
    }
}

/// Emit an argument comparison that falls through when `c` holds and jumps to `fail` otherwise.
fn emit_cond(a: &mut Asm, c: &ArchCond, fail: usize) {
    let lo = OFF_ARGS + 8 * c.index;
    let hi = lo + 4;
    let (vhi, vlo) = ((c.value >> 32) as u32, c.value as u32);
    let f = Tgt::L(fail);
    let n = Tgt::Next;
    let (jeq, jgt, jge) = (libc::BPF_JEQ, libc::BPF_JGT, libc::BPF_JGE);
    let and = libc::BPF_ALU | libc::BPF_AND | libc::BPF_K;
    if !c.wide {
        a.ld(lo);
        match c.op {
            Op::Eq => a.jmp(jeq, vlo, n, f),
            Op::Ne => a.jmp(jeq, vlo, f, n),
            Op::Gt => a.jmp(jgt, vlo, n, f),
            Op::Ge => a.jmp(jge, vlo, n, f),
            Op::Lt => a.jmp(jge, vlo, f, n),
            Op::Le => a.jmp(jgt, vlo, f, n),
            Op::MaskedEq => {
                a.stmt(and, c.mask as u32);
                a.jmp(jeq, vlo, n, f);
            }
        }
        return;
    }
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
            let (mhi, mlo) = ((c.mask >> 32) as u32, c.mask as u32);
            if mhi != 0 {
                a.ld(hi);
                a.stmt(and, mhi);
                a.jmp(jeq, vhi, n, f);
            }
            if mlo != 0 {
                a.ld(lo);
                a.stmt(and, mlo);
                a.jmp(jeq, vlo, n, f);
            }
        }
    }
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
pub fn install(prog: &[libc::sock_filter], flags: &[String]) -> Result<(), keel_sys::Errno> {
    let mut bits: libc::c_ulong = 0;
    for f in flags {
        bits |= filter_flag(f).ok_or(keel_sys::Errno::EINVAL)?;
    }
    let fprog = libc::sock_fprog { len: prog.len() as libc::c_ushort, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: fprog points to `prog`, which outlives the call; the kernel copies the program.
    let r = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, bits, &fprog as *const libc::sock_fprog)
    };
    if r == 0 {
        return Ok(());
    }
    let e = keel_sys::Errno::last();
    if e != keel_sys::Errno::ENOSYS {
        return Err(e);
    }
    // SAFETY: as above; PR_SET_SECCOMP copies the program.
    let r = unsafe {
        libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog as *const libc::sock_fprog, 0, 0)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(keel_sys::Errno::last())
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

    const X32: u32 = X32_SYSCALL_BIT;
    const I386: u32 = AUDIT_ARCH_I386;
    const KILL: u32 = libc::SECCOMP_RET_KILL_THREAD;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    fn nr_on(arch: Arch, name: &str) -> u32 {
        arch.nr(name).unwrap_or_else(|| panic!("{name} not on {arch:?}"))
    }

    fn profile(default: &str, arches: &[&str], syscalls: Vec<LinuxSyscall>) -> LinuxSeccomp {
        LinuxSeccomp {
            default_action: default.into(),
            architectures: arches.iter().map(|s| s.to_string()).collect(),
            syscalls,
            ..Default::default()
        }
    }

    #[test]
    fn x86_multiplexer_table() {
        assert_eq!(x86_mux("socket"), Some((102, 1)));
        assert_eq!(x86_mux("sendmmsg"), Some((102, 20)));
        assert_eq!(x86_mux("shmctl"), Some((117, 24)));
        assert_eq!(x86_mux("read"), None);
        let names = ["accept", "bind", "getsockopt", "msgctl", "recv", "semop", "shmdt", "socketpair", "zzz"];
        assert_eq!(names.iter().filter(|n| x86_mux(n).is_some()).count(), 8);
    }

    #[test]
    fn table_is_sorted_and_complete() {
        assert!(tables::SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(syscall_nr("read"), Some(0));
        assert_eq!(syscall_nr("mkdir"), Some(83));
        assert_eq!(syscall_nr("no_such_syscall"), None);
        // syscalls newer than libc's table, shared numbers from 424 on
        for (name, n) in [("io_pgetevents", 333), ("cachestat", 451), ("futex_wake", 454), ("map_shadow_stack", 453)] {
            assert_eq!(Arch::X86_64.nr(name), Some(n), "{name}");
        }
        assert_eq!(Arch::X86.nr("cachestat"), Some(451));
        assert_eq!(Arch::X32.nr("cachestat"), Some(451 | X32));
        assert_eq!(Arch::Aarch64.nr("cachestat"), Some(451));
        assert_eq!(Arch::X86.nr("io_pgetevents"), Some(385));
        assert_eq!(Arch::X32.nr("writev"), Some(516 | X32)); // x32's own compat range
        assert_eq!(Arch::X32.nr("map_shadow_stack"), None); // "64" in the kernel's syscall_64.tbl
        assert_eq!(Arch::Arm.nr("cacheflush"), Some(0xf0002));
        assert_eq!(Arch::Arm.nr("read"), Some(3));
        assert_eq!(Arch::X86.nr("read"), Some(3));
        assert_eq!(Arch::Aarch64.nr("read"), Some(63));
        assert_eq!(Arch::X86.nr("arch_prctl"), Some(384));
        assert_eq!(Arch::X86_64.nr("socketcall"), None);
        assert_eq!(Arch::Aarch64.nr("open"), None);
        // every libc SYS_* the old x86_64-only table had is still there with the same number
        for (name, n) in [("clone3", libc::SYS_clone3), ("mseal", libc::SYS_mseal), ("write", libc::SYS_write)] {
            assert_eq!(syscall_nr(name), Some(n as u32));
        }
        assert!(Arch::X86_64.syscalls().count() > 360 && Arch::X86.syscalls().count() > 430);
    }

    #[test]
    fn default_and_simple_rules() {
        let s = profile(
            "SCMP_ACT_ALLOW",
            &[],
            vec![
                rule(&["mkdir", "rmdir", "bogus_name"], "SCMP_ACT_ERRNO", None, vec![]),
                rule(&["reboot"], "SCMP_ACT_ERRNO", Some(libc::ENOSYS as u32), vec![]),
                rule(&["kexec_load"], "SCMP_ACT_KILL_PROCESS", None, vec![]),
                rule(&["ptrace"], "SCMP_ACT_TRAP", None, vec![]),
                rule(&["getpid"], "SCMP_ACT_LOG", None, vec![]),
                rule(&["getppid"], "SCMP_ACT_TRACE", Some(7), vec![]),
            ],
        );
        let p = compile(&s).unwrap();
        assert_eq!(run(&p, X64, nr("mkdir"), [0; 6]), EPERM);
        assert_eq!(run(&p, X64, nr("rmdir"), [0; 6]), EPERM);
        assert_eq!(run(&p, X64, nr("reboot"), [0; 6]), ENOSYS);
        assert_eq!(run(&p, X64, nr("kexec_load"), [0; 6]), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run(&p, X64, nr("ptrace"), [0; 6]), libc::SECCOMP_RET_TRAP);
        assert_eq!(run(&p, X64, nr("getpid"), [0; 6]), libc::SECCOMP_RET_LOG);
        assert_eq!(run(&p, X64, nr("getppid"), [0; 6]), libc::SECCOMP_RET_TRACE | 7);
        assert_eq!(run(&p, X64, nr("read"), [0; 6]), ALLOW);
        // default ALLOW: no ENOSYS stub
        assert_eq!(run(&p, X64, 9999, [0; 6]), ALLOW);
        // foreign arch, x32 and i386 (not listed) get the bad-arch action; nr -1 (tracer skip) the default
        assert_eq!(run(&p, AUDIT_ARCH_AARCH64, nr("read"), [0; 6]), KILL);
        assert_eq!(run(&p, X64, X32 | nr("read"), [0; 6]), KILL);
        assert_eq!(run(&p, X64, 0x8000_0000, [0; 6]), KILL);
        assert_eq!(run(&p, X64, u32::MAX, [0; 6]), ALLOW);
        assert_eq!(run(&p, I386, 1, [0; 6]), KILL);
    }

    /// Deny rules for syscalls newer than libc's/Debian's tables apply on every listed arch.
    #[test]
    fn new_syscalls_are_denied_on_every_arch() {
        let names = ["io_pgetevents", "cachestat", "futex_wake", "map_shadow_stack", "mseal", "listmount"];
        let s = profile(
            "SCMP_ACT_ALLOW",
            &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            vec![rule(&names, "SCMP_ACT_ERRNO", None, vec![])],
        );
        let p = compile(&s).unwrap();
        for name in names {
            assert_eq!(run(&p, X64, nr_on(Arch::X86_64, name), [0; 6]), EPERM, "{name}");
            if name != "map_shadow_stack" {
                assert_eq!(run(&p, X64, nr_on(Arch::X32, name), [0; 6]), EPERM, "x32 {name}");
            }
            assert_eq!(run(&p, I386, nr_on(Arch::X86, name), [0; 6]), EPERM, "i386 {name}");
        }
        assert_eq!(run(&p, X64, nr("read"), [0; 6]), ALLOW);
        assert_eq!(run(&p, X64, X32 | nr("read"), [0; 6]), ALLOW);
        assert_eq!(run(&p, I386, 3, [0; 6]), ALLOW);
        assert_eq!(run(&p, AUDIT_ARCH_AARCH64, 63, [0; 6]), KILL);
    }

    #[test]
    fn arches_x32_and_i386_allow_list() {
        let s = LinuxSeccomp {
            default_errno_ret: Some(1),
            ..profile(
                "SCMP_ACT_ERRNO",
                &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                vec![rule(&["read", "write", "writev", "arch_prctl", "socketcall"], "SCMP_ACT_ALLOW", None, vec![])],
            )
        };
        let p = compile(&s).unwrap();
        assert_eq!(run(&p, X64, nr("read"), [0; 6]), ALLOW);
        assert_eq!(run(&p, X64, nr("writev"), [0; 6]), ALLOW);
        assert_eq!(run(&p, X64, X32 | nr("write"), [0; 6]), ALLOW);
        assert_eq!(run(&p, X64, X32 | 516, [0; 6]), ALLOW); // x32 writev
        assert_eq!(run(&p, X64, X32 | nr("writev"), [0; 6]), EPERM); // 20|bit: not an x32 writev
        assert_eq!(run(&p, X64, nr("mkdir"), [0; 6]), EPERM);
        assert_eq!(run(&p, X64, X32 | nr("mkdir"), [0; 6]), EPERM);
        assert_eq!(run(&p, I386, 3, [0; 6]), ALLOW);
        assert_eq!(run(&p, I386, 146, [0; 6]), ALLOW); // i386 writev
        assert_eq!(run(&p, I386, 384, [0; 6]), ALLOW); // i386 arch_prctl
        assert_eq!(run(&p, I386, 102, [0; 6]), ALLOW); // socketcall: an i386-only name
        assert_eq!(run(&p, I386, 39, [0; 6]), EPERM);
        assert_eq!(run(&p, AUDIT_ARCH_AARCH64, 63, [0; 6]), KILL);
        // runc's ENOSYS stub above the largest number named per arch (x86_64: writev 20 < arch_prctl 158)
        assert_eq!(run(&p, X64, 159, [0; 6]), ENOSYS);
        assert_eq!(run(&p, X64, nr("mkdir"), [0; 6]), EPERM);
        assert_eq!(run(&p, X64, X32 | 517, [0; 6]), ENOSYS);
        assert_eq!(run(&p, X64, X32 | 515, [0; 6]), EPERM);
        assert_eq!(run(&p, X64, u32::MAX, [0; 6]), ENOSYS); // x32 listed: runc's stub sees bit 30
        assert_eq!(run(&p, I386, 385, [0; 6]), ENOSYS);
        assert_eq!(run(&p, I386, 383, [0; 6]), EPERM);
    }

    #[test]
    fn x32_not_listed_is_bad_arch_and_stub_ignores_it() {
        let s = profile("SCMP_ACT_ERRNO", &["SCMP_ARCH_X86_64"], vec![rule(&["read"], "SCMP_ACT_ALLOW", None, vec![])]);
        let p = compile(&s).unwrap();
        assert_eq!(run(&p, X64, 0, [0; 6]), ALLOW);
        assert_eq!(run(&p, X64, X32, [0; 6]), KILL);
        assert_eq!(run(&p, X64, u32::MAX, [0; 6]), EPERM);
        assert_eq!(run(&p, I386, 3, [0; 6]), KILL);
        // read is 0: runc finds no largest syscall, so no stub
        assert_eq!(run(&p, X64, 1, [0; 6]), EPERM);
        assert_eq!(run(&p, X64, 0x8000_0000, [0; 6]), KILL);
    }

    #[test]
    fn i386_deny_list_covers_socketcall_and_ipc() {
        let s = profile(
            "SCMP_ACT_ALLOW",
            &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            vec![
                rule(&["mkdir"], "SCMP_ACT_ERRNO", None, vec![]),
                rule(&["socket"], "SCMP_ACT_ERRNO", None, vec![arg(0, "SCMP_CMP_EQ", 40, 0)]),
                rule(&["accept", "shmget"], "SCMP_ACT_KILL", None, vec![]),
            ],
        );
        let p = compile(&s).unwrap();
        assert_eq!(run(&p, I386, 39, [0; 6]), EPERM);
        // direct socket(2) (359) compares its own arg 0; socketcall(SYS_SOCKET) compares arg 0 == 1 only
        assert_eq!(run(&p, I386, 359, [40, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(run(&p, I386, 359, [2, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(&p, I386, 102, [1, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(run(&p, I386, 102, [3, 0, 0, 0, 0, 0]), ALLOW);
        // accept exists on i386 only through socketcall (5); shmget directly (395) and via ipc (23)
        assert_eq!(run(&p, I386, 102, [5, 0, 0, 0, 0, 0]), KILL);
        assert_eq!(run(&p, I386, 395, [0; 6]), KILL);
        assert_eq!(run(&p, I386, 117, [23, 0, 0, 0, 0, 0]), KILL);
        assert_eq!(run(&p, I386, 117, [21, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(&p, X64, nr("socket"), [40, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(run(&p, X64, nr("accept"), [0; 6]), KILL);
    }

    /// i386 and x32 compare the low 32 bits of arguments (libseccomp's 32-bit arches); x86_64 all 64.
    #[test]
    fn args_are_32_bit_on_32_bit_arches() {
        let s = profile(
            "SCMP_ACT_ALLOW",
            &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            vec![
                rule(&["write"], "SCMP_ACT_ERRNO", None, vec![arg(0, "SCMP_CMP_EQ", 0x1_0000_0002, 0)]),
                rule(&["read"], "SCMP_ACT_ERRNO", None, vec![arg(2, "SCMP_CMP_MASKED_EQ", 0xff_0000_0000, 0)]),
            ],
        );
        let p = compile(&s).unwrap();
        assert_eq!(run(&p, X64, 1, [2, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(&p, X64, 1, [0x1_0000_0002, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(run(&p, I386, 4, [2, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(run(&p, X64, X32 | 1, [2, 0, 0, 0, 0, 0]), EPERM);
        // mask with no low bits: always true on 32-bit arches (dropped -> unconditional), a real test on x86_64
        assert_eq!(run(&p, I386, 3, [0, 0, 5, 0, 0, 0]), EPERM);
        assert_eq!(run(&p, X64, X32, [0, 0, 5, 0, 0, 0]), EPERM);
        assert_eq!(run(&p, X64, 0, [0, 0, 5, 0, 0, 0]), EPERM);
        assert_eq!(run(&p, X64, 0, [0, 0, 0x1_0000_0000, 0, 0, 0]), ALLOW);
    }

    /// Every operator, checked against a Rust model on values around the boundaries of both 32-bit halves.
    #[test]
    fn argument_operators_match_a_model() {
        let vals: [u64; 9] =
            [0, 1, 5, 0xffff_ffff, 0x1_0000_0000, 0x1_0000_0005, 0x2_0000_0000, u64::MAX - 1, u64::MAX];
        let ops = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT"];
        for op in ops {
            for &v in &vals {
                let s = profile(
                    "SCMP_ACT_ALLOW",
                    &["SCMP_ARCH_X86"],
                    vec![rule(&["write"], "SCMP_ACT_ERRNO", None, vec![arg(2, op, v, 0)])],
                );
                let p = compile(&s).unwrap();
                for &a in &vals {
                    let want = |a: u64, v: u64| match op {
                        "SCMP_CMP_NE" => a != v,
                        "SCMP_CMP_LT" => a < v,
                        "SCMP_CMP_LE" => a <= v,
                        "SCMP_CMP_EQ" => a == v,
                        "SCMP_CMP_GE" => a >= v,
                        _ => a > v,
                    };
                    let got = run(&p, X64, nr("write"), [0, 0, a, 0, 0, 0]) == EPERM;
                    assert_eq!(got, want(a, v), "{op} arg={a:#x} value={v:#x}");
                    let got = run(&p, I386, 4, [0, 0, a, 0, 0, 0]) == EPERM;
                    assert_eq!(got, want(a & 0xffff_ffff, v & 0xffff_ffff), "i386 {op} arg={a:#x} value={v:#x}");
                }
            }
        }
        // MASKED_EQ: (arg & value) == (valueTwo & value)
        let s = profile(
            "SCMP_ACT_ALLOW",
            &[],
            vec![rule(
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
        );
        let p = compile(&s).unwrap();
        let cl = |a: u64| run(&p, X64, nr("clone"), [a, 0, 0, 0, 0, 0]);
        assert_eq!(cl(libc::CLONE_NEWUSER as u64 | 0x11), EPERM);
        assert_eq!(cl(0x11), ALLOW);
        assert_eq!(cl(0x1_0000_0000 | libc::CLONE_NEWUSER as u64), ALLOW);
    }

    #[test]
    fn rule_merging_as_libseccomp() {
        let s = profile(
            "SCMP_ACT_ERRNO",
            &[],
            vec![
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
                rule(&["socket"], "SCMP_ACT_ERRNO", Some(38), vec![arg(0, "SCMP_CMP_EQ", 2, 0)]),
                // an unconditional rule after conditional ones replaces them
                rule(&["connect"], "SCMP_ACT_LOG", None, vec![arg(0, "SCMP_CMP_EQ", 2, 0)]),
                rule(&["connect"], "SCMP_ACT_TRAP", None, vec![]),
                // the first unconditional rule wins: later rules are ignored
                rule(&["bind"], "SCMP_ACT_LOG", None, vec![]),
                rule(&["bind"], "SCMP_ACT_ALLOW", None, vec![arg(0, "SCMP_CMP_EQ", 2, 0)]),
                rule(&["bind"], "SCMP_ACT_TRAP", None, vec![]),
                // a rule repeating the default action is dropped (runc)
                rule(&["listen"], "SCMP_ACT_ALLOW", None, vec![]),
                rule(&["listen"], "SCMP_ACT_ERRNO", None, vec![]),
            ],
        );
        let p = compile(&s).unwrap();
        let pers = |a: u64| run(&p, X64, nr("personality"), [a, 0, 0, 0, 0, 0]);
        assert_eq!(pers(0), ALLOW);
        assert_eq!(pers(8), ALLOW);
        assert_eq!(pers(4), EPERM);
        let sock = |a: u64, c: u64| run(&p, X64, nr("socket"), [a, 1, c, 0, 0, 0]);
        assert_eq!(sock(1, 0), ALLOW);
        assert_eq!(sock(1, 5), EPERM);
        assert_eq!(sock(2, 0), ENOSYS);
        assert_eq!(run(&p, X64, nr("connect"), [2, 0, 0, 0, 0, 0]), libc::SECCOMP_RET_TRAP);
        assert_eq!(run(&p, X64, nr("bind"), [2, 0, 0, 0, 0, 0]), libc::SECCOMP_RET_LOG);
        assert_eq!(run(&p, X64, nr("listen"), [0; 6]), ALLOW);
    }

    /// Conditional rules on every syscall: the rule blocks lie far beyond 255 instructions from the search, so
    /// jumps need trampolines; the decision for every number must still be right.
    #[test]
    fn big_program_long_jumps() {
        let all: Vec<(&str, u32)> = Arch::X86_64.syscalls().collect();
        let mut syscalls: Vec<LinuxSyscall> = all
            .iter()
            .map(|(n, nr)| rule(&[n], "SCMP_ACT_ALLOW", None, vec![arg(1, "SCMP_CMP_EQ", *nr as u64, 0)]))
            .collect();
        for i in 0..40 {
            syscalls.insert(
                0,
                rule(&["ioctl"], "SCMP_ACT_ERRNO", Some(i + 1), vec![arg(1, "SCMP_CMP_EQ", i as u64 + 1000, 0)]),
            );
        }
        let s = profile("SCMP_ACT_KILL_PROCESS", &[], syscalls);
        let p = compile(&s).unwrap();
        assert!(p.len() > 1000 && p.len() < libc::BPF_MAXINSNS as usize, "{} instructions", p.len());
        for (name, n) in &all {
            assert_eq!(run(&p, X64, *n, [0, *n as u64, 0, 0, 0, 0]), ALLOW, "{name}");
            assert_eq!(run(&p, X64, *n, [0, *n as u64 + 1, 0, 0, 0, 0]), libc::SECCOMP_RET_KILL_PROCESS, "{name}");
        }
        assert_eq!(run(&p, X64, nr("ioctl"), [0, 1007, 0, 0, 0, 0]), libc::SECCOMP_RET_ERRNO | 8);
        assert_eq!(run(&p, X64, 1000, [0; 6]), ENOSYS);
        assert_eq!(run(&p, X64, 400, [0; 6]), libc::SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn too_big_is_an_error_not_a_bad_program() {
        let args: Vec<LinuxSeccompArg> = (0..6).map(|i| arg(i, "SCMP_CMP_LT", 5, 0)).collect();
        let syscalls: Vec<LinuxSyscall> =
            Arch::X86_64.syscalls().map(|(n, _)| rule(&[n], "SCMP_ACT_ALLOW", None, args.clone())).collect();
        let s = profile("SCMP_ACT_ERRNO", &[], syscalls);
        let e = compile(&s).unwrap_err().to_string();
        assert!(e.contains("BPF instructions"), "{e}");
    }

    #[test]
    fn bad_input_names_the_field() {
        let mut s = profile("SCMP_ACT_NOTIFY", &[], vec![]);
        assert!(compile(&s).unwrap_err().to_string().contains("SCMP_ACT_NOTIFY is not supported"));
        s.default_action = "SCMP_ACT_ALLOW".into();
        s.syscalls = vec![rule(&["read"], "SCMP_ACT_BOGUS", None, vec![])];
        assert!(compile(&s).unwrap_err().to_string().contains("linux.seccomp.syscalls[0].action"));
        s.syscalls = vec![rule(&["read"], "SCMP_ACT_ERRNO", None, vec![arg(6, "SCMP_CMP_EQ", 0, 0)])];
        assert!(compile(&s).unwrap_err().to_string().contains("syscalls[0].args[0].index"));
        s.syscalls = vec![rule(&["read"], "SCMP_ACT_ERRNO", None, vec![arg(0, "SCMP_CMP_XX", 0, 0)])];
        assert!(compile(&s).unwrap_err().to_string().contains("syscalls[0].args[0].op"));
        s.syscalls = vec![rule(&["read", ""], "SCMP_ACT_ERRNO", None, vec![])];
        assert!(compile(&s).unwrap_err().to_string().contains("syscalls[0].names[1]"));
        s.syscalls = vec![];
        s.architectures = vec!["SCMP_ARCH_X86_64".into(), "SCMP_ARCH_VAX".into()];
        assert!(compile(&s).unwrap_err().to_string().contains("architectures[1]"));
        s.architectures = vec![];
        s.flags = vec!["SECCOMP_FILTER_FLAG_BOGUS".into()];
        assert!(compile(&s).unwrap_err().to_string().contains("flags[0]"));
    }
}
