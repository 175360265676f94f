//! Capability names <-> numbers (linux/capability.h), set bitmasks, and applying them in the child:
//! bounding set drop, capset (effective/permitted/inheritable), ambient raise.

/// Index = capability number.
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Number of a capability name ("CAP_SYS_ADMIN" or "sys_admin", any case).
pub fn from_name(name: &str) -> Option<u32> {
    let n = name.strip_prefix("CAP_").or_else(|| name.strip_prefix("cap_")).unwrap_or(name);
    NAMES.iter().position(|c| c[4..].eq_ignore_ascii_case(n)).map(|i| i as u32)
}

/// Name of a capability number.
pub fn name(cap: u32) -> Option<&'static str> {
    NAMES.get(cap as usize).copied()
}

/// Bitmask of a list of names; the first unknown name is the error.
pub fn mask<S: AsRef<str>>(names: &[S]) -> Result<u64, String> {
    let mut m = 0u64;
    for n in names {
        match from_name(n.as_ref()) {
            Some(c) => m |= 1 << c,
            None => return Err(n.as_ref().to_string()),
        }
    }
    Ok(m)
}

/// The five sets as bitmasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// Highest capability the running kernel knows (/proc/sys/kernel/cap_last_cap), read once per process.
pub fn last_cap() -> u32 {
    use std::sync::OnceLock;
    static LAST: OnceLock<u32> = OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(NAMES.len() as u32 - 1)
    })
}

/// Drop every capability not in `bounding` from the bounding set (needs CAP_SETPCAP: call before the uid change).
/// Returns (cap, errno) of the first failure.
pub fn drop_bounding(bounding: u64, last: u32) -> Result<(), (u32, i32)> {
    for cap in 0..=last.min(63) {
        if bounding & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
                let e = crate::sys::errno();
                if e != libc::EINVAL {
                    return Err((cap, e));
                }
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// capset(2) effective/permitted/inheritable, then raise the ambient ones that permitted and inheritable allow
/// (others are skipped, as runc and crun do). Returns (what, errno) on failure.
pub fn apply(sets: &CapSets, last: u32) -> Result<(), (&'static str, i32)> {
    let hdr = CapHeader { version: 0x2008_0522, pid: 0 }; // _LINUX_CAPABILITY_VERSION_3
    let lo = |m: u64| m as u32;
    let hi = |m: u64| (m >> 32) as u32;
    let data = [
        CapData { effective: lo(sets.effective), permitted: lo(sets.permitted), inheritable: lo(sets.inheritable) },
        CapData { effective: hi(sets.effective), permitted: hi(sets.permitted), inheritable: hi(sets.inheritable) },
    ];
    // SAFETY: hdr and data are valid, correctly laid out v3 capability structs (two data words).
    if unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) } != 0 {
        return Err(("capset", crate::sys::errno()));
    }
    if sets.ambient != 0 {
        for cap in 0..=last.min(63) {
            if sets.ambient & (1 << cap) != 0 {
                // SAFETY: prctl with integer arguments only.
                let r = unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        0,
                        0,
                    )
                };
                if r != 0 {
                    // EPERM: the cap is not in both permitted and inheritable (runc's and crun's default `spec`
                    // lists ambient caps with no inheritable set); EINVAL: a kernel without ambient caps or an
                    // unknown cap. runc warns and goes on, crun ignores both: the process runs with the ambient
                    // caps the kernel allows (here: none of these), as with them.
                    let e = crate::sys::errno();
                    if e == libc::EPERM || e == libc::EINVAL {
                        continue;
                    }
                    return Err(("raise ambient capability", e));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(from_name("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(from_name("net_admin"), Some(12));
        assert_eq!(name(40), Some("CAP_CHECKPOINT_RESTORE"));
        assert_eq!(from_name("CAP_NOPE"), None);
        assert_eq!(mask(&["CAP_CHOWN", "CAP_KILL"]).unwrap(), 0b100001);
        assert_eq!(mask(&["CAP_X"]).unwrap_err(), "CAP_X");
    }
}
