//! Files under the host's root: host paths resolved as the host sees them
//! (an absolute symlink points into the host root, not into the
//! installer's container), atomic writes with explicit modes, and
//! comparisons that read big binaries in chunks.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The host's root directory as mounted here (`/` on the host itself).
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    pub fn new(dir: &Path) -> Root {
        Root {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where host path `p` is here, every symlink resolved inside the root.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.resolve_inner(p, true)
    }

    /// [`Root::resolve`] that keeps a final symlink itself (to replace or
    /// remove it rather than its target).
    pub fn resolve_parent(&self, p: &Path) -> PathBuf {
        self.resolve_inner(p, false)
    }

    fn resolve_inner(&self, p: &Path, follow_last: bool) -> PathBuf {
        let mut todo: Vec<std::ffi::OsString> = p
            .components()
            .rev()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        let mut done: Vec<std::ffi::OsString> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                done.pop();
                continue;
            }
            let here = self.join(&done).join(&c);
            let last = todo.is_empty();
            let link = match std::fs::symlink_metadata(&here) {
                Ok(m) if m.file_type().is_symlink() && (follow_last || !last) && hops < 40 => {
                    std::fs::read_link(&here).ok()
                }
                _ => None,
            };
            match link {
                Some(target) => {
                    hops += 1;
                    if target.is_absolute() {
                        done.clear();
                    }
                    for t in target.components().rev() {
                        match t {
                            Component::Normal(n) => todo.push(n.to_os_string()),
                            Component::ParentDir => todo.push("..".into()),
                            _ => {}
                        }
                    }
                }
                None => done.push(c),
            }
        }
        self.join(&done)
    }

    fn join(&self, parts: &[std::ffi::OsString]) -> PathBuf {
        let mut p = self.dir.clone();
        for c in parts {
            p.push(c);
        }
        p
    }
}

/// The contents of `path`, or `None` when it does not exist.
pub fn read_opt(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether anything (a file, a directory, a dangling symlink) is at `path`.
pub fn present(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Whether the regular file at `path` holds exactly the bytes of `src`.
pub fn same_file_content(src: &Path, path: &Path) -> io::Result<bool> {
    let mut a = File::open(src)?;
    let mut b = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if a.metadata()?.len() != b.metadata()?.len() || !b.metadata()?.is_file() {
        return Ok(false);
    }
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    loop {
        let n = read_full(&mut a, &mut ba)?;
        let m = read_full(&mut b, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The permission bits of `path` (not following a final symlink).
pub fn mode_of(path: &Path) -> io::Result<u32> {
    Ok(std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777)
}

/// Creates the missing directories of `dir` with exactly `mode` each;
/// directories that exist keep theirs (host directories are not ours).
pub fn make_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_dirs(parent, mode)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a new file's bytes come from.
pub enum Content<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// Writes `path` atomically (a temporary file beside it, then rename) with
/// exactly `mode`, and `owner` when given. A running binary or a file
/// another process reads is replaced, never truncated in place.
pub fn write_atomic(
    path: &Path,
    content: Content<'_>,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("no file name"))?;
    let tmp = path.with_file_name(format!(".{}.vordr-new", name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)?;
        match content {
            Content::Bytes(b) => f.write_all(b)?,
            Content::File(src) => {
                io::copy(&mut File::open(src)?, &mut f)?;
            }
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        // Exactly `mode`, whatever the umask.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The owner (uid, gid) and mode of an existing file.
pub fn owner_and_mode(path: &Path) -> io::Result<((u32, u32), u32)> {
    let m = std::fs::metadata(path)?;
    Ok(((m.uid(), m.gid()), m.mode() & 0o7777))
}

/// Removes the file or symlink at `path`; gone already is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes `dir` if it is empty; gone or holding something is fine.
pub fn remove_dir_if_empty(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir(dir) {
        Err(e)
            if e.kind() != io::ErrorKind::NotFound
                && e.kind() != io::ErrorKind::DirectoryNotEmpty =>
        {
            Err(e)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        std::fs::create_dir_all(t.path().join("usr/bin")).unwrap();
        std::fs::create_dir_all(t.path().join("etc/alternatives")).unwrap();
        std::os::unix::fs::symlink("usr/bin", t.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("/etc/alternatives/x", t.path().join("usr/bin/x")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/real", t.path().join("etc/alternatives/x")).unwrap();
        std::os::unix::fs::symlink("../../..", t.path().join("usr/bin/up")).unwrap();
        assert_eq!(
            r.resolve(Path::new("/bin/x")),
            t.path().join("usr/bin/real")
        );
        assert_eq!(
            r.resolve_parent(Path::new("/bin/x")),
            t.path().join("usr/bin/x")
        );
        // `..` stops at the root.
        assert_eq!(
            r.resolve(Path::new("/usr/bin/up/etc")),
            t.path().join("etc")
        );
        assert_eq!(r.resolve(Path::new("/../../etc")), t.path().join("etc"));
        assert_eq!(r.resolve(Path::new("/no/such")), t.path().join("no/such"));
        // A symlink loop ends.
        std::os::unix::fs::symlink("loop", t.path().join("loop")).unwrap();
        assert_eq!(r.resolve(Path::new("/loop")), t.path().join("loop"));
    }

    #[test]
    fn atomic_writes_set_exact_modes_and_new_dirs_only() {
        let t = tempfile::tempdir().unwrap();
        let old = nix_umask(0o077);
        let d = t.path().join("a/b");
        make_dirs(&d, 0o755).unwrap();
        assert_eq!(mode_of(&t.path().join("a")).unwrap(), 0o755);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o750)).unwrap();
        make_dirs(&d, 0o755).unwrap();
        assert_eq!(
            mode_of(&d).unwrap(),
            0o750,
            "an existing dir keeps its mode"
        );
        let f = d.join("f");
        write_atomic(&f, Content::Bytes(b"one"), 0o644, None).unwrap();
        assert_eq!(mode_of(&f).unwrap(), 0o644);
        write_atomic(&f, Content::Bytes(b"two"), 0o600, None).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(mode_of(&f).unwrap(), 0o600);
        let g = d.join("g");
        write_atomic(&g, Content::File(&f), 0o755, None).unwrap();
        assert!(same_file_content(&f, &g).unwrap());
        assert_eq!(mode_of(&g).unwrap(), 0o755);
        std::fs::write(&g, b"twx").unwrap();
        assert!(!same_file_content(&f, &g).unwrap());
        assert!(!same_file_content(&f, &d.join("none")).unwrap());
        nix_umask(old);
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }

    fn nix_umask(m: u32) -> u32 {
        // SAFETY: umask only swaps the process's file mode mask.
        unsafe { libc::umask(m as libc::mode_t) as u32 }
    }
}
