//! keel-image: turns a LinuxKit-style image YAML into a kernel + initramfs (cpio.gz) + cmdline, and boots it in QEMU.
//!
//! One file per concern: [`yaml`] (schema), [`config`] (container entry -> OCI config.json + runtime.json with
//! LinuxKit's defaults), [`spec`] (those two files as types), [`sources`] (busybox / oci: / docker-archive: / rootfs: image sources), [`files`]
//! (`files:`), [`reference`], [`registry`], [`auth`], [`cache`] and [`progress`] (pulling by registry reference into
//! LinuxKit's cache layout, verified), [`tree`] (the in-memory file tree everything is assembled in), [`cpio`] (newc writer),
//! [`kernel`] (Debian kernel fetch, modules and their index), [`layout`] (keel's in-image layout), [`build`]
//! (orchestration) and [`run`] (QEMU runner).

pub mod auth;
pub mod build;
pub mod cache;
pub mod config;
pub mod cpio;
pub mod embedded;
pub mod files;
pub mod kernel;
pub mod label;
pub mod layout;
pub mod modindex;
pub mod outputs;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod run;
pub mod sources;
pub mod spec;
pub mod test_registry;
pub mod testutil;
pub mod tree;
pub mod yaml;

use std::fmt;

/// Every error keel-image reports; each names what failed and where.
#[derive(Debug)]
pub enum Error {
    /// Bad image YAML (message carries file and line).
    Yaml(String),
    /// A container entry that cannot be turned into a config (names the container).
    Config(String),
    /// An image source that cannot be read (names container and source).
    Source(String),
    /// An I/O error on a path.
    Io { what: String, path: String, err: std::io::Error },
    /// The kernel could not be fetched or unpacked.
    Kernel(String),
    /// A command we ran failed.
    Command(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Yaml(m) => write!(f, "invalid image definition: {m}"),
            Error::Config(m) => write!(f, "{m}"),
            Error::Source(m) => write!(f, "{m}"),
            Error::Io { what, path, err } => write!(f, "{what} {path}: {err}"),
            Error::Kernel(m) => write!(f, "kernel: {m}"),
            Error::Command(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Build an [`Error::Io`] closure: `.map_err(io("reading", &path))`.
pub fn io<P: AsRef<std::path::Path>>(what: &str, path: P) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.to_string();
    let path = path.as_ref().display().to_string();
    move |err| Error::Io { what, path, err }
}

/// `data` as JSON of type `T` (`kind` says what it should be: "image index", ...). Errors name `what`, the line,
/// column and field path (`index.json: bad image index: line 3 column 13: manifests[0].digest: invalid type ...`).
pub fn parse_json<T: serde::de::DeserializeOwned>(data: &[u8], what: &str, kind: &str) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (line, col) = (inner.line(), inner.column());
        // serde_json's message ends in " at line L column C": the position goes first instead.
        let msg = inner.to_string();
        let msg = msg.rfind(" at line ").map_or(msg.as_str(), |i| &msg[..i]).to_string();
        // "?" is serde_path_to_error's unknown segment (a syntax error between fields): no field then.
        let path = path.trim_end_matches(".?");
        let field = if matches!(path, "" | "." | "?") { String::new() } else { format!("{path}: ") };
        Error::Source(format!("{what}: bad {kind}: line {line} column {col}: {field}{msg}"))
    })
}
