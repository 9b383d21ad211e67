//! Unpacking one image layer into its own snapshot directory, in the form
//! overlayfs reads as a lower (or upper) layer: OCI whiteouts (`.wh.NAME`)
//! become 0/0 character devices and opaque markers (`.wh..wh..opq`) the
//! `trusted.overlay.opaque` xattr on their directory.
//!
//! Nothing in a layer may land outside its directory: absolute paths, `..`
//! components, paths through a symlink the layer itself created, and hard
//! links to anything but an earlier entry of the same layer are refused, and
//! the caller discards the directory. Ownership, modes, times, xattrs and
//! device nodes are preserved (this needs root, as a node's runtime has).

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{mknod, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};

/// Errors from unpacking a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {path:?} would land outside the layer: {why}")]
    Escape { path: String, why: &'static str },
    #[error("layer entry {path:?}: unsupported entry type {kind}")]
    Unsupported { path: String, kind: String },
    #[error("reading the layer: {0}")]
    Read(io::Error),
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("the layer unpacks to more than {max} bytes of file content (image.max_layer_unpacked_size)")]
    TooLarge { max: u64 },
    #[error("the layer has more than {max} entries (image.max_layer_entries)")]
    TooManyEntries { max: u64 },
    #[error("the layer has more than {max} bytes of tar headers and metadata (PAX records, long names) before one entry")]
    MetadataTooLarge { max: u64 },
}

/// Bounds on what one layer may unpack to; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Bytes of entry content read: regular files (a sparse file at its
    /// full length, holes included, as that is what gets written) and the
    /// content of whiteout entries, which is read and dropped.
    pub max_bytes: Option<u64>,
    /// Entries: files, directories, links, devices, whiteouts.
    pub max_entries: Option<u64>,
}

/// What the tar crate may read between the end of one entry's content and
/// the start of the next: headers, PAX extended records, GNU long names and
/// sparse maps, which it holds in memory, and the unread content of
/// non-file entries. Go's archive/tar (containerd's unpacker) reads at most
/// 1 MiB of PAX records or long name per entry; this allows that much for
/// each of the three kinds and room for headers and sparse maps, and is not
/// configurable.
pub const MAX_TAR_METADATA: u64 = 4 << 20;

/// What a layer held.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Wraps `r` in the decompressor its first bytes call for: gzip, zstd, or
/// none (an uncompressed tar).
pub fn decompress<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut r = BufReader::new(r);
    let head = r.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(r)?))
    } else {
        Ok(Box::new(r))
    }
}

/// The entry's path as safe relative components, or why not.
fn clean_relative(raw: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("it has a '..' component"),
            Component::RootDir | Component::Prefix(_) => return Err("it is absolute"),
        }
    }
    Ok(out)
}

struct Layer<'a> {
    root: &'a Path,
    stats: UnpackStats,
    limits: UnpackLimits,
    /// Entry content read so far, counted against `limits.max_bytes`.
    content: u64,
}

