//! Exec into a running container: join every namespace (user first), the cgroups, then drop to
//! the process's user, capabilities, no_new_privs and seccomp, like runc.
//!
//! youki 0.7's tenant builder joins no user namespace and applies no seccomp filter, so an exec
//! into a user-namespaced container would run as real host root. This module does what runc's
//! `nsexec.c` + `setns_init_linux.go` do instead. It must run in a dedicated, single-threaded
//! process (the shim re-executes itself for it): `setns(CLONE_NEWUSER)` fails with `EINVAL` in
//! a multi-threaded process, and the helper's credentials and namespaces are changed for good.
//!
//! Order (helper = the process calling [`exec_in_container`]):
//!
//! helper, still with host privileges:
//! 1. validate the spec and prepare everything that can fail for a bad spec (argv, env, caps);
//! 2. open `/proc/<init>` once, then `ns/{user,ipc,uts,net,pid,mnt,cgroup,time}` relative to it
//!    (skipping a namespace we already share) and read its `cgroup` file;
//! 3. join the init's cgroups (one `cgroup.procs` write per hierarchy of `/proc/<init>/cgroup`,
//!    mapped to a mount point through `/proc/self/mountinfo`);
//! 4. `oom_score_adj`, then `PR_SET_DUMPABLE 0` (runc: the score must be written while dumpable;
//!    non-dumpable keeps processes of the namespaces we join away from our /proc entries);
//! 5. rlimits (runc sets them from outside with `prlimit`: raising a hard limit needs
//!    `CAP_SYS_RESOURCE` in the initial user namespace, which we lose in step 6);
//! 6. setns like runc's `join_namespaces`: every non-user namespace that host root may join
//!    (order ipc, uts, net, pid, mnt, cgroup, time), then the user namespace followed by
//!    `setresuid(0, 0, 0)`, then whatever failed with `EPERM` in the first pass;
//! 7. block the forwarded signals and fork (the pid and time namespaces only apply to children).
//!
//! child (runc's stage-2 + `linuxSetnsInit.Init` + `finalizeNamespace`):
//! close every fd > 2, reset signal dispositions and mask, `setsid`, new session keyring,
//! `PR_SET_NO_NEW_PRIVS` (if asked), umask, seccomp if *not* no_new_privs (loading a filter needs
//! `CAP_SYS_ADMIN` then), chdir (first try as root), environment (+ `HOME` from the container's
//! `/etc/passwd`), bounding set, `PR_SET_KEEPCAPS`, stdio ownership, setgroups/setresgid/
//! setresuid, chdir retry, cwd check, clear keepcaps, capset + ambient, AppArmor exec profile,
//! look the program up in the process's `PATH`, seccomp if no_new_privs (as late as possible),
//! `execve`.
//!
//! helper again: report the child's pid, forward SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2,
//! reap the child and return its exit code (128 + signal number if it was killed).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use libcontainer::capabilities::CapabilityExt;
use libcontainer::oci_spec::runtime::{
    Capabilities, LinuxCapabilities, LinuxSeccomp, LinuxSeccompAction, PosixRlimitType, Process,
};

/// What to run, and in which container.
pub struct ExecSpec {
    /// Host pid of the container's init process.
    pub init_pid: i32,
    /// The process to run: args, env, cwd, user (uid, gid, additional_gids, umask),
    /// capabilities, no_new_privileges, rlimits, oom_score_adj. With `terminal`, stdin (a pty
    /// slave) becomes the controlling terminal.
    pub process: Process,
    /// The container's seccomp profile (from its config.json), if it has one.
    pub seccomp: Option<LinuxSeccomp>,
    /// A socket connected to the shim: the terminal is then allocated in the container's devpts
    /// (as runc does), its slave becomes stdio and its master goes to the shim over this socket.
    pub console: Option<OwnedFd>,
}

/// Why the exec could not be started. Failures in the child (after the fork) are not errors of
/// this type: the child prints one line to its stderr and exits with 126 or 127.
#[derive(Debug, thiserror::Error)]
pub enum NsExecError {
    #[error("invalid exec spec: {0}")]
    InvalidSpec(String),
    #[error("unsupported exec spec: {0}")]
    Unsupported(String),
    #[error("container init {pid}: {what}: {source}")]
    Init {
        pid: i32,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {}: {reason}", path.display())]
    Cgroup {
        path: PathBuf,
        reason: String,
        #[source]
        source: Option<io::Error>,
    },
    #[error("setns into the {ns} namespace of the container: {source}")]
    Setns {
        ns: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{step}: {source}")]
    Setup {
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("reporting the exec pid: {0}")]
    PidReport(#[source] io::Error),
    #[error("waiting for the exec process: {0}")]
    Wait(#[source] io::Error),
}

/// Signals the helper forwards to the exec'd process.
const FORWARDED_SIGNALS: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Used when the process's environment has no PATH (glibc's `execvp` default).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Joins the container and runs the process as a child; writes the child's host pid as decimal
/// ASCII + "\n" to `pid_report` as soon as it exists; waits for it and returns its exit code
/// (128+signal for a signal). Stdio is inherited (fds 0,1,2).
///
/// Must be called in a single-threaded process that exists for this exec only: on return the
/// caller is inside the container's namespaces and cgroups, non-dumpable, and the forwarded
/// signals plus SIGCHLD and SIGPIPE stay blocked (so a signal racing with the child's exit cannot
/// kill the helper before it reports the exit code).
pub fn exec_in_container(spec: &ExecSpec, pid_report: OwnedFd) -> Result<i32, NsExecError> {
    let prepared = Prepared::new(&spec.process, spec.seccomp.as_ref())?;
    let pid = spec.init_pid;
    if pid <= 0 {
        return Err(NsExecError::InvalidSpec(format!("init pid {pid}")));
    }

    // Everything from the init's /proc directory is read through one directory fd, so that all
    // of it belongs to the same process even if the pid were reused meanwhile.
    let proc_dir = open_path(
        Path::new(&format!("/proc/{pid}")),
        libc::O_DIRECTORY | libc::O_RDONLY,
    )
    .map_err(|source| NsExecError::Init {
        pid,
        what: "open /proc entry".into(),
        source,
    })?;
    let namespaces = open_namespaces(&proc_dir, pid)?;
    let cgroup_file = read_at(&proc_dir, "cgroup").map_err(|source| NsExecError::Init {
        pid,
        what: "read cgroup".into(),
        source,
    })?;
    drop(proc_dir);
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| NsExecError::Setup {
            step: "read /proc/self/mountinfo".into(),
            source,
        })?;
    let cgroup_dirs = cgroup_dirs(
        &parse_proc_cgroup(&cgroup_file),
        &parse_mountinfo(&mountinfo),
    )?;

    join_cgroups(&cgroup_dirs)?;

    if let Some(adj) = spec.process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|source| {
            NsExecError::Setup {
                step: format!("set oom_score_adj to {adj}"),
                source,
            }
        })?;
    }
    // SAFETY: plain prctl on our own process.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(setup_err("make the helper non-dumpable"));
    }
    for rlimit in &prepared.rlimits {
        rlimit.apply().map_err(|source| NsExecError::Setup {
            step: format!("set rlimit {}", rlimit.name),
            source,
        })?;
    }

    join_namespaces(namespaces)?;

    if let Some(console) = &spec.console {
        open_console(console)?;
    }

    // Block the forwarded signals (and SIGCHLD, which we wait for synchronously) before the fork
    // so that none is lost between the fork and the wait loop. The child restores a clean mask.
    let wait_set = signal_set(FORWARDED_SIGNALS.iter().copied().chain([libc::SIGCHLD]));
    let block_set = signal_set(
        FORWARDED_SIGNALS
            .iter()
            .copied()
            .chain([libc::SIGCHLD, libc::SIGPIPE]),
    );
    // SAFETY: sigprocmask/sigaction with valid, initialised arguments.
    unsafe {
        if libc::sigprocmask(libc::SIG_BLOCK, &block_set, std::ptr::null_mut()) != 0 {
            return Err(setup_err("block signals"));
        }
        // An inherited SIG_IGN (or SA_NOCLDWAIT) for SIGCHLD would auto-reap the child.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        if libc::sigaction(libc::SIGCHLD, &dfl, std::ptr::null_mut()) != 0 {
            return Err(setup_err("reset SIGCHLD"));
        }
    }

    // SAFETY: the helper is single-threaded (documented requirement), so the child may keep
    // running ordinary Rust code after the fork.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(setup_err("fork"));
    }
    if child == 0 {
        child_main(&prepared);
    }

    let mut report = File::from(pid_report);
    if let Err(err) = report.write_all(format!("{child}\n").as_bytes()) {
        // Nobody would know the process: do not leave it running.
        // SAFETY: kill/waitpid on our own child.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        return Err(NsExecError::PidReport(err));
    }
    drop(report);

    wait_forwarding_signals(child, &wait_set)
}

