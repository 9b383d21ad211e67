//! ImageFsInfo: bytes and inodes used under the image store directory
//! (`<root>/images`), which kubelet's image garbage collection watches, and
//! under the containers' writable layers (`<root>/containers`), kubelet's
//! container filesystem (Kubernetes 1.29's split image filesystem).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use k8s_cri::v1::{FilesystemIdentifier, FilesystemUsage, ImageFsInfoResponse, UInt64Value};
use tonic::Status;

use crate::state::errors::internal;
use crate::state::ids::now_ns;
use crate::state::Runtime;

/// Disk bytes (allocated blocks) and inodes used below `dir`, each hard-linked
/// file counted once; `dir` itself counts as one inode.
pub fn usage(dir: &Path) -> std::io::Result<(u64, u64)> {
    let mut seen = HashSet::new();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p)?;
        if !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        bytes += md.blocks() * 512;
        inodes += 1;
        if md.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok((bytes, inodes))
}

pub async fn image_fs_info(rt: &Runtime) -> Result<ImageFsInfoResponse, Status> {
    let images = measured(rt.layout.images_dir(), "measuring the image filesystem").await?;
    let containers = measured(
        rt.layout.containers_dir(),
        "measuring the containers' writable layers",
    )
    .await?;
    Ok(ImageFsInfoResponse {
        image_filesystems: vec![images],
        container_filesystems: vec![containers],
    })
}

/// The usage of `dir` as a CRI FilesystemUsage, measured off the async threads.
async fn measured(dir: PathBuf, what: &'static str) -> Result<FilesystemUsage, Status> {
    let d = dir.clone();
    let (bytes, inodes) = tokio::task::spawn_blocking(move || usage(&d))
        .await
        .map_err(|e| internal(what, e))?
        .map_err(|e| internal(what, e))?;
    Ok(FilesystemUsage {
        timestamp: now_ns(),
        fs_id: Some(FilesystemIdentifier {
            mountpoint: dir.to_string_lossy().into_owned(),
        }),
        used_bytes: Some(UInt64Value { value: bytes }),
        inodes_used: Some(UInt64Value { value: inodes }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_blocks_and_inodes_once_per_hard_link() {
        let d = tempfile::tempdir().unwrap();
        let (b0, i0) = usage(d.path()).unwrap();
        assert_eq!(i0, 1);
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::hard_link(d.path().join("sub/f"), d.path().join("link")).unwrap();
        std::os::unix::fs::symlink("sub/f", d.path().join("sym")).unwrap();
        let (b1, i1) = usage(d.path()).unwrap();
        assert_eq!(i1, 4, "dir, sub, f (once), sym");
        assert!(b1 >= b0 + 64 * 1024, "{b0} -> {b1}");
        assert!(
            b1 < b0 + 2 * 64 * 1024 + 16 * 1024,
            "hard link counted twice: {b1}"
        );
    }
}