impl Layer<'_> {
    fn write_err(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
        move |source| UnpackError::Write {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Makes sure every parent of `rel` is a real directory of this layer
    /// (creating missing ones) and never a symlink. Returns the full path.
    fn prepare_parents(&self, rel: &Path, shown: &str) -> Result<PathBuf, UnpackError> {
        let mut cur = self.root.to_path_buf();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                cur.push(c);
                match std::fs::symlink_metadata(&cur) {
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(UnpackError::Escape {
                            path: shown.to_string(),
                            why: "its parent is a symlink",
                        })
                    }
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        // A file where a directory is needed: the tar
                        // replaces it, as tar extraction does.
                        std::fs::remove_file(&cur).map_err(Self::write_err(&cur))?;
                        std::fs::DirBuilder::new()
                            .mode(0o755)
                            .create(&cur)
                            .map_err(Self::write_err(&cur))?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        std::fs::DirBuilder::new()
                            .mode(0o755)
                            .create(&cur)
                            .map_err(Self::write_err(&cur))?;
                    }
                    Err(e) => return Err(Self::write_err(&cur)(e)),
                }
            }
        }
        Ok(self.root.join(rel))
    }

    /// Removes whatever is at `full` (not following symlinks), unless it is a
    /// directory and `keep_dir`.
    fn clear(full: &Path, keep_dir: bool) -> Result<(), UnpackError> {
        match std::fs::symlink_metadata(full) {
            Ok(m) if m.is_dir() && keep_dir => Ok(()),
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(full).map_err(Self::write_err(full)),
            Ok(_) => std::fs::remove_file(full).map_err(Self::write_err(full)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::write_err(full)(e)),
        }
    }

    /// Copies an entry's content into `w`, counting it against the cap.
    fn copy_content(
        &mut self,
        e: &mut impl Read,
        w: &mut impl io::Write,
        full: &Path,
    ) -> Result<(), UnpackError> {
        let n = match self.limits.max_bytes {
            Some(max) => {
                // One byte past what is left tells that the cap is crossed.
                let left = max.saturating_sub(self.content);
                io::copy(&mut e.take(left.saturating_add(1)), w)
            }
            None => io::copy(e, w),
        }
        .map_err(Self::write_err(full))?;
        self.content += n;
        match self.limits.max_bytes {
            Some(max) if self.content > max => Err(UnpackError::TooLarge { max }),
            _ => Ok(()),
        }
    }

    fn entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = e.path().map_err(UnpackError::Read)?.into_owned();
        let shown = raw.display().to_string();
        let rel = clean_relative(&raw).map_err(|why| UnpackError::Escape {
            path: shown.clone(),
            why,
        })?;
        if rel.as_os_str().is_empty() {
            // The layer's root directory itself ("./").
            return Ok(());
        }
        self.stats.entries += 1;
        if let Some(max) = self.limits.max_entries {
            if self.stats.entries > max {
                return Err(UnpackError::TooManyEntries { max });
            }
        }
        let name = rel.file_name().expect("a normal last component");
        let full = self.prepare_parents(&rel, &shown)?;
        if self.whiteout(&mut e, name, &full, &shown)? {
            return Ok(());
        }

        let header = e.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().map_err(UnpackError::Read)? & 0o7777;
        if !self.create_node(&mut e, &header, mode, &full, &shown)? {
            return Ok(());
        }
        Self::set_xattrs(&mut e, &full)?;
        Self::set_owner_mode_times(&header, kind, mode, &full)
    }

    /// Applies `name` if it is a whiteout, in overlayfs form; says whether
    /// it was one.
    fn whiteout(
        &mut self,
        e: &mut impl Read,
        name: &OsStr,
        full: &Path,
        shown: &str,
    ) -> Result<bool, UnpackError> {
        if name == OsStr::new(OPAQUE_MARKER) {
            // Whiteouts carry no content; whatever one holds is read here,
            // counted, and dropped (not left to the tar crate to skip).
            self.copy_content(e, &mut io::sink(), full)?;
            let dir = full.parent().expect("inside the layer").to_path_buf();
            xattr::set(&dir, "trusted.overlay.opaque", b"y").map_err(Self::write_err(&dir))?;
            self.stats.opaque_dirs += 1;
            return Ok(true);
        }
        let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) else {
            return Ok(false);
        };
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(UnpackError::Escape {
                path: shown.to_string(),
                why: "it is a malformed whiteout",
            });
        }
        self.copy_content(e, &mut io::sink(), full)?;
        let target = full.with_file_name(OsStr::from_bytes(hidden));
        Self::clear(&target, false)?;
        mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0)
            .map_err(|e| Self::write_err(&target)(e.into()))?;
        self.stats.whiteouts += 1;
        Ok(true)
    }

    /// Creates the file, directory, link or device an entry describes at
    /// `full`; says whether its metadata is still to be applied (not for
    /// a hard link, which shares its target's inode, nor a metadata entry).
    fn create_node(
        &mut self,
        e: &mut impl Read,
        header: &tar::Header,
        mode: u32,
        full: &Path,
        shown: &str,
    ) -> Result<bool, UnpackError> {
        let kind = header.entry_type();
        match kind {
            tar::EntryType::Directory => {
                Self::clear(full, true)?;
                if !full.exists() {
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(full)
                        .map_err(Self::write_err(full))?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                Self::clear(full, false)?;
                let mut f = std::fs::File::options()
                    .write(true)
                    .create_new(true)
                    .open(full)
                    .map_err(Self::write_err(full))?;
                self.copy_content(e, &mut f, full)?;
            }
            tar::EntryType::Symlink => {
                let target = link_target(header, shown, "it is a symlink without a target")?;
                // A symlink may point anywhere: it is resolved inside the
                // container's root at run time. What may not happen is a
                // later entry of this layer being written through it, which
                // prepare_parents refuses.
                Self::clear(full, false)?;
                symlink(&target, full).map_err(Self::write_err(full))?;
            }
            tar::EntryType::Link => {
                self.hard_link(header, full, shown)?;
                // A hard link shares the target's inode: nothing more to set.
                return Ok(false);
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                Self::device(header, mode, full)?;
            }
            // Metadata entries the tar crate folds into the next entry.
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => return Ok(false),
            other => {
                return Err(UnpackError::Unsupported {
                    path: shown.to_string(),
                    kind: format!("{other:?}"),
                })
            }
        }
        Ok(true)
    }

    /// A hard link, only to something this layer created.
    fn hard_link(&self, header: &tar::Header, full: &Path, shown: &str) -> Result<(), UnpackError> {
        let target = link_target(header, shown, "it is a hard link without a target")?;
        let trel = clean_relative(&target).map_err(|why| UnpackError::Escape {
            path: shown.to_string(),
            why: if why.contains("absolute") {
                "it hard-links to an absolute path"
            } else {
                "it hard-links through '..'"
            },
        })?;
        let tfull = self.prepare_parents(&trel, shown)?;
        match std::fs::symlink_metadata(&tfull) {
            Ok(m) if !m.is_dir() => {}
            _ => {
                return Err(UnpackError::Escape {
                    path: shown.to_string(),
                    why: "it hard-links to something this layer did not create",
                })
            }
        }
        Self::clear(full, false)?;
        std::fs::hard_link(&tfull, full).map_err(Self::write_err(full))
    }

    /// A character or block device, or a FIFO.
    fn device(header: &tar::Header, mode: u32, full: &Path) -> Result<(), UnpackError> {
        let sflag = match header.entry_type() {
            tar::EntryType::Char => SFlag::S_IFCHR,
            tar::EntryType::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        let major = header
            .device_major()
            .map_err(UnpackError::Read)?
            .unwrap_or(0);
        let minor = header
            .device_minor()
            .map_err(UnpackError::Read)?
            .unwrap_or(0);
        Self::clear(full, false)?;
        mknod(
            full,
            sflag,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::makedev(major as u64, minor as u64),
        )
        .map_err(|e| Self::write_err(full)(e.into()))
    }

    /// Extended attributes (PAX SCHILY.xattr.*).
    fn set_xattrs<R: Read>(e: &mut tar::Entry<'_, R>, full: &Path) -> Result<(), UnpackError> {
        if let Ok(Some(exts)) = e.pax_extensions() {
            for ext in exts.flatten() {
                if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    let name = OsStr::from_bytes(name);
                    xattr::set(full, name, ext.value_bytes()).map_err(Self::write_err(full))?;
                }
            }
        }
        Ok(())
    }

    /// Ownership, then mode (chown clears setuid bits), then times.
    fn set_owner_mode_times(
        header: &tar::Header,
        kind: tar::EntryType,
        mode: u32,
        full: &Path,
    ) -> Result<(), UnpackError> {
        let uid = header.uid().map_err(UnpackError::Read)? as u32;
        let gid = header.gid().map_err(UnpackError::Read)? as u32;
        fchownat(
            None,
            full,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Self::write_err(full)(e.into()))?;
        if kind != tar::EntryType::Symlink {
            std::fs::set_permissions(full, std::fs::Permissions::from_mode(mode))
                .map_err(Self::write_err(full))?;
        }
        let mtime = header.mtime().map_err(UnpackError::Read)? as i64;
        let t = nix::sys::time::TimeSpec::new(mtime, 0);
        nix::sys::stat::utimensat(
            None,
            full,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| Self::write_err(full)(e.into()))
    }
}

