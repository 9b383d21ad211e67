//! The init process of a pod whose containers share one PID namespace (the
//! role containerd's pause container plays): PID 1 of a new PID namespace
//! that reaps orphans and exits on SIGTERM, SIGINT or SIGKILL.

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, setsid, ForkResult, Pid};

pub use vordr_shim_api::POD_INIT_VERB;

/// `containerd-shim-vordr-v1 __pod-init`: forks PID 1 of a new PID
/// namespace, prints its host pid and returns; the init lives on alone.
pub fn pod_init_main() -> i32 {
    if let Err(e) = unshare(CloneFlags::CLONE_NEWPID) {
        eprintln!("pod init: unshare(CLONE_NEWPID): {e}");
        return 1;
    }
    // SAFETY: single-threaded here (the verb runs before anything else).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            println!("{child}");
            0
        }
        Ok(ForkResult::Child) => {
            let _ = setsid();
            // Nothing to read or write: stdio goes to /dev/null.
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                use std::os::fd::AsRawFd;
                for fd in 0..3 {
                    let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
                }
            }
            reap_forever()
        }
        Err(e) => {
            eprintln!("pod init: fork: {e}");
            1
        }
    }
}

fn reap_forever() -> i32 {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    if set.thread_block().is_err() {
        return 1;
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => loop {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            },
            Ok(Signal::SIGTERM | Signal::SIGINT) => return 0,
            _ => {}
        }
    }
}
