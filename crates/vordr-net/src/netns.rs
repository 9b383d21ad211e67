//! Pod namespaces without a pause process: a short-lived thread unshares the
//! network, IPC and UTS namespaces, sets the hostname and the pod's sysctls
//! inside them, and bind-mounts each namespace onto a pin file. The pins keep
//! the namespaces alive until they are unmounted.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::sysctl::{Sysctl, SysctlNs};

/// statfs magic of nsfs, the file system of /proc/*/ns/* and their bind mounts.
const NSFS_MAGIC: i64 = 0x6e736673;

/// Errors from namespace pinning.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("unshare({what}): {source}")]
    Unshare { what: String, source: nix::Error },
    #[error("setting hostname {hostname:?}: {source}")]
    Hostname {
        hostname: String,
        source: nix::Error,
    },
    #[error("setting sysctl {name}={value}: {source}")]
    Sysctl {
        name: String,
        value: String,
        source: std::io::Error,
    },
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("releasing {path}: {source}")]
    Unpin {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the namespace thread panicked")]
    ThreadPanicked,
}

/// Which namespaces a pod gets of its own, and what goes in them.
#[derive(Debug, Clone, Default)]
pub struct NsRequest {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    /// An already pinned network namespace the pod uses instead of a new
    /// one (a warm-pool slot); its sysctls are applied in it.
    pub join_net: Option<PathBuf>,
    /// Set in the new UTS namespace (ignored without one).
    pub hostname: Option<String>,
    /// Applied inside the new namespaces.
    pub sysctls: Vec<Sysctl>,
    /// A user namespace with these mappings, owning the pod's new net, IPC
    /// and UTS namespaces (so that user-namespaced containers may mount
    /// sysfs and mqueue in them). Excludes `join_net`.
    pub userns: Option<IdMaps>,
}

/// uid and gid mappings: (first id inside, first id on the host, count).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMaps {
    pub uids: Vec<(u32, u32, u32)>,
    pub gids: Vec<(u32, u32, u32)>,
}

/// Where a pod's namespaces are pinned. `None` means the host's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    pub user: Option<PathBuf>,
}

impl Pins {
    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.net, &self.ipc, &self.uts, &self.user]
            .into_iter()
            .flatten()
    }
}

/// Creates the requested namespaces and pins them under `dir` (created if
/// missing) as `net`, `ipc` and `uts`. On failure nothing is left behind.
pub fn create(dir: &Path, req: &NsRequest) -> Result<Pins, NsError> {
    std::fs::create_dir_all(dir).map_err(|source| NsError::Pin {
        path: dir.to_path_buf(),
        source,
    })?;
    if req.userns.is_some() {
        return create_in_userns(dir, req);
    }
    let dir = dir.to_path_buf();
    let req = req.clone();
    // The thread's namespaces change for good, so it must never run anything
    // else: a dedicated thread that ends when done.
    let handle = std::thread::Builder::new()
        .name("vordr-netns".into())
        .spawn(move || pin_in_new_thread(&dir, &req))
        .map_err(|source| NsError::Pin {
            path: PathBuf::from("thread"),
            source,
        })?;
    handle.join().map_err(|_| NsError::ThreadPanicked)?
}

fn pin_in_new_thread(dir: &Path, req: &NsRequest) -> Result<Pins, NsError> {
    let mut flags = CloneFlags::empty();
    let mut names = Vec::new();
    if req.net {
        flags |= CloneFlags::CLONE_NEWNET;
        names.push("net");
    }
    if req.ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
        names.push("ipc");
    }
    if req.uts {
        flags |= CloneFlags::CLONE_NEWUTS;
        names.push("uts");
    }
    if let Some(net) = &req.join_net {
        let f = File::open(net).map_err(|source| NsError::Pin {
            path: net.clone(),
            source,
        })?;
        nix::sched::setns(&f, CloneFlags::CLONE_NEWNET).map_err(|source| NsError::Unshare {
            what: format!("setns {}", net.display()),
            source,
        })?;
    }
    if !flags.is_empty() {
        unshare(flags).map_err(|source| NsError::Unshare {
            what: names.join("|"),
            source,
        })?;
    }
    configure_here(req, req.net || req.join_net.is_some(), req.ipc, req.uts)?;
    let mut pins = Pins::default();
    for name in names {
        let target = dir.join(name);
        if let Err(e) = pin_one(name, &target) {
            release(&pins).ok();
            return Err(e);
        }
        match name {
            "net" => pins.net = Some(target),
            "ipc" => pins.ipc = Some(target),
            _ => pins.uts = Some(target),
        }
    }
    Ok(pins)
}

