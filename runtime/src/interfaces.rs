//! LinuxKit runtime.json `interfaces`, parent side, over rtnetlink (no `ip` binary needed): create a link (a veth
//! pair when `peer` is set, else the kind in `add`) in the host and move it into the container's network
//! namespace, create it directly in the container's namespace, or move an existing host link there. Same rules as
//! LinuxKit's prepare.go: a peer implies veth; veth and createInRoot create in the host first, then move.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::runtime_json::Interface;
use crate::Error;

const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;

/// A netlink message under construction: nlmsghdr + ifinfomsg + attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16, index: i32) -> Msg {
        let mut m = Msg(Vec::with_capacity(256));
        m.0.extend_from_slice(&[0; 16]); // nlmsghdr, filled in by finish()
        m.ifinfo(index);
        m.0[4..6].copy_from_slice(&kind.to_ne_bytes());
        m.0[6..8].copy_from_slice(&(flags | libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16).to_ne_bytes());
        m.0[8..12].copy_from_slice(&1u32.to_ne_bytes());
        m
    }
    fn ifinfo(&mut self, index: i32) {
        // struct ifinfomsg { u8 family, u8 pad, u16 type, i32 index, u32 flags, u32 change }
        let mut b = [0u8; 16];
        b[4..8].copy_from_slice(&index.to_ne_bytes());
        self.0.extend_from_slice(&b);
    }
    fn align(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }
    fn attr(&mut self, kind: u16, data: &[u8]) {
        self.0.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.align();
    }
    fn str_attr(&mut self, kind: u16, s: &str) {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(kind, &d);
    }
    /// Start a nested attribute; returns its offset for `end_nest`.
    fn nest(&mut self, kind: u16) -> usize {
        let at = self.0.len();
        self.0.extend_from_slice(&0u16.to_ne_bytes());
        self.0.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }
    fn end_nest(&mut self, at: usize) {
        let len = (self.0.len() - at) as u16;
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }
    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

fn sys(what: String) -> Error {
    Error::Sys { what, errno: keel_sys::Errno::last() }
}

/// Send one request and wait for its ack.
fn request(sock: &OwnedFd, msg: Vec<u8>, what: &str) -> Result<(), Error> {
    // SAFETY: msg is a valid buffer; the socket is ours.
    if unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) } < 0 {
        return Err(sys(format!("{what}: netlink send")));
    }
    let mut buf = [0u8; 4096];
    // SAFETY: reading into a valid buffer.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 20 {
        return Err(sys(format!("{what}: netlink recv")));
    }
    let kind = u16::from_ne_bytes([buf[4], buf[5]]);
    if kind == libc::NLMSG_ERROR as u16 {
        let err = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if err != 0 {
            return Err(Error::Sys { what: what.to_string(), errno: keel_sys::Errno(-err) });
        }
    }
    Ok(())
}

fn index_of(name: &str) -> Result<i32, Error> {
    let c = keel_sys::cstring(&format!("runtime.json interface {name}"), name)?;
    // SAFETY: valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(sys(format!("runtime.json interface {name}: cannot find it")));
    }
    Ok(i as i32)
}

/// Set up every interface of runtime.json for the container process `pid`.
pub fn setup(ifaces: &[Interface], pid: i32) -> Result<(), Error> {
    if ifaces.is_empty() {
        return Ok(());
    }
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(sys("netlink socket".into()));
    }
    // SAFETY: fresh fd we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // The target namespace by fd: immune to pid reuse.
    let ns_path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&ns_path).map_err(|err| Error::Io { what: "open", path: ns_path.into(), err })?;
    let ns_fd = ns.as_raw_fd() as u32;
    for i in ifaces {
        if i.name.is_empty() {
            return Err(Error::Invalid {
                path: "runtime.json".into(),
                field: "interfaces[].name".into(),
                msg: "an interface needs a name".into(),
            });
        }
        let add = if !i.peer.is_empty() && i.add.is_empty() { "veth" } else { i.add.as_str() };
        // LinuxKit creates a non-veth link directly in the container's namespace unless createInRoot; here every
        // link is created in the host and then moved (same end state, one code path).
        let moved = false;
        if !add.is_empty() {
            if add == "veth" && i.peer.is_empty() {
                return Err(Error::Invalid {
                    path: "runtime.json".into(),
                    field: "interfaces[].peer".into(),
                    msg: format!("veth {} needs a peer", i.name),
                });
            }
            let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
            let mut m = Msg::new(libc::RTM_NEWLINK, flags, 0);
            m.str_attr(IFLA_IFNAME, &i.name);
            let li = m.nest(IFLA_LINKINFO);
            m.str_attr(IFLA_INFO_KIND, add);
            if add == "veth" {
                let data = m.nest(IFLA_INFO_DATA);
                let peer = m.nest(VETH_INFO_PEER);
                m.ifinfo(0);
                m.str_attr(IFLA_IFNAME, &i.peer);
                m.end_nest(peer);
                m.end_nest(data);
            }
            m.end_nest(li);
            request(&sock, m.finish(), &format!("runtime.json: create interface {} of type {add}", i.name))?;
        }
        if !moved {
            let idx = index_of(&i.name)?;
            let mut m = Msg::new(libc::RTM_NEWLINK, 0, idx);
            m.attr(IFLA_NET_NS_FD, &ns_fd.to_ne_bytes());
            request(&sock, m.finish(), &format!("runtime.json: move interface {} into the container", i.name))?;
        }
    }
    Ok(())
}
