//! Seccomp: the spec's `linux.seccomp` types, a compiler from them to classic BPF, and installation.

use serde::Deserialize;

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
