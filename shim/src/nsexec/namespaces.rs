//! The init's namespaces: opened through its /proc directory and joined in runc's order.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use super::error::NsExecError;
use super::fs::open_at;

/// Namespaces in runc's join order (user first; it is handled separately below).
const NAMESPACES: [(&str, libc::c_int); 8] = [
    ("user", libc::CLONE_NEWUSER),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("mnt", libc::CLONE_NEWNS),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
];

pub(super) struct NsFd {
    name: &'static str,
    flag: libc::c_int,
    fd: OwnedFd,
}

/// Opens the init's namespaces that differ from ours. A namespace type the kernel lacks (no
/// `ns/<name>` entry) is skipped.
pub(super) fn open_namespaces(proc_dir: &OwnedFd, pid: i32) -> Result<Vec<NsFd>, NsExecError> {
    let mut out = Vec::new();
    for (name, flag) in NAMESPACES {
        let fd = match open_at(proc_dir, &format!("ns/{name}"), libc::O_RDONLY) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(source) => {
                return Err(NsExecError::Init {
                    pid,
                    what: format!("open ns/{name}"),
                    source,
                })
            }
        };
        let theirs = File::from(fd.try_clone().map_err(|source| NsExecError::Init {
            pid,
            what: format!("dup ns/{name}"),
            source,
        })?)
        .metadata()
        .map_err(|source| NsExecError::Init {
            pid,
            what: format!("stat ns/{name}"),
            source,
        })?;
        if let Ok(ours) = std::fs::metadata(format!("/proc/self/ns/{name}")) {
            if ours.dev() == theirs.dev() && ours.ino() == theirs.ino() {
                continue;
            }
        }
        out.push(NsFd { name, flag, fd });
    }
    Ok(out)
}

fn setns(ns: &NsFd) -> io::Result<()> {
    // SAFETY: valid namespace fd.
    if unsafe { libc::setns(ns.fd.as_raw_fd(), ns.flag) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// runc's `join_namespaces`: first every non-user namespace host root may join (those owned by
/// another user namespace than the container's would be out of reach later), then the user
/// namespace (becoming its root), then the rest with the user namespace's privileges.
pub(super) fn join_namespaces(namespaces: Vec<NsFd>) -> Result<(), NsExecError> {
    let (user, others): (Vec<NsFd>, Vec<NsFd>) = namespaces
        .into_iter()
        .partition(|ns| ns.flag == libc::CLONE_NEWUSER);
    let mut deferred = Vec::new();
    for ns in others {
        match setns(&ns) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => deferred.push(ns),
            Err(source) => {
                return Err(NsExecError::Setns {
                    ns: ns.name,
                    source,
                })
            }
        }
    }
    for ns in user {
        setns(&ns).map_err(|source| NsExecError::Setns {
            ns: ns.name,
            source,
        })?;
        // Become root of the user namespace, as unshare(CLONE_NEWUSER) would (runc #4466). A
        // namespace without uid 0 mapped (EINVAL) is left to the child's setresuid.
        // SAFETY: plain syscall.
        if unsafe { libc::setresuid(0, 0, 0) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(NsExecError::Setup {
                    step: "setresuid(0) in the container's user namespace".into(),
                    source: err,
                });
            }
        }
    }
    for ns in deferred {
        setns(&ns).map_err(|source| NsExecError::Setns {
            ns: ns.name,
            source,
        })?;
    }
    Ok(())
}