/// In the container's mount namespace: opens a terminal in its devpts (`/dev/ptmx` must be the
/// pty multiplexer, the slave a terminal), makes the slave our stdio (the child inherits it) and
/// sends the master to the shim.
fn open_console(console: &OwnedFd) -> Result<(), NsExecError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let err = |what: &str, source: io::Error| NsExecError::Setup {
        step: format!("exec terminal: {what}"),
        source,
    };
    let not_a_pty = |what: &str| err(what, io::Error::from_raw_os_error(libc::ENOTTY));
    let master = open_path(Path::new("/dev/ptmx"), libc::O_RDWR | libc::O_NOCTTY)
        .map_err(|e| err("open /dev/ptmx", e))?;
    let st =
        nix::sys::stat::fstat(master.as_raw_fd()).map_err(|e| err("stat /dev/ptmx", e.into()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(5, 2) {
        return Err(not_a_pty("/dev/ptmx is not the pty multiplexer"));
    }
    let mut name = [0 as libc::c_char; 64];
    // SAFETY: unlockpt and ptsname_r on the master we opened, into a buffer of the given length.
    unsafe {
        if libc::unlockpt(master.as_raw_fd()) != 0 {
            return Err(err("unlockpt", io::Error::last_os_error()));
        }
        let r = libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len());
        if r != 0 {
            return Err(err("ptsname", io::Error::from_raw_os_error(r)));
        }
    }
    // SAFETY: ptsname_r wrote a NUL-terminated name into the buffer.
    let name = unsafe { CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let slave = open_path(Path::new(&name), libc::O_RDWR | libc::O_NOCTTY)
        .map_err(|e| err("open the pty slave", e))?;
    // SAFETY: isatty and dup2 on fds we own onto our stdio.
    unsafe {
        if libc::isatty(slave.as_raw_fd()) != 1 {
            return Err(not_a_pty("the pty slave is not a terminal"));
        }
        for fd in 0..3 {
            if libc::dup2(slave.as_raw_fd(), fd) < 0 {
                return Err(err("stdio", io::Error::last_os_error()));
            }
        }
    }
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        console.as_raw_fd(),
        &[io::IoSlice::new(name.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| err("send the master to the shim", e.into()))?;
    Ok(())
}

fn setup_err(step: &str) -> NsExecError {
    NsExecError::Setup {
        step: step.to_string(),
        source: io::Error::last_os_error(),
    }
}

// ---------------------------------------------------------------------------------------------
// Spec preparation (before anything is changed, so a bad spec changes nothing).

struct Rlimit {
    name: String,
    resource: RlimitResource,
    soft: u64,
    hard: u64,
}

#[cfg(target_env = "gnu")]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RlimitResource = libc::c_int;

impl Rlimit {
    fn apply(&self) -> io::Result<()> {
        let value = libc::rlimit {
            rlim_cur: self.soft as libc::rlim_t,
            rlim_max: self.hard as libc::rlim_t,
        };
        // SAFETY: valid pointer to an initialised rlimit.
        if unsafe { libc::setrlimit(self.resource, &value) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn rlimit_resource(typ: PosixRlimitType) -> RlimitResource {
    match typ {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Capability sets as bit masks (bit n = capability number n).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CapMasks {
    bounding: u64,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: u64,
}

impl CapMasks {
    /// Like runc: a set the spec leaves out is empty.
    fn from_spec(caps: &LinuxCapabilities) -> Self {
        fn mask(set: &Option<Capabilities>) -> u64 {
            set.iter()
                .flatten()
                .map(|c| 1u64 << c.to_cap().index())
                .fold(0, |acc, bit| acc | bit)
        }
        CapMasks {
            bounding: mask(caps.bounding()),
            effective: mask(caps.effective()),
            permitted: mask(caps.permitted()),
            inheritable: mask(caps.inheritable()),
            ambient: mask(caps.ambient()),
        }
    }
}

/// Everything the child needs, computed in the helper before the fork.
struct Prepared {
    program: String,
    argv: Vec<CString>,
    /// Validated, de-duplicated environment (last value wins), without an empty HOME.
    env: Vec<String>,
    has_home: bool,
    path_var: Option<String>,
    cwd: CString,
    uid: libc::uid_t,
    gid: libc::gid_t,
    additional_gids: Vec<libc::gid_t>,
    umask: Option<libc::mode_t>,
    /// `None`: the spec has no capabilities object, and (like runc) they are left alone.
    caps: Option<CapMasks>,
    no_new_privs: bool,
    apparmor_profile: Option<String>,
    seccomp: Option<LinuxSeccomp>,
    rlimits: Vec<Rlimit>,
    /// stdin is a terminal to become the controlling one.
    terminal: bool,
}

impl Prepared {
    fn new(process: &Process, seccomp: Option<&LinuxSeccomp>) -> Result<Self, NsExecError> {
        let invalid = |msg: String| NsExecError::InvalidSpec(msg);
        let args = process.args().clone().unwrap_or_default();
        let program = match args.first() {
            Some(p) if !p.is_empty() => p.clone(),
            _ => return Err(invalid("process.args is empty".into())),
        };
        let argv = args
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| invalid("process.args contains a NUL byte".into()))?;

        let (env, has_home, path_var) =
            prepare_env(process.env().as_deref().unwrap_or(&[])).map_err(invalid)?;

        let cwd = process.cwd().to_string_lossy().into_owned();
        let cwd = if cwd.is_empty() { "/".to_string() } else { cwd };
        let cwd =
            CString::new(cwd).map_err(|_| invalid("process.cwd contains a NUL byte".into()))?;

        let user = process.user();
        let umask = match user.umask() {
            Some(m) if m > 0o777 => return Err(invalid(format!("umask {m:o} out of range"))),
            m => m.map(|m| m as libc::mode_t),
        };

        if let Some(profile) = seccomp {
            check_seccomp(profile).map_err(NsExecError::Unsupported)?;
        }

        // Checked here, with the host's /sys: youki refuses to create a container with a profile
        // when AppArmor is off, so a profile on such a host is a spec error.
        let apparmor_profile = process.apparmor_profile().clone().filter(|p| !p.is_empty());
        if let Some(profile) = &apparmor_profile {
            if !libcontainer::apparmor::is_enabled().unwrap_or(false) {
                return Err(NsExecError::Unsupported(format!(
                    "AppArmor profile {profile:?} but AppArmor is not enabled on this host"
                )));
            }
        }

        let rlimits = process
            .rlimits()
            .iter()
            .flatten()
            .map(|r| {
                if r.soft() > r.hard() {
                    return Err(invalid(format!(
                        "rlimit {}: soft {} > hard {}",
                        r.typ(),
                        r.soft(),
                        r.hard()
                    )));
                }
                Ok(Rlimit {
                    name: r.typ().to_string(),
                    resource: rlimit_resource(r.typ()),
                    soft: r.soft(),
                    hard: r.hard(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Prepared {
            program,
            argv,
            env,
            has_home,
            path_var,
            cwd,
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask,
            caps: process.capabilities().as_ref().map(CapMasks::from_spec),
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            apparmor_profile,
            seccomp: seccomp.cloned(),
            rlimits,
            terminal: process.terminal().unwrap_or(false),
        })
    }
}

/// runc's `prepareEnv`: validate NAME=VALUE entries, drop duplicates (the last one wins, in the
/// position of the last one), drop an empty HOME. Returns (env, HOME present, PATH value).
fn prepare_env(env: &[String]) -> Result<(Vec<String>, bool, Option<String>), String> {
    let mut out: Vec<String> = Vec::with_capacity(env.len());
    let mut seen = std::collections::HashSet::new();
    let mut has_home = false;
    let mut path = None;
    for kv in env.iter().rev() {
        let Some((key, value)) = kv.split_once('=') else {
            return Err(format!("environment entry {kv:?} has no '='"));
        };
        if key.is_empty() {
            return Err(format!("environment entry {kv:?} has an empty name"));
        }
        if kv.contains('\0') {
            return Err(format!("environment variable {key} contains a NUL byte"));
        }
        if !seen.insert(key.to_string()) {
            continue;
        }
        if key == "PATH" {
            path = Some(value.to_string());
        }
        if key == "HOME" {
            if value.is_empty() {
                continue;
            }
            has_home = true;
        }
        out.push(kv.clone());
    }
    out.reverse();
    Ok((out, has_home, path))
}

// ---------------------------------------------------------------------------------------------
// /proc helpers and namespaces.

fn open_path(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: we own the fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_at(dir: &OwnedFd, name: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid dir fd and NUL-terminated relative path.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: we own the fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read_at(dir: &OwnedFd, name: &str) -> io::Result<String> {
    let fd = open_at(dir, name, libc::O_RDONLY)?;
    io::read_to_string(File::from(fd))
}

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

struct NsFd {
    name: &'static str,
    flag: libc::c_int,
    fd: OwnedFd,
}

/// Opens the init's namespaces that differ from ours. A namespace type the kernel lacks (no
/// `ns/<name>` entry) is skipped.
fn open_namespaces(proc_dir: &OwnedFd, pid: i32) -> Result<Vec<NsFd>, NsExecError> {
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
fn join_namespaces(namespaces: Vec<NsFd>) -> Result<(), NsExecError> {
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

// ---------------------------------------------------------------------------------------------
// Cgroups.

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcCgroup {
    /// Controllers of the hierarchy (`name=systemd` included as is); empty for cgroup v2.
    controllers: Vec<String>,
    path: String,
}

fn parse_proc_cgroup(content: &str) -> Vec<ProcCgroup> {
    content
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(ProcCgroup {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    root: String,
    mount_point: PathBuf,
    /// true for cgroup2, false for a v1 hierarchy.
    v2: bool,
    super_options: Vec<String>,
}

/// Undoes the octal escapes of /proc/self/mountinfo (`\040` for a space, ...).
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup mounts of /proc/self/mountinfo.
fn parse_mountinfo(content: &str) -> Vec<CgroupMount> {
    content
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let _source = right.next()?;
            let super_options = right.next().unwrap_or("");
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            Some(CgroupMount {
                root: unescape_mountinfo(left.get(3)?),
                mount_point: PathBuf::from(unescape_mountinfo(left.get(4)?)),
                v2,
                super_options: super_options.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// Maps each line of /proc/<init>/cgroup to a directory: the mount of that hierarchy (cgroup2
/// for `0::`, else the v1 mount carrying all of the line's controllers) joined with the path
/// relative to the mount's root. A hierarchy that is not mounted here is skipped (nothing can be
/// joined or enforced through it); a mounted one that cannot reach the path is an error.
fn cgroup_dirs(lines: &[ProcCgroup], mounts: &[CgroupMount]) -> Result<Vec<PathBuf>, NsExecError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for line in lines {
        let candidates: Vec<&CgroupMount> = mounts
            .iter()
            .filter(|m| {
                if line.controllers.is_empty() {
                    m.v2
                } else {
                    !m.v2
                        && line
                            .controllers
                            .iter()
                            .all(|c| m.super_options.iter().any(|o| o == c))
                }
            })
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let found = candidates.iter().find_map(|m| {
            let root = m.root.trim_end_matches('/');
            let rel = if root.is_empty() {
                Some(line.path.as_str())
            } else if line.path == root {
                Some("")
            } else {
                line.path
                    .strip_prefix(root)
                    .filter(|rest| rest.starts_with('/'))
            }?;
            Some(m.mount_point.join(rel.trim_start_matches('/')))
        });
        match found {
            Some(dir) => {
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
            None => {
                return Err(NsExecError::Cgroup {
                    path: PathBuf::from(&line.path),
                    reason: format!(
                        "hierarchy {:?} is mounted here, but not the init's cgroup",
                        if line.controllers.is_empty() {
                            "cgroup2".to_string()
                        } else {
                            line.controllers.join(",")
                        }
                    ),
                    source: None,
                })
            }
        }
    }
    Ok(dirs)
}

fn join_cgroups(dirs: &[PathBuf]) -> Result<(), NsExecError> {
    let me = std::process::id().to_string();
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, &me).map_err(|source| NsExecError::Cgroup {
            path: procs.clone(),
            reason: "join".into(),
            source: Some(source),
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Signals and waiting (helper side).

pub(crate) fn signal_set(signals: impl IntoIterator<Item = libc::c_int>) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; sigaddset with valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in signals {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

fn wait_forwarding_signals(
    child: libc::pid_t,
    wait_set: &libc::sigset_t,
) -> Result<i32, NsExecError> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if r == child {
            if libc::WIFEXITED(status) {
                return Ok(libc::WEXITSTATUS(status));
            }
            if libc::WIFSIGNALED(status) {
                return Ok(128 + libc::WTERMSIG(status));
            }
            continue;
        }
        if r < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(NsExecError::Wait(err));
        }
        // Still running: sleep until a signal (SIGCHLD included) is pending. Blocked signals stay
        // pending, so a SIGCHLD between waitpid and here is not lost.
        // SAFETY: valid set; the info pointer may be null.
        let sig = unsafe { libc::sigwaitinfo(wait_set, std::ptr::null_mut()) };
        if sig < 0 || sig == libc::SIGCHLD {
            continue;
        }
        // SAFETY: kill on our own (unreaped) child; ESRCH cannot happen before it is reaped.
        unsafe { libc::kill(child, sig) };
    }
}

// ---------------------------------------------------------------------------------------------
// Child side. Runs after fork in a copy of the single-threaded helper; never returns.

/// Why the child gave up: message for stderr and exit code (126: found but not executable,
/// 127: not found and every other setup failure).
struct ChildError {
    code: i32,
    msg: String,
}

fn cerr(step: &str) -> ChildError {
    ChildError {
        code: 127,
        msg: format!("{step}: {}", io::Error::last_os_error()),
    }
}

fn check(rc: libc::c_int, step: &str) -> Result<(), ChildError> {
    if rc < 0 {
        Err(cerr(step))
    } else {
        Ok(())
    }
}

fn child_main(p: &Prepared) -> ! {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child_exec(p)));
    let err = match result {
        Ok(err) => err,
        Err(_) => ChildError {
            code: 127,
            msg: "panic while setting up the exec process".into(),
        },
    };
    let line = format!("vordr-nsexec: {}\n", err.msg.replace('\n', " "));
    // SAFETY: write to fd 2 and _exit: nothing else runs after this.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(err.code)
    }
}

/// Returns only on failure.
fn child_exec(p: &Prepared) -> ChildError {
    match child_setup(p) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn child_setup(p: &Prepared) -> Result<std::convert::Infallible, ChildError> {
    // No fd of the helper (or of whoever started it) may reach the container: close them all
    // now, before any filter is loaded (runc marks them CLOEXEC and closes them before execve;
    // CVE-2024-21626). Only fds opened below, all O_CLOEXEC, exist from here on.
    close_fds_from(3);
    reset_signals();

    // SAFETY: the remaining calls are plain syscalls on our own process with valid arguments.
    unsafe {
        check(libc::setsid(), "setsid")?;
        if p.terminal && libc::isatty(0) == 1 {
            check(
                libc::ioctl(0, libc::TIOCSCTTY, 0),
                "make the pty the controlling terminal",
            )?;
        }

        // Do not share the helper's (host) session keyring.
        const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
        if libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        ) < 0
        {
            let e = io::Error::last_os_error().raw_os_error();
            if !matches!(e, Some(libc::ENOSYS | libc::EPERM | libc::EACCES)) {
                return Err(cerr("join a new session keyring"));
            }
        }

        if p.no_new_privs {
            check(
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
                "set no_new_privs",
            )?;
        }
        if let Some(mask) = p.umask {
            libc::umask(mask);
        }
    }

    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it before dropping caps.
    if !p.no_new_privs {
        load_seccomp(p)?;
    }

    // finalizeNamespace: chdir first as (namespace) root; EACCES/EPERM retried as the user.
    let chdir_later = match unsafe { libc::chdir(p.cwd.as_ptr()) } {
        0 => false,
        _ => {
            let e = io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
                true
            } else {
                return Err(ChildError {
                    code: 127,
                    msg: format!("chdir to cwd {:?}: {e}", p.cwd),
                });
            }
        }
    };

    let mut env = p.env.clone();
    if !p.has_home {
        env.push(format!("HOME={}", passwd_home(p.uid)));
    }

    let last_cap = last_cap();
    if let Some(caps) = &p.caps {
        // The bounding set can only be shrunk with CAP_SETPCAP, i.e. before changing user.
        for cap in 0..=last_cap {
            if caps.bounding & (1 << cap) == 0 {
                // SAFETY: plain prctl.
                if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0
                {
                    return Err(cerr(&format!(
                        "drop capability {cap} from the bounding set"
                    )));
                }
            }
        }
    }

    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
            "set keepcaps",
        )?;
        fix_stdio_owner(p.uid);
        if setgroups_allowed() {
            check(
                libc::setgroups(p.additional_gids.len(), p.additional_gids.as_ptr()),
                "setgroups",
            )?;
        }
        if libc::setresgid(p.gid, p.gid, p.gid) < 0 {
            return Err(id_err("gid", p.gid));
        }
        if libc::setresuid(p.uid, p.uid, p.uid) < 0 {
            return Err(id_err("uid", p.uid));
        }
        if chdir_later && libc::chdir(p.cwd.as_ptr()) < 0 {
            return Err(cerr(&format!("chdir to cwd {:?}", p.cwd)));
        }
    }
    verify_cwd()?;
    // SAFETY: plain prctl.
    check(
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) },
        "clear keepcaps",
    )?;
    if let Some(caps) = &p.caps {
        apply_caps(caps, last_cap)?;
    }
    if let Some(profile) = &p.apparmor_profile {
        // Takes effect at execve.
        libcontainer::apparmor::apply_profile(profile).map_err(|e| ChildError {
            code: 127,
            msg: format!("apply AppArmor profile {profile:?}: {e}"),
        })?;
    }

    let path = resolve_program(&p.program, p.path_var.as_deref())?;

    let envp: Vec<CString> = env
        .into_iter()
        .map(|kv| CString::new(kv).expect("validated before the fork"))
        .collect();
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let mut argv_ptrs: Vec<*const libc::c_char> = p.argv.iter().map(|s| s.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());

    // As close to execve as possible, so that the profile sees as few of our syscalls as
    // possible.
    if p.no_new_privs {
        load_seccomp(p)?;
    }

    // SAFETY: NULL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    let e = io::Error::last_os_error();
    Err(ChildError {
        code: if e.raw_os_error() == Some(libc::ENOENT) {
            127
        } else {
            126
        },
        msg: format!("exec {:?}: {e}", p.program),
    })
}

fn id_err(kind: &str, id: u32) -> ChildError {
    let e = io::Error::last_os_error();
    let msg = if e.raw_os_error() == Some(libc::EINVAL) {
        format!("cannot set{kind} to {id}: not mapped in the container's user namespace")
    } else {
        format!("set{kind} to {id}: {e}")
    };
    ChildError { code: 127, msg }
}

fn load_seccomp(p: &Prepared) -> Result<(), ChildError> {
    if let Some(profile) = &p.seccomp {
        load_seccomp_profile(profile).map_err(|msg| ChildError { code: 127, msg })?;
    }
    Ok(())
}

/// Refuses what [`load_seccomp_profile`] cannot do: SCMP_ACT_NOTIFY needs a seccomp agent.
pub(crate) fn check_seccomp(profile: &LinuxSeccomp) -> Result<(), String> {
    let notify = profile
        .syscalls()
        .iter()
        .flatten()
        .any(|s| s.action() == LinuxSeccompAction::ScmpActNotify);
    if notify || profile.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err("seccomp profiles with SCMP_ACT_NOTIFY (no seccomp agent support)".into());
    }
    Ok(())
}

/// Loads `profile` into this process with libcontainer's seccomp initialisation (what youki
/// does for a container's init). Needs no_new_privs, or CAP_SYS_ADMIN.
pub(crate) fn load_seccomp_profile(profile: &LinuxSeccomp) -> Result<(), String> {
    libcontainer::seccomp::initialize_seccomp(profile)
        .map(|_| ())
        .map_err(|e| format!("load seccomp profile: {e}"))
}

pub(crate) fn close_fds_from(first: RawFd) {
    // SAFETY: closing fds we will never use again; nothing in this process refers to them.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        ) == 0
        {
            return;
        }
        let max = libc::sysconf(libc::_SC_OPEN_MAX);
        let max = if max <= 0 { 1 << 20 } else { max.min(1 << 20) } as RawFd;
        for fd in first..max {
            libc::close(fd);
        }
    }
}

pub(crate) fn reset_signals() {
    // SAFETY: default dispositions and an empty mask; invalid numbers just fail.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// The highest capability number the kernel knows (probing the bounding set, so it works
/// without /proc).
pub(crate) fn last_cap() -> u32 {
    let mut last = 0;
    for cap in 0..64u32 {
        // SAFETY: plain prctl; EINVAL past the last capability.
        if unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) } < 0 {
            break;
        }
        last = cap;
    }
    last
}

/// runc's `fixStdioPermissions`: give stdio to the process's user so that it can reopen it
/// (/dev/stdout, /proc/self/fd/N). Unlike runc, only pipes, sockets and character devices other
/// than /dev/null are changed, never a regular file or directory of the host. Failures (EPERM
/// for an owner not mapped in the user namespace, EROFS) leave the fd as it is.
fn fix_stdio_owner(uid: libc::uid_t) {
    for fd in 0..3 {
        // SAFETY: fstat into a zeroed struct, fchown on one of our stdio fds.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) != 0 || st.st_uid == uid {
                continue;
            }
            let kind = st.st_mode & libc::S_IFMT;
            let dev_null = kind == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3);
            if dev_null || !matches!(kind, libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR) {
                continue;
            }
            libc::fchown(fd, uid, libc::gid_t::MAX);
        }
    }
}

fn setgroups_allowed() -> bool {
    // "deny" in an unprivileged user namespace: setgroups(2) would fail with EPERM.
    std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() != "deny")
        .unwrap_or(true)
}

/// HOME for a process without one: the uid's home in the container's /etc/passwd, else "/".
fn passwd_home(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|content| home_from_passwd(&content, uid))
        .unwrap_or_else(|| "/".to_string())
}

fn home_from_passwd(content: &str, uid: u32) -> Option<String> {
    content.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let home = fields.get(5).copied().unwrap_or("");
        if fields.len() >= 7
            && fields[2].parse::<u32>().ok() == Some(uid)
            && !home.is_empty()
            && !home.contains('\0')
        {
            Some(home.to_string())
        } else {
            None
        }
    })
}

/// runc's `verifyCwd`: a cwd outside the mount namespace's root makes getcwd(2) fail with
/// ENOENT (or return "(unreachable)...").
fn verify_cwd() -> Result<(), ChildError> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: buffer of the given length.
    let r = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if r.is_null() {
        let e = io::Error::last_os_error();
        return Err(ChildError {
            code: 127,
            msg: if e.raw_os_error() == Some(libc::ENOENT) {
                "current working directory is outside of the container's root".into()
            } else {
                format!("getcwd: {e}")
            },
        });
    }
    // SAFETY: getcwd wrote a NUL-terminated string into buf.
    let cwd = unsafe { CStr::from_ptr(buf.as_ptr().cast()) };
    if !cwd.to_bytes().starts_with(b"/") {
        return Err(ChildError {
            code: 127,
            msg: format!("current working directory {cwd:?} is not absolute"),
        });
    }
    Ok(())
}

