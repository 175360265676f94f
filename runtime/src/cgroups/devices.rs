//! Device cgroup: `linux.resources.devices` plus runc's default allow list, reduced to one effective rule set the
//! way runc's emulator does (libcontainer/cgroups/devices), then enforced by the v1 `devices` controller
//! (devices.deny / devices.allow) and, on cgroup2, by a BPF_CGROUP_DEVICE program (bpf.rs).
//!
//! Semantics (runc's, which are cgroup v1's): rules apply in order; an `a` rule (type absent or "a") resets
//! everything to allow-all or deny-all whatever its access; the state starts deny-all; a `b`/`c` rule with the
//! action opposite to the current default adds an exception (access bits merged), one with the default action
//! removes access from the exception with exactly that type/major/minor; removing access that a wildcard exception
//! still grants is an error (v1 would silently ignore it: runc refuses it). A request is allowed in deny-all mode
//! when one exception covers its type, major, minor and every access bit it asks for; in allow-all mode it is
//! denied when any exception matches its type, major, minor and any of its access bits.

use std::collections::BTreeMap;
use std::path::Path;

use keel_sys::Errno;

use super::LinuxDeviceCgroup;
use crate::Error;

/// Access bits, numerically the kernel's BPF_DEVCG_ACC_* (the program compares them directly).
pub const ACC_MKNOD: u8 = 1;
pub const ACC_READ: u8 = 2;
pub const ACC_WRITE: u8 = 4;
pub const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Device type of a rule. Declared in runc's sort order ('b' < 'c').
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    All,
    Block,
    Char,
}

impl Kind {
    pub fn letter(self) -> char {
        match self {
            Kind::All => 'a',
            Kind::Block => 'b',
            Kind::Char => 'c',
        }
    }
}

/// One device cgroup rule. `None` major/minor is the wildcard (`*`, -1 or absent in the spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

/// "rwm" order, as v1 prints them.
pub fn access_string(bits: u8) -> String {
    let mut s = String::with_capacity(3);
    for (b, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
        if bits & b != 0 {
            s.push(c);
        }
    }
    s
}

fn parse_access(s: &str) -> Result<u8, Error> {
    let mut bits = 0;
    for c in s.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return Err(Error::invalid(format!("access {s:?}: {c:?} is not one of r, w, m"))),
        };
    }
    if bits == 0 {
        return Err(Error::invalid("access must not be empty"));
    }
    Ok(bits)
}

fn num(v: Option<i64>, what: &str) -> Result<Option<u32>, Error> {
    match v {
        None | Some(-1) => Ok(None),
        Some(n) => {
            u32::try_from(n).map(Some).map_err(|_| Error::invalid(format!("{what} {n} is neither -1 nor a u32")))
        }
    }
}

impl Rule {
    const fn allow_char(major: Option<u32>, minor: Option<u32>, access: u8) -> Rule {
        Rule { allow: true, kind: Kind::Char, major, minor, access }
    }

    /// A rule of `linux.resources.devices` (runc's specconv: type defaults to "a", major/minor to -1; access must
    /// not be empty).
    pub fn from_spec(d: &LinuxDeviceCgroup) -> Result<Rule, Error> {
        let kind = match d.kind.as_deref().unwrap_or("") {
            "" | "a" => Kind::All,
            "b" => Kind::Block,
            "c" => Kind::Char,
            t => return Err(Error::invalid(format!("type {t:?} is not a, b or c"))),
        };
        let access = parse_access(d.access.as_deref().unwrap_or(""))?;
        Ok(Rule { allow: d.allow, kind, major: num(d.major, "major")?, minor: num(d.minor, "minor")?, access })
    }

    /// The v1 form: "c 1:3 rwm", "a *:* rwm".
    pub fn cgroup_string(&self) -> String {
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        format!("{} {}:{} {}", self.kind.letter(), n(self.major), n(self.minor), access_string(self.access))
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", if self.allow { "allow" } else { "deny" }, self.cgroup_string())
    }
}

