//! Bytes and inodes of a container's writable layer (its overlay upper
//! dir), walked in the background.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Most entries one walk counts: a layer with more is reported as far as
/// counted rather than holding up the sampler.
const MAX_ENTRIES: u64 = 5_000_000;

/// Bytes (allocated blocks) and inodes under `dir`, the directory itself
/// excluded; never follows symlinks or leaves `dir`'s filesystem; each hard
/// linked inode counted once per link, as `du --count-links`.
pub fn disk_usage(dir: &Path) -> Option<(u64, u64)> {
    let top = std::fs::symlink_metadata(dir).ok()?;
    let dev = top.dev();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.metadata() else { continue };
            bytes = bytes.saturating_add(md.blocks().saturating_mul(512));
            inodes += 1;
            if inodes >= MAX_ENTRIES {
                return Some((bytes, inodes));
            }
            if md.is_dir() && md.dev() == dev {
                stack.push(e.path());
            }
        }
    }
    Some((bytes, inodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_dirs_are_counted() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), vec![1u8; 64 * 1024]).unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("link")).unwrap();
        let (bytes, inodes) = disk_usage(d.path()).unwrap();
        assert_eq!(inodes, 3, "sub, sub/f and the link, not /etc's files");
        assert!(bytes >= 64 * 1024, "{bytes}");
        assert_eq!(disk_usage(&d.path().join("missing")), None);
    }
}
