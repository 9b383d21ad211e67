//! Idmapped mounts for the containers of user-namespaced pods: the image's
//! layers and the pod's volumes are shown through the pod's user namespace,
//! so that a file owned by host uid 0 is owned by the container's root.
//!
//! The kernel does not idmap an overlayfs mount itself, but overlayfs takes
//! idmapped layers (Linux 5.19). Each lower layer is cloned (`open_tree`
//! OPEN_TREE_CLONE), idmapped (`mount_setattr` MOUNT_ATTR_IDMAP with the
//! pod's user namespace) and attached under the container's staging
//! directory (`<run>/idmap/<ctr>/`); the overlay is mounted over those,
//! and the staging mounts are detached at once (overlayfs keeps private
//! clones of its layers). The upper layer is not idmapped: what the
//! container writes is stored with the host ids its user namespace maps
//! to, and the upper directory (the container's `/`) belongs to the host
//! ids of the container's root.
//!
//! Volumes (the CRI mounts' host paths, already opened once by
//! [`crate::security::hostpath::HostPaths`]) are cloned from those
//! descriptors, recursively idmapped and attached in the staging
//! directory; the OCI spec given to the runtime bind-mounts them from
//! there, so youki and runc (1.1 has no idmapped mounts of its own) get the
//! same. Once the runtime has created the container, its mount namespace
//! holds its own copies and the staging directory is released.
//!
//! [`release`] unmounts everything under a staging directory before it
//! removes a single entry, so a host path mounted there is never deleted
//! through it; teardown and the start-up sweep call it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A detached copy of the mount tree at `fd` (an O_PATH descriptor of a
/// directory or file), its submounts too when `recursive`.
fn clone_tree(fd: BorrowedFd<'_>, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: open_tree on a descriptor we borrow with an empty C string;
    // the result is checked and owned.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor open_tree just returned.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Idmaps the detached mount `mnt` (and its submounts when `recursive`)
/// with the mappings of the user namespace `userns`, and makes it a slave
/// of the source's peer group: mounts made on the host still reach it, but
/// nothing done to it (its release included: unmounting a peer's submount
/// would unmount the host's) propagates back.
fn set_idmap(mnt: BorrowedFd<'_>, userns: BorrowedFd<'_>, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: libc::MS_SLAVE,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: mount_setattr reads `attr` (its size given) for a descriptor
    // we borrow.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches the detached mount `mnt` at `target`.
fn attach(mnt: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let to = cstring(target)?;
    // SAFETY: move_mount from a descriptor we borrow to a NUL-terminated path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches an idmapped clone of `source` (an open descriptor of a
/// directory or a file) at `target`, which is created (an empty
/// directory or file, as `source`) and must not exist.
pub fn stage(
    source: BorrowedFd<'_>,
    userns: BorrowedFd<'_>,
    recursive: bool,
    target: &Path,
) -> io::Result<()> {
    let is_dir = nix::sys::stat::fstat(source.as_raw_fd())
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .map_err(io::Error::from)?;
    let mnt = clone_tree(source, recursive)?;
    set_idmap(mnt.as_fd(), userns, recursive)?;
    if is_dir {
        std::fs::DirBuilder::new().mode(0o700).create(target)?;
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(target)?;
    }
    attach(mnt.as_fd(), target)
}

/// Opens a directory or file as an O_PATH descriptor (no symlink at the end).
pub fn open_path(p: &Path) -> io::Result<OwnedFd> {
    let c = cstring(p)?;
    // SAFETY: open with a NUL-terminated path; the result is checked and owned.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just returned.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates the staging directory `dir` afresh. It and its parent can be
/// passed through but not listed (youki resolves a mount's source from
/// inside the container's user namespace).
pub fn create_staging(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        vordr_fsmode::ensure_dir(parent, vordr_fsmode::TRAVERSE_DIR)?;
    }
    release(dir).map_err(io::Error::other)?;
    vordr_fsmode::ensure_dir(dir, vordr_fsmode::TRAVERSE_DIR)
}

/// The mount points of this process at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/thread-self/mountinfo")?;
    let mut points: Vec<PathBuf> = vordr_mountinfo::parse(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    Ok(points)
}

/// Detaches every mount at or under `dir`, then removes `dir` and its
/// entries. Refuses to remove anything while a mount is left there. A
/// missing `dir` is released already.
pub fn release(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    let what = |e: io::Error| format!("{}: {e}", dir.display());
    for p in mounts_under(dir).map_err(what)? {
        // Stacked mounts: detach until nothing is mounted at `p`.
        for _ in 0..64 {
            if nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH).is_err() {
                break;
            }
        }
    }
    let left = mounts_under(dir).map_err(what)?;
    if let Some(p) = left.first() {
        return Err(format!(
            "{} is still mounted: not removing {}",
            p.display(),
            dir.display()
        ));
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(what(e)),
    }
}

/// The host uid and gid of the container's root (id 0 of the pod's user
/// namespace); `None` where id 0 is not mapped.
pub fn host_root(maps: &vordr_net::netns::IdMaps) -> Option<(u32, u32)> {
    let find = |list: &[(u32, u32, u32)]| {
        list.iter()
            .find(|(inside, _, len)| *inside == 0 && *len > 0)
            .map(|(_, host, _)| *host)
    };
    Some((find(&maps.uids)?, find(&maps.gids)?))
}

/// Idmaps each of `lowers` with `userns` into `staging` (`l0`, `l1`, ...):
/// the paths to give overlayfs as its lower layers, in the same order.
pub fn stage_layers(
    lowers: &[PathBuf],
    userns: BorrowedFd<'_>,
    staging: &Path,
) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::with_capacity(lowers.len());
    for (i, lower) in lowers.iter().enumerate() {
        let target = staging.join(format!("l{i}"));
        let fd = open_path(lower)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", lower.display())))?;
        stage(fd.as_fd(), userns, false, &target).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("idmapping the image layer {}: {e}", lower.display()),
            )
        })?;
        out.push(target);
    }
    Ok(out)
}

