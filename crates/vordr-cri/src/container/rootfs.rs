//! A container's root file system: an overlay of the image's snapshots
//! (read-only lower dirs, top layer first) under a per-container upper dir.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Mounts the overlay at `target`. `lowers` are bottom layer first.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> std::io::Result<()> {
    if lowers.is_empty() {
        return Err(std::io::Error::other("the image has no layers"));
    }
    // Modes whatever the umask: the writable layer is the daemon's alone
    // (its upper dir gives the container's `/` its mode); the bundle may be
    // passed through, not listed (a user-namespaced container reaches its
    // rootfs through it from inside its namespace).
    use vordr_fsmode::{ensure_dir, PRIVATE_DIR, TRAVERSE_DIR};
    if let Some(layer) = upper.parent() {
        ensure_dir(layer, PRIVATE_DIR)?;
    }
    ensure_dir(upper, 0o755)?;
    ensure_dir(work, PRIVATE_DIR)?;
    if let Some(bundle) = target.parent() {
        ensure_dir(bundle, TRAVERSE_DIR)?;
    }
    ensure_dir(target, 0o755)?;
    let lower = lowers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| std::io::Error::other(format!("mount overlay on {}: {e}", target.display())))
}

/// Unmounts `target` if mounted (lazily, so a busy mount cannot block).
pub fn unmount(target: &Path) {
    let _ = umount2(target, MntFlags::MNT_DETACH);
}

/// Creates, as the daemon, the mount points in the container's rootfs that
/// a user-namespaced container could not create itself (its root is not
/// the owner of the image's directories). `(destination, is_dir)`; every
/// path is resolved inside the rootfs (openat2 RESOLVE_IN_ROOT), so an
/// image's symlinks cannot send a create outside it.
pub fn create_mountpoints(rootfs: &Path, mounts: &[(PathBuf, bool)]) -> std::io::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let root = std::fs::File::open(rootfs)?;
    let resolve = |rel: &Path| -> Result<OwnedFd, Errno> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        // SAFETY: openat2 returned a new descriptor we own.
        openat2(root.as_raw_fd(), rel, how).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    };
    for (dest, is_dir) in mounts {
        let rel: PathBuf = dest
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .collect();
        let Some(name) = rel.file_name().map(|n| n.to_os_string()) else {
            continue;
        };
        if resolve(&rel).is_ok() {
            continue;
        }
        // Make the parents one by one, then the mount point itself.
        let mut prefix = PathBuf::new();
        let parent = rel.parent().unwrap_or(Path::new(""));
        let mut dir = resolve(Path::new("."))?;
        for c in parent.components() {
            prefix.push(c);
            dir = match resolve(&prefix) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    let Some(part) = prefix.file_name() else {
                        continue;
                    };
                    nix::sys::stat::mkdirat(
                        Some(dir.as_raw_fd()),
                        part,
                        Mode::from_bits_truncate(0o755),
                    )
                    .or_else(|e| {
                        if e == Errno::EEXIST {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })?;
                    resolve(&prefix)?
                }
                Err(e) => return Err(e.into()),
            };
        }
        // O_PATH directories cannot be written through; reopen for real.
        let how = OpenHow::new()
            .flags(OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let parent_fd = openat2(
            root.as_raw_fd(),
            if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            },
            how,
        )?;
        // SAFETY: openat2 returned a new descriptor we own.
        let parent_fd = unsafe { OwnedFd::from_raw_fd(parent_fd) };
        let res = if *is_dir {
            nix::sys::stat::mkdirat(
                Some(parent_fd.as_raw_fd()),
                name.as_os_str(),
                Mode::from_bits_truncate(0o755),
            )
        } else {
            nix::fcntl::openat(
                Some(parent_fd.as_raw_fd()),
                name.as_os_str(),
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_WRONLY
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(|fd| {
                // SAFETY: a descriptor we just opened.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
            })
        };
        match res {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountpoints_are_made_inside_the_rootfs_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // An image symlink pointing out of the rootfs.
        std::os::unix::fs::symlink(&outside, root.join("evil")).unwrap();
        create_mountpoints(
            &root,
            &[
                ("/etc/hostname".into(), false),
                ("/run/secrets/token".into(), true),
            ],
        )
        .unwrap();
        assert!(root.join("etc/hostname").is_file());
        assert!(root.join("run/secrets/token").is_dir());
        // Through the symlink: refused or made inside, never outside.
        let _ = create_mountpoints(&root, &[("/evil/pwned".into(), false)]);
        assert!(
            !outside.join("pwned").exists(),
            "a create escaped the rootfs"
        );
    }
}
