//! Image volumes (Kubernetes 1.31+, KEP 4639; `Mount.image` and, since
//! 1.33, `Mount.image_sub_path`): a pulled image's file system mounted
//! read-only into a container.
//!
//! Before the spec is built, each image mount is staged under
//! `<run>/image-volumes/<container>/`: `<i>` is the image's layers as a
//! read-only overlay (a read-only bind for a one-layer image); with a sub
//! path, `<i>.sub` is a read-only bind of it instead, opened beneath the
//! image's root with openat2 (`RESOLVE_BENEATH`: no `..`, no absolute or
//! escaping symlink) and bound from that descriptor, and `<i>` is detached. The mount then goes on as a read-only bind of
//! the staged path, judged by the gatekeeper as Vordr's own (not a host
//! path). The staged mounts are detached with the container's teardown.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use k8s_cri::v1::{ContainerConfig, Mount};
use nix::mount::{mount, MsFlags};
use tonic::Status;

use crate::image::{find, parse_name};
use crate::state::errors::{internal, invalid};
use crate::state::Runtime;

/// What a read-only image volume is mounted with.
fn ro_flags() -> MsFlags {
    MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
}

/// Whether `m` mounts an image.
pub fn is_image(m: &Mount) -> bool {
    m.image.as_ref().is_some_and(|i| !i.image.is_empty())
}

/// Stages the image mounts of `config` for container `id`: the config with
/// each image mount turned into a read-only bind of its staged path, and
/// those paths. `None` when the config mounts no image. On error, what was
/// staged is left for [`release`] (the create's undo runs it).
pub fn stage(
    rt: &Runtime,
    id: &str,
    config: &ContainerConfig,
) -> Result<Option<(ContainerConfig, Vec<PathBuf>)>, Status> {
    if !config.mounts.iter().any(is_image) {
        return Ok(None);
    }
    let dir = rt.layout.image_volumes_dir(id);
    vordr_fsmode::ensure_dir(&rt.layout.image_volumes_root(), vordr_fsmode::PRIVATE_DIR)
        .and_then(|_| vordr_fsmode::ensure_dir(&dir, vordr_fsmode::PRIVATE_DIR))
        .map_err(|e| internal("the image volumes directory", e))?;
    let mut out = config.clone();
    let mut staged = Vec::new();
    for (i, m) in out.mounts.iter_mut().enumerate() {
        if !is_image(m) {
            if !m.image_sub_path.is_empty() {
                return Err(invalid(
                    &format!("mounts[{i}].image_sub_path"),
                    format!("is set but mounts[{i}].image is not"),
                ));
            }
            continue;
        }
        if !m.host_path.is_empty() {
            return Err(invalid(
                &format!("mounts[{i}].host_path"),
                "must be empty for an image mount",
            ));
        }
        let path = stage_one(rt, &dir, i, m)?;
        m.host_path = path.display().to_string();
        m.readonly = true;
        m.image = None;
        m.image_sub_path.clear();
        staged.push(path);
    }
    Ok(Some((out, staged)))
}

/// Mounts image volume `i` under `dir`; the path to bind into the container.
fn stage_one(rt: &Runtime, dir: &Path, i: usize, m: &Mount) -> Result<PathBuf, Status> {
    let field = format!("mounts[{i}].image");
    let image_name = m.image.as_ref().map_or("", |s| s.image.as_str());
    let name = parse_name(image_name).map_err(|e| invalid(&field, e))?;
    let image = find(rt, &name)
        .map_err(|e| internal("reading images", e))?
        .ok_or_else(|| {
            Status::not_found(format!(
                "{field}: image {image_name:?} not found: pull it first"
            ))
        })?;
    let chain_ids = image
        .chain_ids
        .iter()
        .map(|c| c.parse())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| internal("image snapshot", e))?;
    let lowers = rt.puller.snapshot_dirs(&chain_ids);
    let root = dir.join(i.to_string());
    vordr_fsmode::ensure_dir(&root, 0o755).map_err(|e| internal("an image volume", e))?;
    mount_layers(&lowers, &root)
        .map_err(|e| internal(&format!("mounting {field} {image_name}"), e))?;
    if m.image_sub_path.is_empty() {
        return Ok(root);
    }
    let sub_field = format!("mounts[{i}].image_sub_path");
    let rel = checked_sub_path(&m.image_sub_path).map_err(|e| invalid(&sub_field, e))?;
    let fd = open_beneath(&root, rel).map_err(|e| match e {
        nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => Status::not_found(format!(
            "{sub_field}: {:?} does not exist in image {image_name}",
            m.image_sub_path
        )),
        nix::errno::Errno::EXDEV | nix::errno::Errno::ELOOP => invalid(
            &sub_field,
            format!(
                "{:?} leaves the image {image_name} (through .. or a symlink)",
                m.image_sub_path
            ),
        ),
        e => internal(&format!("opening {sub_field}"), e),
    })?;
    let target = dir.join(format!("{i}.sub"));
    bind_fd(&fd, &target).map_err(|e| internal(&format!("mounting {sub_field}"), e))?;
    // The sub path's bind holds what it needs: the whole image goes.
    drop(fd);
    nix::mount::umount2(&root, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| internal(&format!("detaching {field} {image_name}"), e))?;
    let _ = std::fs::remove_dir(&root);
    Ok(target)
}

