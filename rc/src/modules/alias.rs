//! modules.alias: `alias PATTERN MODULE` lines, glob patterns (fnmatch-style `*`, `?`, `[...]`) matched against
//! what the kernel or a device asks for (`fs-overlay`, `pci:v00001AF4d00001000...`).

use std::collections::HashMap;

/// Normalise an alias as kmod does: '-' becomes '_' outside bracket expressions (module names use '_').
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_br = false;
    for c in s.chars() {
        match c {
            '[' => in_br = true,
            ']' => in_br = false,
            '-' if !in_br => {
                out.push('_');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// fnmatch(3) without flags: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`/`[^x]`; everything else literal.
pub fn glob_match(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None; // (pattern index after '*', text index it matched up to)
    while ti < t.len() {
        let tc = t.get(ti).copied().unwrap_or('\0');
        match p.get(pi).copied() {
            Some('*') => {
                star = Some((pi + 1, ti));
                pi += 1;
                continue;
            }
            Some('?') => {
                pi += 1;
                ti += 1;
                continue;
            }
            Some('[') => {
                if let Some((matched, next)) = class(&p, pi, tc) {
                    if matched {
                        pi = next;
                        ti += 1;
                        continue;
                    }
                } else if tc == '[' {
                    // unterminated '[' is literal
                    pi += 1;
                    ti += 1;
                    continue;
                }
            }
            Some(c) if c == tc => {
                pi += 1;
                ti += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                pi = sp;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while p.get(pi) == Some(&'*') {
        pi += 1;
    }
    pi == p.len()
}

/// Match `c` against the bracket expression starting at `p[start] == '['`. Returns (matched, index after ']'),
/// or None if the bracket is not terminated.
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|h| *h != ']') {
            let hi = *p.get(i + 2)?;
            if lo <= c && c <= hi {
                matched = true;
            }
            i += 3;
        } else {
            if lo == c {
                matched = true;
            }
            i += 1;
        }
    }
}

/// The parsed alias table, indexed by the literal part before the first ':' (the bus: `pci`, `usb`, `virtio`),
/// so a device's modalias is matched only against its bus's patterns plus the few with a wildcard prefix.
#[derive(Debug, Default, Clone)]
pub struct Aliases {
    entries: Vec<(String, String)>,
    by_key: HashMap<String, Vec<usize>>,
    wild: Vec<usize>,
}

fn key_of(s: &str) -> &str {
    s.split(':').next().unwrap_or(s)
}

fn has_wild(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl Aliases {
    /// Parse modules.alias text (`alias PATTERN MODULE`; other lines ignored).
    pub fn parse(content: &str) -> Aliases {
        let mut a = Aliases::default();
        for l in content.lines() {
            let mut w = l.split_whitespace();
            if w.next() != Some("alias") {
                continue;
            }
            if let (Some(p), Some(m)) = (w.next(), w.next()) {
                a.push(p, m);
            }
        }
        a
    }

    /// Add one alias.
    pub fn push(&mut self, pattern: &str, module: &str) {
        let p = normalize(pattern);
        let idx = self.entries.len();
        let k = key_of(&p);
        if has_wild(k) {
            self.wild.push(idx);
        } else {
            self.by_key.entry(k.to_string()).or_default().push(idx);
        }
        self.entries.push((p, super::dep::normalize(module)));
    }

    /// Number of aliases.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every module whose pattern matches `alias`, in file order, without duplicates.
    pub fn lookup(&self, alias: &str) -> Vec<String> {
        let a = normalize(alias);
        let mut idx: Vec<usize> = self.by_key.get(key_of(&a)).cloned().unwrap_or_default();
        idx.extend(self.wild.iter().copied());
        idx.sort_unstable();
        let mut out: Vec<String> = Vec::new();
        for i in idx {
            if let Some((p, m)) = self.entries.get(i) {
                if !out.contains(m) && glob_match(p, &a) {
                    out.push(m.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("fs-overlay", "fs-overlay"));
        assert!(!glob_match("fs-overlay", "fs-overlayx"));
        assert!(glob_match(
            "pci:v00001AF4d00001000sv*sd*bc*sc*i*",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
        assert!(!glob_match(
            "pci:v00001AF4d00001001sv*sd*bc*sc*i*",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(glob_match(
            "usb:v*p*d*dc*dsc*dp*ic03isc01ip0[12]in*",
            "usb:v0627p0001d0000dc00dsc00dp00ic03isc01ip02in00"
        ));
        assert!(!glob_match("x[12]", "x3"));
        assert!(glob_match("x[!12]", "x3"));
        assert!(glob_match("x[^12]", "x3"));
        assert!(glob_match("x[a-f]y", "xcy"));
        assert!(!glob_match("x[a-f]y", "xgy"));
        assert!(glob_match("x[]]", "x]"));
        assert!(glob_match("x[a-]", "x-"));
        assert!(glob_match("x[", "x["), "unterminated bracket is literal");
        assert!(glob_match("acpi*:PNP0A03:*", "acpi:PNP0A03:"));
    }

    #[test]
    fn lookup_normalises_and_uses_wild_prefixes() {
        let a = Aliases::parse(
            "# comment\nalias fs-overlay overlay\nalias pci:v00001AF4d*sv*sd*bc*sc*i* virtio-pci\n\
             alias acpi*:PNP0A03:* pci_root\nalias pci:v*d*sv*sd*bc01sc01i* ata_generic\nalias pci:v00001AF4d* virtio_pci\n",
        );
        assert_eq!(a.len(), 5);
        assert_eq!(a.lookup("fs-overlay"), ["overlay"]);
        assert_eq!(a.lookup("fs_overlay"), ["overlay"]);
        assert_eq!(a.lookup("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"), ["virtio_pci"]);
        assert_eq!(a.lookup("acpi:PNP0A03:"), ["pci_root"]);
        assert_eq!(a.lookup("pci:v00008086d00007010sv0sd0bc01sc01i80"), ["ata_generic"]);
        assert!(a.lookup("fs-nothing").is_empty());
        assert_eq!(normalize("char-major-10-[1-3]"), "char_major_10_[1-3]");
    }
}