/// Sets the hostname and writes the sysctls in the calling thread's
/// namespaces, for those of the pod's own (`net`, `ipc`, `uts`).
fn configure_here(req: &NsRequest, net: bool, ipc: bool, uts: bool) -> Result<(), NsError> {
    if uts {
        if let Some(h) = req.hostname.as_deref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(h).map_err(|source| NsError::Hostname {
                hostname: h.to_string(),
                source,
            })?;
        }
    }
    for s in &req.sysctls {
        let applies = match s.ns {
            SysctlNs::Net => net,
            SysctlNs::Ipc => ipc,
            SysctlNs::Uts => uts,
        };
        if applies {
            write_sysctl(s).map_err(|source| NsError::Sysctl {
                name: s.name.clone(),
                value: s.value.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

fn write_sysctl(s: &Sysctl) -> std::io::Result<()> {
    // /proc/sys resolves network and IPC sysctls through the calling
    // thread's namespaces, which are the pod's here.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(s.proc_path())?;
    f.write_all(s.value.as_bytes())
}

/// The user namespace and the namespaces it owns are made by a child
/// process (a multithreaded process can neither create nor join a user
/// namespace): it unshares them all at once, so the user namespace comes
/// first and owns the others; we write its mappings, pin everything from
/// /proc/<child>, set the hostname and sysctls from a thread that joins the
/// new namespaces, and end the child.
fn create_in_userns(dir: &Path, req: &NsRequest) -> Result<Pins, NsError> {
    use std::os::unix::process::CommandExt;
    let maps = req.userns.clone().unwrap_or_default();
    let mut flags = CloneFlags::CLONE_NEWUSER;
    let mut names = vec!["user"];
    for (on, flag, name) in [
        (req.net, CloneFlags::CLONE_NEWNET, "net"),
        (req.ipc, CloneFlags::CLONE_NEWIPC, "ipc"),
        (req.uts, CloneFlags::CLONE_NEWUTS, "uts"),
    ] {
        if on {
            flags |= flag;
            names.push(name);
        }
    }
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("60")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: unshare is a plain system call, safe between fork and exec.
    unsafe {
        cmd.pre_exec(move || unshare(flags).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().map_err(|source| NsError::Pin {
        path: PathBuf::from("sleep (user namespace holder)"),
        source,
    })?;
    let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
    let res = (|| {
        for (file, list) in [("uid_map", &maps.uids), ("gid_map", &maps.gids)] {
            let text: String = list
                .iter()
                .map(|(inside, host, n)| format!("{inside} {host} {n}\n"))
                .collect();
            std::fs::write(proc_dir.join(file), text).map_err(|source| NsError::Pin {
                path: proc_dir.join(file),
                source,
            })?;
        }
        let mut pins = Pins::default();
        for name in &names {
            let target = dir.join(name);
            if let Err(e) = pin_from(&proc_dir.join("ns").join(name), &target) {
                release(&pins).ok();
                return Err(e);
            }
            match *name {
                "user" => pins.user = Some(target),
                "net" => pins.net = Some(target),
                "ipc" => pins.ipc = Some(target),
                _ => pins.uts = Some(target),
            }
        }
        if let Err(e) = configure_pinned(&pins, req) {
            release(&pins).ok();
            return Err(e);
        }
        Ok(pins)
    })();
    let _ = child.kill();
    let _ = child.wait();
    res
}

/// Sets the hostname and sysctls inside already pinned namespaces, from a
/// dedicated thread that joins them.
fn configure_pinned(pins: &Pins, req: &NsRequest) -> Result<(), NsError> {
    let pins = pins.clone();
    let req = req.clone();
    std::thread::spawn(move || -> Result<(), NsError> {
        for (pin, flag) in [
            (&pins.net, CloneFlags::CLONE_NEWNET),
            (&pins.ipc, CloneFlags::CLONE_NEWIPC),
            (&pins.uts, CloneFlags::CLONE_NEWUTS),
        ] {
            if let Some(p) = pin {
                let f = File::open(p).map_err(|source| NsError::Pin {
                    path: p.clone(),
                    source,
                })?;
                nix::sched::setns(&f, flag).map_err(|source| NsError::Unshare {
                    what: format!("setns {}", p.display()),
                    source,
                })?;
            }
        }
        configure_here(
            &req,
            pins.net.is_some(),
            pins.ipc.is_some(),
            pins.uts.is_some(),
        )
    })
    .join()
    .map_err(|_| NsError::ThreadPanicked)?
}

fn pin_one(name: &str, target: &Path) -> Result<(), NsError> {
    pin_from(
        &PathBuf::from(format!("/proc/thread-self/ns/{name}")),
        target,
    )
}

/// Bind-mounts the namespace file `source` onto a new file `target`.
fn pin_from(source: &Path, target: &Path) -> Result<(), NsError> {
    let err = |source| NsError::Pin {
        path: target.to_path_buf(),
        source,
    };
    File::options()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(target)
        .map_err(err)?;
    if let Err(e) = mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        let _ = std::fs::remove_file(target);
        return Err(err(e.into()));
    }
    Ok(())
}

/// Whether `path` is a live namespace pin (an nsfs bind mount).
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| fs_type(&s) == NSFS_MAGIC)
        .unwrap_or(false)
}

/// Unmounts and deletes one pin. Idempotent: a missing pin is success.
pub fn unpin(path: &Path) -> Result<(), NsError> {
    let err = |source| NsError::Unpin {
        path: path.to_path_buf(),
        source,
    };
    // Unmount every layer (a pin mounted twice by a crashed retry).
    while is_pinned(path) {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => break,
            Err(e) => return Err(err(e.into())),
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Releases every pin in `pins`.
pub fn release(pins: &Pins) -> Result<(), NsError> {
    let mut first = Ok(());
    for p in pins.all() {
        if let Err(e) = unpin(p) {
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}

/// Releases whatever is pinned in `dir` and removes the directory.
pub fn release_dir(dir: &Path) -> Result<(), NsError> {
    for name in ["net", "ipc", "uts", "user"] {
        unpin(&dir.join(name))?;
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NsError::Unpin {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Runs `f` on a dedicated thread inside the network namespace pinned at
/// `netns` (for tests and diagnostics).
pub fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    let file = File::open(netns)?;
    std::thread::spawn(move || {
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)?;
        Ok(f())
    })
    .join()
    .map_err(|_| std::io::Error::other("netns thread panicked"))?
}

/// The statfs type, whose C type differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn fs_type(s: &nix::sys::statfs::Statfs) -> i64 {
    s.filesystem_type().0 as i64
}

/// A throwaway user namespace mapping its ids 0..`count` to the host's
/// `host_id..`, for probing what the kernel allows (idmapped mounts): made by
/// a child that exits once its namespace is open here.
pub fn scratch_userns(host_id: u32, count: u32) -> Result<std::os::fd::OwnedFd, String> {
    use std::os::fd::{AsRawFd, OwnedFd};
    let pipe =
        || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
    let (ready_r, ready_w) = pipe()?;
    let (hold_r, hold_w) = pipe()?;
    // SAFETY: the child makes only async-signal-safe calls (close, unshare,
    // write, read, _exit).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: raw syscalls on descriptors inherited from the parent.
        unsafe {
            libc::close(hold_w.as_raw_fd());
            libc::close(ready_r.as_raw_fd());
            let ok: u8 = (libc::unshare(libc::CLONE_NEWUSER) == 0).into();
            libc::write(ready_w.as_raw_fd(), (&ok as *const u8).cast(), 1);
            let mut b = 0u8;
            libc::read(hold_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    drop(ready_w);
    drop(hold_r);
    let res = (|| {
        let mut ok = [0u8];
        let n = nix::unistd::read(ready_r.as_raw_fd(), &mut ok).map_err(|e| format!("{e}"))?;
        if n != 1 || ok[0] != 1 {
            return Err("unshare(CLONE_NEWUSER) failed in the probe's child".to_string());
        }
        for map in ["uid_map", "gid_map"] {
            std::fs::write(
                format!("/proc/{pid}/{map}"),
                format!("0 {host_id} {count}\n"),
            )
            .map_err(|e| format!("writing /proc/{pid}/{map}: {e}"))?;
        }
        std::fs::File::open(format!("/proc/{pid}/ns/user"))
            .map(OwnedFd::from)
            .map_err(|e| format!("/proc/{pid}/ns/user: {e}"))
    })();
    drop(hold_w);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysctl;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn pins_namespaces_sets_hostname_and_sysctls_then_releases() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("pod");
        let req = NsRequest {
            net: true,
            ipc: true,
            uts: true,
            join_net: None,
            userns: None,
            hostname: Some("pinned-pod".into()),
            sysctls: vec![
                sysctl::check("net.ipv4.ip_unprivileged_port_start", "42", false, false).unwrap(),
                sysctl::check("kernel.shm_rmid_forced", "1", false, false).unwrap(),
            ],
        };
        let pins = create(&dir, &req).unwrap();
        for p in pins.all() {
            assert!(is_pinned(p), "{} not pinned", p.display());
        }
        // The sysctl landed in the pod's namespace, not the host's.
        let host =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
        assert_ne!(host.trim(), "42");
        let inside = in_netns(pins.net.as_ref().unwrap(), || {
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap()
        })
        .unwrap();
        assert_eq!(inside.trim(), "42");
        // The hostname is the pod's inside its UTS namespace.
        let uts = File::open(pins.uts.as_ref().unwrap()).unwrap();
        let name = std::thread::spawn(move || {
            nix::sched::unshare(CloneFlags::CLONE_FS).unwrap();
            nix::sched::setns(&uts, CloneFlags::CLONE_NEWUTS).unwrap();
            nix::unistd::gethostname().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(name, "pinned-pod");
        release_dir(&dir).unwrap();
        assert!(!dir.exists());
        // Idempotent.
        release_dir(&dir).unwrap();
    }

    #[test]
    fn failed_sysctl_leaves_nothing() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("pod");
        let bad = Sysctl {
            name: "net.ipv4.no_such_sysctl".into(),
            value: "1".into(),
            ns: SysctlNs::Net,
        };
        let req = NsRequest {
            net: true,
            ipc: true,
            sysctls: vec![bad],
            ..Default::default()
        };
        let e = create(&dir, &req).unwrap_err();
        assert!(e.to_string().contains("no_such_sysctl"), "{e}");
        assert!(!dir.join("net").exists());
        assert!(!dir.join("ipc").exists());
    }

    #[test]
    fn pins_a_user_namespace_that_owns_the_others() {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        use std::os::unix::fs::MetadataExt;
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("pod");
        let req = NsRequest {
            net: true,
            ipc: true,
            uts: true,
            hostname: Some("userns-pod".into()),
            userns: Some(IdMaps {
                uids: vec![(0, 300_000, 65_536)],
                gids: vec![(0, 300_000, 65_536)],
            }),
            ..Default::default()
        };
        let pins = create(&dir, &req).unwrap();
        let user = pins.user.clone().expect("user namespace pinned");
        assert!(is_pinned(&user));
        let user_ino = std::fs::metadata(&user).unwrap().ino();
        for p in [&pins.net, &pins.ipc, &pins.uts] {
            let f = File::open(p.as_ref().unwrap()).unwrap();
            // NS_GET_USERNS: the user namespace owning this namespace.
            let fd = unsafe { libc::ioctl(f.as_raw_fd(), 0xb701) };
            assert!(fd >= 0, "NS_GET_USERNS failed");
            let owner = unsafe { OwnedFd::from_raw_fd(fd) };
            let ino = File::from(owner).metadata().unwrap().ino();
            assert_eq!(
                ino, user_ino,
                "{p:?} is not owned by the pod's user namespace"
            );
        }
        let uts = File::open(pins.uts.as_ref().unwrap()).unwrap();
        let name = std::thread::spawn(move || {
            nix::sched::setns(&uts, CloneFlags::CLONE_NEWUTS).unwrap();
            nix::unistd::gethostname().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(name, "userns-pod");
        release_dir(&dir).unwrap();
        assert!(!dir.exists());
    }
}
