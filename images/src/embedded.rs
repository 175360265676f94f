//! keel's in-image binaries embedded in keel-image at build time (see images/build.rs): present in an installed
//! keel-image (`cargo install --path images`, or any build with `KEEL_EMBED_DIR` / `KEEL_EMBED=build`), absent
//! (empty) in a plain workspace build, which uses build/bin/ instead.

static INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/embed/init"));
static KEEL_RUNC: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/embed/keel-runc"));

/// The embedded static `init`, if any.
pub fn init() -> Option<&'static [u8]> {
    (!INIT.is_empty()).then_some(INIT)
}

/// The embedded static `keel-runc`, if any.
pub fn keel_runc() -> Option<&'static [u8]> {
    (!KEEL_RUNC.is_empty()).then_some(KEEL_RUNC)
}