/// A link entry's target; `why` when it has none.
fn link_target(
    header: &tar::Header,
    shown: &str,
    why: &'static str,
) -> Result<PathBuf, UnpackError> {
    Ok(header
        .link_name()
        .map_err(UnpackError::Read)?
        .ok_or_else(|| UnpackError::Escape {
            path: shown.to_string(),
            why,
        })?
        .into_owned())
}

/// Unpacks the (possibly compressed) layer `r` into `dest`, an empty
/// directory. On error, `dest` holds a partial layer the caller must remove.
pub fn unpack_layer(
    r: impl Read,
    dest: &Path,
    limits: UnpackLimits,
) -> Result<UnpackStats, UnpackError> {
    unpack_tar(decompress(r).map_err(UnpackError::Read)?, dest, limits)
}

/// Unpacks the uncompressed tar `r` into `dest`, an empty directory, within
/// `limits` (and [`MAX_TAR_METADATA`] between entries).
///
/// A layer whose last entry is complete but whose stream stops before that
/// entry's padding and the end-of-archive blocks is accepted, as Go's
/// archive/tar (and so containerd) accepts it; a layer that stops inside an
/// entry's content is refused.
pub fn unpack_tar(
    r: impl Read,
    dest: &Path,
    limits: UnpackLimits,
) -> Result<UnpackStats, UnpackError> {
    let state = std::rc::Rc::new(StreamState::default());
    let mut archive = tar::Archive::new(PadToBlock {
        inner: r,
        read: 0,
        pad_left: None,
        state: state.clone(),
    });
    let mut layer = Layer {
        root: dest,
        stats: UnpackStats::default(),
        limits,
        content: 0,
    };
    let mut content_end = 0u64;
    let over_metadata = |e: io::Error| {
        if state.metadata_exceeded.get() {
            UnpackError::MetadataTooLarge {
                max: MAX_TAR_METADATA,
            }
        } else {
            UnpackError::Read(e)
        }
    };
    // From here until an entry is handed over, what is read is metadata.
    state.between_entries.set(Some(0));
    for e in archive.entries().map_err(over_metadata)? {
        let e = e.map_err(over_metadata)?;
        state.between_entries.set(None);
        content_end = content_end.max(e.raw_file_position() + e.size());
        layer.entry(e)?;
        state.between_entries.set(Some(0));
    }
    state.between_entries.set(None);
    if let Some(end) = state.eof_at.get() {
        if content_end > end {
            return Err(UnpackError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the layer stops at byte {end}, inside an entry that ends at {content_end}"
                ),
            )));
        }
    }
    Ok(layer.stats)
}

