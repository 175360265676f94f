//! The kernel command line, parsed once.

/// Parsed /proc/cmdline.
#[derive(Debug, Clone, Default)]
pub struct Cmdline {
    /// Every `key` or `key=value` word, in order (quotes removed).
    pub params: Vec<(String, Option<String>)>,
}

impl Cmdline {
    /// Parse a command line string.
    pub fn parse(s: &str) -> Cmdline {
        let params = s
            .split_whitespace()
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.trim_matches('"').to_string())),
                None => (w.to_string(), None),
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

    /// Every `console=` device name (without options), in order; the last is /dev/console.
    pub fn consoles(&self) -> Vec<String> {
        self.params
            .iter()
            .filter(|(k, _)| k == "console")
            .filter_map(|(_, v)| v.as_deref())
            .map(|v| v.split(',').next().unwrap_or(v).to_string())
            .collect()
    }
}
