//! Kernel modules: the `modprobe` the kernel runs (/proc/sys/kernel/modprobe), loading by name or alias with
//! dependencies first, and coldplug by device modalias. No fork: modules are loaded with finit_module(2).
//!
//! Files read from /lib/modules/$(uname -r): modules.dep and modules.alias (standard formats, written on the
//! build host by [`modinfo::write_index`]), modules.builtin and modules.builtin.modinfo (from the kernel
//! package).

pub mod alias;
pub mod coldplug;
pub mod dep;
pub mod load;
pub mod modinfo;

pub use coldplug::coldplug;

use crate::error::Error;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Where the kernel is told to find modprobe (the image builder links it to the multi-call init binary).
pub const MODPROBE_PATH: &str = "/sbin/modprobe";

/// /lib/modules/$(uname -r).
pub fn modules_dir() -> PathBuf {
    Path::new("/lib/modules").join(keel_sys::kernel_release())
}

/// What a name or alias resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Module names to load (each with its dependencies).
    Modules(Vec<String>),
    /// Built into the kernel: nothing to load.
    Builtin,
}

/// The module index of one modules directory.
#[derive(Debug, Clone)]
pub struct Index {
    dir: PathBuf,
    deps: dep::Deps,
    aliases: alias::Aliases,
    builtin: HashSet<String>,
    builtin_aliases: Option<alias::Aliases>,
}

impl Index {
    /// Read modules.dep, modules.alias and modules.builtin of `dir`. modules.dep must exist; the others may not.
    pub fn open(dir: &Path) -> Result<Index, Error> {
        let dp = dir.join("modules.dep");
        let deps = dep::Deps::parse(&std::fs::read_to_string(&dp).map_err(|e| Error::io("read", &dp, &e))?);
        let aliases = alias::Aliases::parse(&std::fs::read_to_string(dir.join("modules.alias")).unwrap_or_default());
        let builtin = dep::parse_builtin(&std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default());
        Ok(Index { dir: dir.to_path_buf(), deps, aliases, builtin, builtin_aliases: None })
    }

    /// The modules directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Parsed modules.dep.
    pub fn deps(&self) -> &dep::Deps {
        &self.deps
    }

    /// Resolve a module name or an alias (module names win, as in kmod).
    pub fn resolve(&mut self, name: &str) -> Result<Resolved, Error> {
        if self.deps.get(name).is_some() {
            return Ok(Resolved::Modules(vec![dep::normalize(name)]));
        }
        if self.builtin.contains(&dep::normalize(name)) {
            return Ok(Resolved::Builtin);
        }
        let m = self.aliases.lookup(name);
        if !m.is_empty() {
            return Ok(Resolved::Modules(m));
        }
        let dir = self.dir.clone();
        let b = self.builtin_aliases.get_or_insert_with(|| {
            let raw = std::fs::read(dir.join("modules.builtin.modinfo")).unwrap_or_default();
            let mut a = alias::Aliases::default();
            for (p, m) in dep::parse_builtin_aliases(&raw) {
                a.push(&p, &m);
            }
            a
        });
        if !b.lookup(name).is_empty() {
            return Ok(Resolved::Builtin);
        }
        Err(Error::ModuleNotFound { name: name.to_string(), dir })
    }

    /// Files to insert for module `name`, dependencies first, skipping those already in the kernel.
    pub fn plan(&self, name: &str) -> Result<Vec<(String, PathBuf)>, Error> {
        let order = self
            .deps
            .load_order(name)
            .ok_or_else(|| Error::ModuleNotFound { name: name.to_string(), dir: self.dir.clone() })?;
        Ok(order
            .into_iter()
            .filter(|(n, _)| !load::is_loaded(n) && !self.builtin.contains(n))
            .map(|(n, p)| (n, self.dir.join(p)))
            .collect())
    }

