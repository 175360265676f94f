//! Mount option parsing (fstab-style names -> MS_* flags, propagation, data string) shared by spec mounts and
//! LinuxKit runtime.json mounts.

/// A parsed `options` list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountOpts {
    /// Flags for the first mount(2) call (no propagation bits: those need their own call).
    pub flags: libc::c_ulong,
    /// Flags cleared explicitly ("rw", "suid", ...), needed when remounting a bind mount.
    pub cleared: libc::c_ulong,
    /// Propagation flags (MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE, maybe | MS_REC), applied in a second call.
    pub propagation: libc::c_ulong,
    /// Filesystem-specific options joined by ','.
    pub data: String,
    /// `bind` or `rbind` seen.
    pub bind: bool,
}

/// MS_* value of a propagation name ("rslave" -> MS_SLAVE|MS_REC); `None` if not a propagation name.
pub fn propagation_flag(name: &str) -> Option<libc::c_ulong> {
    Some(match name {
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

/// Parse mount options. Unknown names go to the data string (e.g. "mode=755", "size=64k", "newinstance").
pub fn parse_options<S: AsRef<str>>(options: &[S]) -> MountOpts {
    let mut o = MountOpts::default();
    for opt in options {
        let opt = opt.as_ref();
        if let Some(p) = propagation_flag(opt) {
            o.propagation |= p;
            continue;
        }
        let (set, flag): (bool, libc::c_ulong) = match opt {
            "defaults" => continue,
            "ro" => (true, libc::MS_RDONLY),
            "rw" => (false, libc::MS_RDONLY),
            "suid" => (false, libc::MS_NOSUID),
            "nosuid" => (true, libc::MS_NOSUID),
            "dev" => (false, libc::MS_NODEV),
            "nodev" => (true, libc::MS_NODEV),
            "exec" => (false, libc::MS_NOEXEC),
            "noexec" => (true, libc::MS_NOEXEC),
            "sync" => (true, libc::MS_SYNCHRONOUS),
            "async" => (false, libc::MS_SYNCHRONOUS),
            "dirsync" => (true, libc::MS_DIRSYNC),
            "remount" => (true, libc::MS_REMOUNT),
            "mand" => (true, libc::MS_MANDLOCK),
            "nomand" => (false, libc::MS_MANDLOCK),
            "atime" => (false, libc::MS_NOATIME),
            "noatime" => (true, libc::MS_NOATIME),
            "diratime" => (false, libc::MS_NODIRATIME),
            "nodiratime" => (true, libc::MS_NODIRATIME),
            "relatime" => (true, libc::MS_RELATIME),
            "norelatime" => (false, libc::MS_RELATIME),
            "strictatime" => (true, libc::MS_STRICTATIME),
            "nostrictatime" => (false, libc::MS_STRICTATIME),
            "iversion" => (true, libc::MS_I_VERSION),
            "noiversion" => (false, libc::MS_I_VERSION),
            "lazytime" => (true, libc::MS_LAZYTIME),
            "nolazytime" => (false, libc::MS_LAZYTIME),
            "silent" => (true, libc::MS_SILENT),
            "loud" => (false, libc::MS_SILENT),
            "bind" => {
                o.bind = true;
                (true, libc::MS_BIND)
            }
            "rbind" => {
                o.bind = true;
                (true, libc::MS_BIND | libc::MS_REC)
            }
            // runc-only or id-mapping options that have no mount(2) meaning here.
            "tmpcopyup" | "idmap" | "ridmap" | "rro" | "rrw" | "rnosuid" | "rnodev" | "rnoexec" => continue,
            _ => {
                if !o.data.is_empty() {
                    o.data.push(',');
                }
                o.data.push_str(opt);
                continue;
            }
        };
        if set {
            o.flags |= flag;
            o.cleared &= !flag;
        } else {
            o.flags &= !flag;
            o.cleared |= flag;
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse_options(&["nosuid", "rbind", "ro", "rslave", "mode=755", "size=1k"]);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY);
        assert_eq!(o.propagation, libc::MS_SLAVE | libc::MS_REC);
        assert_eq!(o.data, "mode=755,size=1k");
        assert!(o.bind);
        let o = parse_options(&["remount", "private"]);
        assert_eq!(o.flags, libc::MS_REMOUNT);
        assert_eq!(o.propagation, libc::MS_PRIVATE);
    }
}
