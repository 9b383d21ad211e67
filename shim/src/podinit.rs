//! The init process of a pod whose containers share one PID namespace (the
//! role containerd's pause container plays): PID 1 of a new PID namespace
//! that reaps orphans and exits on SIGTERM, SIGINT or SIGKILL.
//!
//! It is confined like a pause container, since every container of the
//! pod can reach it (`/proc/1/root`, `/proc/1/ns/*`, ptrace with
//! SYS_PTRACE):
//!
//! `containerd-shim-vordr-v1 __pod-init --uid UID --gid GID [--net PATH]
//! [--ipc PATH] [--uts PATH] [--user PATH]`, with the seccomp profile (OCI
//! JSON) on stdin. The verb, single-threaded, with the daemon's privileges:
//! 1. reads the profile and opens every namespace path and `/dev/null`, so
//!    a bad argument changes nothing;
//! 2. joins the pod's network, IPC and UTS namespaces (absent: the host's);
//! 3. gets a mount namespace of its own whose root is an empty tmpfs
//!    (4 KiB, 0555, nosuid/nodev/noexec), mounted read-only once it is the
//!    root: unshare, every mount rprivate, pivot_root(".", ".") onto the
//!    tmpfs, the old root detached;
//! 4. joins the pod's user namespace if it has one, so that the PID
//!    namespace created next belongs to it (containers that join the user
//!    namespace first, as runc 1.1 does, can then join the PID namespace);
//! 5. unshares the PID namespace and forks its PID 1, the init.
//!
//! The init: setsid, stdio on /dev/null, signals reset and the ones it waits
//! for blocked; the bounding set emptied; no supplementary groups, the pod's
//! gid and uid (ids of the pod's user namespace when it has one); every
//! other capability set cleared; no_new_privs; the seccomp filter last
//! (through libcontainer, as for execs). Then it reports to the verb and
//! reaps orphans until SIGTERM or SIGINT.
//!
//! The verb prints the init's host pid only once the init has reported that
//! its setup is complete; an init that fails reports why, and the verb
//! exits non-zero with that message. The init gets [`SETUP_TIMEOUT`] to
//! report, after which it is killed.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcontainer::oci_spec::runtime::LinuxSeccomp;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::nsexec;

pub use vordr_shim_api::POD_INIT_VERB;

/// How long the init may take to set itself up and report.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest seccomp profile accepted on stdin.
const MAX_PROFILE: u64 = 4 << 20;

/// What the init should be: its ids and the pod's namespaces to join
/// (`None`: stay in the host's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitArgs {
    pub uid: u32,
    pub gid: u32,
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    pub user: Option<PathBuf>,
    /// The daemon's directory for the pod (its namespace pins). The init
    /// does not use it: it names the pod in the init's command line, so
    /// that a daemon restarting after a crash finds inits of pods it no
    /// longer knows.
    pub pod: Option<PathBuf>,
}

/// Parses the verb's arguments (after the verb): `--flag value` pairs,
/// each flag at most once, `--uid` and `--gid` required, paths absolute.
pub fn parse_args(args: &[String]) -> Result<InitArgs, String> {
    let mut uid = None;
    let mut gid = None;
    let (mut net, mut ipc, mut uts, mut user, mut pod) = (None, None, None, None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let id = |v: &str| -> Result<u32, String> {
            v.parse::<u32>()
                .ok()
                .filter(|id| *id != u32::MAX)
                .ok_or_else(|| format!("{flag} {v:?}: not a valid id"))
        };
        let path = |v: &str| -> Result<PathBuf, String> {
            let p = PathBuf::from(v);
            if p.is_absolute() {
                Ok(p)
            } else {
                Err(format!("{flag} {v:?}: not an absolute path"))
            }
        };
        let slot_taken = match flag.as_str() {
            "--uid" => uid.replace(id(value)?).is_some(),
            "--gid" => gid.replace(id(value)?).is_some(),
            "--net" => net.replace(path(value)?).is_some(),
            "--ipc" => ipc.replace(path(value)?).is_some(),
            "--uts" => uts.replace(path(value)?).is_some(),
            "--user" => user.replace(path(value)?).is_some(),
            "--pod" => pod.replace(path(value)?).is_some(),
            _ => return Err(format!("unknown argument {flag:?}")),
        };
        if slot_taken {
            return Err(format!("{flag} given twice"));
        }
    }
    Ok(InitArgs {
        uid: uid.ok_or("--uid is required")?,
        gid: gid.ok_or("--gid is required")?,
        net,
        ipc,
        uts,
        user,
        pod,
    })
}

