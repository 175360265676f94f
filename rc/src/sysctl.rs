//! sysctls from /etc/sysctl.d/*.conf and /etc/sysctl.conf (procps' format) written to /proc/sys.

use crate::error::Error;
use crate::sys;
use std::path::{Path, PathBuf};

/// One setting from a sysctl file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Key as written (dots or slashes).
    pub key: String,
    /// Value, trimmed.
    pub value: String,
    /// A leading '-' on the key: errors are ignored (procps/systemd convention).
    pub ignore_errors: bool,
    /// Where it came from (file, 1-based line).
    pub origin: (PathBuf, usize),
}

impl Setting {
    /// The /proc/sys file for this key: `net.ipv4.ip_forward` -> /proc/sys/net/ipv4/ip_forward.
    /// Keys with '/' are taken as paths already (then dots stay, as in `net/ipv4/conf/eth0.100/forwarding`).
    pub fn proc_path(&self) -> PathBuf {
        let rel = if self.key.contains('/') { self.key.clone() } else { self.key.replace('.', "/") };
        Path::new("/proc/sys").join(rel.trim_start_matches('/'))
    }
}

/// Parse one file's content. Comments start with '#' or ';'; malformed lines are errors for that line only.
pub fn parse(path: &Path, content: &str) -> (Vec<Setting>, Vec<Error>) {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for (i, raw) in content.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        match l.split_once('=') {
            Some((k, v)) if !k.trim().trim_start_matches('-').is_empty() => {
                let k = k.trim();
                let ignore_errors = k.starts_with('-');
                out.push(Setting {
                    key: k.trim_start_matches('-').trim().to_string(),
                    value: v.trim().to_string(),
                    ignore_errors,
                    origin: (path.to_path_buf(), i + 1),
                });
            }
            _ => errs.push(Error::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                msg: format!("not key = value: {l:?}"),
            }),
        }
    }
    (out, errs)
}

/// The files to read under `root`, in order: /etc/sysctl.d/*.conf by name, then /etc/sysctl.conf (last wins).
pub fn files(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("etc/sysctl.d"))
        .map(|d| {
            d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "conf")).collect()
        })
        .unwrap_or_default();
    v.sort();
    let main = root.join("etc/sysctl.conf");
    if main.exists() {
        v.push(main);
    }
    v
}

/// Apply every setting found under `root`; returns (applied count, errors). Errors of `-key` lines are dropped.
pub fn apply(root: &Path) -> (usize, Vec<Error>) {
    let mut n = 0;
    let mut errs = Vec::new();
    for f in files(root) {
        let content = match std::fs::read_to_string(&f) {
            Ok(c) => c,
            Err(e) => {
                errs.push(Error::io("read", &f, &e));
                continue;
            }
        };
        let (settings, perrs) = parse(&f, &content);
        errs.extend(perrs);
        for s in settings {
            match sys::write_file(&s.proc_path(), s.value.as_bytes()) {
                Ok(()) => n += 1,
                Err(_) if s.ignore_errors => {}
                Err(e) => errs.push(e.into()),
            }
        }
    }
    (n, errs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sysctl_files() {
        let p = Path::new("/etc/sysctl.conf");
        let (s, e) = parse(
            p,
            "# c\n; c\n\nnet.ipv4.ip_forward = 1\n  -kernel.foo=bar baz \nnet/ipv4/conf/eth0.100/forwarding=0\nbroken\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].key, "net.ipv4.ip_forward");
        assert_eq!(s[0].value, "1");
        assert_eq!(s[0].proc_path(), PathBuf::from("/proc/sys/net/ipv4/ip_forward"));
        assert!(s[1].ignore_errors);
        assert_eq!(s[1].value, "bar baz");
        assert_eq!(s[1].origin.1, 5);
        assert_eq!(s[2].proc_path(), PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding"));
        assert_eq!(e.len(), 1);
        assert!(e[0].to_string().contains(":7:"), "{}", e[0]);
    }

    #[test]
    fn file_order() {
        let d = std::env::temp_dir().join(format!("keel-rc-sysctl-{}", std::process::id()));
        let _ = std::fs::create_dir_all(d.join("etc/sysctl.d"));
        for f in ["etc/sysctl.d/20-b.conf", "etc/sysctl.d/10-a.conf", "etc/sysctl.d/x.txt", "etc/sysctl.conf"] {
            let _ = std::fs::write(d.join(f), "");
        }
        let v: Vec<String> =
            files(&d).iter().map(|p| p.strip_prefix(&d).map(|x| x.display().to_string()).unwrap_or_default()).collect();
        assert_eq!(v, ["etc/sysctl.d/10-a.conf", "etc/sysctl.d/20-b.conf", "etc/sysctl.conf"]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
