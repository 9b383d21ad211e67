//! Modes of Vordr's directories, files and sockets. Nothing here depends on
//! the process umask: every mode is set explicitly, so a daemon started
//! under `umask 000` (or a node upgraded from a version that left its
//! directories 0755) ends up with the same modes as any other.
//!
//! | what | mode |
//! |---|---|
//! | the root and run directories | [`TRAVERSE_DIR`] 0711: reachable, not listable |
//! | state directories (content store, snapshots, bundles, containers, pods, shim sockets) | [`PRIVATE_DIR`] 0700 |
//! | the database, container configs | [`PRIVATE_FILE`] 0600 |
//! | sockets (CRI, events, shims, attach, consoles) | [`PRIVATE_SOCKET`] 0600 |

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;

/// Directories others may pass through (to reach a socket or a path
/// handed to them) but not list: the root and run directories.
pub const TRAVERSE_DIR: u32 = 0o711;
/// Directories only the daemon (root) enters.
pub const PRIVATE_DIR: u32 = 0o700;
/// Files only their owner reads and writes.
pub const PRIVATE_FILE: u32 = 0o600;
/// Sockets only their owner connects to.
pub const PRIVATE_SOCKET: u32 = 0o600;

/// Sets the permission bits of `path` to exactly `mode`.
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::set_permissions(path, Permissions::from_mode(mode))
}

/// [`set_mode`] when `path` exists; `Ok(false)` when it does not.
pub fn set_mode_if_exists(path: &Path, mode: u32) -> io::Result<bool> {
    match set_mode(path, mode) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates `dir` (missing parents too) and gives it exactly `mode`, also
/// when it already existed with another one. Missing parents are created
/// with `mode` as well, filtered by the umask.
pub fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(mode).create(dir)?;
    set_mode(dir, mode)
}

/// Creates `path` if it does not exist, and gives it exactly `mode`.
/// Contents are left alone.
pub fn ensure_file(path: &Path, mode: u32) -> io::Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    f.set_permissions(Permissions::from_mode(mode))
}

/// Writes `data` to `path` (created or truncated) with mode 0600; the file
/// has that mode before the first byte is written. A failed write removes
/// the file rather than leave half of it.
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    let res = f
        .set_permissions(Permissions::from_mode(PRIVATE_FILE))
        .and_then(|()| f.write_all(data));
    if res.is_err() {
        drop(f);
        let _ = std::fs::remove_file(path);
    }
    res
}

/// Binds a unix socket at `path` that has `mode` from the moment it exists.
///
/// The umask is per process, but a thread that unshares its file system
/// attributes (`CLONE_FS`) gets its own: the socket is bound from such a
/// short-lived thread under the umask `!mode`, so no other thread's files
/// are affected, and its mode is then set explicitly (bind applies the
/// umask only). If that fails the socket is removed.
pub fn bind_unix(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let listener = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare and umask affect only this thread's (now
            // private) file system attributes.
            unsafe {
                if libc::unshare(libc::CLONE_FS) != 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::umask(!mode & 0o777);
            }
            UnixListener::bind(path)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("binding thread panicked")))
    })?;
    if let Err(e) = set_mode(path, mode) {
        drop(listener);
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Every test runs under the most permissive umask: a mode that is left
    /// to the umask shows up as 0777 or 0666. (The umask is per process;
    /// all tests of this binary want the same one.)
    fn worst_umask() {
        // SAFETY: plain umask.
        unsafe { libc::umask(0) };
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn ensure_dir_creates_and_fixes_modes() {
        worst_umask();
        let d = tempfile::tempdir().unwrap();
        let new = d.path().join("a/b");
        ensure_dir(&new, PRIVATE_DIR).unwrap();
        assert_eq!(mode(&new), 0o700);
        // An existing directory from an older version is fixed.
        let old = d.path().join("old");
        std::fs::create_dir(&old).unwrap();
        set_mode(&old, 0o755).unwrap();
        ensure_dir(&old, TRAVERSE_DIR).unwrap();
        assert_eq!(mode(&old), 0o711);
        // A file in the way is an error, not a directory.
        let file = d.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(ensure_dir(&file, PRIVATE_DIR).is_err());
    }

    #[test]
    fn files_are_private_whatever_existed() {
        worst_umask();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        write_private(&p, b"{}").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        set_mode(&p, 0o644).unwrap();
        write_private(&p, b"[]").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"[]");

        let db = d.path().join("vordr.db");
        ensure_file(&db, PRIVATE_FILE).unwrap();
        assert_eq!(mode(&db), 0o600);
        std::fs::write(&db, "data").unwrap();
        set_mode(&db, 0o644).unwrap();
        ensure_file(&db, PRIVATE_FILE).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(std::fs::read(&db).unwrap(), b"data", "contents kept");

        // A symlink is not followed (it could point anywhere).
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&db, &link).unwrap();
        assert!(write_private(&link, b"x").is_err());
        assert!(ensure_file(&link, PRIVATE_FILE).is_err());
        assert_eq!(std::fs::read(&db).unwrap(), b"data");

        assert!(!set_mode_if_exists(&d.path().join("missing"), 0o600).unwrap());
        assert!(set_mode_if_exists(&db, 0o640).unwrap());
        assert_eq!(mode(&db), 0o640);
    }

    #[test]
    fn sockets_are_bound_private() {
        worst_umask();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.sock");
        let listener = bind_unix(&p, PRIVATE_SOCKET).unwrap();
        assert_eq!(mode(&p), 0o600);
        // It is a working listener.
        let _client = std::os::unix::net::UnixStream::connect(&p).unwrap();
        let (_conn, _) = listener.accept().unwrap();
        // The umask of the process (and so of every other thread) is
        // untouched: a file created now still gets 0666.
        let f = d.path().join("after");
        std::fs::write(&f, "").unwrap();
        assert_eq!(mode(&f), 0o666);
        // A path in use is an error and leaves the existing socket alone.
        assert!(bind_unix(&p, PRIVATE_SOCKET).is_err());
        assert!(p.exists());
        // So is a missing directory.
        assert!(bind_unix(&d.path().join("no/such.sock"), PRIVATE_SOCKET).is_err());
    }
}
