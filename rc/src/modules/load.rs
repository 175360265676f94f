//! Putting one module file into the kernel: finit_module(2), compressed files decompressed by the kernel.

use crate::error::Error;
use std::os::fd::AsRawFd;
use std::path::Path;

/// finit_module flag: the file is compressed, the kernel decompresses it (Linux >= 6.4; older ones say EINVAL).
pub const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// True if a module of that name is in the kernel (loaded, loading, or built in with parameters).
pub fn is_loaded(name: &str) -> bool {
    Path::new("/sys/module").join(super::dep::normalize(name)).exists()
}

/// True if the file name says it is compressed.
pub fn is_compressed(path: &Path) -> bool {
    let s = path.as_os_str().to_string_lossy();
    s.ends_with(".ko.xz") || s.ends_with(".ko.zst") || s.ends_with(".ko.gz")
}

/// Load one module file with `params`. Ok(true) if loaded now, Ok(false) if it was already there (EEXIST).
pub fn insmod(path: &Path, params: &str) -> Result<bool, Error> {
    let f = std::fs::File::open(path).map_err(|e| Error::io("open", path, &e))?;
    let p = keel_sys::cstring("module parameters", params)?;
    let flags = if is_compressed(path) { MODULE_INIT_COMPRESSED_FILE } else { 0 };
    // SAFETY: the fd is open for the call's duration; p is a valid NUL-terminated string.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), p.as_ptr(), flags) };
    if r == 0 {
        return Ok(true);
    }
    let e = Error::last("finit_module", path);
    match e.raw_errno() {
        Some(libc::EEXIST) => Ok(false),
        _ => Err(e),
    }
}
