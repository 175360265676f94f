//! Coldplug: load the modules for devices that exist at boot, by their `modalias` (what udev does with
//! `modprobe -b $MODALIAS`), in passes, since loading a bus driver creates new devices (virtio_pci creates the
//! virtio devices that need virtio_net).

use super::{Index, Resolved};
use crate::Level;
use std::collections::HashSet;
use std::path::Path;

/// At most this many passes; a pass that loads nothing ends it earlier.
pub const MAX_PASSES: usize = 3;

/// Modaliases of devices under `sys` (/sys) that have no driver bound yet: /sys/bus/*/devices/*/modalias.
/// CPU modaliases (`cpu:type:...`) are skipped: they only match accelerators (crypto, kvm), which the kernel
/// requests by name when needed, and loading them all would cost boot time.
pub fn pending_modaliases(sys: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let Ok(buses) = std::fs::read_dir(sys.join("bus")) else { return out };
    let mut buses: Vec<_> = buses.flatten().map(|e| e.path()).collect();
    buses.sort();
    for b in buses {
        let Ok(devs) = std::fs::read_dir(b.join("devices")) else { continue };
        let mut devs: Vec<_> = devs.flatten().map(|e| e.path()).collect();
        devs.sort();
        for d in devs {
            if d.join("driver").exists() {
                continue;
            }
            let Ok(a) = std::fs::read_to_string(d.join("modalias")) else { continue };
            let a = a.trim();
            if a.is_empty() || a.starts_with("cpu:") {
                continue;
            }
            if seen.insert(a.to_string()) {
                out.push(a.to_string());
            }
        }
    }
    out
}

/// Load the modules of every device in /sys (see [`pending_modaliases`]), every module each modalias matches
/// (as udev does), in up to [`MAX_PASSES`] passes. Failures go to `log`, one line per module; a system without
/// /lib/modules/$(uname -r) is quietly left alone. Returns the number of modules loaded.
pub fn coldplug(log: &mut dyn FnMut(Level, &str)) -> usize {
    let dir = super::modules_dir();
    if !dir.is_dir() {
        return 0;
    }
    let mut idx = match Index::open(&dir) {
        Ok(i) => i,
        Err(e) => {
            log(Level::Warn, &format!("coldplug: modules: {e}"));
            return 0;
        }
    };
    run(&mut idx, Path::new("/sys"), log)
}

/// [`coldplug`] against a given index and sysfs root.
pub fn run(idx: &mut Index, sys: &Path, log: &mut dyn FnMut(Level, &str)) -> usize {
    let mut seen: HashSet<String> = HashSet::new();
    let mut failed: HashSet<String> = HashSet::new();
    let mut total = 0;
    for _ in 0..MAX_PASSES {
        let mut this_pass = 0;
        for a in pending_modaliases(sys) {
            if !seen.insert(a.clone()) {
                continue;
            }
            let Ok(Resolved::Modules(mods)) = idx.resolve(&a) else { continue };
            for m in mods {
                if failed.contains(&m) {
                    continue;
                }
                match idx.load(&m, "", false) {
                    Ok(l) => this_pass += l.len(),
                    Err(e) => {
                        log(Level::Warn, &format!("coldplug: module {m} for {a}: {e}"));
                        failed.insert(m);
                    }
                }
            }
        }
        total += this_pass;
        if this_pass == 0 {
            break;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unbound_modaliases() {
        let d = std::env::temp_dir().join(format!("keel-rc-coldplug-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let mk = |rel: &str, alias: &str| {
            let p = d.join(rel);
            let _ = std::fs::create_dir_all(&p);
            let _ = std::fs::write(p.join("modalias"), format!("{alias}\n"));
        };
        mk("bus/pci/devices/0000:00:03.0", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00");
        mk("bus/pci/devices/0000:00:04.0", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00");
        mk("bus/pci/devices/0000:00:01.0", "pci:v00008086d00007000sv0sd0bc06sc01i00");
        mk("bus/cpu/devices/cpu0", "cpu:type:x86,ven0000fam0006mod003F:feature:,0000");
        mk("bus/virtio/devices/virtio0", "");
        let _ = std::fs::create_dir_all(d.join("bus/pci/devices/0000:00:01.0/driver"));
        let v = pending_modaliases(&d);
        assert_eq!(
            v,
            ["pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"],
            "bound, cpu, empty and duplicate skipped"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