/// runc's `AllowedDevices` (libcontainer/specconv), appended after the config's rules for every container: mknod of
/// any char or block device, /dev/null, /dev/random, /dev/full, /dev/tty, /dev/zero, /dev/urandom, /dev/pts/*,
/// /dev/ptmx, /dev/net/tun. (Not /dev/console: with a terminal it is a /dev/pts/N bind.)
pub const DEFAULT_ALLOWED: [Rule; 11] = [
    Rule::allow_char(None, None, ACC_MKNOD),
    Rule { allow: true, kind: Kind::Block, major: None, minor: None, access: ACC_MKNOD },
    Rule::allow_char(Some(1), Some(3), ACC_ALL),
    Rule::allow_char(Some(1), Some(8), ACC_ALL),
    Rule::allow_char(Some(1), Some(7), ACC_ALL),
    Rule::allow_char(Some(5), Some(0), ACC_ALL),
    Rule::allow_char(Some(1), Some(5), ACC_ALL),
    Rule::allow_char(Some(1), Some(9), ACC_ALL),
    Rule::allow_char(Some(136), None, ACC_ALL),
    Rule::allow_char(Some(5), Some(2), ACC_ALL),
    Rule::allow_char(Some(10), Some(200), ACC_ALL),
];

/// The match part of an exception; field order is runc's sort order (major, minor, type; wildcard first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Meta {
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub kind: Kind,
}

/// The effective device policy: a default and exceptions (runc's emulator; the v1 kernel's own model).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Emulator {
    pub default_allow: bool,
    pub exceptions: BTreeMap<Meta, u8>,
}

impl Emulator {
    /// Apply one rule (see the module doc).
    pub fn apply(&mut self, r: &Rule) -> Result<(), Error> {
        if r.kind == Kind::All {
            *self = Emulator { default_allow: r.allow, exceptions: BTreeMap::new() };
            return Ok(());
        }
        let meta = Meta { major: r.major, minor: r.minor, kind: r.kind };
        if r.allow != self.default_allow {
            *self.exceptions.entry(meta).or_insert(0) |= r.access;
            return Ok(());
        }
        // Remove access from the exact exception; a wildcard exception granting any of it would stay in force.
        for partial in
            [Meta { major: None, ..meta }, Meta { minor: None, ..meta }, Meta { major: None, minor: None, ..meta }]
        {
            if partial == meta {
                continue;
            }
            let p = self.exceptions.get(&partial).copied().unwrap_or(0);
            if p & r.access != 0 {
                let w = Rule { allow: !r.allow, kind: r.kind, major: partial.major, minor: partial.minor, access: p };
                return Err(Error::invalid(format!(
                    "{r} would punch a hole in the wildcard rule {w}, which cgroup v1 cannot do"
                )));
            }
        }
        if let Some(a) = self.exceptions.get_mut(&meta) {
            *a &= !r.access;
            if *a == 0 {
                self.exceptions.remove(&meta);
            }
        }
        Ok(())
    }

    /// The policy for a container: deny-all, the config's rules in order, then runc's defaults. `path` and the
    /// rule index name errors.
    pub fn for_container(rules: &[LinuxDeviceCgroup], path: &Path) -> Result<Emulator, Error> {
        let mut e = Emulator::default();
        for (i, d) in rules.iter().enumerate() {
            let bad = |e: Error| e.at(path, format!("linux.resources.devices[{i}]"));
            let r = Rule::from_spec(d).map_err(bad)?;
            e.apply(&r).map_err(bad)?;
        }
        for r in &DEFAULT_ALLOWED {
            e.apply(r).map_err(|e| Error::Invalid {
                path: path.to_path_buf(),
                field: "linux.resources.devices".into(),
                msg: format!("runc's default rule {r}: {e}"),
            })?;
        }
        Ok(e)
    }