/// What the unpacker and the reader under the tar crate share.
#[derive(Default)]
struct StreamState {
    /// Where the real data ended, once it has.
    eof_at: std::cell::Cell<Option<u64>>,
    /// Bytes read since the last entry was done with, while the tar crate
    /// looks for the next one; `None` while an entry's content is read.
    between_entries: std::cell::Cell<Option<u64>>,
    /// Set when `between_entries` went past [`MAX_TAR_METADATA`].
    metadata_exceeded: std::cell::Cell<bool>,
}

/// At the end of the stream, supplies zeros up to the next 512-byte block
/// (a missing last padding), and records where the real data ended. Between
/// entries, refuses to read more than [`MAX_TAR_METADATA`].
struct PadToBlock<R> {
    inner: R,
    read: u64,
    pad_left: Option<u64>,
    state: std::rc::Rc<StreamState>,
}

impl<R: Read> Read for PadToBlock<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(left) = self.pad_left {
            let n = (left as usize).min(buf.len());
            buf[..n].fill(0);
            self.pad_left = Some(left - n as u64);
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.state.eof_at.set(Some(self.read));
            let rem = self.read % 512;
            self.pad_left = Some(if rem == 0 { 0 } else { 512 - rem });
            return self.read(buf);
        }
        self.read += n as u64;
        if let Some(between) = self.state.between_entries.get() {
            let between = between + n as u64;
            self.state.between_entries.set(Some(between));
            if between > MAX_TAR_METADATA {
                self.state.metadata_exceeded.set(true);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "too much tar metadata before one entry",
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn one_file_tar(content: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "f", content).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn missing_final_padding_is_accepted_truncated_content_is_not() {
        let content = vec![b'x'; 700];
        let full = one_file_tar(&content);
        // Cut right after the content: no padding, no end-of-archive blocks.
        let cut = &full[..512 + 700];
        let dir = tempfile::tempdir().unwrap();
        unpack_tar(cut, dir.path(), UnpackLimits::default()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), content);
        // Cut inside the content.
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_tar(&full[..512 + 600], dir.path(), UnpackLimits::default()).unwrap_err();
        assert!(err.to_string().contains("inside an entry"), "{err}");
    }

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// A tar built entry by entry.
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Tar {
            Tar(tar::Builder::new(Vec::new()))
        }
        fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(1000);
            h.set_gid(1001);
            h.set_mtime(1_600_000_000);
            h.set_size(0);
            h
        }
        /// Writes a name as raw bytes, bypassing the builder's own path checks.
        fn raw(mut self, mut h: tar::Header, name: &str, data: &[u8]) -> Tar {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name = [0; 100];
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(data.len() as u64);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }
        fn file(self, name: &str, data: &[u8]) -> Tar {
            self.raw(Self::header(tar::EntryType::Regular, 0o644), name, data)
        }
        fn dir(self, name: &str) -> Tar {
            self.raw(Self::header(tar::EntryType::Directory, 0o755), name, b"")
        }
        fn link(self, kind: tar::EntryType, name: &str, target: &str) -> Tar {
            let mut h = Self::header(kind, 0o777);
            let gnu = h.as_gnu_mut().unwrap();
            gnu.linkname = [0; 100];
            gnu.linkname[..target.len()].copy_from_slice(target.as_bytes());
            self.raw(h, name, b"")
        }
        fn done(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
        let d = tempfile::tempdir().unwrap();
        let r = unpack_layer(bytes, d.path(), UnpackLimits::default());
        (d, r)
    }

    fn escape(bytes: Vec<u8>, why: &str) {
        let (d, r) = unpack(&bytes);
        match r {
            Err(UnpackError::Escape { why: w, .. }) => assert!(w.contains(why), "{w}"),
            other => panic!("expected an escape ({why}), got {other:?}"),
        }
        assert!(!d.path().parent().unwrap().join("pwned").exists());
    }

    #[test]
    fn files_dirs_links_owners_modes_times() {
        if !root() {
            return;
        }
        let t = Tar::new()
            .dir("etc/")
            .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
            .link(tar::EntryType::Symlink, "bin/sh", "/bin/busybox")
            .link(tar::EntryType::Link, "etc/passwd-", "etc/passwd")
            .raw(
                Tar::header(tar::EntryType::Regular, 0o4755),
                "usr/bin/su",
                b"#!",
            )
            .done();
        let (d, r) = unpack(&t);
        assert_eq!(r.unwrap().entries, 5);
        let p = d.path();
        assert_eq!(
            std::fs::read(p.join("etc/passwd")).unwrap(),
            b"root:x:0:0::/root:/bin/sh\n"
        );
        assert_eq!(
            std::fs::read_link(p.join("bin/sh")).unwrap(),
            PathBuf::from("/bin/busybox")
        );
        let m = std::fs::metadata(p.join("etc/passwd")).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777, m.mtime()),
            (1000, 1001, 0o644, 1_600_000_000)
        );
        assert_eq!(m.nlink(), 2, "hard link shares the inode");
        assert_eq!(
            std::fs::metadata(p.join("usr/bin/su")).unwrap().mode() & 0o7777,
            0o4755
        );
        assert_eq!(
            std::fs::symlink_metadata(p.join("bin/sh")).unwrap().uid(),
            1000
        );
    }

    #[test]
    fn whiteouts_and_opaque_dirs_become_overlay_form() {
        if !root() {
            return;
        }
        let t = Tar::new()
            .file("etc/.wh.motd", b"")
            .dir("var/cache/")
            .file("var/cache/.wh..wh..opq", b"")
            .file("var/cache/new", b"n")
            .done();
        let (d, r) = unpack(&t);
        let s = r.unwrap();
        assert_eq!((s.whiteouts, s.opaque_dirs), (1, 1));
        let w = std::fs::symlink_metadata(d.path().join("etc/motd")).unwrap();
        assert!(w.file_type().is_char_device());
        assert_eq!(w.rdev(), 0);
        assert!(!d.path().join("etc/.wh.motd").exists());
        assert_eq!(
            xattr::get(d.path().join("var/cache"), "trusted.overlay.opaque").unwrap(),
            Some(b"y".to_vec())
        );
        assert!(!d.path().join("var/cache/.wh..wh..opq").exists());
    }

    #[test]
    fn hostile_layers_are_refused() {
        escape(Tar::new().file("../pwned", b"x").done(), "'..'");
        escape(Tar::new().file("a/../../pwned", b"x").done(), "'..'");
        escape(Tar::new().file("/pwned", b"x").done(), "absolute");
        // A symlink to outside, then a file written through it.
        escape(
            Tar::new()
                .link(tar::EntryType::Symlink, "evil", "..")
                .file("evil/pwned", b"x")
                .done(),
            "symlink",
        );
        escape(
            Tar::new()
                .link(tar::EntryType::Symlink, "evil", "/")
                .dir("evil/etc/")
                .done(),
            "symlink",
        );
        // Hard links to outside the layer.
        escape(
            Tar::new()
                .link(tar::EntryType::Link, "shadow", "/etc/shadow")
                .done(),
            "absolute",
        );
        escape(
            Tar::new()
                .link(tar::EntryType::Link, "x", "../pwned")
                .done(),
            "'..'",
        );
        escape(
            Tar::new()
                .link(tar::EntryType::Symlink, "evil", "/etc")
                .link(tar::EntryType::Link, "shadow", "evil/shadow")
                .done(),
            "symlink",
        );
        escape(
            Tar::new()
                .link(tar::EntryType::Link, "x", "not/here")
                .done(),
            "did not create",
        );
        escape(Tar::new().file("a/.wh...", b"").done(), "whiteout");
    }

    #[test]
    fn entry_and_size_caps_stop_the_unpack() {
        if !root() {
            return;
        }
        let t = Tar::new()
            .dir("a/")
            .file("a/one", &[1; 1000])
            .file("a/two", &[2; 1000])
            .file("a/.wh.gone", b"")
            .done();
        let within = |max_bytes, max_entries| {
            let d = tempfile::tempdir().unwrap();
            let limits = UnpackLimits {
                max_bytes,
                max_entries,
            };
            unpack_layer(t.as_slice(), d.path(), limits)
        };
        // Exactly at the caps: fine.
        let s = within(Some(2000), Some(4)).unwrap();
        assert_eq!((s.entries, s.whiteouts), (4, 1));
        match within(None, Some(3)) {
            Err(UnpackError::TooManyEntries { max: 3 }) => {}
            other => panic!("expected the entry cap, got {other:?}"),
        }
        match within(Some(1999), None) {
            Err(e @ UnpackError::TooLarge { max: 1999 }) => {
                assert!(
                    e.to_string().contains("image.max_layer_unpacked_size"),
                    "{e}"
                )
            }
            other => panic!("expected the size cap, got {other:?}"),
        }
        // What was written stops at the cap: the second file is cut short.
        let d = tempfile::tempdir().unwrap();
        let limits = UnpackLimits {
            max_bytes: Some(1500),
            max_entries: None,
        };
        assert!(unpack_layer(t.as_slice(), d.path(), limits).is_err());
        assert!(std::fs::metadata(d.path().join("a/two")).unwrap().len() <= 501);
        // A whiteout's content counts too.
        let w = Tar::new().file(".wh.x", &[0; 600]).done();
        let d = tempfile::tempdir().unwrap();
        let limits = UnpackLimits {
            max_bytes: Some(500),
            max_entries: None,
        };
        assert!(matches!(
            unpack_layer(w.as_slice(), d.path(), limits),
            Err(UnpackError::TooLarge { max: 500 })
        ));
    }

    #[test]
    fn oversized_tar_metadata_is_refused_before_it_is_buffered() {
        // A PAX record and a GNU long name of 5 MiB: the tar crate would
        // read either whole into memory.
        for kind in [tar::EntryType::XHeader, tar::EntryType::GNULongName] {
            let t = Tar::new()
                .raw(
                    Tar::header(kind, 0o644),
                    "././@LongLink",
                    &vec![b'a'; 5 << 20],
                )
                .file("f", b"x")
                .done();
            let d = tempfile::tempdir().unwrap();
            match unpack_tar(t.as_slice(), d.path(), UnpackLimits::default()) {
                Err(UnpackError::MetadataTooLarge { max }) => assert_eq!(max, MAX_TAR_METADATA),
                other => panic!("{kind:?}: expected the metadata cap, got {other:?}"),
            }
        }
        // A long name of ordinary length still works.
        let long = format!("{0}/{0}/{0}/f", "d".repeat(100));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = Tar::header(tar::EntryType::Regular, 0o644);
        h.set_size(1);
        h.set_cksum();
        b.append_data(&mut h, &long, &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let d = tempfile::tempdir().unwrap();
        unpack_tar(t.as_slice(), d.path(), UnpackLimits::default()).unwrap();
        assert!(d.path().join(&long).exists());
    }

    #[test]
    fn gzip_zstd_and_plain_layers() {
        if !root() {
            return;
        }
        let plain = Tar::new().file("hello", b"world").done();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(plain.as_slice(), 3).unwrap();
        for bytes in [plain.clone(), gz, zst] {
            let (d, r) = unpack(&bytes);
            r.unwrap();
            assert_eq!(std::fs::read(d.path().join("hello")).unwrap(), b"world");
        }
    }
}
