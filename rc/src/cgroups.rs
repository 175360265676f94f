//! Enabling cgroup v2 controllers at the root so that containers can be given limits.

use crate::error::Error;
use crate::sys;
use std::path::Path;

/// Controllers enabled in the root's cgroup.subtree_control when the kernel offers them.
pub const WANTED: &[&str] = &["cpu", "cpuset", "io", "memory", "pids", "hugetlb"];

/// Enable every wanted controller listed in `root/cgroup.controllers`; returns (enabled, errors).
pub fn enable_controllers(root: &Path) -> (Vec<String>, Vec<Error>) {
    let list = root.join("cgroup.controllers");
    let avail = match std::fs::read_to_string(&list) {
        Ok(s) => s,
        Err(e) => return (Vec::new(), vec![Error::io("read", &list, &e)]),
    };
    let ctl = root.join("cgroup.subtree_control");
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for c in avail.split_whitespace().filter(|c| WANTED.contains(c)) {
        // one write per controller: one refused controller must not cost the others
        match sys::write_file(&ctl, format!("+{c}").as_bytes()) {
            Ok(()) => ok.push(c.to_string()),
            Err(e) => errs.push(e.into()),
        }
    }
    (ok, errs)
}
