//! Signals: blocked and forwarded by the helper while it waits, reset to defaults in the child.

use std::io;

use super::error::{setup_err, NsExecError};

/// Signals the helper forwards to the exec'd process.
const FORWARDED_SIGNALS: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Blocks the forwarded signals (and SIGCHLD, which we wait for synchronously) before the fork
/// so that none is lost between the fork and the wait loop; returns the set to wait for. The
/// child restores a clean mask.
pub(super) fn block_forwarded_signals() -> Result<libc::sigset_t, NsExecError> {
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
    Ok(wait_set)
}

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

/// Waits for the child, forwarding the signals of `wait_set` to it; its exit code, 128 + the
/// signal number if a signal killed it.
pub(super) fn wait_forwarding_signals(
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
