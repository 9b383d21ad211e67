//! Image layers (tar, gzip or zstd) unpacked as a pull unpacks them, as
//! root (mknod, chown, xattrs), each into a fresh directory that is
//! removed afterwards.
//!
//! The invariant beyond "no panic": nothing lands outside the layer's
//! directory. The layer directory sits four levels below a fixed
//! sandbox, /tmp/vordr-fuzz-unpack, which also holds canaries (files, a
//! directory, a symlink); after every input the sandbox outside the layer
//! must be exactly as before (names, types, modes, owners, sizes,
//! contents, link targets, xattrs), and no file of the layer may share an
//! inode with a canary. Relative escapes (`..`, symlinks to `../..`) and
//! absolute ones aimed at the sandbox (the seeds name
//! /tmp/vordr-fuzz-unpack/outside) are caught this way. The layer is
//! unpacked with limits (16 MiB of content, 4096 entries), which an
//! accepted layer must respect; decompressed layers are also cut at 64 MiB
//! so that a compression bomb costs little time.
#![no_main]

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vordr_image::unpack::{decompress, unpack_tar, UnpackLimits};

const SANDBOX: &str = "/tmp/vordr-fuzz-unpack";
const LIMIT: u64 = 64 << 20;
const LIMITS: UnpackLimits = UnpackLimits {
    max_bytes: Some(16 << 20),
    max_entries: Some(4096),
};

/// What a path outside the layer looks like.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    ino: u64,
    nlink: u64,
    content: Vec<u8>,
    link: Option<PathBuf>,
    xattrs: Vec<(std::ffi::OsString, Option<Vec<u8>>)>,
}

struct Sandbox {
    layer: PathBuf,
    before: BTreeMap<PathBuf, Seen>,
    _lock: std::fs::File,
}

/// Everything below `root` except `skip`, not following symlinks.
fn snapshot(root: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, Seen>) {
    let entries = std::fs::read_dir(root).unwrap_or_else(|e| panic!("reading {root:?}: {e}"));
    for e in entries {
        let path = e.unwrap().path();
        if path == skip {
            continue;
        }
        let m = std::fs::symlink_metadata(&path).unwrap();
        let mut xattrs: Vec<_> = xattr_list(&path);
        xattrs.sort();
        let seen = Seen {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: if m.is_dir() { 0 } else { m.size() },
            ino: m.ino(),
            nlink: if m.is_dir() { 0 } else { m.nlink() },
            content: if m.is_file() {
                std::fs::read(&path).unwrap()
            } else {
                Vec::new()
            },
            link: m
                .file_type()
                .is_symlink()
                .then(|| std::fs::read_link(&path).unwrap()),
            xattrs,
        };
        out.insert(path.clone(), seen);
        if m.is_dir() {
            snapshot(&path, skip, out);
        }
    }
}

/// The extended attributes of `path` (not following a symlink).
fn xattr_list(path: &Path) -> Vec<(std::ffi::OsString, Option<Vec<u8>>)> {
    use std::ffi::{CString, OsString};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 65536];
    // SAFETY: the buffer outlives the call and its length is passed.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    names
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let cname = CString::new(name).unwrap();
            let mut val = vec![0u8; 65536];
            // SAFETY: as above.
            let n = unsafe {
                libc::lgetxattr(
                    c.as_ptr(),
                    cname.as_ptr(),
                    val.as_mut_ptr().cast(),
                    val.len(),
                )
            };
            let value = (n >= 0).then(|| {
                val.truncate(n as usize);
                val
            });
            (OsString::from_vec(name.to_vec()), value)
        })
        .collect()
}

fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        let root = Path::new(SANDBOX);
        std::fs::create_dir_all(root).unwrap();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).unwrap();
        let lock = std::fs::File::create(root.join(".lock")).unwrap();
        // SAFETY: a valid descriptor.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            panic!("another tar_unpack fuzzer holds {SANDBOX}/.lock");
        }
        // Start clean: a previous run may have been killed mid-input.
        for e in std::fs::read_dir(root).unwrap() {
            let p = e.unwrap().path();
            if p.file_name() != Some(".lock".as_ref()) {
                let m = std::fs::symlink_metadata(&p).unwrap();
                if m.is_dir() {
                    std::fs::remove_dir_all(&p).unwrap();
                } else {
                    std::fs::remove_file(&p).unwrap();
                }
            }
        }
        let outside = root.join("outside");
        std::fs::create_dir_all(outside.join("dir")).unwrap();
        std::fs::write(outside.join("canary"), b"canary\n").unwrap();
        std::fs::write(outside.join("dir/canary"), b"deeper canary\n").unwrap();
        std::os::unix::fs::symlink("canary", outside.join("link")).unwrap();
        std::fs::write(root.join("a-canary"), b"next to the layer's parents\n").unwrap();
        let layer = root.join("a/b/c/layer");
        std::fs::create_dir_all(&layer).unwrap();
        std::fs::write(root.join("a/b/c/canary"), b"next to the layer\n").unwrap();
        let mut before = BTreeMap::new();
        snapshot(root, &layer, &mut before);
        std::fs::remove_dir(&layer).unwrap();
        Sandbox {
            layer,
            before,
            _lock: lock,
        }
    })
}

/// Reads at most LIMIT bytes, then fails.
struct Limit<R>(R, u64);

impl<R: Read> Read for Limit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1 += n as u64;
        if self.1 > LIMIT {
            return Err(io::Error::other("layer larger than the fuzzer's limit"));
        }
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let s = sandbox();
    std::fs::create_dir(&s.layer).unwrap();
    // As unpack_layer, with the size cut.
    let unpacked = decompress(data).and_then(|r| {
        unpack_tar(Limit(r, 0), &s.layer, LIMITS).map_err(|e| io::Error::other(e.to_string()))
    });

    let mut after = BTreeMap::new();
    snapshot(Path::new(SANDBOX), &s.layer, &mut after);
    let canaries: BTreeMap<u64, &PathBuf> = s
        .before
        .iter()
        .filter(|(_, seen)| seen.nlink > 0)
        .map(|(p, seen)| (seen.ino, p))
        .collect();
    let mut inside = BTreeMap::new();
    snapshot(&s.layer, Path::new(""), &mut inside);
    std::fs::remove_dir_all(&s.layer).unwrap();
    assert_eq!(after, s.before, "the layer changed what is outside it");
    if let Ok(stats) = unpacked {
        assert!(stats.entries <= LIMITS.max_entries.unwrap(), "{stats:?}");
        let bytes: u64 = inside
            .values()
            .filter(|seen| seen.mode & libc::S_IFMT == libc::S_IFREG)
            .map(|seen| seen.size)
            .sum();
        // Hard links share their content: counted once per name here.
        let links: u64 = inside
            .values()
            .filter(|seen| seen.mode & libc::S_IFMT == libc::S_IFREG && seen.nlink > 1)
            .map(|seen| seen.size)
            .sum();
        assert!(
            bytes - links <= LIMITS.max_bytes.unwrap(),
            "{bytes} bytes unpacked"
        );
    }
    for (p, seen) in &inside {
        if seen.nlink > 0 {
            if let Some(c) = canaries.get(&seen.ino) {
                panic!("{p:?} is a hard link to {c:?}, outside the layer");
            }
        }
    }
});