#[repr(C)]
struct CapUserHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapUserData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Empties the bounding set (needs CAP_SETPCAP: before changing user).
pub(crate) fn drop_bounding_set(last_cap: u32) -> Result<(), String> {
    for cap in 0..=last_cap {
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
            return Err(cerr(&format!("drop capability {cap} from the bounding set")).msg);
        }
    }
    Ok(())
}

/// Empties the effective, permitted, inheritable and ambient sets.
pub(crate) fn clear_capabilities(last_cap: u32) -> Result<(), String> {
    let none = CapMasks {
        bounding: 0,
        effective: 0,
        permitted: 0,
        inheritable: 0,
        ambient: 0,
    };
    apply_caps(&none, last_cap).map_err(|e| e.msg)
}

/// Effective, permitted and inheritable in one capset(2) (like runc), then the ambient set.
/// Capabilities the kernel does not know are ignored (runc ignores unknown ones too).
fn apply_caps(caps: &CapMasks, last_cap: u32) -> Result<(), ChildError> {
    let known = if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    };
    let (eff, perm, inh) = (
        caps.effective & known,
        caps.permitted & known,
        caps.inheritable & known,
    );
    let mut header = CapUserHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapUserData {
            effective: eff as u32,
            permitted: perm as u32,
            inheritable: inh as u32,
        },
        CapUserData {
            effective: (eff >> 32) as u32,
            permitted: (perm >> 32) as u32,
            inheritable: (inh >> 32) as u32,
        },
    ];
    // SAFETY: header and two data structs, as capset(2) with version 3 expects.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } < 0 {
        return Err(cerr(&format!(
            "capset(effective {eff:#x}, permitted {perm:#x}, inheritable {inh:#x})"
        )));
    }
    // SAFETY: plain prctl calls.
    unsafe {
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ) < 0
            && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
        {
            return Err(cerr("clear the ambient capabilities"));
        }
        for cap in 0..=last_cap {
            if caps.ambient & (1 << cap) != 0 {
                // Like runc, a capability that cannot be raised (not in permitted and
                // inheritable) is skipped rather than fatal.
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    cap as libc::c_ulong,
                    0,
                    0,
                );
            }
        }
    }
    Ok(())
}