/// `containerd-shim-vordr-v1 __pod-init ...`: starts the init, prints its
/// host pid once it is set up and returns; the init lives on alone.
pub fn pod_init_main(args: &[String]) -> i32 {
    match start(args) {
        Ok(pid) => {
            println!("{pid}");
            0
        }
        Err(e) => {
            eprintln!("pod init: {e}");
            1
        }
    }
}

/// A namespace to join, opened before anything changes.
struct Ns {
    what: &'static str,
    flag: CloneFlags,
    fd: OwnedFd,
}

fn open_ns(
    what: &'static str,
    flag: CloneFlags,
    path: &Option<PathBuf>,
) -> Result<Option<Ns>, String> {
    let Some(path) = path else {
        return Ok(None);
    };
    let fd = open_cloexec(path, libc::O_RDONLY)
        .map_err(|e| format!("the pod's {what} namespace {}: {e}", path.display()))?;
    Ok(Some(Ns { what, flag, fd }))
}

fn join(ns: &Ns) -> Result<(), String> {
    setns(&ns.fd, ns.flag).map_err(|e| format!("joining the pod's {} namespace: {e}", ns.what))
}

fn open_cloexec(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: we own the fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Everything up to the fork; returns the init's host pid once it reported.
fn start(args: &[String]) -> Result<i32, String> {
    // Nothing the daemon may have leaked reaches the init (a directory fd
    // would lead out of its empty root): only stdio is ours so far.
    nsexec::close_fds_from(3);
    let args = parse_args(args)?;
    let mut profile = Vec::new();
    io::stdin()
        .lock()
        .take(MAX_PROFILE + 1)
        .read_to_end(&mut profile)
        .map_err(|e| format!("reading the seccomp profile from stdin: {e}"))?;
    if profile.len() as u64 > MAX_PROFILE {
        return Err(format!(
            "the seccomp profile is larger than {MAX_PROFILE} bytes"
        ));
    }
    let seccomp: LinuxSeccomp = serde_json::from_slice(&profile)
        .map_err(|e| format!("the seccomp profile on stdin: {e}"))?;
    nsexec::check_seccomp(&seccomp)?;

    let namespaces = [
        open_ns("network", CloneFlags::CLONE_NEWNET, &args.net)?,
        open_ns("IPC", CloneFlags::CLONE_NEWIPC, &args.ipc)?,
        open_ns("UTS", CloneFlags::CLONE_NEWUTS, &args.uts)?,
    ];
    let userns = open_ns("user", CloneFlags::CLONE_NEWUSER, &args.user)?;
    let null = open_cloexec(Path::new("/dev/null"), libc::O_RDWR)
        .map_err(|e| format!("/dev/null: {e}"))?;
    let last_cap = nsexec::last_cap();

    // What the init inherits: the pod's namespaces, an empty root, and
    // (after joining the pod's user namespace) a PID namespace of its own.
    for ns in namespaces.iter().flatten() {
        join(ns)?;
    }
    drop(namespaces);
    empty_root()?;
    if let Some(ns) = &userns {
        join(ns)?;
    }
    drop(userns);
    unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("unshare(CLONE_NEWPID): {e}"))?;

    let (report_rd, report_wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: single-threaded (the verb runs before anything else starts a
    // thread), so the child may run ordinary Rust code.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if child == 0 {
        drop(report_rd);
        init_main(&args, &seccomp, null, last_cap, report_wr);
    }
    drop(report_wr);
    drop(null);
    wait_report(report_rd, child)
}

/// Gives this process a mount namespace whose root is an empty read-only
/// tmpfs (runc's pivot_root(".", ".") trick: the old root ends up stacked
/// on the new one and is detached from there).
fn empty_root() -> Result<(), String> {
    let step = |what: &str| {
        let what = what.to_string();
        move |e: nix::Error| format!("private root: {what}: {e}")
    };
    // Any directory that surely exists can hold the tmpfs: everything
    // around it goes with the old root.
    const MOUNT_POINT: &str = "/proc";
    let fs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    unshare(CloneFlags::CLONE_NEWNS).map_err(step("unshare(CLONE_NEWNS)"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(step("make every mount private"))?;
    mount(
        Some("tmpfs"),
        MOUNT_POINT,
        Some("tmpfs"),
        fs_flags,
        Some("size=4k,mode=0555"),
    )
    .map_err(step("mount a tmpfs"))?;
    nix::unistd::chdir(MOUNT_POINT).map_err(step("chdir to the tmpfs"))?;
    nix::unistd::pivot_root(".", ".").map_err(step("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(step("detach the old root"))?;
    nix::unistd::chdir("/").map_err(step("chdir /"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | fs_flags,
        None::<&str>,
    )
    .map_err(step("remount read-only"))?;
    Ok(())
}

/// The signals the init waits for (blocked, so that they queue even though
/// it has no handler: PID 1 would otherwise never see them).
fn waited_signals() -> libc::sigset_t {
    nsexec::signal_set([libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
}

/// The init, after the fork: sets itself up, reports, reaps. Never returns.
fn init_main(
    args: &InitArgs,
    seccomp: &LinuxSeccomp,
    null: OwnedFd,
    last_cap: u32,
    report: OwnedFd,
) -> ! {
    let setup = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        init_setup(args, seccomp, null, last_cap)
    }))
    .unwrap_or_else(|_| Err("panic while setting up".to_string()));
    let mut report = File::from(report);
    match setup {
        Ok(()) => {
            // One zero byte: ready. If the verb is gone, nobody waits for
            // the init: it stops.
            if report.write_all(&[0]).is_err() {
                // SAFETY: _exit ends the process without running anything.
                unsafe { libc::_exit(1) };
            }
            drop(report);
            let code = reap_forever();
            // SAFETY: as above.
            unsafe { libc::_exit(code) }
        }
        Err(msg) => {
            let _ = report.write_all(msg.as_bytes());
            // SAFETY: as above.
            unsafe { libc::_exit(1) }
        }
    }
}

fn init_setup(
    args: &InitArgs,
    seccomp: &LinuxSeccomp,
    null: OwnedFd,
    last_cap: u32,
) -> Result<(), String> {
    let os = |what: &str| format!("{what}: {}", io::Error::last_os_error());
    // SAFETY: plain syscalls on our own process with valid arguments.
    unsafe {
        if libc::setsid() < 0 {
            return Err(os("setsid"));
        }
        // Nothing to read or write: the daemon's pipes must not stay open.
        for fd in 0..3 {
            if libc::dup2(null.as_raw_fd(), fd as RawFd) < 0 {
                return Err(os("stdio on /dev/null"));
            }
        }
    }
    drop(null);
    nsexec::reset_signals();
    let waited = waited_signals();
    // SAFETY: valid, initialised set.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &waited, std::ptr::null_mut()) } != 0 {
        return Err(os("block signals"));
    }

    // Capabilities: the bounding set while CAP_SETPCAP is there, then the
    // ids (which empties permitted and effective), then whatever is left.
    nsexec::drop_bounding_set(last_cap)?;
    // SAFETY: plain syscalls.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) < 0 {
            return Err(os("setgroups([])"));
        }
        if libc::setresgid(args.gid, args.gid, args.gid) < 0 {
            return Err(os(&format!("setresgid({})", args.gid)));
        }
        if libc::setresuid(args.uid, args.uid, args.uid) < 0 {
            return Err(os(&format!("setresuid({})", args.uid)));
        }
    }
    nsexec::clear_capabilities(last_cap)?;
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(os("set no_new_privs"));
    }
    // Last: from here on only what the profile allows (writing the report,
    // waiting for signals, reaping, exiting).
    nsexec::load_seccomp_profile(seccomp)
}

/// Waits (at most [`SETUP_TIMEOUT`]) for the init's report: a zero byte
/// (ready) or an error message. The init is killed if it does not make it.
fn wait_report(report: OwnedFd, child: libc::pid_t) -> Result<i32, String> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let mut got = Vec::new();
    let mut file = File::from(report);
    let timed_out = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break true;
        }
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            kill_and_reap(child);
            return Err(format!("waiting for the init: {e}"));
        }
        if n == 0 {
            continue;
        }
        let mut buf = [0u8; 1024];
        match file.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => {
                if got.len() < 4096 {
                    got.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                kill_and_reap(child);
                return Err(format!("reading the init's report: {e}"));
            }
        }
    };
    if !timed_out && got == [0] {
        return Ok(child);
    }
    let status = kill_and_reap(child);
    Err(if timed_out {
        format!("the init did not finish its setup in {SETUP_TIMEOUT:?}")
    } else if got.is_empty() {
        format!("the init ended ({status}) before finishing its setup")
    } else {
        String::from_utf8_lossy(&got).into_owned()
    })
}