    /// Load `name_or_alias` (every module an alias matches, each after its dependencies); `params` go to the
    /// named module itself. Returns the modules inserted now. Ok if at least one match is in the kernel at the
    /// end; otherwise the first error.
    pub fn load(&mut self, name_or_alias: &str, params: &str, verbose: bool) -> Result<Vec<String>, Error> {
        let mods = match self.resolve(name_or_alias)? {
            Resolved::Builtin => return Ok(Vec::new()),
            Resolved::Modules(m) => m,
        };
        let mut loaded = Vec::new();
        let mut first_err = None;
        let mut any_ok = false;
        for m in &mods {
            match self.load_one(m, params, verbose, &mut loaded) {
                Ok(()) => any_ok = true,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if !any_ok => Err(e),
            _ => Ok(loaded),
        }
    }

    fn load_one(&self, m: &str, params: &str, verbose: bool, loaded: &mut Vec<String>) -> Result<(), Error> {
        for (n, path) in self.plan(m)? {
            let p = if n == *m { params } else { "" };
            if verbose {
                eprintln!("insmod {} {p}", path.display());
            }
            if load::insmod(&path, p)? {
                loaded.push(n);
            }
        }
        Ok(())
    }
}

/// Load a module by name or alias from /lib/modules/$(uname -r), dependencies first. Returns the modules
/// inserted now (empty if already loaded or built in).
pub fn load(name_or_alias: &str) -> Result<Vec<String>, Error> {
    Index::open(&modules_dir())?.load(name_or_alias, "", false)
}

/// A parsed modprobe command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModprobeArgs {
    /// -q: say nothing about names that match nothing.
    pub quiet: bool,
    /// -v: print each file inserted.
    pub verbose: bool,
    /// -n: print, do not insert.
    pub dry_run: bool,
    /// Names or aliases to load (one unless -a).
    pub names: Vec<String>,
    /// `param=value ...` for the module (without -a).
    pub params: String,
}

/// Parse modprobe's argv (argv[0] included).
pub fn parse_args(args: &[String]) -> Result<ModprobeArgs, Error> {
    let mut a = ModprobeArgs::default();
    let mut all = false;
    let mut rest: Vec<&str> = Vec::new();
    let mut opts_done = false;
    for x in args.iter().skip(1) {
        if opts_done || !x.starts_with('-') || x == "-" {
            rest.push(x);
            continue;
        }
        match x.as_str() {
            "--" => opts_done = true,
            "--quiet" => a.quiet = true,
            "--verbose" => a.verbose = true,
            "--all" => all = true,
            "--use-blacklist" | "--syslog" => {}
            "--dry-run" | "--show" => a.dry_run = true,
            s if !s.starts_with("--") => {
                for c in s.chars().skip(1) {
                    match c {
                        'q' => a.quiet = true,
                        'v' => a.verbose = true,
                        'a' => all = true,
                        'b' | 's' => {}
                        'n' => a.dry_run = true,
                        _ => return Err(Error::Usage(format!("unsupported option -{c}"))),
                    }
                }
            }
            s => return Err(Error::Usage(format!("unsupported option {s}"))),
        }
    }
    if rest.is_empty() {
        return Err(Error::Usage("usage: modprobe [-q] [-b] [-v] [-n] [-a] NAME|ALIAS [param=value...]".into()));
    }
    if all {
        a.names = rest.iter().map(|s| s.to_string()).collect();
    } else {
        a.names = rest.first().map(|s| vec![s.to_string()]).unwrap_or_default();
        a.params = rest.get(1..).unwrap_or(&[]).join(" ");
    }
    Ok(a)
}

