//! The kernel command line, parsed once.

use std::collections::BTreeMap;

/// Parsed /proc/cmdline.
#[derive(Debug, Clone, Default)]
pub struct Cmdline {
    /// Every `key` or `key=value` word, in order (quotes removed).
    pub params: Vec<(String, Option<String>)>,
}

impl Cmdline {
    /// Parse a command line string. Double quotes group words (`key="a b"`) and are removed, as the kernel does.
    pub fn parse(s: &str) -> Cmdline {
        let params = words(s)
            .into_iter()
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w, None),
            })
            .collect();
        Cmdline { params }
    }

    /// Read /proc/cmdline (proc must be mounted); empty on error.
    pub fn read() -> Cmdline {
        Cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
    }

    /// Last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.iter().rev().find(|(k, _)| k == key).and_then(|(_, v)| v.as_deref())
    }

    /// True if `key` appears at all (with or without a value).
    pub fn has(&self, key: &str) -> bool {
        self.params.iter().any(|(k, _)| k == key)
    }

    /// Every `console=` device name (without options), in order; the last is /dev/console.
    pub fn consoles(&self) -> Vec<String> {
        self.params
            .iter()
            .filter(|(k, _)| k == "console")
            .filter_map(|(_, v)| v.as_deref())
            .map(|v| v.split(',').next().unwrap_or(v).to_string())
            .collect()
    }

    /// Every `keel.*` parameter, keyed by its full name (`keel.debug`); the last occurrence wins; a bare key maps
    /// to "".
    pub fn keel(&self) -> BTreeMap<String, String> {
        self.params
            .iter()
            .filter(|(k, _)| k.starts_with("keel.") && k.len() > "keel.".len())
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
            .collect()
    }

    /// `quiet` was given: keep the console to warnings and errors.
    pub fn quiet(&self) -> bool {
        self.has("quiet")
    }
}

/// Split on whitespace outside double quotes; quotes are removed.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                in_q = !in_q;
                any = true;
            }
            c if c.is_whitespace() && !in_q => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_words_values_and_quotes() {
        let c = Cmdline::parse(
            "BOOT_IMAGE=/vmlinuz console=tty0 console=ttyS0,115200n8 quiet keel.debug keel.x=1 keel.x=2 \
             keel.msg=\"hello world\" init=/init ro\n",
        );
        assert_eq!(c.get("BOOT_IMAGE"), Some("/vmlinuz"));
        assert_eq!(c.consoles(), ["tty0", "ttyS0"]);
        assert!(c.quiet());
        assert!(c.has("ro"));
        assert_eq!(c.get("ro"), None);
        let k = c.keel();
        assert_eq!(k.get("keel.debug").map(String::as_str), Some(""));
        assert_eq!(k.get("keel.x").map(String::as_str), Some("2"));
        assert_eq!(k.get("keel.msg").map(String::as_str), Some("hello world"));
        assert_eq!(k.len(), 3);
        assert!(!Cmdline::parse("console=ttyS0").quiet());
        assert!(Cmdline::parse("").params.is_empty());
    }
}