/// The sub path as a relative path of normal components: no `..`, not
/// absolute, not empty.
fn checked_sub_path(sub: &str) -> Result<&Path, String> {
    let p = Path::new(sub);
    if p.is_absolute() {
        return Err(format!("{sub:?} is not a relative path"));
    }
    if p.components().any(|c| {
        !matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    }) {
        return Err(format!("{sub:?} may not hold \"..\""));
    }
    if p.components().all(|c| c == std::path::Component::CurDir) {
        return Err(format!("{sub:?} names no path in the image"));
    }
    Ok(p)
}

/// Opens `rel` beneath `root` (O_PATH), refusing any resolution that would
/// leave it.
fn open_beneath(root: &Path, rel: &Path) -> Result<OwnedFd, nix::errno::Errno> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let dir = std::fs::File::open(root)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(dir.as_raw_fd(), rel, how)?;
    // SAFETY: a descriptor openat2 just returned, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Mounts the image's layers (bottom first) read-only at `target`.
fn mount_layers(lowers: &[PathBuf], target: &Path) -> std::io::Result<()> {
    let err = |what: &str, e: nix::errno::Errno| {
        std::io::Error::other(format!("{what} on {}: {e}", target.display()))
    };
    match lowers {
        [] => Err(std::io::Error::other("the image has no layers")),
        [one] => {
            mount(
                Some(one.as_path()),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| err("bind", e))?;
            remount_ro(target).map_err(|e| err("read-only remount", e))
        }
        _ => {
            let lower = lowers
                .iter()
                .rev()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":");
            let opts = format!("lowerdir={lower}");
            mount(
                Some("overlay"),
                target,
                Some("overlay"),
                ro_flags(),
                Some(opts.as_str()),
            )
            .map_err(|e| err("mount overlay", e))
        }
    }
}

/// Binds the object `fd` refers to at `target` (made to match: a file or
/// a directory), read-only.
fn bind_fd(fd: &OwnedFd, target: &Path) -> std::io::Result<()> {
    let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let is_dir = std::fs::metadata(&source)?.is_dir();
    if is_dir {
        vordr_fsmode::ensure_dir(target, 0o755)?;
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)?;
    }
    mount(
        Some(source.as_path()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(std::io::Error::from)?;
    remount_ro(target).map_err(std::io::Error::from)
}

fn remount_ro(target: &Path) -> nix::Result<()> {
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ro_flags(),
        None::<&str>,
    )
}

/// The ids of the images some container mounts as a volume (RemoveImage
/// keeps them: their snapshots are mounted). The references are resolved
/// as CreateContainer resolved them; kubelet gives the image id.
pub fn images_in_use(rt: &Runtime) -> Result<std::collections::HashSet<String>, Status> {
    let mut ids = std::collections::HashSet::new();
    let rows = rt
        .store
        .list_containers()
        .map_err(|e| internal("reading containers", e))?;
    for c in rows {
        let cfg: ContainerConfig = serde_json::from_str(&c.config).unwrap_or_default();
        for m in cfg.mounts.iter().filter(|m| is_image(m)) {
            let image = m.image.as_ref().map_or("", |i| i.image.as_str());
            let Ok(name) = parse_name(image) else {
                continue;
            };
            if let Some(img) = find(rt, &name).map_err(|e| internal("reading images", e))? {
                ids.insert(img.id);
            }
        }
    }
    Ok(ids)
}

/// The staged paths of container `id` (for the gatekeeper's judgement on
/// UpdateContainerResources).
pub fn staged_paths(rt: &Runtime, id: &str) -> Vec<PathBuf> {
    std::fs::read_dir(rt.layout.image_volumes_dir(id))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Detaches every staged image volume of container `id` and removes its
/// directory.
pub fn release(dir: &Path) -> Result<(), String> {
    crate::container::idmap::release(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_must_stay_relative_and_downward() {
        assert_eq!(
            checked_sub_path("etc/os-release"),
            Ok(Path::new("etc/os-release"))
        );
        assert_eq!(checked_sub_path("./bin"), Ok(Path::new("./bin")));
        for bad in ["/etc", "../x", "a/../../b", "a/..", ".", ""] {
            assert!(checked_sub_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn open_beneath_refuses_escapes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("dir")).unwrap();
        std::fs::write(root.join("dir/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("dir/up")).unwrap();
        std::os::unix::fs::symlink("f", root.join("dir/rel")).unwrap();
        std::fs::write(d.path().join("outside"), b"secret").unwrap();
        std::os::unix::fs::symlink("../outside", root.join("out")).unwrap();
        assert!(open_beneath(&root, Path::new("dir/f")).is_ok());
        assert!(open_beneath(&root, Path::new("dir/rel")).is_ok());
        assert_eq!(
            open_beneath(&root, Path::new("missing")).unwrap_err(),
            nix::errno::Errno::ENOENT
        );
        for esc in ["abs", "dir/up", "out", "abs/passwd"] {
            assert_eq!(
                open_beneath(&root, Path::new(esc)).unwrap_err(),
                nix::errno::Errno::EXDEV,
                "{esc}"
            );
        }
    }
}
