//! Noticing a shim that dies. A shim killed (kill -9, the OOM killer)
//! publishes no exit; as containerd does after a dead shim, the container
//! is then killed through the OCI runtime and recorded as exited, so that
//! kubelet sees it end and its teardown finds nothing running.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use vordr_store::ContainerState;

use crate::shim::client::Shim;
use crate::state::Runtime;

/// A descriptor that becomes readable when process `pid` exits.
fn pidfd(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Watches the shim of container `id` (connected as `shim`) until it exits.
pub async fn watch(rt: &Runtime, shim: &Shim) {
    let Some(rt) = rt.arc() else {
        return;
    };
    let pid = match shim.pid().await {
        Ok(p) if p > 0 => p,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(container = %shim.id, "asking the shim for its pid: {e}");
            return;
        }
    };
    // SAFETY: an OwnedFd keeps its descriptor open, unchanged, for as long
    // as the AsyncFd that owns it.
    let registered = pidfd(pid).and_then(|fd| unsafe {
        AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE).map_err(|e| e.into())
    });
    let fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(container = %shim.id, pid, "watching the shim: {e}");
            return;
        }
    };
    let id = shim.id.clone();
    tokio::spawn(async move {
        let _ = fd.readable().await;
        drop(fd);
        shim_died(&rt, &id).await;
    });
}

async fn shim_died(rt: &Arc<Runtime>, id: &str) {
    let Ok(Some(c)) = rt.store.get_container(id) else {
        return; // removed: the shim went with it
    };
    let _lock = rt.lock_pod(&c.pod_id).await;
    let Ok(Some(c)) = rt.store.get_container(id) else {
        return;
    };
    if !matches!(c.state, ContainerState::Created | ContainerState::Running) {
        return;
    }
    rt.metrics.shim_crashed();
    tracing::warn!(container = %id, "the container's shim died; killing the container through the runtime");
    crate::container::runtime_delete(rt, id).await;
    crate::container::record_lost_shim(rt, id);
}