/// Kills the init and reaps it (for at most 2 seconds); how it ended.
fn kill_and_reap(child: libc::pid_t) -> String {
    // SAFETY: kill/waitpid on our own child.
    unsafe { libc::kill(child, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if r == child {
            return if libc::WIFEXITED(status) {
                format!("exit code {}", libc::WEXITSTATUS(status))
            } else if libc::WIFSIGNALED(status) {
                format!("signal {}", libc::WTERMSIG(status))
            } else {
                format!("status {status:#x}")
            };
        }
        if r < 0 || Instant::now() > deadline {
            return "status unknown".into();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// PID 1's job: reap every process that ends up its child, until SIGTERM or
/// SIGINT. Wakes up at least once a minute to reap anyway.
fn reap_forever() -> i32 {
    let waited = waited_signals();
    let every = libc::timespec {
        tv_sec: 60,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: valid set and timeout; the info pointer may be null.
        let sig = unsafe { libc::sigtimedwait(&waited, std::ptr::null_mut(), &every) };
        if sig == libc::SIGTERM || sig == libc::SIGINT {
            return 0;
        }
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer.
            if unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } <= 0 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_parse_strictly() {
        assert_eq!(
            parse_args(&args(&["--uid", "65535", "--gid", "65535"])),
            Ok(InitArgs {
                uid: 65535,
                gid: 65535,
                net: None,
                ipc: None,
                uts: None,
                user: None,
                pod: None,
            })
        );
        assert_eq!(
            parse_args(&args(&[
                "--net",
                "/run/vordr/ns/p/net",
                "--uid",
                "0",
                "--ipc",
                "/run/vordr/ns/p/ipc",
                "--uts",
                "/run/vordr/ns/p/uts",
                "--user",
                "/run/vordr/ns/p/user",
                "--gid",
                "7",
                "--pod",
                "/run/vordr/ns/p",
            ])),
            Ok(InitArgs {
                uid: 0,
                gid: 7,
                net: Some("/run/vordr/ns/p/net".into()),
                ipc: Some("/run/vordr/ns/p/ipc".into()),
                uts: Some("/run/vordr/ns/p/uts".into()),
                user: Some("/run/vordr/ns/p/user".into()),
                pod: Some("/run/vordr/ns/p".into()),
            })
        );
        for (bad, needle) in [
            (&["--uid", "1"][..], "--gid is required"),
            (&["--gid", "1"][..], "--uid is required"),
            (&["--uid", "1", "--gid"][..], "needs a value"),
            (&["--uid", "-1", "--gid", "1"][..], "not a valid id"),
            (&["--uid", "4294967295", "--gid", "1"][..], "not a valid id"),
            (&["--uid", "1", "--gid", "x"][..], "not a valid id"),
            (&["--uid", "1", "--uid", "2", "--gid", "1"][..], "twice"),
            (
                &["--uid", "1", "--gid", "1", "--net", "ns/net"][..],
                "absolute",
            ),
            (
                &["--uid", "1", "--gid", "1", "--pid", "/x"][..],
                "unknown argument",
            ),
            (&[][..], "--uid is required"),
        ] {
            let e = parse_args(&args(bad)).unwrap_err();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
    }
}
