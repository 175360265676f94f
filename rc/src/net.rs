//! Bring the loopback interface up (SIOCSIFFLAGS on "lo"; no external tool).

use crate::error::Error;

/// Set IFF_UP on `lo`.
pub fn loopback_up() -> Result<(), Error> {
    if_up("lo")
}

/// Set IFF_UP on interface `name`.
pub fn if_up(name: &str) -> Result<(), Error> {
    // SAFETY: plain socket(2) call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Error::last("socket", name));
    }
    let r = set_up(fd, name);
    // SAFETY: fd is ours and open.
    unsafe { libc::close(fd) };
    r
}

fn set_up(fd: libc::c_int, name: &str) -> Result<(), Error> {
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let b = name.as_bytes();
    if b.len() >= req.ifr_name.len() {
        return Err(Error::errno("ioctl SIOCGIFFLAGS", name, libc::EINVAL));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(b) {
        *d = libc::c_char::from_ne_bytes([*s]);
    }
    // SAFETY: fd is a valid socket and req a valid ifreq with a NUL-terminated name.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return Err(Error::last("ioctl SIOCGIFFLAGS", name));
    }
    // SAFETY: the kernel filled ifru_flags for SIOCGIFFLAGS.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & IFF_UP != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | IFF_UP;
    // SAFETY: as above.
    if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req) } < 0 {
        return Err(Error::last("ioctl SIOCSIFFLAGS", name));
    }
    Ok(())
}

/// IFF_UP (1) as the ifreq's c_short flags field.
const IFF_UP: libc::c_short = {
    assert!(libc::IFF_UP > 0 && libc::IFF_UP <= libc::c_short::MAX as libc::c_int);
    #[allow(clippy::cast_possible_truncation)] // checked just above, at compile time
    let f = libc::IFF_UP as libc::c_short;
    f
};
