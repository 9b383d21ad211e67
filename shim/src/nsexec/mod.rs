//! Exec into a running container like runc: its namespaces and cgroups, then user, caps, seccomp.
//!
//! The helper joins every namespace (user first) and the cgroups; the child drops to the
//! process's user, capabilities, no_new_privs and seccomp.
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
//!
//! One module per concern: `prepare` (the spec checked and turned into what the child needs),
//! `namespaces`, `cgroups`, `rlimits`, `console`, `signals` on the helper side; `child` runs the
//! child's steps with `user`, `env`, `capabilities`, `seccomp` and `program`.

mod capabilities;
mod cgroups;
mod child;
mod console;
mod env;
mod error;
mod fs;
mod namespaces;
mod prepare;
mod program;
mod rlimits;
mod seccomp;
mod signals;
mod user;

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::{LinuxSeccomp, Process};

use cgroups::{cgroup_dirs, join_cgroups, parse_proc_cgroup};
use child::child_main;
use console::open_console;
use error::setup_err;
use fs::{open_path, read_at};
use namespaces::{join_namespaces, open_namespaces, NsFd};
use prepare::Prepared;
use signals::{block_forwarded_signals, wait_forwarding_signals};

pub(crate) use capabilities::{clear_capabilities, drop_bounding_set, last_cap};
pub use error::NsExecError;
pub(crate) use fs::close_fds_from;
pub(crate) use seccomp::{check_seccomp, load_seccomp_profile};
pub(crate) use signals::{reset_signals, signal_set};

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
    let (namespaces, cgroup_dirs) = open_init(pid)?;
    join_cgroups(&cgroup_dirs)?;
    restrict_helper(&spec.process, &prepared)?;
    join_namespaces(namespaces)?;
    if let Some(console) = &spec.console {
        open_console(console)?;
    }
    let wait_set = block_forwarded_signals()?;
    let child = fork_child(&prepared)?;
    report_pid(child, pid_report)?;
    wait_forwarding_signals(child, &wait_set)
}

/// Opens the init's namespaces and finds its cgroup directories.
fn open_init(pid: i32) -> Result<(Vec<NsFd>, Vec<PathBuf>), NsExecError> {
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
        &vordr_mountinfo::parse(&mountinfo),
    )?;
    Ok((namespaces, cgroup_dirs))
}

/// While the helper still has host privileges: `oom_score_adj`, non-dumpable, rlimits.
fn restrict_helper(process: &Process, prepared: &Prepared) -> Result<(), NsExecError> {
    if let Some(adj) = process.oom_score_adj() {
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
    Ok(())
}

/// Forks the child, which sets itself up and executes the process.
fn fork_child(prepared: &Prepared) -> Result<libc::pid_t, NsExecError> {
    // SAFETY: the helper is single-threaded (documented requirement), so the child may keep
    // running ordinary Rust code after the fork.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(setup_err("fork"));
    }
    if child == 0 {
        child_main(prepared);
    }
    Ok(child)
}

/// Reports the child's pid; a child nobody would know is killed.
fn report_pid(child: libc::pid_t, pid_report: OwnedFd) -> Result<(), NsExecError> {
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
    Ok(())
}

#[cfg(test)]
mod tests;
