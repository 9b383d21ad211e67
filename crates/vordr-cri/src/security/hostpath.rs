//! Host paths resolved once. Each CRI mount's host path is opened
//! (`O_PATH`, symlinks followed by the kernel) and the object held while
//! the container is created; its real path, read back from the descriptor,
//! is what the spec names and the gatekeeper judges. Once the runtime has
//! mounted it, before any process of the container runs, the object at each
//! mount's destination inside the container must be that very object (same
//! device and inode as the descriptor): a symlink swapped in between is
//! caught and the container refused. (Mounting the descriptor itself is not
//! possible across mount namespaces, and staging it in the host's would
//! copy every submount into the host's namespace.) The container's log file
//! is resolved the same way, as far as it exists.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use k8s_cri::v1::Mount;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fstat, Mode};
use tonic::Status;

use crate::state::errors::{internal, invalid};

/// Host paths held open, in the order of the CRI mounts.
#[derive(Debug, Default)]
pub struct HostPaths {
    held: Vec<(OwnedFd, PathBuf)>,
}

impl HostPaths {
    /// Opens every mount's host path; a missing one is InvalidArgument
    /// naming the mount.
    pub fn resolve(mounts: &[Mount]) -> Result<HostPaths, Status> {
        let mut held = Vec::with_capacity(mounts.len());
        for (i, m) in mounts.iter().enumerate() {
            let field = format!("mounts[{i}].host_path");
            if m.host_path.is_empty() {
                return Err(invalid(&field, "must not be empty"));
            }
            if !m.host_path.starts_with('/') {
                return Err(invalid(
                    &field,
                    format!("{:?} is not an absolute path", m.host_path),
                ));
            }
            let fd = match open(
                m.host_path.as_str(),
                OFlag::O_PATH | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR) => {
                    return Err(invalid(&field, format!("{} does not exist", m.host_path)))
                }
                Err(e) => return Err(internal(&format!("resolving {field} {}", m.host_path), e)),
            };
            // SAFETY: a descriptor just returned to us, owned from here.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let real = fd_path(&fd).map_err(|e| internal(&format!("resolving {field}"), e))?;
            held.push((fd, real));
        }
        Ok(HostPaths { held })
    }

    /// Each held host path, its descriptor and real path, in the order of
    /// the CRI mounts.
    pub fn held(&self) -> impl Iterator<Item = (std::os::fd::BorrowedFd<'_>, &Path)> {
        use std::os::fd::AsFd;
        self.held.iter().map(|(fd, p)| (fd.as_fd(), p.as_path()))
    }

    /// The real paths, mount by mount (what the spec names).
    pub fn real_paths(&self) -> Vec<PathBuf> {
        self.held.iter().map(|(_, p)| p.clone()).collect()
    }

    /// Checks, for a container created with `spec` whose init is `pid`
    /// (not yet started), that each mount of a held host path shows the
    /// held object at its destination. A mismatch is PermissionDenied.
    pub fn verify(&self, pid: u32, spec: &oci_spec::runtime::Spec) -> Result<(), Status> {
        if self.held.is_empty() {
            return Ok(());
        }
        let root = open(
            format!("/proc/{pid}/root").as_str(),
            OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .map_err(|e| internal("opening the container's root", e))?;
        // SAFETY: a descriptor just returned to us, owned here.
        let root = unsafe { OwnedFd::from_raw_fd(root) };
        for (i, (fd, real)) in self.held.iter().enumerate() {
            let want = fstat(fd.as_raw_fd()).map_err(|e| internal("host path", e))?;
            let mounts = spec.mounts().iter().flatten();
            for m in mounts.filter(|m| m.source().as_ref() == Some(real)) {
                let dest = m.destination();
                let got = in_root(&root, dest).and_then(|f| fstat(f.as_raw_fd()));
                let same = got.is_ok_and(|g| g.st_dev == want.st_dev && g.st_ino == want.st_ino);
                if !same {
                    return Err(Status::permission_denied(format!(
                        "gatekeeper: mounts[{i}].host_path {} changed between its judgement and \
                         its mount at {}: refused",
                        real.display(),
                        dest.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Opens `path` inside the container's root, resolving within it.
fn in_root(root: &OwnedFd, path: &Path) -> nix::Result<OwnedFd> {
    use nix::fcntl::{openat2, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(root.as_raw_fd(), path, how)?;
    // SAFETY: a descriptor just returned to us, owned from here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The path of the object `fd` holds, as the kernel names it.
fn fd_path(fd: &OwnedFd) -> std::io::Result<PathBuf> {
    let p = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    if !p.is_absolute() || p.to_string_lossy().ends_with(" (deleted)") {
        return Err(std::io::Error::other(format!(
            "{} is not reachable by a path",
            p.display()
        )));
    }
    Ok(p)
}

/// The container's log file: `log_path` (relative, no `.` or `..`) in the
/// pod's `log_directory` with its symlinks resolved as far as it exists.
/// `None` when either is empty (the container logs nowhere).
pub fn log_file(log_directory: &str, log_path: &str) -> Result<Option<PathBuf>, Status> {
    if log_directory.is_empty() || log_path.is_empty() {
        return Ok(None);
    }
    let rel = Path::new(log_path);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(invalid(
            "config.log_path",
            format!("{log_path:?} must be a relative path without . or .."),
        ));
    }
    if !log_directory.starts_with('/') {
        return Err(invalid(
            "sandbox_config.log_directory",
            format!("{log_directory:?} is not an absolute path"),
        ));
    }
    Ok(Some(resolve_existing(Path::new(log_directory)).join(rel)))
}

/// `path` (absolute) with the symlinks of its longest existing prefix
/// resolved and `..` taken physically there; the rest cleaned lexically.
pub fn resolve_existing(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(fd) = open(
            existing.as_path(),
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            // SAFETY: a descriptor just returned to us, owned here.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            if let Ok(mut out) = fd_path(&fd) {
                for c in rest.iter().rev() {
                    match c.to_str() {
                        Some("..") => {
                            out.pop();
                        }
                        Some(".") | Some("") => {}
                        _ => out.push(c),
                    }
                }
                return out;
            }
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return vordr_gatekeeper::tables::lexical(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount_of(p: &Path) -> Mount {
        Mount {
            host_path: p.display().to_string(),
            container_path: "/x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn symlinks_and_dots_resolve_to_the_object_held() {
        // Debian's /var/lock -> /run/lock: "/var/lock/../vordr" is
        // /var/vordr lexically but /run/vordr to the kernel.
        let d = tempfile::tempdir().unwrap();
        let run_lock = d.path().join("run/lock");
        std::fs::create_dir_all(&run_lock).unwrap();
        std::fs::create_dir_all(d.path().join("run/vordr")).unwrap();
        std::fs::create_dir_all(d.path().join("var/vordr")).unwrap();
        let var_lock = d.path().join("var/lock");
        std::os::unix::fs::symlink(&run_lock, &var_lock).unwrap();
        let p = var_lock.join("..").join("vordr");
        let hp = HostPaths::resolve(&[mount_of(&p)]).unwrap();
        let real = std::fs::canonicalize(d.path().join("run/vordr")).unwrap();
        assert_eq!(hp.real_paths(), [real]);
        // A symlink into /etc resolves to /etc.
        let etc = d.path().join("etc-link");
        std::os::unix::fs::symlink("/etc", &etc).unwrap();
        let hp = HostPaths::resolve(&[mount_of(&etc)]).unwrap();
        assert_eq!(hp.real_paths(), [PathBuf::from("/etc")]);
    }

    #[test]
    fn bad_host_paths_name_the_mount() {
        let e = HostPaths::resolve(&[mount_of(Path::new("/definitely/not/here"))]).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("mounts[0].host_path"),
            "{}",
            e.message()
        );
        let rel = Mount {
            host_path: "etc".into(),
            ..Default::default()
        };
        assert!(HostPaths::resolve(&[rel]).is_err());
    }

    #[test]
    fn a_swap_after_the_judgement_is_caught() {
        let d = tempfile::tempdir().unwrap();
        let (good, evil) = (d.path().join("good"), d.path().join("evil"));
        std::fs::create_dir(&good).unwrap();
        std::fs::create_dir(&evil).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let hp = HostPaths::resolve(&[mount_of(&link)]).unwrap();
        let real = hp.real_paths()[0].clone();
        // This process's root stands for the container's: a mount of the
        // real path "at" a destination shows what that destination holds.
        let spec_at = |dest: &Path| {
            let mut m = oci_spec::runtime::Mount::default();
            m.set_source(Some(real.clone()));
            m.set_destination(dest.to_path_buf());
            let mut spec = oci_spec::runtime::Spec::default();
            spec.set_mounts(Some(vec![m]));
            spec
        };
        let me = std::process::id();
        hp.verify(me, &spec_at(&good)).unwrap();
        // The runtime followed a swapped symlink: it mounted "evil".
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&evil, &link).unwrap();
        let e = hp.verify(me, &spec_at(&link)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(
            e.message().contains("changed between its judgement"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn log_files() {
        assert_eq!(log_file("", "a.log").unwrap(), None);
        assert_eq!(log_file("/x", "").unwrap(), None);
        for bad in ["../x.log", "/etc/shadow", "a/../../b", "./a"] {
            let e = log_file("/var/log/pods/p", bad).unwrap_err();
            assert!(e.message().contains("config.log_path"), "{bad}");
        }
        assert!(log_file("rel", "a.log").is_err());
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("logs");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        let got = log_file(link.join("new/dir").to_str().unwrap(), "c/0.log")
            .unwrap()
            .unwrap();
        assert_eq!(got, PathBuf::from("/etc/new/dir/c/0.log"));
    }
}