/// `execvp`-like lookup in the process's PATH (not ours). 127 if nothing is found, 126 if only
/// non-executable candidates are.
fn resolve_program(program: &str, path_var: Option<&str>) -> Result<CString, ChildError> {
    let not_found = |what: String| ChildError {
        code: 127,
        msg: what,
    };
    let denied = |what: String| ChildError {
        code: 126,
        msg: what,
    };
    if program.contains('/') {
        return match executable(Path::new(program)) {
            Ok(()) => Ok(CString::new(program).expect("validated before the fork")),
            Err(e) if is_not_found(&e) => Err(not_found(format!("exec {program:?}: {e}"))),
            Err(e) => Err(denied(format!("exec {program:?}: {e}"))),
        };
    }
    let mut denied_candidate = None;
    for dir in path_var.unwrap_or(DEFAULT_PATH).split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(program);
        match executable(&candidate) {
            Ok(()) => {
                return Ok(
                    CString::new(candidate.into_os_string().into_encoded_bytes())
                        .expect("no NUL in PATH entries or args"),
                )
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                denied_candidate.get_or_insert(format!("exec {}: {e}", candidate.display()));
            }
        }
    }
    match denied_candidate {
        Some(msg) => Err(denied(msg)),
        None => Err(not_found(format!(
            "exec {program:?}: executable file not found in $PATH"
        ))),
    }
}