    pub fn is_allow_all(&self) -> bool {
        self.default_allow && self.exceptions.is_empty()
    }

    /// The exceptions as rules with the action opposite to the default, in runc's order.
    pub fn exception_rules(&self) -> impl Iterator<Item = Rule> + '_ {
        self.exceptions.iter().map(|(m, a)| Rule {
            allow: !self.default_allow,
            kind: m.kind,
            major: m.major,
            minor: m.minor,
            access: *a,
        })
    }

    /// What to write to a v1 devices cgroup, in order: (file, rule). First `a *:* rwm` to devices.deny (whatever
    /// the cgroup inherited is dropped), then for an allow-all policy `a *:* rwm` to devices.allow and each deny
    /// exception to devices.deny, else each allow exception to devices.allow. This is runc's transition from a
    /// fresh cgroup (whose inherited state it cannot fully read back either).
    pub fn v1_writes(&self) -> Vec<(&'static str, String)> {
        let mut w = vec![("devices.deny", "a *:* rwm".to_string())];
        if self.default_allow {
            w.push(("devices.allow", "a *:* rwm".to_string()));
        }
        let file = if self.default_allow { "devices.deny" } else { "devices.allow" };
        w.extend(self.exception_rules().map(|r| (file, r.cgroup_string())));
        w
    }

    /// The state a v1 devices.list shows: "a *:* rwm" alone is allow-all (its deny exceptions are not listed);
    /// otherwise each line is an allow exception.
    pub fn from_v1_list(text: &str) -> Result<Emulator, Error> {
        let mut e = Emulator::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let bad = || Error::invalid(format!("devices.list line {line:?} is not \"TYPE MAJOR:MINOR ACCESS\""));
            let f: Vec<&str> = line.split([' ', ':']).collect();
            let [t, ma, mi, acc] = f[..] else { return Err(bad()) };
            let n = |s: &str| if s == "*" { Ok(None) } else { s.parse::<u32>().map(Some).map_err(|_| bad()) };
            let kind = match t {
                "a" => Kind::All,
                "b" => Kind::Block,
                "c" => Kind::Char,
                _ => return Err(bad()),
            };
            e.apply(&Rule { allow: true, kind, major: n(ma)?, minor: n(mi)?, access: parse_access(acc)? })?;
        }
        Ok(e)
    }

    /// The decision for one request (v1's; the BPF program must agree).
    pub fn allows(&self, kind: Kind, major: u32, minor: u32, access: u8) -> bool {
        let hits =
            |m: &Meta| m.kind == kind && m.major.is_none_or(|v| v == major) && m.minor.is_none_or(|v| v == minor);
        if self.default_allow {
            !self.exceptions.iter().any(|(m, a)| hits(m) && a & access != 0)
        } else {
            self.exceptions.iter().any(|(m, a)| hits(m) && access & !a == 0)
        }
    }
}

/// Whether this process runs in a user namespace other than the initial one (runc skips v1 device rules there and
/// tolerates a bpf(2) refusal: such a runtime can create no device nodes that matter).
pub fn in_user_namespace() -> bool {
    static U: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *U.get_or_init(|| {
        let m = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        let f: Vec<&str> = m.split_whitespace().collect();
        !(f.is_empty() || f == ["0", "0", "4294967295"])
    })
}

