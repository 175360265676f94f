//! The hostname, from /etc/hostname (first non-comment word), "keel" when missing.

use crate::error::Error;
use std::path::Path;

/// Used when /etc/hostname is missing or empty.
pub const DEFAULT: &str = "keel";

/// The name /etc/hostname-style content asks for.
pub fn parse(content: &str) -> Option<String> {
    content
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
}

/// Read `file` and set the hostname; returns the name set.
pub fn set_from(file: &Path) -> Result<String, Error> {
    let name = std::fs::read_to_string(file).ok().and_then(|s| parse(&s)).unwrap_or_else(|| DEFAULT.to_string());
    keel_sys::sethostname(&name)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_first_word() {
        assert_eq!(parse("# comment\n\n  box1  \nother\n").as_deref(), Some("box1"));
        assert_eq!(parse(""), None);
        assert_eq!(parse("# only\n"), None);
    }
}
