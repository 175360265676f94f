//! Leaving the initramfs rootfs (which cannot be pivot_root'ed away) for a tmpfs.

/// If `/` is the initramfs rootfs, move its contents into a fresh tmpfs, make it `/` and re-exec
/// `/proc/self/exe`-equivalent init with the same argv. Returns Ok(false) if no switch was needed.
pub fn maybe_switch() -> Result<bool, String> {
    Ok(false)
}