/// Write the policy into the v1 devices cgroup `dir` (one rule per write(2), as the kernel parses them), then read
/// devices.list back and check the kernel holds exactly that policy (runc's final check).
pub fn apply_v1(e: &Emulator, dir: &Path) -> Result<(), Error> {
    use std::io::Write;
    let sys = |what: String, err: std::io::Error| Error::Sys {
        what,
        errno: Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO)),
    };
    // Each file opened once; every write(2) is one rule.
    let mut files: Vec<(&str, std::fs::File)> = Vec::with_capacity(2);
    for (file, rule) in e.v1_writes() {
        let f = dir.join(file);
        let fd = match files.iter_mut().find(|(n, _)| *n == file) {
            Some((_, fd)) => fd,
            None => {
                let fd = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&f)
                    .map_err(|err| sys(format!("device cgroup v1: open {} for {rule:?}", f.display()), err))?;
                files.push((file, fd));
                &mut files.last_mut().expect("just pushed").1
            }
        };
        fd.write_all(rule.as_bytes())
            .map_err(|err| sys(format!("device cgroup v1: write {rule:?} to {}", f.display()), err))?;
    }
    drop(files);
    let list = dir.join("devices.list");
    let text = std::fs::read_to_string(&list).map_err(|err| Error::Io { what: "read", path: list.clone(), err })?;
    let got = Emulator::from_v1_list(&text).map_err(|e| e.at(&list, "linux.resources.devices"))?;
    let same = if e.default_allow { got.default_allow } else { got == *e };
    if !same {
        return Err(Error::Invalid {
            path: list,
            field: "linux.resources.devices".into(),
            msg: format!("the kernel's device list {:?} is not the policy written ({:?})", text.trim(), e.v1_writes()),
        });
    }
    Ok(())
}