/// Stages an idmapped copy of each held host path that `spec` bind-mounts
/// (`v0`, `v1`, ... in `staging`, which exists) and points those mounts at
/// the copies. A submount of a volume is idmapped too; a filesystem that
/// cannot be is FailedPrecondition naming the mount.
pub fn stage_volumes(
    spec: &mut oci_spec::runtime::Spec,
    host_paths: &crate::security::hostpath::HostPaths,
    userns: BorrowedFd<'_>,
    staging: &Path,
) -> Result<(), tonic::Status> {
    let Some(mut mounts) = spec.mounts().clone() else {
        return Ok(());
    };
    for (i, (fd, real)) in host_paths.held().enumerate() {
        let uses = |m: &oci_spec::runtime::Mount| m.source().as_deref() == Some(real);
        if !mounts.iter().any(uses) {
            continue;
        }
        let target = staging.join(format!("v{i}"));
        stage(fd, userns, true, &target).map_err(|e| {
            let what = format!(
                "mounts[{i}].host_path {}: an idmapped mount (for the pod's user namespace) failed: {e}",
                real.display()
            );
            if e.raw_os_error() == Some(libc::EINVAL) {
                tonic::Status::failed_precondition(format!(
                    "{what} (its filesystem, or one mounted below it, cannot be idmapped)"
                ))
            } else {
                crate::state::errors::internal("idmapping a volume", what)
            }
        })?;
        for m in mounts.iter_mut().filter(|m| uses(m)) {
            m.set_source(Some(target.clone()));
        }
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// Stages an idmapped copy of each file or directory under `pod_dir` (the
/// daemon's own files of the pod: hostname, hosts, resolv.conf) that `spec`
/// bind-mounts (`p0`, `p1`, ... in `staging`), and points those mounts at
/// the copies, so that they are root's inside as they are on the host.
pub fn stage_pod_files(
    spec: &mut oci_spec::runtime::Spec,
    pod_dir: &Path,
    userns: BorrowedFd<'_>,
    staging: &Path,
) -> io::Result<()> {
    let Some(mut mounts) = spec.mounts().clone() else {
        return Ok(());
    };
    for (i, m) in mounts.iter_mut().enumerate() {
        let Some(source) = m.source().clone() else {
            continue;
        };
        if !source.starts_with(pod_dir) || m.typ().as_deref() != Some("bind") {
            continue;
        }
        let target = staging.join(format!("p{i}"));
        let fd = open_path(&source)?;
        stage(fd.as_fd(), userns, false, &target)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", source.display())))?;
        m.set_source(Some(target));
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// Mounts the container's overlay at `target` over idmapped copies of
/// `lowers` (bottom layer first), the upper directory owned by `root`
/// (host uid, gid of the container's root). The staging mounts are
/// released whatever happens; on failure nothing stays mounted at `target`.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    userns: BorrowedFd<'_>,
    root: (u32, u32),
    staging: &Path,
) -> io::Result<()> {
    create_staging(staging)?;
    let res = (|| {
        let staged = stage_layers(lowers, userns, staging)?;
        if let Some(layer) = upper.parent() {
            vordr_fsmode::ensure_dir(layer, vordr_fsmode::PRIVATE_DIR)?;
        }
        vordr_fsmode::ensure_dir(upper, 0o755)?;
        std::os::unix::fs::lchown(upper, Some(root.0), Some(root.1))?;
        crate::container::rootfs::mount_overlay(&staged, upper, work, target)
    })();
    let released = release(staging);
    res?;
    if let Err(e) = released {
        crate::container::rootfs::unmount(target);
        return Err(io::Error::other(e));
    }
    Ok(())
}

impl crate::state::Runtime {
    /// Whether user-namespaced pods get idmapped layers and volumes here:
    /// probed on first use (the daemon asks at start).
    pub fn idmap_support(&self) -> &Support {
        self.idmap.get_or_init(|| {
            let root = self.layout.idmap_root();
            if let Err(e) = vordr_fsmode::ensure_dir(&root, vordr_fsmode::TRAVERSE_DIR) {
                return Err(format!("{}: {e}", root.display()));
            }
            probe(
                &self.layout.images_dir().join("snapshots"),
                &root,
                std::slice::from_ref(&self.config.gatekeeper.kubelet_root),
            )
        })
    }

    /// FailedPrecondition naming what is missing, where idmapped mounts
    /// do not work here.
    pub fn require_idmap(&self) -> Result<(), tonic::Status> {
        match self.idmap_support() {
            Ok(_) => Ok(()),
            Err(why) => Err(tonic::Status::failed_precondition(format!(
                "user-namespaced pods need idmapped mounts, which do not work on this node: {why}"
            ))),
        }
    }
}

/// What the start-up probe found: `Ok` with what was tried, or why
/// user-namespaced pods cannot get idmapped mounts here.
pub type Support = Result<String, String>;

/// Probes, in a mount namespace of its own (on a thread of its own), that
/// an overlay over an idmapped layer of the filesystem holding `layers_dir`
/// works, that a tmpfs (the filesystem of secrets and memory volumes) takes
/// an idmap, and so does the filesystem of each of `volume_dirs` that
/// exists (kubelet's root, where its volumes live). Scratch files go under
/// `scratch` (removed after).
pub fn probe(layers_dir: &Path, scratch: &Path, volume_dirs: &[PathBuf]) -> Support {
    let (layers_dir, scratch) = (layers_dir.to_path_buf(), scratch.to_path_buf());
    let volume_dirs = volume_dirs.to_vec();
    std::thread::spawn(move || probe_thread(&layers_dir, &scratch, &volume_dirs))
        .join()
        .unwrap_or_else(|_| Err("the idmap probe's thread panicked".into()))
}

fn probe_thread(layers_dir: &Path, scratch: &Path, volume_dirs: &[PathBuf]) -> Support {
    use nix::sched::{unshare, CloneFlags};
    unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making the probe's mounts private: {e}"))?;
    let userns = vordr_net::netns::scratch_userns(PROBE_HOST_ID, 65536)?;
    std::fs::create_dir_all(layers_dir).map_err(|e| format!("{}: {e}", layers_dir.display()))?;
    // "tmp-": what the image store removes at start, should a crash leave it.
    let dir = layers_dir.join(format!("tmp-idmap-probe-{}", std::process::id()));
    release(&dir)?;
    std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let res = probe_overlay(&dir, userns.as_fd(), scratch);
    let _ = release(&scratch.join("probe"));
    release(&dir)?;
    res?;
    probe_tmpfs(userns.as_fd(), &scratch.join("probe-tmpfs"))?;
    let mut tried = format!(
        "an overlay over an idmapped layer of {} and an idmapped tmpfs",
        layers_dir.display()
    );
    for dir in volume_dirs.iter().filter(|d| d.is_dir()) {
        open_path(dir)
            .and_then(|fd| clone_tree(fd.as_fd(), false))
            .and_then(|mnt| set_idmap(mnt.as_fd(), userns.as_fd(), false))
            .map_err(|e| format!("idmapping {} (volumes live there): {e}", dir.display()))?;
        tried.push_str(&format!(", an idmapped {}", dir.display()));
    }
    Ok(tried)
}

fn probe_overlay(dir: &Path, userns: BorrowedFd<'_>, scratch: &Path) -> Result<(), String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |e: io::Error| format!("{what}: {e}")
    };
    let (lower, upper, work, merged) = (
        dir.join("lower"),
        dir.join("upper"),
        dir.join("work"),
        dir.join("merged"),
    );
    for d in [&lower, &upper, &work, &merged] {
        std::fs::create_dir(d).map_err(e("probe dirs"))?;
    }
    std::fs::write(lower.join("f"), b"").map_err(e("probe file"))?;
    let staging = scratch.join("probe");
    create_staging(&staging).map_err(e("probe staging dir"))?;
    let staged = stage_layers(std::slice::from_ref(&lower), userns, &staging).map_err(e(
        "idmapping a layer (MOUNT_ATTR_IDMAP on the image store's filesystem)",
    ))?;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        staged[0].display(),
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|err| format!("overlayfs over an idmapped layer: {err}"))?;
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(merged.join("f")).map_err(e("probe file"))?,
    );
    let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
    if owner != PROBE_HOST_ID {
        return Err(format!(
            "an idmapped layer under overlayfs showed owner {owner}, not {PROBE_HOST_ID}"
        ));
    }
    Ok(())
}

