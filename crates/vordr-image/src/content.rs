//! The content store: blobs (manifests, configs, layers) addressed by their
//! digest, every one verified before it becomes visible. A blob is written
//! to an ingest file and renamed into place only once its size and digest
//! match, so a pull cut off at any point leaves nothing half-visible; the
//! ingest directory is emptied when the store is opened.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// Errors from the content store.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} is not in the content store")]
    NotFound(Digest),
    #[error("content store I/O at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
    move |source| ContentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A digest algorithm the OCI image spec registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest, `algorithm:hex`. Validation is what makes it
/// safe to use as a file name: a registry cannot smuggle in `../`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(data);
        h.finish()
    }
}

impl FromStr for Digest {
    type Err = ContentError;

    fn from_str(s: &str) -> Result<Digest, ContentError> {
        let bad = || ContentError::InvalidDigest(s.to_string());
        let (alg, hex) = s.split_once(':').ok_or_else(bad)?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(bad()),
        };
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

/// A running digest computation.
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, bytes) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        Digest {
            algorithm,
            hex: bytes.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// The store, rooted at one directory.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Opens (creating) the store under `root` and discards unfinished
    /// ingests. `root` is 0700 (set again if it existed).
    pub fn open(root: &Path) -> Result<ContentStore, ContentError> {
        let store = ContentStore {
            root: root.to_path_buf(),
        };
        vordr_fsmode::ensure_dir(root, vordr_fsmode::PRIVATE_DIR).map_err(io_err(root))?;
        let ingest = store.ingest_dir();
        if ingest.exists() {
            std::fs::remove_dir_all(&ingest).map_err(io_err(&ingest))?;
        }
        for d in [ingest, root.join("blobs")] {
            std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(store)
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// Where the blob `digest` lives (whether or not it is there).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm.as_str())
            .join(&digest.hex)
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The size of a stored blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, ContentError> {
        let p = self.path(digest);
        match std::fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ContentError::NotFound(digest.clone()))
            }
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// Reads a whole blob (manifests and configs; layers are streamed from `path`).
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let p = self.path(digest);
        match std::fs::read(&p) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ContentError::NotFound(digest.clone()))
            }
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// Starts writing the blob `expected`; nothing is visible until
    /// [`Ingest::commit`] verifies it.
    pub fn ingest(
        &self,
        expected: Digest,
        expected_size: Option<u64>,
    ) -> Result<Ingest, ContentError> {
        let dir = self.ingest_dir();
        let tmp = tempfile_in(&dir)?;
        Ok(Ingest {
            hasher: Hasher::new(expected.algorithm),
            expected,
            expected_size,
            written: 0,
            file: Some(tmp.0),
            tmp_path: tmp.1,
            store: self.clone(),
        })
    }

    /// Writes a small blob in one go.
    pub fn put(&self, expected: Digest, data: &[u8]) -> Result<PathBuf, ContentError> {
        let mut w = self.ingest(expected, Some(data.len() as u64))?;
        w.write_all(data).map_err(io_err(&self.root))?;
        w.commit()
    }

    /// Deletes a blob; a missing one is success.
    pub fn delete(&self, digest: &Digest) -> Result<(), ContentError> {
        let p = self.path(digest);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// Every stored blob.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(alg.as_str());
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir)(e)),
            };
            for e in rd {
                let e = e.map_err(io_err(&dir))?;
                if let Ok(d) =
                    format!("{}:{}", alg.as_str(), e.file_name().to_string_lossy()).parse()
                {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

fn tempfile_in(dir: &Path) -> Result<(File, PathBuf), ContentError> {
    for _ in 0..16 {
        let mut b = [0u8; 12];
        getrandom::getrandom(&mut b).map_err(|e| io_err(dir)(io::Error::other(e.to_string())))?;
        let name: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let p = dir.join(name);
        match File::options().write(true).create_new(true).open(&p) {
            Ok(f) => return Ok((f, p)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&p)(e)),
        }
    }
    Err(io_err(dir)(io::Error::other("no unique ingest file name")))
}

/// A blob being written. Dropped without a commit, it leaves nothing.
pub struct Ingest {
    hasher: Hasher,
    expected: Digest,
    expected_size: Option<u64>,
    written: u64,
    file: Option<File>,
    tmp_path: PathBuf,
    store: ContentStore,
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(max) = self.expected_size {
            if self.written + buf.len() as u64 > max {
                return Err(io::Error::other(format!(
                    "{} is larger than the {max} bytes announced",
                    self.expected
                )));
            }
        }
        let n = self
            .file
            .as_mut()
            .expect("file present until commit")
            .write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file
            .as_mut()
            .expect("file present until commit")
            .flush()
    }
}

