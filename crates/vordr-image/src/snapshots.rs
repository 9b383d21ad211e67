//! Layer snapshots: each layer unpacked once, into `<dir>/<chain id>/fs`,
//! shared by every image and container that has it. The chain id names a
//! layer together with everything below it (OCI image spec), so the same
//! layer on different bases gets different snapshots, as overlayfs needs.
//! A snapshot is unpacked in a temporary directory and renamed into place
//! only when complete and its uncompressed digest (diff id) matches the
//! image config.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::content::{Algorithm, Digest, Hasher};
use crate::unpack::{decompress, unpack_tar, UnpackError, UnpackLimits, UnpackStats};

/// Errors from snapshot handling.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("layer content does not match the image config: diff id {expected} expected, {actual} found")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("snapshot I/O at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The blob being unpacked while it downloaded failed its checks.
    #[error("{0}")]
    Source(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The chain ids of a layer stack, bottom first:
/// `chain(L0) = diff(L0)`, `chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::sha256_of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The snapshot directory.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
    /// What one layer may unpack to.
    limits: UnpackLimits,
}

impl Snapshots {
    /// Opens (creating) the snapshot directory, removing unfinished
    /// unpacks. The directory is 0700 (set again if it existed): only the
    /// daemon reads layers; containers see them through their overlay.
    pub fn open(dir: &Path) -> Result<Snapshots, SnapshotError> {
        vordr_fsmode::ensure_dir(dir, vordr_fsmode::PRIVATE_DIR).map_err(io_err(dir))?;
        for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let e = e.map_err(io_err(dir))?;
            if e.file_name().to_string_lossy().starts_with("tmp-") {
                std::fs::remove_dir_all(e.path()).map_err(io_err(&e.path()))?;
            }
        }
        Ok(Snapshots {
            dir: dir.to_path_buf(),
            limits: UnpackLimits::default(),
        })
    }

    /// The same directory, unpacking layers within `limits`: a layer over
    /// them fails and leaves nothing.
    pub fn with_limits(mut self, limits: UnpackLimits) -> Snapshots {
        self.limits = limits;
        self
    }

    /// The unpacked tree of the snapshot `chain_id` (an overlayfs lower dir).
    pub fn fs_path(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex()).join("fs")
    }

    pub fn contains(&self, chain_id: &Digest) -> bool {
        self.fs_path(chain_id).is_dir()
    }

    /// Unpacks the compressed layer `r` as snapshot `chain_id`, checking
    /// that its uncompressed content is `diff_id`. Returns the stats, or
    /// `None` if the snapshot already existed.
    pub fn create(
        &self,
        chain_id: &Digest,
        diff_id: &Digest,
        r: impl Read,
    ) -> Result<Option<UnpackStats>, SnapshotError> {
        self.create_gated(chain_id, diff_id, r, || Ok(()))
    }

    /// [`Snapshots::create`] from a stream still being verified: the
    /// unpacked layer becomes visible only if `verified` (called once the
    /// whole stream is read and its diff id checked) says the blob it came
    /// from passed its own checks.
    pub fn create_gated(
        &self,
        chain_id: &Digest,
        diff_id: &Digest,
        r: impl Read,
        verified: impl FnOnce() -> Result<(), String>,
    ) -> Result<Option<UnpackStats>, SnapshotError> {
        if self.contains(chain_id) {
            return Ok(None);
        }
        let mut suffix = [0u8; 8];
        getrandom::getrandom(&mut suffix).expect("the kernel's random source works");
        let tmp = self.dir.join(format!(
            "tmp-{}-{}",
            &chain_id.hex()[..12],
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        let res = self.unpack_into(&tmp, diff_id, r);
        let res = res.and_then(|stats| verified().map(|()| stats).map_err(SnapshotError::Source));
        let res = res.and_then(|stats| {
            let dest = self.dir.join(chain_id.hex());
            match std::fs::rename(&tmp, &dest) {
                Ok(()) => Ok(Some(stats)),
                // Another pull of the same layer finished first.
                Err(_) if self.contains(chain_id) => Ok(None),
                Err(e) => Err(io_err(&dest)(e)),
            }
        });
        if tmp.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        res
    }

    fn unpack_into(
        &self,
        tmp: &Path,
        diff_id: &Digest,
        r: impl Read,
    ) -> Result<UnpackStats, SnapshotError> {
        let fs = tmp.join("fs");
        std::fs::create_dir_all(&fs).map_err(io_err(&fs))?;
        let r = decompress(r).map_err(|e| SnapshotError::Unpack(UnpackError::Read(e)))?;
        let mut hr = HashingReader {
            inner: r,
            hasher: Hasher::new(diff_id.algorithm()),
        };
        let stats = unpack_tar(&mut hr, &fs, self.limits)?;
        // The tar's end-of-archive padding counts towards the diff id.
        io::copy(&mut hr, &mut io::sink())
            .map_err(|e| SnapshotError::Unpack(UnpackError::Read(e)))?;
        let actual = hr.hasher.finish();
        if &actual != diff_id {
            return Err(SnapshotError::DiffIdMismatch {
                expected: diff_id.clone(),
                actual,
            });
        }
        Ok(stats)
    }

    /// Deletes a snapshot; a missing one is success.
    pub fn remove(&self, chain_id: &Digest) -> Result<(), SnapshotError> {
        let p = self.dir.join(chain_id.hex());
        match std::fs::remove_dir_all(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// Every snapshot's chain id (sha256 chain ids, as all chain ids past the
    /// bottom layer are).
    pub fn list(&self) -> Result<Vec<Digest>, SnapshotError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let e = e.map_err(io_err(&self.dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let alg = if name.len() == 128 {
                Algorithm::Sha512
            } else {
                Algorithm::Sha256
            };
            if let Ok(d) = format!("{}:{name}", alg.as_str()).parse() {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::sha256_of(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn unpacked_once_and_verified() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let s = Snapshots::open(d.path()).unwrap();
        let tar = layer(&[("hello", b"world")]);
        let diff = Digest::sha256_of(&tar);
        let chain = chain_ids(std::slice::from_ref(&diff))[0].clone();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        assert!(s.create(&chain, &diff, gz.as_slice()).unwrap().is_some());
        assert_eq!(
            std::fs::read(s.fs_path(&chain).join("hello")).unwrap(),
            b"world"
        );
        assert!(
            s.create(&chain, &diff, gz.as_slice()).unwrap().is_none(),
            "unpacked twice"
        );
        assert_eq!(s.list().unwrap(), vec![chain.clone()]);

        // Content that does not match its diff id leaves nothing.
        let other = layer(&[("hello", b"tampered")]);
        let chain2 = Digest::sha256_of(b"another chain");
        let e = s.create(&chain2, &diff, other.as_slice()).unwrap_err();
        assert!(matches!(e, SnapshotError::DiffIdMismatch { .. }), "{e}");
        assert!(!s.contains(&chain2));
        // A hostile layer leaves nothing either.
        let evil = vordr_e2e::registry::escaping_tar();
        let e = s
            .create(&chain2, &Digest::sha256_of(&evil), evil.as_slice())
            .unwrap_err();
        assert!(
            matches!(e, SnapshotError::Unpack(UnpackError::Escape { .. })),
            "{e}"
        );
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");

        s.remove(&chain).unwrap();
        s.remove(&chain).unwrap();
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn unfinished_unpacks_are_removed_on_open() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("tmp-abc/fs/x")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Snapshots::open(d.path()).unwrap();
        assert!(!d.path().join("tmp-abc").exists());
        // The directory is private, whatever it was before.
        let mode = std::fs::metadata(d.path()).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
    }
}