fn is_not_found(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

fn executable(path: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(io::Error::from_raw_os_error(libc::EACCES));
    }
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid path; AT_EACCESS checks with the effective ids we will exec with.
    if unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::X_OK, libc::AT_EACCESS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    // ------------------------------------------------------------------------------------------
    // Pure parts.

    const HYBRID_MOUNTINFO: &str = "\
23 1 0:21 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn nsexec_cgroup_dirs_hybrid() {
        let lines = parse_proc_cgroup(
            "9:name=systemd:/kubepods/pod1/c1\n8:pids:/kubepods/pod1/c1\n3:cpuset:/\n\
             2:cpu,cpuacct:/kubepods/pod1/c1\n1:rdma:/\n0::/kubepods/pod1/c1\n",
        );
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[3].controllers, vec!["cpu", "cpuacct"]);
        assert!(lines[5].controllers.is_empty());
        let dirs = cgroup_dirs(&lines, &parse_mountinfo(HYBRID_MOUNTINFO)).unwrap();
        let want: Vec<PathBuf> = [
            "/sys/fs/cgroup/systemd/kubepods/pod1/c1",
            "/sys/fs/cgroup/pids/kubepods/pod1/c1",
            "/sys/fs/cgroup/cpuset/",
            "/sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/c1",
            // rdma is not mounted: skipped.
            "/sys/fs/cgroup/unified/kubepods/pod1/c1",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dirs, want);
    }

    #[test]
    fn nsexec_cgroup_dirs_v2_and_mount_roots() {
        let mounts = parse_mountinfo(
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        let dirs = cgroup_dirs(&parse_proc_cgroup("0::/a/b\n"), &mounts).unwrap();
        assert_eq!(dirs, vec![PathBuf::from("/sys/fs/cgroup/a/b")]);

        // A mount of a sub-tree (as inside a container), with an escaped space in its path.
        let mounts = parse_mountinfo(
            "30 23 0:26 /outer /my\\040cg rw - cgroup2 cgroup2 rw\n\
             31 23 0:27 /outer /v1\\040pids rw - cgroup cgroup rw,pids\n",
        );
        let dirs =
            cgroup_dirs(&parse_proc_cgroup("1:pids:/outer/x\n0::/outer\n"), &mounts).unwrap();
        assert_eq!(
            dirs,
            vec![PathBuf::from("/v1 pids/x"), PathBuf::from("/my cg/")]
        );
        // /outerfoo is not below /outer, and no other mount reaches it.
        let err = cgroup_dirs(&parse_proc_cgroup("0::/outerfoo\n"), &mounts).unwrap_err();
        assert!(matches!(err, NsExecError::Cgroup { .. }), "{err}");
    }

    #[test]
    fn nsexec_prepare_env_like_runc() {
        let env: Vec<String> = ["A=1", "PATH=/x", "HOME=", "A=2", "B=b=c", "PATH=/y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (out, has_home, path) = prepare_env(&env).unwrap();
        assert_eq!(out, vec!["A=2", "B=b=c", "PATH=/y"]);
        assert!(!has_home);
        assert_eq!(path.as_deref(), Some("/y"));
        let (_, has_home, path) = prepare_env(&["HOME=/h".to_string()]).unwrap();
        assert!(has_home);
        assert_eq!(path, None);
        assert!(prepare_env(&["NOEQUALS".to_string()]).is_err());
        assert!(prepare_env(&["=x".to_string()]).is_err());
        assert!(prepare_env(&["A=\0".to_string()]).is_err());
    }

    #[test]
    fn nsexec_home_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nbad line\nu:x:1000:1000::/home/u:/bin/sh\n\
                      nohome:x:7:7:::/bin/sh\nnul:x:8:8::/a\0b:/bin/sh\n";
        assert_eq!(home_from_passwd(passwd, 0).as_deref(), Some("/root"));
        assert_eq!(home_from_passwd(passwd, 1000).as_deref(), Some("/home/u"));
        assert_eq!(home_from_passwd(passwd, 7), None);
        assert_eq!(home_from_passwd(passwd, 8), None);
        assert_eq!(home_from_passwd(passwd, 42), None);
    }

    #[test]
    fn nsexec_rejects_bad_specs_before_touching_anything() {
        let devnull = || OwnedFd::from(File::open("/dev/null").unwrap());
        let spec = |process: Value, seccomp: Option<Value>, init_pid: i32| ExecSpec {
            init_pid,
            process: serde_json::from_value(process).unwrap(),
            seccomp: seccomp.map(|s| serde_json::from_value(s).unwrap()),
            console: None,
        };
        let base = || json!({"user": {"uid": 0, "gid": 0}, "args": ["true"], "cwd": "/"});

        let mut no_args = base();
        no_args["args"] = json!([]);
        let err = exec_in_container(&spec(no_args, None, 1), devnull()).unwrap_err();
        assert!(matches!(err, NsExecError::InvalidSpec(_)), "{err}");

        let mut bad_env = base();
        bad_env["env"] = json!(["NOEQUALS"]);
        let err = exec_in_container(&spec(bad_env, None, 1), devnull()).unwrap_err();
        assert!(matches!(err, NsExecError::InvalidSpec(_)), "{err}");

        let notify = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]});
        let err = exec_in_container(&spec(base(), Some(notify), 1), devnull()).unwrap_err();
        assert!(matches!(err, NsExecError::Unsupported(_)), "{err}");

        let err = exec_in_container(&spec(base(), None, 0), devnull()).unwrap_err();
        assert!(matches!(err, NsExecError::InvalidSpec(_)), "{err}");

        // Above any pid_max: no such process.
        let err = exec_in_container(&spec(base(), None, 0x3fff_ffff), devnull()).unwrap_err();
        assert!(
            matches!(
                err,
                NsExecError::Init {
                    pid: 0x3fff_ffff,
                    ..
                }
            ),
            "{err}"
        );
    }

    // ------------------------------------------------------------------------------------------
    // Real execs. The test binary re-executes itself as the exec helper; the helper runs from an
    // .init_array constructor, i.e. before main and before the test harness starts any thread
    // (setns(CLONE_NEWUSER) fails with EINVAL in a multi-threaded process).

    const HELPER_ENV: &str = "VORDR_NSEXEC_TEST_HELPER";
    /// The helper's exit code when exec_in_container returned an error.
    const HELPER_FAILED: i32 = 250;
    /// Where the helper finds its pid_report, and a second, deliberately leaked copy of it that
    /// the exec'd process must not see.
    const REPORT_FD: RawFd = 7;
    const LEAKED_FD: RawFd = 9;
    const TARGET_HOSTNAME: &str = "vordr-nsexec-target";
    /// The target's user namespace maps its 0..65536 to these host ids.
    const HOST_ID_BASE: u32 = 100_000;

    #[used]
    #[link_section = ".init_array"]
    static RUN_HELPER_BEFORE_MAIN: extern "C" fn() = helper_before_main;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct HelperSpec {
        init_pid: i32,
        process: Process,
        seccomp: Option<LinuxSeccomp>,
    }

    extern "C" fn helper_before_main() {
        let Ok(json) = std::env::var(HELPER_ENV) else {
            return;
        };
        let code = match serde_json::from_str::<HelperSpec>(&json) {
            Ok(h) => {
                // SAFETY: the test set this fd up for us (see spawn_exec).
                let report = unsafe { OwnedFd::from_raw_fd(REPORT_FD) };
                let spec = ExecSpec {
                    init_pid: h.init_pid,
                    process: h.process,
                    seccomp: h.seccomp,
                    console: None,
                };
                match exec_in_container(&spec, report) {
                    Ok(code) => code,
                    Err(e) => {
                        eprintln!("nsexec helper: {e}");
                        HELPER_FAILED
                    }
                }
            }
            Err(e) => {
                eprintln!("nsexec helper: bad spec: {e}");
                HELPER_FAILED
            }
        };
        std::process::exit(code);
    }

    fn is_root() -> bool {
        // SAFETY: trivial syscall.
        let root = unsafe { libc::geteuid() } == 0;
        if !root {
            eprintln!("skipped: needs root (user namespaces mapped to host ids, cgroups)");
        }
        root
    }

    fn unique() -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        format!(
            "{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        )
    }

    fn ns_link(pid: impl std::fmt::Display, ns: &str) -> String {
        std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{ns}: {e}"))
    }

    fn wait_for(what: &str, child: &mut Child, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("{what}: unshare exited early with {status}");
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A container stand-in: `unshare` with new user (0..65536 -> host 100000.., written by us:
    /// `--map-users` would need newuidmap), pid, mount, uts, ipc and net namespaces and its own
    /// /proc, running `sleep` as pid 1. Its mount namespace is a copy of the host's, so host
    /// binaries work inside.
    struct Target {
        unshare: Child,
        init_pid: i32,
        cgroups: CgroupDirs,
    }

    /// Test cgroups, removed on drop (after Target::drop has killed their processes).
    struct CgroupDirs(Vec<PathBuf>);

    impl Drop for CgroupDirs {
        fn drop(&mut self) {
            for dir in &self.0 {
                let deadline = Instant::now() + Duration::from_secs(10);
                while let Err(e) = std::fs::remove_dir(dir) {
                    if e.kind() == io::ErrorKind::NotFound || Instant::now() > deadline {
                        eprintln!("cleanup: rmdir {}: {e}", dir.display());
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    impl Target {
        /// `in_cgroup`: first move the target into fresh cgroups (pids, plus cgroup2 when it is
        /// mounted; a plain cgroup2 directory on a pure v2 host).
        fn start(in_cgroup: bool) -> Target {
            Target::start_with(in_cgroup, true)
        }

        /// `userns: false`: no user namespace (a container run by root without one).
        fn start_with(in_cgroup: bool, userns: bool) -> Target {
            let mut cgroups = CgroupDirs(Vec::new());
            if in_cgroup {
                let name = format!("vordr-nsexec-test-{}", unique());
                let parents: &[&str] = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                    &["/sys/fs/cgroup"]
                } else if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
                    &["/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified"]
                } else {
                    &["/sys/fs/cgroup/pids"]
                };
                for parent in parents {
                    let dir = Path::new(parent).join(&name);
                    std::fs::create_dir(&dir)
                        .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                    cgroups.0.push(dir);
                }
            }
            let procs: Vec<CString> = cgroups
                .0
                .iter()
                .map(|d| {
                    CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes())
                        .unwrap()
                })
                .collect();
            let mut cmd = Command::new("unshare");
            if userns {
                cmd.arg("--user");
            }
            cmd.args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--uts",
                "--ipc",
                "--net",
                "--mount-proc",
                "/bin/sleep",
                "600",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
            // SAFETY: only async-signal-safe calls (open/write/close/prctl) on data prepared
            // before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    for p in &procs {
                        let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                        if fd < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                        let err = io::Error::last_os_error();
                        libc::close(fd);
                        if !ok {
                            return Err(err);
                        }
                    }
                    Ok(())
                });
            }
            let unshare = cmd.spawn().expect("spawn unshare (util-linux)");
            let upid = unshare.id();
            let mut target = Target {
                unshare,
                init_pid: 0,
                cgroups,
            };
            if userns {
                let our_userns = ns_link("self", "user");
                wait_for("unshare(CLONE_NEWUSER)", &mut target.unshare, || {
                    std::fs::read_link(format!("/proc/{upid}/ns/user"))
                        .map(|l| l.to_string_lossy() != our_userns)
                        .unwrap_or(false)
                });
                for map in ["uid_map", "gid_map"] {
                    std::fs::write(
                        format!("/proc/{upid}/{map}"),
                        format!("0 {HOST_ID_BASE} 65536\n"),
                    )
                    .unwrap_or_else(|e| panic!("write {map}: {e}"));
                }
            }
            let mut inner = 0;
            wait_for("the target's init", &mut target.unshare, || {
                let children =
                    std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
                        .unwrap_or_default();
                let Some(pid) = children.split_whitespace().next() else {
                    return false;
                };
                inner = pid.parse().unwrap();
                std::fs::read_to_string(format!("/proc/{inner}/comm"))
                    .map(|c| c.trim() == "sleep")
                    .unwrap_or(false)
            });
            target.init_pid = inner;
            // Host root may set the hostname of the target's uts namespace without its user
            // namespace.
            let status = Command::new("nsenter")
                .args(["--target", &inner.to_string(), "--uts"])
                .args(["/bin/busybox", "hostname", TARGET_HOSTNAME])
                .status()
                .expect("spawn nsenter (util-linux)");
            assert!(status.success(), "nsenter hostname: {status}");
            target
        }
    }

    impl Drop for Target {
        fn drop(&mut self) {
            // Killing pid 1 of the pid namespace kills every exec'd process in it too.
            if self.init_pid > 0 {
                // SAFETY: plain kill.
                unsafe { libc::kill(self.init_pid, libc::SIGKILL) };
            }
            let _ = self.unshare.kill();
            let _ = self.unshare.wait();
        }
    }

    /// A process spec in config.json form, with a typical container capability set.
    fn process(args: &[&str]) -> Value {
        let caps = json!([
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE"
        ]);
        json!({
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true
        })
    }

    fn sh(script: &str) -> Value {
        process(&["/bin/busybox", "sh", "-c", script])
    }

    struct Exec {
        child: Child,
        report: Option<File>,
    }

    struct Outcome {
        code: i32,
        stdout: String,
        stderr: String,
    }

    fn spawn_exec(target: &Target, process: Value, seccomp: Option<Value>, stdin: Stdio) -> Exec {
        let spec = HelperSpec {
            init_pid: target.init_pid,
            process: serde_json::from_value(process).expect("valid process json"),
            seccomp: seccomp.map(|s| serde_json::from_value(s).expect("valid seccomp json")),
        };
        let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let w = report_w.as_raw_fd();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(HELPER_ENV, serde_json::to_string(&spec).unwrap())
            // Should the constructor not take over, the harness only lists no test.
            .args(["--list", "--exact", "nsexec-helper-constructor-did-not-run"])
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only dup2/fcntl in the child.
        unsafe {
            cmd.pre_exec(move || {
                for fd in [REPORT_FD, LEAKED_FD] {
                    if w == fd {
                        if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                    } else if libc::dup2(w, fd) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn the exec helper");
        drop(report_w);
        Exec {
            child,
            report: Some(File::from(report_r)),
        }
    }

    impl Exec {
        /// The pid the helper reports; None if it closed the report without one.
        fn read_pid(&mut self) -> Option<i32> {
            let mut file = self.report.take().expect("read_pid once");
            let mut pfd = libc::pollfd {
                fd: file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, 30_000) };
            assert!(n == 1, "no pid report within 30s");
            let mut text = String::new();
            let mut byte = [0u8; 1];
            while file.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
                text.push(byte[0] as char);
            }
            if text.is_empty() {
                return None;
            }
            Some(
                text.parse()
                    .unwrap_or_else(|_| panic!("bad pid report {text:?}")),
            )
        }

        fn finish(self) -> Outcome {
            let pid = self.child.id() as i32;
            let child = self.child;
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(child.wait_with_output());
            });
            let out = match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(out) => out.expect("wait for the exec helper"),
                Err(_) => {
                    // SAFETY: plain kill of our own child.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    panic!("exec helper did not finish within 60s");
                }
            };
            let code = out
                .status
                .code()
                .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
            let outcome = Outcome {
                code,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            };
            assert_ne!(
                outcome.code, HELPER_FAILED,
                "exec_in_container failed: {}",
                outcome.stderr
            );
            outcome
        }
    }

    fn run(target: &Target, process: Value, seccomp: Option<Value>) -> Outcome {
        let mut exec = spawn_exec(target, process, seccomp, Stdio::null());
        let pid = exec.read_pid();
        let out = exec.finish();
        assert!(pid.is_some(), "no pid reported; stderr: {}", out.stderr);
        out
    }

    fn status_field(status: &str, field: &str) -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in {status}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    const NAMESPACE_NAMES: [&str; 8] =
        ["user", "ipc", "uts", "net", "pid", "mnt", "cgroup", "time"];

    /// (a) + (b): root inside a user namespace that maps it to an unprivileged host id, in all
    /// of the target's namespaces, and the reported pid is that process.
    #[test]
    fn nsexec_joins_the_targets_namespaces_and_is_not_host_root() {
        if !is_root() {
            return;
        }
        let target = Target::start(false);
        let script = "/bin/busybox id -u; /bin/busybox cat /proc/self/uid_map; \
                      for n in user ipc uts net pid mnt cgroup time; do \
                        /bin/busybox readlink /proc/self/ns/$n; done; \
                      /bin/busybox hostname; read x || true";
        let mut exec = spawn_exec(&target, sh(script), None, Stdio::piped());
        let pid = exec.read_pid().expect("a pid report");
        let mut stdout = BufReader::new(exec.child.stdout.take().unwrap());
        let mut lines = Vec::new();
        for _ in 0..11 {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            lines.push(line.trim().to_string());
        }

        // Seen from the host while it runs: the reported pid is the process, an unprivileged
        // host user, nested in the target's pid namespace.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let host_id = HOST_ID_BASE.to_string();
        assert_eq!(
            status_field(&status, "Uid"),
            [host_id.as_str(); 4].join(" "),
            "{status}"
        );
        assert_eq!(
            status_field(&status, "Gid"),
            [host_id.as_str(); 4].join(" ")
        );
        let nspid = status_field(&status, "NSpid");
        assert_eq!(nspid.split(' ').count(), 2, "NSpid {nspid}");
        for ns in NAMESPACE_NAMES {
            assert_eq!(
                ns_link(pid, ns),
                ns_link(target.init_pid, ns),
                "host view of {ns}"
            );
        }

        drop(exec.child.stdin.take());
        let out = exec.finish();
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);

        assert_eq!(lines[0], "0", "id -u inside");
        let uid_map: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(uid_map, ["0", host_id.as_str(), "65536"], "uid_map inside");
        for (i, ns) in NAMESPACE_NAMES.iter().enumerate() {
            assert_eq!(lines[2 + i], ns_link(target.init_pid, ns), "{ns} namespace");
        }
        assert_ne!(ns_link("self", "user"), ns_link(target.init_pid, "user"));
        assert_ne!(ns_link("self", "pid"), ns_link(target.init_pid, "pid"));
        assert_eq!(lines[10], TARGET_HOSTNAME);
    }

    /// (c): the container's profile is applied, with and without no_new_privs (without it the
    /// filter must be loaded while CAP_SYS_ADMIN is still there, even with no caps in the end).
    #[test]
    fn nsexec_applies_the_seccomp_profile() {
        if !is_root() {
            return;
        }
        let target = Target::start(false);
        // The target sees the host's filesystem: a scratch directory its root (host uid
        // 100000) may write to.
        let scratch = tempfile::Builder::new()
            .prefix("vordr-nsexec-test-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let dir = scratch.path().display().to_string();
        let profile = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
        let script = |name: &str| {
            format!(
                "/bin/busybox mkdir {dir}/{name} && echo created; \
                 /bin/busybox grep '^Seccomp:' /proc/self/status"
            )
        };

        let out = run(&target, sh(&script("free")), None);
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        assert_eq!(out.stdout, "created\nSeccomp:\t0\n");

        let out = run(&target, sh(&script("nnp")), Some(profile.clone()));
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        assert_eq!(out.stdout, "Seccomp:\t2\n");
        assert!(
            out.stderr.contains("Operation not permitted"),
            "{}",
            out.stderr
        );

        let mut no_nnp = sh(&script("no-nnp"));
        no_nnp["noNewPrivileges"] = json!(false);
        no_nnp["capabilities"] = json!({"bounding": [], "effective": [], "permitted": [], "inheritable": [], "ambient": []});
        let out = run(&target, no_nnp, Some(profile));
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        assert_eq!(out.stdout, "Seccomp:\t2\n");
        assert!(
            out.stderr.contains("Operation not permitted"),
            "{}",
            out.stderr
        );

        // Nothing was created behind the filter's back.
        let out = run(&target, sh(&format!("/bin/busybox ls {dir}")), None);
        assert_eq!(out.stdout, "free\n");
    }

    /// (d): exit codes and signals pass through; exec failures give 127 / 126; the PATH is the
    /// process's.
    #[test]
    fn nsexec_passes_exit_codes_through() {
        if !is_root() {
            return;
        }
        let target = Target::start(false);
        assert_eq!(run(&target, sh("exit 7"), None).code, 7);
        assert_eq!(run(&target, sh("kill -9 $$"), None).code, 128 + 9);

        let out = run(&target, process(&["/no/such/binary"]), None);
        assert_eq!(out.code, 127);
        assert!(out.stderr.starts_with("vordr-nsexec: "), "{}", out.stderr);
        let out = run(&target, process(&["no-such-command-vordr"]), None);
        assert_eq!(out.code, 127);
        assert!(out.stderr.contains("not found in $PATH"), "{}", out.stderr);
        let out = run(&target, process(&["/etc/passwd"]), None);
        assert_eq!(out.code, 126, "stderr: {}", out.stderr);

        // `sh` is found through the process's PATH, not the helper's.
        let mut p = process(&["sh", "-c", "exit 5"]);
        assert_eq!(run(&target, p.clone(), None).code, 5);
        p["env"] = json!(["PATH=/nonexistent"]);
        let out = run(&target, p, None);
        assert_eq!(out.code, 127, "stderr: {}", out.stderr);
    }

    /// (e): capability sets, user, groups, umask and cwd are exactly the process's.
    #[test]
    fn nsexec_drops_to_the_process_user_and_capabilities() {
        if !is_root() {
            return;
        }
        let target = Target::start(false);
        let script = "/bin/busybox grep -E '^(Cap|Uid|Gid|Groups|NoNewPrivs)' /proc/self/status; \
                      umask; pwd";

        let mut p = sh(script);
        p["capabilities"] = json!({"bounding": [], "effective": [], "permitted": [], "inheritable": [], "ambient": []});
        let out = run(&target, p, None);
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(status_field(&out.stdout, cap), "0000000000000000", "{cap}");
        }
        assert_eq!(status_field(&out.stdout, "NoNewPrivs"), "1");
        assert_eq!(status_field(&out.stdout, "Uid"), "0 0 0 0");

        let mut p = sh(script);
        p["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20], "umask": 0o027});
        p["cwd"] = json!("/tmp");
        p["noNewPrivileges"] = json!(false);
        let nbs = json!(["CAP_NET_BIND_SERVICE"]);
        p["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "effective": nbs, "permitted": nbs, "inheritable": nbs, "ambient": nbs
        });
        let out = run(&target, p, None);
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        assert_eq!(status_field(&out.stdout, "Uid"), "1000 1000 1000 1000");
        assert_eq!(status_field(&out.stdout, "Gid"), "1001 1001 1001 1001");
        assert_eq!(status_field(&out.stdout, "Groups"), "10 20");
        assert_eq!(status_field(&out.stdout, "CapBnd"), "0000000000000401");
        for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            assert_eq!(status_field(&out.stdout, cap), "0000000000000400", "{cap}");
        }
        assert_eq!(status_field(&out.stdout, "NoNewPrivs"), "0");
        assert!(out.stdout.ends_with("0027\n/tmp\n"), "{}", out.stdout);

        // A uid outside the user namespace's mapping is refused.
        let mut p = sh("true");
        p["user"] = json!({"uid": 70000, "gid": 0});
        let out = run(&target, p, None);
        assert_eq!(out.code, 127);
        assert!(out.stderr.contains("not mapped"), "{}", out.stderr);
    }

    /// rlimits (raising a hard limit needs host privileges), oom_score_adj (lowering it too),
    /// the environment, and no leaked fds.
    #[test]
    fn nsexec_sets_rlimits_oom_score_env_and_closes_fds() {
        if !is_root() {
            return;
        }
        let mut memlock = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid out pointer.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut memlock) },
            0
        );
        // With CAP_SYS_RESOURCE (not every sandbox grants it to root), check that the helper
        // applies rlimits and oom_score_adj while it still has host privileges: raise a hard
        // limit and lower the score, which nobody inside the user namespace could do.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let cap_eff = u64::from_str_radix(&status_field(&status, "CapEff"), 16).unwrap();
        let sys_resource = cap_eff & (1 << 24) != 0; // CAP_SYS_RESOURCE
        let (memlock_hard_kib, oom_score_adj) = if sys_resource {
            let kib = if memlock.rlim_max == libc::RLIM_INFINITY {
                1 << 30
            } else {
                memlock.rlim_max / 1024 * 2 + 1024
            };
            (kib, -7)
        } else {
            eprintln!("no CAP_SYS_RESOURCE: not raising a hard limit nor lowering oom_score_adj");
            let kib = if memlock.rlim_max == libc::RLIM_INFINITY {
                1 << 20
            } else {
                memlock.rlim_max / 1024
            };
            (kib, 123)
        };
        let target = Target::start(false);
        let mut p =
            sh("ulimit -n; ulimit -Hn; ulimit -Hl; /bin/busybox cat /proc/self/oom_score_adj");
        p["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
            {"type": "RLIMIT_MEMLOCK", "soft": 0, "hard": memlock_hard_kib * 1024}
        ]);
        p["oomScoreAdj"] = json!(oom_score_adj);
        let out = run(&target, p, None);
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        assert_eq!(
            out.stdout,
            format!("100\n200\n{memlock_hard_kib}\n{oom_score_adj}\n")
        );

        // The process's environment only (deduplicated, HOME from the container's
        // /etc/passwd): nothing of the helper's.
        let mut p = process(&["/bin/busybox", "env"]);
        p["env"] = json!(["PATH=/usr/bin:/bin", "FOO=1", "HOME=", "FOO=2"]);
        let out = run(&target, p, None);
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        assert_eq!(out.stdout, "PATH=/usr/bin:/bin\nFOO=2\nHOME=/root\n");
        let mut p = process(&["/bin/busybox", "env"]);
        p["user"] = json!({"uid": 4242, "gid": 4242});
        let out = run(&target, p, None);
        assert!(out.stdout.ends_with("\nHOME=/\n"), "{}", out.stdout);

        // 0, 1, 2 and ls's own directory fd: neither the report fd nor the leaked one.
        let out = run(
            &target,
            process(&["/bin/busybox", "ls", "/proc/self/fd"]),
            None,
        );
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        assert_eq!(out.stdout, "0\n1\n2\n3\n");
    }

    /// (f): the exec joins the target's cgroups (created for the test, removed afterwards).
    #[test]
    fn nsexec_joins_the_targets_cgroups() {
        if !is_root() {
            return;
        }
        let target = Target::start(true);
        let out = run(&target, sh("/bin/busybox cat /proc/self/cgroup"), None);
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        for dir in &target.cgroups.0 {
            let name = dir.file_name().unwrap().to_string_lossy();
            let expect = if dir.starts_with("/sys/fs/cgroup/pids") {
                format!(":pids:/{name}")
            } else {
                format!("0::/{name}")
            };
            assert!(
                out.stdout.lines().any(|l| l.ends_with(&expect)),
                "want a line ending in {expect} in\n{}",
                out.stdout
            );
            assert!(
                !ours.contains(name.as_ref()),
                "the test itself is not in {name}"
            );
        }
        assert!(!target.cgroups.0.is_empty());
    }

    /// The helper forwards SIGTERM to the process and reports its death by it.
    #[test]
    fn nsexec_forwards_signals() {
        if !is_root() {
            return;
        }
        let target = Target::start(false);
        let mut exec = spawn_exec(
            &target,
            process(&["/bin/busybox", "sleep", "60"]),
            None,
            Stdio::null(),
        );
        let pid = exec.read_pid().expect("a pid report");
        // Wait for the execve so the signal meets busybox sleep, not our setup code.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
            != b"/bin/busybox\0sleep\x0060\0"
        {
            assert!(Instant::now() < deadline, "exec'd sleep did not show up");
            std::thread::sleep(Duration::from_millis(10));
        }
        let started = Instant::now();
        // SAFETY: plain kill of our own child.
        assert_eq!(
            unsafe { libc::kill(exec.child.id() as i32, libc::SIGTERM) },
            0
        );
        let out = exec.finish();
        assert_eq!(out.code, 128 + libc::SIGTERM, "stderr: {}", out.stderr);
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    /// A container without a user namespace: the helper stays host root until the child drops
    /// to the process's user; stdio is handed to that user.
    #[test]
    fn nsexec_without_user_namespace_drops_host_root() {
        if !is_root() {
            return;
        }
        let target = Target::start_with(false, false);
        assert_eq!(ns_link("self", "user"), ns_link(target.init_pid, "user"));
        let mut p = sh(
            "/bin/busybox id -u; /bin/busybox grep '^CapEff:' /proc/self/status; \
                        /bin/busybox readlink /proc/self/ns/pid; \
                        echo reopened > /proc/self/fd/1",
        );
        p["user"] = json!({"uid": 1000, "gid": 1000});
        p["capabilities"] = json!({"bounding": [], "effective": [], "permitted": []});
        let out = run(&target, p, None);
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        assert_eq!(
            out.stdout,
            format!(
                "1000\nCapEff:\t0000000000000000\n{}\nreopened\n",
                ns_link(target.init_pid, "pid")
            )
        );
    }
}
