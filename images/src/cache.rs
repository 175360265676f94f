//! The content-addressed image cache, laid out as LinuxKit's (`~/.linuxkit/cache`): an OCI image layout whose
//! `index.json` holds one descriptor per image, keyed by the annotation `org.opencontainers.image.ref.name` = the
//! full reference (`docker.io/linuxkit/getty:TAG`). A user's existing linuxkit cache is read and extended as is.
//!
//! Every blob is verified (size and sha256) when it is read, from this cache or from any OCI layout (`oci:`).
//! Blobs are written to a hidden temporary file beside their final place, verified, then renamed: a blob under its
//! digest is always whole. `index.json` is rewritten (temporary file + rename) under an exclusive `flock` of the
//! cache directory; a pull holds a shared lock of `blobs/` while it writes, `cache rm` an exclusive one while it
//! removes the blobs no image needs any more.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::reference::valid_digest;
use crate::{io, Error};

/// The annotation LinuxKit (and the OCI layout spec) key images by.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The default cache: `~/.linuxkit/cache` (LinuxKit's), `$KEEL_IMAGE_CACHE` when set.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KEEL_IMAGE_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".linuxkit/cache")
}

/// Lowercase hex sha256 of `data`, as `sha256:…`.
pub fn sha256_digest(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    format!("sha256:{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// An OCI image layout on disk (the cache, or an `oci:` source).
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

/// A held `flock`; released on drop.
pub struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: flock on a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn lock(path: &Path, exclusive: bool) -> Result<Lock, Error> {
    let f = File::open(path).map_err(io("opening for lock", path))?;
    let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
    // SAFETY: flock on a descriptor we own; blocks until granted.
    if unsafe { libc::flock(f.as_raw_fd(), op) } != 0 {
        return Err(io("locking", path)(std::io::Error::last_os_error()));
    }
    Ok(Lock(f))
}

/// `sha512:<128 lowercase hex>` (allowed in OCI layouts; registries use sha256).
fn valid_sha512(d: &str) -> bool {
    d.strip_prefix("sha512:")
        .is_some_and(|h| h.len() == 128 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// Path of a blob by digest, refusing anything but `sha256:<64 hex>` and `sha512:<128 hex>`.
pub fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, Error> {
    if !valid_digest(digest) && !valid_sha512(digest) {
        return Err(Error::Source(format!("bad blob digest {digest:?} (want sha256: and 64 hex digits)")));
    }
    let (alg, hex) = digest.split_at(6);
    Ok(dir.join("blobs").join(alg).join(&hex[1..]))
}

/// The digest of `data` in the algorithm `like` names (sha256 or sha512).
fn digest_like(data: &[u8], like: &str) -> String {
    if like.starts_with("sha512:") {
        let d = sha2::Sha512::digest(data);
        format!("sha512:{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>())
    } else {
        sha256_digest(data)
    }
}

/// Check `data` against a descriptor's digest and size.
pub fn verify(data: &[u8], digest: &str, size: Option<u64>, path: &Path) -> Result<(), Error> {
    if let Some(s) = size {
        if data.len() as u64 != s {
            return Err(Error::Source(format!(
                "blob {digest} ({}): size {} bytes, the manifest says {s}",
                path.display(),
                data.len()
            )));
        }
    }
    let got = digest_like(data, digest);
    if got != digest {
        return Err(Error::Source(format!("blob {digest} ({}): content hashes to {got}", path.display())));
    }
    Ok(())
}

/// A blob being written: a temporary file hashed as it grows; [`BlobWriter::commit`] verifies and renames it into
/// place. Dropped without a commit, the temporary file is removed.
pub struct BlobWriter {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
    digest: String,
    size: u64,
    hasher: Sha256,
    written: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let f = self.file.as_mut().ok_or_else(|| std::io::Error::other("blob already committed"))?;
        let n = f.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        if self.written > self.size {
            return Err(std::io::Error::other(format!("more than the {} bytes the manifest says", self.size)));
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verify size and digest, then move the blob to its place.
    pub fn commit(mut self) -> Result<PathBuf, Error> {
        let f = self.file.take().ok_or_else(|| Error::Source("blob committed twice".into()))?;
        f.sync_all().map_err(io("syncing", &self.tmp))?;
        drop(f);
        if self.written != self.size {
            return Err(Error::Source(format!(
                "blob {}: got {} bytes, the manifest says {}",
                self.digest, self.written, self.size
            )));
        }
        let got = format!(
            "sha256:{}",
            std::mem::take(&mut self.hasher).finalize().iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        if got != self.digest {
            return Err(Error::Source(format!("blob {}: content hashes to {got}", self.digest)));
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(io("renaming blob into", &self.dest))?;
        Ok(self.dest.clone())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// What one image in `index.json` is.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub descriptor: Descriptor,
}

/// The image name a descriptor of `index.json` carries (`org.opencontainers.image.ref.name`; "" without one).
pub fn ref_name(d: &Descriptor) -> &str {
    d.annotations().as_ref().and_then(|a| a.get(REF_NAME)).map(String::as_str).unwrap_or("")
}

/// The digests a manifest or index blob refers to (its manifests, config and layers); nothing for any other blob.
/// Lenient on purpose (only `digest` is read): the cache's garbage collection must not lose a blob because a
/// manifest has a field another tool wrote differently.
pub fn blob_links(data: &[u8]) -> Vec<String> {
    #[derive(Deserialize)]
    struct Link {
        digest: String,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Links {
        manifests: Option<Vec<Link>>,
        layers: Option<Vec<Link>>,
        config: Option<Link>,
    }
    if data.len() as u64 > crate::registry::MAX_MANIFEST || !data.starts_with(b"{") {
        return Vec::new();
    }
    let Ok(l) = serde_json::from_slice::<Links>(data) else { return Vec::new() };
    l.manifests.into_iter().flatten().chain(l.layers.into_iter().flatten()).chain(l.config).map(|l| l.digest).collect()
}

static TMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Layout {
    /// A layout at `dir` (not created).
    pub fn at(dir: &Path) -> Layout {
        Layout { dir: dir.to_path_buf() }
    }

    /// Open the layout at `dir`, creating an empty one (oci-layout, index.json, blobs/sha256) if missing.
    pub fn create(dir: &Path) -> Result<Layout, Error> {
        let l = Layout::at(dir);
        std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(io("creating cache", dir))?;
        let ol = dir.join("oci-layout");
        if !ol.exists() {
            std::fs::write(&ol, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io("writing", &ol))?;
        }
        if !dir.join("index.json").exists() {
            let _g = lock(dir, true)?;
            if !dir.join("index.json").exists() {
                l.write_index(&ImageIndex::default())?;
            }
        }
        Ok(l)
    }

    /// `index.json` (an empty index if the file is missing).
    pub fn index(&self) -> Result<ImageIndex, Error> {
        let p = self.dir.join("index.json");
        match std::fs::read(&p) {
            Ok(b) => parse_index(&b, &p.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ImageIndex::default()),
            Err(e) => Err(io("reading", &p)(e)),
        }
    }

    fn write_index(&self, v: &ImageIndex) -> Result<(), Error> {
        let p = self.dir.join("index.json");
        let tmp = self.dir.join(format!(".index.json.{}.tmp", std::process::id()));
        let data = serde_json::to_vec_pretty(v).map_err(|e| Error::Source(format!("index.json: {e}")))?;
        std::fs::write(&tmp, data).map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &p).map_err(io("renaming to", &p))
    }

    /// Images by name (`org.opencontainers.image.ref.name`), in index order.
    pub fn entries(&self) -> Result<Vec<Entry>, Error> {
        let idx = self.index()?;
        Ok(idx.manifests().iter().map(|d| Entry { name: ref_name(d).to_string(), descriptor: d.clone() }).collect())
    }

    /// The descriptor stored for `name`.
    pub fn lookup(&self, name: &str) -> Result<Option<Descriptor>, Error> {
        Ok(self.entries()?.into_iter().find(|e| e.name == name).map(|e| e.descriptor))
    }

    /// The descriptor stored for `name` for linux/`arch`: an entry whose `platform` is that architecture, else one
    /// without a platform (an index or single manifest, as pulls write them). LinuxKit may keep one entry per
    /// platform under the same name.
    pub fn lookup_for(&self, name: &str, arch: &str) -> Result<Option<Descriptor>, Error> {
        let same: Vec<Descriptor> =
            self.entries()?.into_iter().filter(|e| e.name == name).map(|e| e.descriptor).collect();
        let want = arch.split('/').next().unwrap_or(arch);
        Ok(same
            .iter()
            .find(|d| d.platform().as_ref().is_some_and(|p| p.architecture().to_string() == want))
            .or_else(|| same.iter().find(|d| d.platform().is_none()))
            .cloned())
    }

    /// Record `descriptor` as image `name` (replacing an older entry of that name).
    pub fn set(&self, name: &str, mut descriptor: Descriptor) -> Result<(), Error> {
        let mut annotations = descriptor.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME.to_string(), name.to_string());
        descriptor.set_annotations(Some(annotations));
        let _g = lock(&self.dir, true)?;
        let mut idx = self.index()?;
        // Replaces the entry of that name; entries of it for other platforms (LinuxKit's) stay.
        let mut ms = idx.manifests().clone();
        ms.retain(|d| ref_name(d) != name || d.platform().is_some());
        ms.push(descriptor);
        idx.set_manifests(ms);
        self.write_index(&idx)
    }

    /// Remove image `name`, then every blob no remaining image reaches. Returns false if it was not there.
    pub fn remove(&self, name: &str) -> Result<bool, Error> {
        let found = {
            let _g = lock(&self.dir, true)?;
            let mut idx = self.index()?;
            let mut ms = idx.manifests().clone();
            ms.retain(|d| ref_name(d) != name);
            let found = ms.len() != idx.manifests().len();
            idx.set_manifests(ms);
            if found {
                self.write_index(&idx)?;
            }
            found
        };
        if found {
            self.gc()?;
        }
        Ok(found)
    }

    /// Remove temporary files left by pulls whose process is gone (killed mid-pull): `.tmp-PID-…` in
    /// blobs/sha256 and `.index.json.PID.tmp`. Returns how many.
    pub fn sweep(&self) -> usize {
        let alive = |pid: &str| {
            pid.parse::<i32>().ok().filter(|p| *p > 0).is_some_and(|p| {
                // SAFETY: kill with signal 0 only checks that the process exists.
                let r = unsafe { libc::kill(p, 0) };
                r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
            })
        };
        let mut n = 0;
        let blobs = self.dir.join("blobs/sha256");
        for (dir, prefix) in [(&blobs, ".tmp-"), (&self.dir, ".index.json.")] {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix(prefix) else { continue };
                let pid = rest.split(['-', '.']).next().unwrap_or("");
                if !alive(pid) && std::fs::remove_file(e.path()).is_ok() {
                    n += 1;
                }
            }
        }
        n
    }

    /// Hold while writing blobs that no index entry names yet (keeps [`Layout::gc`] away from them).
    pub fn writing(&self) -> Result<Lock, Error> {
        lock(&self.dir.join("blobs"), false)
    }

    /// Delete blobs no image in index.json reaches (walking indexes and manifests that are present), and leftover
    /// temporary files.
    pub fn gc(&self) -> Result<usize, Error> {
        let _g = lock(&self.dir.join("blobs"), true)?;
        let mut keep = std::collections::HashSet::new();
        let mut todo: Vec<String> = self.entries()?.iter().map(|e| e.descriptor.digest().to_string()).collect();
        while let Some(d) = todo.pop() {
            if !keep.insert(d.clone()) {
                continue;
            }
            let Ok(p) = blob_path(&self.dir, &d) else { continue };
            // Manifests and indexes are small: a larger blob is a layer, not read.
            if std::fs::metadata(&p).map_or(true, |m| m.len() > crate::registry::MAX_MANIFEST) {
                continue;
            }
            let Ok(data) = std::fs::read(&p) else { continue };
            todo.extend(blob_links(&data));
        }
        let mut removed = 0;
        let dir = self.dir.join("blobs/sha256");
        for e in std::fs::read_dir(&dir).map_err(io("reading", &dir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !keep.contains(&format!("sha256:{name}")) {
                std::fs::remove_file(e.path()).map_err(io("removing", e.path()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// True when the blob is present with the right size and digest.
    pub fn has_blob(&self, digest: &str, size: u64) -> bool {
        self.read_blob(digest, Some(size)).is_ok()
    }

    /// True when a blob file exists under `digest` (not verified).
    pub fn blob_exists(&self, digest: &str) -> bool {
        blob_path(&self.dir, digest).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Read a blob and verify it (size when known, sha256 always).
    pub fn read_blob(&self, digest: &str, size: Option<u64>) -> Result<Vec<u8>, Error> {
        let p = blob_path(&self.dir, digest)?;
        let mut f = File::open(&p).map_err(|e| Error::Source(format!("blob {digest} ({}): {e}", p.display())))?;
        let mut data = Vec::new();
        f.read_to_end(&mut data).map_err(io("reading blob", &p))?;
        verify(&data, digest, size, &p)?;
        Ok(data)
    }

    /// Read the blob a descriptor names, verified.
    pub fn read_desc(&self, d: &Descriptor) -> Result<Vec<u8>, Error> {
        self.read_blob(d.digest().as_ref(), Some(d.size()))
    }

    /// Start writing blob `digest` of `size` bytes.
    pub fn blob_writer(&self, digest: &str, size: u64) -> Result<BlobWriter, Error> {
        if !valid_digest(digest) {
            return Err(Error::Source(format!("blob {digest}: only sha256 blobs are pulled")));
        }
        let dest = blob_path(&self.dir, digest)?;
        let seq = TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dest.with_file_name(format!(".tmp-{}-{seq}-{}", std::process::id(), &digest[7..19]));
        if let Some(d) = dest.parent() {
            std::fs::create_dir_all(d).map_err(io("creating", d))?;
        }
        let file = File::create(&tmp).map_err(io("creating", &tmp))?;
        Ok(BlobWriter {
            file: Some(file),
            tmp,
            dest,
            digest: digest.to_string(),
            size,
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Store a small blob held in memory (a manifest or index), verified against `digest`.
    pub fn put_blob(&self, digest: &str, data: &[u8]) -> Result<(), Error> {
        let mut w = self.blob_writer(digest, data.len() as u64)?;
        w.write_all(data).map_err(io("writing blob", &w.tmp))?;
        w.commit().map(|_| ())
    }
}

/// A parsed manifest-or-index blob.
pub enum Root {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

/// Parse an image index (`index.json` of a layout, or an index blob); `what` names it in errors, which carry the
/// line, column and field (`what: line 3 column 20: manifests[0].digest: ...`).
pub fn parse_index(data: &[u8], what: &str) -> Result<ImageIndex, Error> {
    crate::parse_json(data, what, "image index")
}

/// Parse a manifest or index (OCI or Docker v2 schema 2; schema 1 is refused).
pub fn parse_root(data: &[u8], what: &str) -> Result<Root, Error> {
    /// What tells the kinds apart.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Kind {
        schema_version: Option<u64>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    let k: Kind = crate::parse_json(data, what, "manifest")?;
    if k.schema_version == Some(1) {
        return Err(Error::Source(format!("{what}: Docker schema 1 manifests are not supported")));
    }
    if k.manifests.is_some() {
        crate::parse_json(data, what, "image index").map(|i| Root::Index(Box::new(i)))
    } else {
        crate::parse_json(data, what, "image manifest").map(|m| Root::Manifest(Box::new(m)))
    }
}

/// Pick the manifest for `arch` (linux; `arm/v7`-style variants accepted) from an index.
pub fn pick_platform<'a>(index: &'a ImageIndex, arch: &str, what: &str) -> Result<&'a Descriptor, Error> {
    let (want_arch, want_variant) = match arch.split_once('/') {
        Some((a, v)) => (a, Some(v)),
        None => (arch, None),
    };
    let ms = index.manifests();
    let found = ms.iter().find(|m| {
        m.platform().as_ref().is_some_and(|p| {
            p.os().to_string() == "linux"
                && p.architecture().to_string() == want_arch
                && want_variant.is_none_or(|v| p.variant().as_deref() == Some(v))
        })
    });
    if let Some(m) = found {
        return Ok(m);
    }
    if ms.len() == 1 && ms[0].platform().is_none() {
        return Ok(&ms[0]);
    }
    let have: Vec<String> = ms
        .iter()
        .filter_map(|m| m.platform().as_ref())
        .map(|p| {
            let v = p.variant().as_deref().map(|v| format!("/{v}")).unwrap_or_default();
            format!("{}/{}{v}", p.os(), p.architecture())
        })
        .collect();
    Err(Error::Source(format!("{what}: no manifest for linux/{arch} (platforms: {})", have.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tmp(n: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("keel-cache-{n}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn blobs_are_verified_and_temporaries_vanish() {
        let d = tmp("blobs");
        let l = Layout::create(&d).unwrap();
        let data = b"hello blob";
        let dg = sha256_digest(data);
        l.put_blob(&dg, data).unwrap();
        assert_eq!(l.read_blob(&dg, Some(10)).unwrap(), data);
        let e = l.read_blob(&dg, Some(11)).unwrap_err().to_string();
        assert!(e.contains(&dg) && e.contains("size"), "{e}");
        // A wrong digest: refused, nothing left behind.
        let wrong = sha256_digest(b"other");
        let e = l.put_blob(&wrong, data).unwrap_err().to_string();
        assert!(e.contains(&wrong) && e.contains("hashes to"), "{e}");
        let names: Vec<String> = std::fs::read_dir(d.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [dg[7..].to_string()]);
        // sha512 (allowed in OCI layouts) is verified too.
        let d5 = digest_like(b"five", "sha512:");
        std::fs::create_dir_all(d.join("blobs/sha512")).unwrap();
        std::fs::write(blob_path(&d, &d5).unwrap(), b"five").unwrap();
        assert_eq!(l.read_blob(&d5, Some(4)).unwrap(), b"five");
        std::fs::write(blob_path(&d, &d5).unwrap(), b"fivE").unwrap();
        assert!(l.read_blob(&d5, None).unwrap_err().to_string().contains("hashes to sha512:"));
        // Corrupt on disk: read refuses it, naming the blob.
        std::fs::write(blob_path(&d, &dg).unwrap(), b"hello blub").unwrap();
        let e = l.read_blob(&dg, None).unwrap_err().to_string();
        assert!(e.contains(&dg) && e.contains("hashes to"), "{e}");
        // Temporaries of a dead process are swept; this process's stay.
        let dead = d.join("blobs/sha256/.tmp-999999999-0-0123456789ab");
        let mine = d.join(format!("blobs/sha256/.tmp-{}-7-0123456789ab", std::process::id()));
        std::fs::write(&dead, b"x").unwrap();
        std::fs::write(&mine, b"x").unwrap();
        std::fs::write(d.join(".index.json.999999999.tmp"), b"x").unwrap();
        assert_eq!(l.sweep(), 2);
        assert!(!dead.exists() && mine.exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn index_entries_set_replace_remove_and_gc() {
        let d = tmp("index");
        let l = Layout::create(&d).unwrap();
        let layer = b"layer";
        let ld = sha256_digest(layer);
        l.put_blob(&ld, layer).unwrap();
        let m = serde_json::to_vec(&json!({"schemaVersion": 2, "config": {"mediaType": "x", "digest": ld, "size": 5},
            "layers": []}))
        .unwrap();
        let md = sha256_digest(&m);
        l.put_blob(&md, &m).unwrap();
        let orphan = sha256_digest(b"orphan");
        l.put_blob(&orphan, b"orphan").unwrap();
        let desc: Descriptor = serde_json::from_value(
            json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len()}),
        )
        .unwrap();
        l.set("docker.io/library/a:1", desc.clone()).unwrap();
        l.set("docker.io/library/a:1", desc.clone()).unwrap();
        l.set("docker.io/library/b:1", desc).unwrap();
        let names: Vec<String> = l.entries().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["docker.io/library/a:1", "docker.io/library/b:1"]);
        // Per-platform entries (as LinuxKit may write them): the matching one wins, others are kept.
        let arm = json!({"mediaType": "x", "digest": ld, "size": 5, "platform": {"os": "linux", "architecture": "arm64"},
            "annotations": {REF_NAME: "docker.io/library/a:1"}});
        let mut idx = l.index().unwrap();
        let mut ms = idx.manifests().clone();
        ms.insert(0, serde_json::from_value(arm).unwrap());
        idx.set_manifests(ms);
        l.write_index(&idx).unwrap();
        assert_eq!(l.lookup_for("docker.io/library/a:1", "arm64").unwrap().unwrap().digest().to_string(), ld);
        assert_eq!(l.lookup_for("docker.io/library/a:1", "amd64").unwrap().unwrap().digest().to_string(), md);
        assert!(l.lookup_for("docker.io/library/c:1", "amd64").unwrap().is_none());
        assert!(l.remove("docker.io/library/a:1").unwrap());
        assert!(!l.remove("docker.io/library/a:1").unwrap());
        assert!(l.blob_exists(&md) && l.blob_exists(&ld), "b still needs them");
        assert!(!l.blob_exists(&orphan), "unreachable blob collected");
        assert!(l.remove("docker.io/library/b:1").unwrap());
        assert!(!l.blob_exists(&md) && !l.blob_exists(&ld));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bad_index_and_manifest_errors_name_the_field() {
        let e = parse_index(
            b"{\"schemaVersion\": 2,\n \"manifests\": [{\"mediaType\": \"x\", \"size\": 1,\n  \"digest\": 5}]}",
            "index.json",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("index.json: bad image index: line 3 column 13: manifests[0].digest: invalid type"),
            "{e}"
        );
        let e = match parse_root(b"{\"schemaVersion\": 2, \"config\": {}, \"layers\": []}", "m") {
            Err(e) => e.to_string(),
            Ok(_) => panic!("parsed"),
        };
        assert!(e.starts_with("m: bad image manifest: line 1 column 33: config: missing field `mediaType`"), "{e}");
        assert!(matches!(parse_root(b"{\"schemaVersion\": 1}", "m"), Err(e) if e.to_string().contains("schema 1")));
        let e = match parse_root(b"{\"schemaVersion\": 2,", "m") {
            Err(e) => e.to_string(),
            Ok(_) => panic!("parsed"),
        };
        assert!(e.starts_with("m: bad manifest: line 1 column 20: EOF"), "{e}");
        let links = blob_links(br#"{"manifests": [{"digest": "sha256:a"}], "config": {"digest": "sha256:c", "x": 1}, "layers": [{"digest": "sha256:l"}]}"#);
        assert_eq!(links, ["sha256:a", "sha256:l", "sha256:c"]);
        assert!(blob_links(b"\x1f\x8b layer").is_empty());
    }
}
