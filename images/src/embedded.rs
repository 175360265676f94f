//! keel's in-image binary (the multi-call init, also keel-runc) embedded in keel-image at build time (see images/build.rs): present in an installed
//! keel-image (`cargo install --path images`, or any build with `KEEL_EMBED_DIR` / `KEEL_EMBED=build`), absent
//! (empty) in a plain workspace build, which uses build/bin/ instead.

static INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/embed/init"));

/// The embedded static `init`, if any.
pub fn init() -> Option<&'static [u8]> {
    (!INIT.is_empty()).then_some(INIT)
}
