//! Reading a module's `.modinfo` ELF section (NUL-separated `key=value`), and writing modules.dep and
//! modules.alias from it — the part of depmod the image builder needs, since Debian's kernel package ships
//! no modules.dep. Runs on the build host; only uncompressed `.ko` files can be read.

use crate::error::Error;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An [`Error::Elf`] with no path yet (the reader of a file names it with [`Error::on_file`]).
fn elf(msg: impl Into<String>) -> Error {
    Error::Elf { path: PathBuf::new(), msg: msg.into() }
}

/// Reads `len` bytes at `off` from some ELF image.
trait ReadAt {
    fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>, Error>;
}

impl ReadAt for &[u8] {
    fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>, Error> {
        let start = usize::try_from(off).map_err(|_| elf("offset out of range"))?;
        let end = start.checked_add(len).ok_or_else(|| elf("length overflow"))?;
        self.get(start..end).map(<[u8]>::to_vec).ok_or_else(|| elf(format!("truncated: need bytes {start}..{end}")))
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>, Error> {
        let mut v = vec![0u8; len];
        self.read_exact_at(&mut v, off).map_err(|e| elf(format!("read {len} bytes at {off}: {e}")))?;
        Ok(v)
    }
}

fn u16le(b: &[u8], at: usize) -> Result<u16, Error> {
    let s = b.get(at..at + 2).ok_or_else(|| elf("truncated ELF header"))?;
    Ok(u16::from_le_bytes([s.first().copied().unwrap_or(0), s.get(1).copied().unwrap_or(0)]))
}

fn u32le(b: &[u8], at: usize) -> Result<u32, Error> {
    let s: [u8; 4] = b.get(at..at + 4).and_then(|s| s.try_into().ok()).ok_or_else(|| elf("truncated ELF header"))?;
    Ok(u32::from_le_bytes(s))
}

fn u64le(b: &[u8], at: usize) -> Result<u64, Error> {
    let s: [u8; 8] = b.get(at..at + 8).and_then(|s| s.try_into().ok()).ok_or_else(|| elf("truncated ELF header"))?;
    Ok(u64::from_le_bytes(s))
}

/// Upper bound on what we read for one section (a .modinfo is a few KiB; section tables are small).
const MAX_READ: u64 = 16 << 20;

fn section_bytes(r: &dyn ReadAt, want: &str) -> Result<Option<Vec<u8>>, Error> {
    let eh = r.read_at(0, 64)?;
    if eh.get(0..4) != Some(b"\x7fELF".as_slice()) {
        return Err(elf("not an ELF file"));
    }
    if eh.get(4) != Some(&2) || eh.get(5) != Some(&1) {
        return Err(elf("not a 64-bit little-endian ELF file"));
    }
    let shoff = u64le(&eh, 0x28)?;
    let shentsize = u64::from(u16le(&eh, 0x3A)?);
    let shnum = u64::from(u16le(&eh, 0x3C)?);
    let shstrndx = u64::from(u16le(&eh, 0x3E)?);
    if shentsize < 64 || shnum == 0 || shnum * shentsize > MAX_READ {
        return Err(elf("bad section header table"));
    }
    let table = r.read_at(shoff, len(shnum * shentsize)?)?;
    let sh = |i: u64| -> Result<(u32, u64, u64), Error> {
        let base = len(i * shentsize)?;
        Ok((u32le(&table, base)?, u64le(&table, base + 24)?, u64le(&table, base + 32)?))
    };
    let (_, str_off, str_size) = sh(shstrndx)?;
    if str_size > MAX_READ {
        return Err(elf("section name table too large"));
    }
    let names = r.read_at(str_off, len(str_size)?)?;
    for i in 0..shnum {
        let (name_off, off, size) = sh(i)?;
        let name = names.get(name_off as usize..).unwrap_or(&[]);
        let name = name.split(|b| *b == 0).next().unwrap_or(&[]);
        if name == want.as_bytes() {
            if size > MAX_READ {
                return Err(elf(format!("section {want} too large")));
            }
            return r.read_at(off, len(size)?).map(Some);
        }
    }
    Ok(None)
}

fn split_modinfo(sec: &[u8]) -> Vec<(String, String)> {
    sec.split(|b| *b == 0)
        .filter_map(|r| std::str::from_utf8(r).ok())
        .filter_map(|r| r.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The `key=value` pairs of a module's `.modinfo` section, in order (an ELF without one gives an empty list).
pub fn modinfo(bytes: &[u8]) -> Result<Vec<(String, String)>, Error> {
    let sec = section_bytes(&bytes, ".modinfo")?;
    Ok(sec.map(|s| split_modinfo(&s)).unwrap_or_default())
}

/// Same as [`modinfo`], reading only the headers and the section from the file.
pub fn modinfo_file(path: &Path) -> Result<Vec<(String, String)>, Error> {
    if super::load::is_compressed(path) {
        return Err(Error::Elf { path: path.to_path_buf(), msg: "compressed module: cannot read .modinfo".into() });
    }
    let f = std::fs::File::open(path).map_err(|e| Error::io("open", path, &e))?;
    let sec = section_bytes(&f, ".modinfo").map_err(|e| e.on_file(path))?;
    Ok(sec.map(|s| split_modinfo(&s)).unwrap_or_default())
}

/// What the index needs of one module.
#[derive(Debug, Clone)]
struct Module {
    rel: String,
    depends: Vec<String>,
    aliases: Vec<String>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read dir", dir, &e))?;
    for e in rd {
        let e = e.map_err(|e| Error::io("read dir", dir, &e))?;
        let ft = e.file_type().map_err(|x| Error::io("stat", e.path(), &x))?;
        let p = e.path();
        // a symlink to a module file counts (never a symlinked directory: no loops)
        let is_file = ft.is_file() || (ft.is_symlink() && std::fs::metadata(&p).is_ok_and(|m| m.is_file()));
        if ft.is_dir() {
            walk(&p, out)?;
        } else if is_file && (p.to_string_lossy().ends_with(".ko") || super::load::is_compressed(&p)) {
            out.push(p);
        }
    }
    Ok(())
}

/// Generate `modules.dep` and `modules.alias` for the modules under `modules_dir` (e.g.
/// `/lib/modules/6.1.0-57-amd64`), as depmod would: each module's transitive dependencies, users before what
/// they use (load from the right), paths relative to `modules_dir`, in modules.order order then by path.
/// A dependency that is neither present nor in modules.builtin is an error naming both.
pub fn write_index(modules_dir: &Path) -> Result<(), Error> {
    let mut files = Vec::new();
    for top in ["kernel", "updates", "extra"] {
        let d = modules_dir.join(top);
        if d.is_dir() {
            walk(&d, &mut files)?;
        }
    }
    let mut mods: HashMap<String, Module> = HashMap::new();
    for f in &files {
        let info = modinfo_file(f)?;
        let rel = f.strip_prefix(modules_dir).unwrap_or(f).to_string_lossy().into_owned();
        let mut name = super::dep::name_of(&rel);
        let mut depends = Vec::new();
        let mut aliases = Vec::new();
        for (k, v) in info {
            match k.as_str() {
                "name" if !v.is_empty() => name = super::dep::normalize(&v),
                "depends" => depends.extend(v.split(',').filter(|d| !d.is_empty()).map(super::dep::normalize)),
                "alias" => aliases.push(v),
                _ => {}
            }
        }
        mods.insert(name, Module { rel, depends, aliases });
    }
    let builtin = std::fs::read_to_string(modules_dir.join("modules.builtin"))
        .map(|s| super::dep::parse_builtin(&s))
        .unwrap_or_default();
    // order: modules.order first, then the rest by path
    let mut order: Vec<String> = Vec::with_capacity(mods.len());
    let mut placed = HashSet::new();
    if let Ok(s) = std::fs::read_to_string(modules_dir.join("modules.order")) {
        for l in s.lines() {
            let n = super::dep::name_of(l.trim());
            if mods.contains_key(&n) && placed.insert(n.clone()) {
                order.push(n);
            }
        }
    }
    let mut rest: Vec<(&String, &String)> =
        mods.iter().filter(|(n, _)| !placed.contains(*n)).map(|(n, m)| (&m.rel, n)).collect();
    rest.sort();
    order.extend(rest.into_iter().map(|(_, n)| n.clone()));

    let mut dep = String::with_capacity(order.len() * 96);
    let mut alias = String::from("# Aliases extracted from modules themselves.\n");
    for n in &order {
        let Some(m) = mods.get(n) else { continue };
        let mut load = Vec::new();
        let mut seen = HashSet::new();
        seen.insert(n.clone());
        for d in &m.depends {
            closure(d, n, &mods, &builtin, &mut seen, &mut load, modules_dir)?;
        }
        dep.push_str(&m.rel);
        dep.push(':');
        // `load` is dependencies first; modules.dep lists users first
        for d in load.iter().rev() {
            if let Some(x) = mods.get(d) {
                dep.push(' ');
                dep.push_str(&x.rel);
            }
        }
        dep.push('\n');
        for a in &m.aliases {
            alias.push_str("alias ");
            alias.push_str(a);
            alias.push(' ');
            alias.push_str(n);
            alias.push('\n');
        }
    }
    write_atomic(&modules_dir.join("modules.dep"), dep.as_bytes())?;
    write_atomic(&modules_dir.join("modules.alias"), alias.as_bytes())
}

fn closure(
    n: &str,
    user: &str,
    mods: &HashMap<String, Module>,
    builtin: &HashSet<String>,
    seen: &mut HashSet<String>,
    load: &mut Vec<String>,
    dir: &Path,
) -> Result<(), Error> {
    if !seen.insert(n.to_string()) {
        return Ok(());
    }
    let Some(m) = mods.get(n) else {
        if builtin.contains(n) {
            return Ok(());
        }
        return Err(Error::ModuleNotFound { name: format!("{n} (needed by {user})"), dir: dir.to_path_buf() });
    };
    for d in &m.depends {
        closure(d, n, mods, builtin, seen, load, dir)?;
    }
    load.push(n.to_string());
    Ok(())
}

fn write_atomic(p: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp = p.with_extension("keel-tmp");
    std::fs::write(&tmp, data).map_err(|e| Error::io("write", &tmp, &e))?;
    std::fs::rename(&tmp, p).map_err(|e| Error::io("rename", p, &e))
}

/// A size or offset from the file as usize (they are bounded by MAX_READ before they get here).
fn len(x: u64) -> Result<usize, Error> {
    usize::try_from(x).map_err(|_| elf(format!("{x} does not fit in usize")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 LE relocatable with a .modinfo section, enough for the parser.
    pub(crate) fn fake_ko(modinfo: &[u8]) -> Vec<u8> {
        let shstr = b"\0.modinfo\0.shstrtab\0";
        let mut b = vec![0u8; 64];
        b[0..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        let mi_off = b.len() as u64;
        b.extend_from_slice(modinfo);
        let str_off = b.len() as u64;
        b.extend_from_slice(shstr);
        while !b.len().is_multiple_of(8) {
            b.push(0);
        }
        let shoff = b.len() as u64;
        b[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        b[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        b[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
        b[0x3E..0x40].copy_from_slice(&2u16.to_le_bytes());
        let sh = |name: u32, off: u64, size: u64| {
            let mut s = vec![0u8; 64];
            s[0..4].copy_from_slice(&name.to_le_bytes());
            s[24..32].copy_from_slice(&off.to_le_bytes());
            s[32..40].copy_from_slice(&size.to_le_bytes());
            s
        };
        b.extend(sh(0, 0, 0));
        b.extend(sh(1, mi_off, modinfo.len() as u64));
        b.extend(sh(10, str_off, shstr.len() as u64));
        b
    }

    #[test]
    fn parses_synthetic_modinfo() {
        let ko = fake_ko(b"license=GPL\0depends=a,b-c\0alias=fs-x\0\0\0name=x\0vermagic=6.1.0 SMP\0");
        let mi = modinfo(&ko).unwrap_or_default();
        assert_eq!(mi.len(), 5, "{mi:?}");
        assert!(mi.contains(&("alias".to_string(), "fs-x".to_string())));
        assert!(mi.contains(&("vermagic".to_string(), "6.1.0 SMP".to_string())));
        assert!(modinfo(b"not elf").is_err());
        assert!(modinfo(&ko[..100]).is_err(), "truncated");
    }

    fn w(dir: &Path, rel: &str, mi: &[u8]) {
        let p = dir.join(rel);
        let _ = std::fs::create_dir_all(p.parent().unwrap_or(dir));
        let _ = std::fs::write(p, fake_ko(mi));
    }

    #[test]
    fn writes_index_for_a_synthetic_tree() -> Result<(), Box<dyn std::error::Error>> {
        let d = std::env::temp_dir().join(format!("keel-rc-index-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        w(&d, "kernel/net/failover.ko", b"name=failover\0depends=\0");
        w(&d, "kernel/net/net_failover.ko", b"name=net_failover\0depends=failover\0");
        w(
            &d,
            "kernel/drivers/virtio_net.ko",
            b"name=virtio_net\0depends=net_failover,crc-x\0alias=virtio:d00000001v*\0",
        );
        w(&d, "kernel/fs/overlay.ko", b"name=overlay\0depends=\0alias=fs-overlay\0");
        let _ = std::fs::write(d.join("modules.builtin"), "kernel/lib/crc-x.ko\n");
        write_index(&d).map_err(|e| format!("write_index: {e}"))?;
        let dep = std::fs::read_to_string(d.join("modules.dep")).unwrap_or_default();
        assert!(
            dep.contains("kernel/drivers/virtio_net.ko: kernel/net/net_failover.ko kernel/net/failover.ko\n"),
            "{dep}"
        );
        assert!(dep.contains("kernel/fs/overlay.ko:\n"), "{dep}");
        let alias = std::fs::read_to_string(d.join("modules.alias")).unwrap_or_default();
        assert!(alias.contains("alias fs-overlay overlay\n"), "{alias}");
        let deps = crate::modules::dep::Deps::parse(&dep);
        let o: Vec<String> = deps.load_order("virtio_net").unwrap_or_default().into_iter().map(|x| x.0).collect();
        assert_eq!(o, ["failover", "net_failover", "virtio_net"]);
        // a dependency that is neither a module nor built in is an error naming it
        w(&d, "kernel/bad.ko", b"name=bad\0depends=ghost\0");
        let e = write_index(&d).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("ghost") && e.contains("bad"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
        Ok(())
    }
}
