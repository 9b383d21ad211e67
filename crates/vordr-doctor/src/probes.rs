//! What only the running kernel can answer, behind a trait so that checks
//! on a fake root can be given fixed answers.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// The answer of a live probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// It works; what was tried.
    Yes(String),
    /// It does not; why.
    No(String),
    /// It could not be tried; why.
    NotProbed(String),
}

/// The kernel clock's NTP state (adjtimex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub synchronised: bool,
    /// The kernel's maximum error estimate, microseconds.
    pub max_error_us: i64,
}

/// Free and total bytes of a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged writer may still use.
    pub available: u64,
    pub total: u64,
}

/// The live kernel, as the checks ask it.
pub trait Probes {
    /// Whether a tmpfs takes MOUNT_ATTR_IDMAP.
    fn idmapped_mount(&self) -> Probe;
    /// Whether this kernel has seccomp (prctl PR_GET_SECCOMP); `None`:
    /// not asked.
    fn seccomp(&self) -> Option<bool>;
    /// The clock's state; `None`: not asked.
    fn clock(&self) -> Option<Result<Clock, String>>;
    /// The filesystem holding `path` (a path here, not a host path).
    fn free_space(&self, path: &Path) -> std::io::Result<Space>;
}

fn statvfs(path: &Path) -> std::io::Result<Space> {
    let s = nix::sys::statvfs::statvfs(path)?;
    let frag = s.fragment_size();
    Ok(Space {
        available: s.blocks_available() * frag,
        total: s.blocks() * frag,
    })
}

/// Probes for a root that is not `/`: nothing of the live kernel is
/// asked (its answers would be this machine's, not the root's).
pub struct OfflineProbes;

const NOT_LIVE: &str = "the host root is not /, so the running kernel was not asked";

impl Probes for OfflineProbes {
    fn idmapped_mount(&self) -> Probe {
        Probe::NotProbed(NOT_LIVE.into())
    }
    fn seccomp(&self) -> Option<bool> {
        None
    }
    fn clock(&self) -> Option<Result<Clock, String>> {
        None
    }
    fn free_space(&self, path: &Path) -> std::io::Result<Space> {
        statvfs(path)
    }
}

/// This machine's kernel.
pub struct LiveProbes;

impl Probes for LiveProbes {
    fn idmapped_mount(&self) -> Probe {
        // Its own thread: the mount namespace it unshares stays with it.
        std::thread::spawn(idmap_probe)
            .join()
            .unwrap_or_else(|_| Probe::NotProbed("the probe's thread panicked".into()))
    }

    fn seccomp(&self) -> Option<bool> {
        // SAFETY: PR_GET_SECCOMP only reads the caller's mode.
        let r = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
        Some(r >= 0)
    }

    fn clock(&self) -> Option<Result<Clock, String>> {
        // SAFETY: timex is plain data; modes = 0 only reads the state.
        let mut t: libc::timex = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is a valid, writable timex.
        let state = unsafe { libc::adjtimex(&mut t) };
        Some(if state < 0 {
            Err(format!("adjtimex: {}", std::io::Error::last_os_error()))
        } else {
            Ok(Clock {
                synchronised: state != libc::TIME_ERROR && t.status & libc::STA_UNSYNC == 0,
                max_error_us: t.maxerror,
            })
        })
    }

    fn free_space(&self, path: &Path) -> std::io::Result<Space> {
        statvfs(path)
    }
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn last_err(what: &str) -> (std::io::Error, String) {
    let e = std::io::Error::last_os_error();
    let msg = format!("{what}: {e}");
    (e, msg)
}

/// Makes a tmpfs that is never attached anywhere (fsopen + fsmount give a
/// detached mount, gone when its descriptor closes), inside a mount
/// namespace of this thread's own, and asks the kernel to idmap it with a
/// fresh user namespace.
fn idmap_probe() -> Probe {
    use nix::sched::{unshare, CloneFlags};
    if let Err(e) = unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS) {
        return Probe::NotProbed(format!("unshare(CLONE_NEWNS): {e} (run as root)"));
    }
    let userns = match vordr_net::netns::scratch_userns(65536, 65536) {
        Ok(fd) => fd,
        Err(why) => return Probe::NotProbed(why),
    };
    // SAFETY: fsopen with a NUL-terminated name; the result is checked.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC) };
    if fs < 0 {
        let (e, msg) = last_err("fsopen(tmpfs)");
        return match e.raw_os_error() {
            Some(libc::ENOSYS) => Probe::No(format!("{msg}: the kernel has no new mount API")),
            _ => Probe::NotProbed(msg),
        };
    }
    // SAFETY: a descriptor fsopen just returned, owned here.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if r < 0 {
        return Probe::NotProbed(last_err("fsconfig(CMD_CREATE)").1);
    }
    // SAFETY: fsmount on the configured context; the result is checked.
    let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if mnt < 0 {
        return Probe::NotProbed(last_err("fsmount").1);
    }
    // SAFETY: a descriptor fsmount just returned, owned here.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr reads `attr` (its size given) on the detached mount.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        let (e, msg) = last_err("mount_setattr(MOUNT_ATTR_IDMAP)");
        return match e.raw_os_error() {
            Some(libc::ENOSYS) => Probe::No(format!("{msg}: the kernel has no mount_setattr")),
            Some(libc::EINVAL) => Probe::No(format!("{msg}: tmpfs cannot be idmapped here")),
            _ => Probe::NotProbed(msg),
        };
    }
    Probe::Yes("a detached tmpfs took MOUNT_ATTR_IDMAP in a private mount namespace".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_probes_answer_on_this_machine() {
        let space = LiveProbes.free_space(Path::new("/")).unwrap();
        assert!(space.total > 0 && space.available <= space.total);
        assert_eq!(LiveProbes.seccomp(), Some(true));
        assert!(LiveProbes.clock().unwrap().is_ok());
        if nix::unistd::geteuid().is_root() {
            // Kernels since 6.3 idmap tmpfs.
            let p = LiveProbes.idmapped_mount();
            assert!(matches!(p, Probe::Yes(_)), "{p:?}");
        }
        assert!(matches!(
            OfflineProbes.idmapped_mount(),
            Probe::NotProbed(_)
        ));
        assert_eq!(OfflineProbes.clock(), None);
    }
}