/// Enforce `e` on a container's cgroups, as runc does: on a hybrid host the v1 devices cgroup `v1_dir` (skipped in
/// a user namespace), elsewhere the BPF device program on its cgroup2 directory `v2_dir` (a refusal tolerated only in
/// a user namespace). One enforcement point is enough: the container's processes join the v1 devices cgroup before
/// any of its code runs and its cgroup mounts are its own and read-only, so it cannot leave it; loading a second
/// program would cost every spawn ~0.4 ms of BPF verification for nothing.
pub fn apply(e: &Emulator, v2_dir: &Path, v1_dir: Option<&Path>) -> Result<(), Error> {
    let userns = in_user_namespace();
    if let (Some(d), false) = (v1_dir, userns) {
        return apply_v1(e, d);
    }
    match super::bpf::attach(e, v2_dir) {
        Err(_) if userns => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    /// Docker 20.10's and podman's default: deny all, then the same list runc appends.
    pub(crate) const DOCKER: &str = r#"[{"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
        {"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]"#;

    #[test]
    fn docker_defaults_give_runc_v1_writes() {
        let e = Emulator::for_container(&spec(DOCKER), Path::new("/cg")).unwrap();
        assert!(!e.default_allow);
        let w: Vec<String> = e.v1_writes().into_iter().map(|(f, r)| format!("{f} {r}")).collect();
        assert_eq!(
            w,
            [
                "devices.deny a *:* rwm",
                "devices.allow b *:* m",
                "devices.allow c *:* m",
                "devices.allow c 1:3 rwm",
                "devices.allow c 1:5 rwm",
                "devices.allow c 1:7 rwm",
                "devices.allow c 1:8 rwm",
                "devices.allow c 1:9 rwm",
                "devices.allow c 5:0 rwm",
                "devices.allow c 5:1 rwm",
                "devices.allow c 5:2 rwm",
                "devices.allow c 10:200 rwm",
                "devices.allow c 136:* rwm",
            ]
        );
        assert!(!e.allows(Kind::Char, 1, 11, ACC_WRITE), "/dev/kmsg");
        assert!(e.allows(Kind::Char, 1, 11, ACC_MKNOD), "mknod of anything");
        assert!(!e.allows(Kind::Block, 7, 0, ACC_READ), "a loop disk");
        assert!(e.allows(Kind::Char, 1, 3, ACC_READ | ACC_WRITE));
        assert!(e.allows(Kind::Char, 136, 4, ACC_READ | ACC_WRITE));
        assert!(!e.allows(Kind::Block, 136, 4, ACC_READ));
    }

    #[test]
    fn no_rules_is_deny_all_but_the_defaults() {
        // runc appends its defaults to an empty list too: never allow-all.
        let e = Emulator::for_container(&[], Path::new("/cg")).unwrap();
        assert!(!e.default_allow);
        assert_eq!(e.exceptions.len(), DEFAULT_ALLOWED.len());
        assert!(!e.allows(Kind::Char, 1, 1, ACC_READ), "/dev/mem");
    }

    #[test]
    fn a_rules_reset_and_order_matters() {
        // Privileged: allow all; runc's defaults (allow) change nothing in allow-all mode.
        let e = Emulator::for_container(&spec(r#"[{"allow": true, "access": "rwm"}]"#), Path::new("/cg")).unwrap();
        assert!(e.is_allow_all());
        assert_eq!(e.v1_writes(), [("devices.deny", "a *:* rwm".into()), ("devices.allow", "a *:* rwm".into())]);
        // An allow before a deny-all is gone; the access of an "a" rule does not matter.
        let e = Emulator::for_container(
            &spec(r#"[{"allow": true, "type": "b", "major": 8, "access": "rw"}, {"allow": false, "access": "r"}]"#),
            Path::new("/cg"),
        )
        .unwrap();
        assert!(!e.allows(Kind::Block, 8, 0, ACC_READ));
        // Deny after allow removes access bits; the exception stays with what is left.
        let e = Emulator::for_container(
            &spec(
                r#"[{"allow": false, "access": "rwm"}, {"allow": true, "type": "b", "major": 8, "minor": 0, "access": "rwm"},
                    {"allow": false, "type": "b", "major": 8, "minor": 0, "access": "w"}]"#,
            ),
            Path::new("/cg"),
        )
        .unwrap();
        assert!(e.allows(Kind::Block, 8, 0, ACC_READ));
        assert!(!e.allows(Kind::Block, 8, 0, ACC_READ | ACC_WRITE));
        // Blacklist: a deny exception matching any asked bit denies (v1's partial match).
        let e = Emulator::for_container(
            &spec(r#"[{"allow": true, "access": "rwm"}, {"allow": false, "type": "c", "major": 1, "minor": 11, "access": "w"}]"#),
            Path::new("/cg"),
        )
        .unwrap();
        assert!(e.allows(Kind::Char, 1, 11, ACC_READ));
        assert!(!e.allows(Kind::Char, 1, 11, ACC_READ | ACC_WRITE));
        assert_eq!(e.v1_writes().last().unwrap(), &("devices.deny", "c 1:11 w".into()));
    }

    #[test]
    fn hole_punching_and_bad_rules_are_errors_naming_the_rule() {
        let p = Path::new("/sys/fs/cgroup/x");
        let e = Emulator::for_container(
            &spec(
                r#"[{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 4, "access": "rw"},
                      {"allow": false, "type": "c", "major": 4, "minor": 1, "access": "w"}]"#,
            ),
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("devices[2]") && e.contains("c 4:1 w") && e.contains("/sys/fs/cgroup/x"), "{e}");
        for bad in [
            r#"[{"allow": true, "type": "c", "access": ""}]"#,
            r#"[{"allow": true, "type": "c", "access": "rwx"}]"#,
            r#"[{"allow": true, "type": "u", "access": "r"}]"#,
            r#"[{"allow": true, "type": "c", "major": -2, "access": "r"}]"#,
        ] {
            let e = Emulator::for_container(&spec(bad), p).unwrap_err().to_string();
            assert!(e.contains("linux.resources.devices[0]"), "{e}");
        }
    }

    #[test]
    fn v1_list_round_trip() {
        let e = Emulator::for_container(&spec(DOCKER), Path::new("/cg")).unwrap();
        let list: String = e.exception_rules().map(|r| r.cgroup_string() + "\n").collect();
        assert_eq!(Emulator::from_v1_list(&list).unwrap(), e);
        assert!(Emulator::from_v1_list("a *:* rwm\n").unwrap().is_allow_all());
        assert!(Emulator::from_v1_list("c 1:3\n").is_err());
    }
}
