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
