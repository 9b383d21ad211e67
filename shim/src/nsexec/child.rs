//! The child after the fork: its setup steps in runc's order, then execve; never returns.

use std::convert::Infallible;
use std::ffi::CString;
use std::io;

use super::capabilities::{apply_caps, last_cap, shrink_bounding_set};
use super::env::passwd_home;
use super::error::{cerr, check, ChildError};
use super::fs::close_fds_from;
use super::prepare::Prepared;
use super::program::resolve_program;
use super::seccomp::load_seccomp;
use super::signals::reset_signals;
use super::user::become_user;

pub(super) fn child_main(p: &Prepared) -> ! {
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

fn child_setup(p: &Prepared) -> Result<Infallible, ChildError> {
    new_session(p)?;
    restrict(p)?;
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it before dropping caps.
    if !p.no_new_privs {
        load_seccomp(p.seccomp.as_ref())?;
    }
    let chdir_later = chdir_as_root(p)?;
    let env = environment(p);
    let last_cap = last_cap();
    if let Some(caps) = &p.caps {
        // The bounding set can only be shrunk with CAP_SETPCAP, i.e. before changing user.
        shrink_bounding_set(caps.bounding, last_cap)?;
    }
    become_user(p, chdir_later)?;
    if let Some(caps) = &p.caps {
        apply_caps(caps, last_cap)?;
    }
    apply_apparmor(p)?;
    exec_program(p, env)
}

/// Only what the process should have: no inherited fd, default signal dispositions, its own
/// session (with the terminal as the controlling one) and session keyring.
fn new_session(p: &Prepared) -> Result<(), ChildError> {
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
    }
    Ok(())
}

/// no_new_privs (if asked) and the process's umask.
fn restrict(p: &Prepared) -> Result<(), ChildError> {
    // SAFETY: plain syscalls on our own process with valid arguments.
    unsafe {
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
    Ok(())
}

/// finalizeNamespace: chdir first as (namespace) root; EACCES/EPERM are retried as the user
/// (returns whether to).
fn chdir_as_root(p: &Prepared) -> Result<bool, ChildError> {
    // SAFETY: chdir to a valid C string.
    match unsafe { libc::chdir(p.cwd.as_ptr()) } {
        0 => Ok(false),
        _ => {
            let e = io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
                Ok(true)
            } else {
                Err(ChildError {
                    code: 127,
                    msg: format!("chdir to cwd {:?}: {e}", p.cwd),
                })
            }
        }
    }
}

/// The prepared environment, with HOME from the container's /etc/passwd if it has none.
fn environment(p: &Prepared) -> Vec<String> {
    let mut env = p.env.clone();
    if !p.has_home {
        env.push(format!("HOME={}", passwd_home(p.uid)));
    }
    env
}

/// The process's AppArmor profile, which takes effect at execve.
fn apply_apparmor(p: &Prepared) -> Result<(), ChildError> {
    if let Some(profile) = &p.apparmor_profile {
        libcontainer::apparmor::apply_profile(profile).map_err(|e| ChildError {
            code: 127,
            msg: format!("apply AppArmor profile {profile:?}: {e}"),
        })?;
    }
    Ok(())
}

/// Looks the program up, loads the seccomp filter with no_new_privs (as late as possible) and
/// executes the process; returns only on failure (126: not executable, 127: not found).
fn exec_program(p: &Prepared, env: Vec<String>) -> Result<Infallible, ChildError> {
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
        load_seccomp(p.seccomp.as_ref())?;
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