impl Ingest {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies size and digest, makes the blob durable, then visible.
    pub fn commit(mut self) -> Result<PathBuf, ContentError> {
        let file = self.file.take().expect("file present until commit");
        if let Some(expected) = self.expected_size {
            if expected != self.written {
                return Err(ContentError::SizeMismatch {
                    digest: self.expected.clone(),
                    expected,
                    actual: self.written,
                });
            }
        }
        let hasher = std::mem::replace(&mut self.hasher, Hasher::new(self.expected.algorithm));
        let actual = hasher.finish();
        if actual != self.expected {
            return Err(ContentError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        file.sync_all().map_err(io_err(&self.tmp_path))?;
        drop(file);
        let dest = self.store.path(&self.expected);
        let parent = dest.parent().expect("blob path has a parent");
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        // Same content under the same name: a concurrent writer that won is fine.
        std::fs::rename(&self.tmp_path, &dest).map_err(io_err(&dest))?;
        Ok(dest)
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // Committed ingests were renamed away; this removes the rest.
        let _ = std::fs::remove_file(&self.tmp_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let d = tempfile::tempdir().unwrap();
        let s = ContentStore::open(&d.path().join("content")).unwrap();
        (d, s)
    }

    fn ingest_entries(s: &ContentStore) -> usize {
        std::fs::read_dir(s.ingest_dir()).unwrap().count()
    }

    #[test]
    fn open_makes_the_store_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("content");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        ContentStore::open(&root).unwrap();
        let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn digests_parse_strictly() {
        let ok = format!("sha256:{}", "0a".repeat(32));
        assert_eq!(ok.parse::<Digest>().unwrap().to_string(), ok);
        assert!(format!("sha512:{}", "f".repeat(128))
            .parse::<Digest>()
            .is_ok());
        for bad in [
            "sha256".to_string(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("md5:{}", "a".repeat(32)),
            format!("sha256:../../{}", "a".repeat(58)),
            format!("sha256:{}/", "a".repeat(63)),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
        assert_eq!(
            Digest::sha256_of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn verified_blobs_become_visible() {
        let (_d, s) = store();
        let data = b"hello layer";
        let dg = Digest::sha256_of(data);
        assert!(!s.contains(&dg));
        let p = s.put(dg.clone(), data).unwrap();
        assert_eq!(p, s.path(&dg));
        assert_eq!(s.read(&dg).unwrap(), data);
        assert_eq!(s.size(&dg).unwrap(), data.len() as u64);
        assert_eq!(s.list().unwrap(), vec![dg.clone()]);
        // Again (a concurrent pull of the same blob): fine.
        s.put(dg.clone(), data).unwrap();
        assert_eq!(ingest_entries(&s), 0);
        s.delete(&dg).unwrap();
        s.delete(&dg).unwrap();
        assert!(matches!(s.read(&dg), Err(ContentError::NotFound(_))));
    }

    #[test]
    fn wrong_content_leaves_nothing() {
        let (_d, s) = store();
        let claimed = Digest::sha256_of(b"what the manifest says");
        let e = s
            .put(claimed.clone(), b"what the registry sent")
            .unwrap_err();
        assert!(matches!(e, ContentError::DigestMismatch { .. }), "{e}");
        assert!(!s.contains(&claimed));
        // Short and long bodies.
        let mut w = s.ingest(claimed.clone(), Some(100)).unwrap();
        w.write_all(b"short").unwrap();
        assert!(matches!(
            w.commit(),
            Err(ContentError::SizeMismatch { actual: 5, .. })
        ));
        let mut w = s.ingest(claimed.clone(), Some(3)).unwrap();
        assert!(w.write_all(b"too long").is_err());
        drop(w);
        assert_eq!(ingest_entries(&s), 0);
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn unfinished_ingests_are_discarded_on_open() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("content");
        let s = ContentStore::open(&root).unwrap();
        let w = s.ingest(Digest::sha256_of(b"x"), None).unwrap();
        std::mem::forget(w); // as if the process died mid-pull
        assert_eq!(ingest_entries(&s), 1);
        let s = ContentStore::open(&root).unwrap();
        assert_eq!(ingest_entries(&s), 0);
    }

    #[test]
    fn streaming_sha512() {
        let (_d, s) = store();
        let data = vec![42u8; 300_000];
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(&data);
        let dg = h.finish();
        let mut w = s.ingest(dg.clone(), None).unwrap();
        for c in data.chunks(7777) {
            w.write_all(c).unwrap();
        }
        assert_eq!(w.written(), 300_000);
        w.commit().unwrap();
        assert_eq!(s.size(&dg).unwrap(), 300_000);
    }
}