fn probe_tmpfs(userns: BorrowedFd<'_>, dir: &Path) -> Result<(), String> {
    release(dir)?;
    std::fs::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=4k"),
    )
    .map_err(|e| format!("probe tmpfs: {e}"))?;
    let res = open_path(dir)
        .and_then(|fd| clone_tree(fd.as_fd(), false))
        .and_then(|mnt| set_idmap(mnt.as_fd(), userns, false));
    release(dir)?;
    res.map_err(|e| format!("idmapping a tmpfs: {e}"))
}

/// The host id the probe's user namespace maps its id 0 to.
const PROBE_HOST_ID: u32 = 65536;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_root_is_the_host_id_of_container_zero() {
        let maps = vordr_net::netns::IdMaps {
            uids: vec![(0, 100_000, 65_536)],
            gids: vec![(0, 200_000, 65_536)],
        };
        assert_eq!(host_root(&maps), Some((100_000, 200_000)));
        let unmapped = vordr_net::netns::IdMaps {
            uids: vec![(1, 100_000, 65_536)],
            gids: vec![(0, 200_000, 65_536)],
        };
        assert_eq!(host_root(&unmapped), None);
    }

    #[test]
    fn probe_succeeds_on_this_kernel_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let layers = dir.path().join("snapshots");
        let scratch = dir.path().join("run");
        std::fs::create_dir_all(&scratch).unwrap();
        let res = probe(&layers, &scratch, &[dir.path().to_path_buf()]);
        assert!(res.is_ok(), "{res:?}");
        assert!(
            res.unwrap()
                .contains(&format!("an idmapped {}", dir.path().display())),
            "the volume directory was not tried"
        );
        // A directory on a filesystem without idmap support: procfs.
        let res = probe(&layers, &scratch, &[PathBuf::from("/proc/sys")]);
        assert!(
            res.as_ref().is_err_and(|e| e.contains("/proc/sys")),
            "{res:?}"
        );
        assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    }

    /// A shared host mount with a submount, staged and released: the
    /// host's submount stays (a peer's umount would propagate to it), and
    /// what is mounted on the host meanwhile still reaches the copy.
    #[test]
    fn staging_a_shared_volume_and_releasing_it_leaves_the_host_alone() {
        std::thread::spawn(|| {
            use nix::mount::{mount, MsFlags};
            nix::sched::unshare(
                nix::sched::CloneFlags::CLONE_FS | nix::sched::CloneFlags::CLONE_NEWNS,
            )
            .unwrap();
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let (src, staging) = (dir.path().join("src"), dir.path().join("staging"));
            for d in [src.join("sub"), src.join("later")] {
                std::fs::create_dir_all(d).unwrap();
            }
            mount(
                Some(&src),
                &src,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .unwrap();
            mount(
                None::<&str>,
                &src,
                None::<&str>,
                MsFlags::MS_SHARED,
                None::<&str>,
            )
            .unwrap();
            mount(
                Some("tmpfs"),
                &src.join("sub"),
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .unwrap();
            std::fs::write(src.join("sub/marker"), b"x").unwrap();
            let userns = vordr_net::netns::scratch_userns(PROBE_HOST_ID, 65536).unwrap();
            create_staging(&staging).unwrap();
            let fd = open_path(&src).unwrap();
            stage(fd.as_fd(), userns.as_fd(), true, &staging.join("v0")).unwrap();
            assert!(staging.join("v0/sub/marker").exists());
            let meta = std::fs::metadata(staging.join("v0/sub/marker")).unwrap();
            // Seen from the host through the idmap, host root's file is
            // owned by the host id of the namespace's root (submount too).
            assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), PROBE_HOST_ID);
            mount(
                Some("tmpfs"),
                &src.join("later"),
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .unwrap();
            std::fs::write(src.join("later/marker"), b"x").unwrap();
            assert!(
                staging.join("v0/later/marker").exists(),
                "host mounts reach the copy"
            );
            release(&staging).unwrap();
            assert!(!staging.exists());
            assert!(
                src.join("sub/marker").exists(),
                "the host's submount was unmounted"
            );
            assert!(src.join("later/marker").exists());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn release_never_removes_what_is_mounted_in_staging() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("keep"), b"x").unwrap();
        let staging = dir.path().join("staging");
        create_staging(&staging).unwrap();
        let target = staging.join("v0");
        std::fs::create_dir(&target).unwrap();
        nix::mount::mount(
            Some(&host),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        release(&staging).unwrap();
        assert!(!staging.exists());
        assert!(host.join("keep").exists(), "release deleted a host file");
    }
}