/// Entry point when invoked as `modprobe` (argv as given). Returns the exit code.
///
/// `modprobe [-q] [-b] [-v] [-n] [-a] [--] NAME|ALIAS [param=value...]` (with -a: several names, no params).
/// -b (blacklist) is accepted and ignored: keel images have no modprobe.d.
pub fn modprobe_main(args: &[String]) -> i32 {
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("modprobe: {msg}");
            return 1;
        }
    };
    let (quiet, verbose, dry, names, params) = (a.quiet, a.verbose, a.dry_run, a.names, a.params);
    let dir = modules_dir();
    let mut idx = match Index::open(&dir) {
        Ok(i) => i,
        Err(e) => {
            if !quiet {
                eprintln!("modprobe: {e}");
            }
            return 1;
        }
    };
    let mut rc = 0;
    for n in &names {
        let n = n.as_str();
        let r = if dry {
            idx.resolve(n).map(|r| {
                if let Resolved::Modules(ms) = r {
                    for m in ms {
                        for (_, p) in idx.plan(&m).unwrap_or_default() {
                            println!("insmod {}", p.display());
                        }
                    }
                }
                Vec::new()
            })
        } else {
            idx.load(n, &params, verbose)
        };
        if let Err(e) = r {
            rc = 1;
            if !(quiet && matches!(e, Error::ModuleNotFound { .. })) {
                eprintln!("modprobe: {e}");
            }
        }
    }
    rc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn modprobe_args() {
        let a = parse_args(&argv("/sbin/modprobe -q -- fs-overlay")).unwrap_or_default();
        assert!(a.quiet && !a.verbose);
        assert_eq!(a.names, ["fs-overlay"]);
        let a = parse_args(&argv("modprobe -qbv virtio_net napi_tx=1 x=2")).unwrap_or_default();
        assert!(a.quiet && a.verbose);
        assert_eq!((a.names.len(), a.params.as_str()), (1, "napi_tx=1 x=2"));
        let a = parse_args(&argv("modprobe -a a b c")).unwrap_or_default();
        assert_eq!(a.names, ["a", "b", "c"]);
        assert!(a.params.is_empty());
        assert!(parse_args(&argv("modprobe -r x")).is_err());
        assert!(parse_args(&argv("modprobe -q")).is_err());
        assert!(parse_args(&argv("modprobe --remove x")).is_err());
        assert_eq!(parse_args(&argv("modprobe -n -- -weird")).map(|a| a.names).unwrap_or_default(), ["-weird"]);
    }

    const DEBIAN: &str = "/tmp/kdl/x/lib/modules/6.1.0-57-amd64";

    /// Index the real Debian modules: the .ko files are read in place through a mirror of symlinks, so the
    /// generated files land in a scratch directory, never in the unpacked package.
    #[test]
    fn debian_modules_index_and_resolution() -> Result<(), Box<dyn std::error::Error>> {
        let src = Path::new(DEBIAN);
        if !src.join("kernel").is_dir() {
            eprintln!("skipped: {DEBIAN} not present");
            return Ok(());
        }
        let d = std::env::temp_dir().join(format!("keel-rc-debian-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::create_dir_all(d.join("kernel"));
        for f in ["modules.order", "modules.builtin", "modules.builtin.modinfo"] {
            let _ = std::fs::copy(src.join(f), d.join(f));
        }
        copy_tree_links(&src.join("kernel"), &d.join("kernel"));
        let t = std::time::Instant::now();
        modinfo::write_index(&d).map_err(|e| format!("write_index on the Debian modules: {e}"))?;
        eprintln!("write_index of the Debian modules took {} ms", t.elapsed().as_millis());
        let alias = std::fs::read_to_string(d.join("modules.alias")).unwrap_or_default();
        assert!(alias.lines().any(|l| l == "alias fs-overlay overlay"));
        let dep = std::fs::read_to_string(d.join("modules.dep")).unwrap_or_default();
        let line = dep.lines().find(|l| l.starts_with("kernel/drivers/net/virtio_net.ko:")).unwrap_or_default();
        let pos = |m: &str| line.find(m).unwrap_or(usize::MAX);
        assert!(pos("/net_failover.ko") < pos("/failover.ko "), "users before what they use: {line}");
        assert!(pos("/virtio_ring.ko") < usize::MAX, "{line}");
        let mut idx = Index::open(&d).map_err(|e| format!("open index: {e}"))?;
        assert!(idx.deps().len() > 3000);
        assert_eq!(idx.resolve("fs-overlay").ok(), Some(Resolved::Modules(vec!["overlay".into()])));
        assert_eq!(idx.resolve("virtio-net").ok(), Some(Resolved::Modules(vec!["virtio_net".into()])));
        let o: Vec<String> = idx.deps().load_order("virtio_net").unwrap_or_default().into_iter().map(|x| x.0).collect();
        let at = |m: &str| o.iter().position(|x| x == m).unwrap_or(usize::MAX);
        assert!(at("failover") < at("net_failover") && at("net_failover") < at("virtio_net"), "{o:?}");
        assert!(at("virtio_ring") < at("virtio") && at("virtio") < at("virtio_net"), "{o:?}");
        assert_eq!(o.last().map(String::as_str), Some("virtio_net"));
        // QEMU's virtio-net PCI function, and the virtio device it creates
        let pci = idx.resolve("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00");
        assert_eq!(pci.ok(), Some(Resolved::Modules(vec!["virtio_pci".into()])));
        let vnet = idx.resolve("virtio:d00000001v00001AF4");
        assert_eq!(vnet.ok(), Some(Resolved::Modules(vec!["virtio_net".into()])));
        assert_eq!(idx.resolve("pstore").ok(), Some(Resolved::Builtin), "pstore is built into Debian's kernel");
        assert_eq!(idx.resolve("fs-ext4").ok(), Some(Resolved::Modules(vec!["ext4".into()])));
        assert_eq!(idx.resolve("fs-debugfs").ok(), Some(Resolved::Builtin), "builtin alias");
        assert!(matches!(idx.resolve("no-such-thing"), Err(Error::ModuleNotFound { .. })));
        let _ = std::fs::remove_dir_all(&d);
        Ok(())
    }

    /// Mirror a tree as directories of symlinks to the files (write_index walks real dirs, reads through links).
    fn copy_tree_links(src: &Path, dst: &Path) {
        for e in std::fs::read_dir(src).into_iter().flatten().flatten() {
            let p = e.path();
            let t = dst.join(e.file_name());
            if p.is_dir() {
                let _ = std::fs::create_dir_all(&t);
                copy_tree_links(&p, &t);
            } else {
                let _ = std::os::unix::fs::symlink(&p, &t);
            }
        }
    }
}
