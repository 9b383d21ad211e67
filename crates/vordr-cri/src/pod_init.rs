//! The init process of a pod whose containers share its PID namespace
//! (containerd's pause container does this): started on the first such
//! container, killed when the pod stops. Its pid lives next to the pod's
//! pinned namespaces, in the volatile run dir.

use std::path::{Path, PathBuf};

use tonic::Status;
use vordr_shim_api::POD_INIT_VERB;

use crate::errors::internal;
use crate::runtime::Runtime;
use crate::shim_client::shim_binary;

fn pid_file(ns_dir: &Path) -> PathBuf {
    ns_dir.join("init.pid")
}

/// The pod init recorded in `ns_dir`, if it still runs.
fn running(ns_dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file(ns_dir))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_ours = cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == POD_INIT_VERB.as_bytes());
    is_ours.then_some(pid)
}

/// The PID namespace of the pod's init, starting the init if needed. The
/// caller holds the pod's lock.
pub async fn pid_namespace(rt: &Runtime, pod_id: &str) -> Result<PathBuf, Status> {
    let dir = rt.ns_dir(pod_id);
    if let Some(pid) = running(&dir) {
        return Ok(PathBuf::from(format!("/proc/{pid}/ns/pid")));
    }
    let out = tokio::process::Command::new(shim_binary(&rt.config.runtime.shim_path))
        .arg(POD_INIT_VERB)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| internal("starting the pod's init", e))?;
    let pid: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| {
            internal(
                "starting the pod's init",
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            )
        })?;
    std::fs::create_dir_all(&dir).map_err(|e| internal("pod namespace dir", e))?;
    std::fs::write(pid_file(&dir), format!("{pid}\n"))
        .map_err(|e| internal("recording the pod's init", e))?;
    tracing::info!(pod = %pod_id, pid, "pod init started for a shared PID namespace");
    Ok(PathBuf::from(format!("/proc/{pid}/ns/pid")))
}

/// Kills the pod's init, if it runs; every process left in the PID
/// namespace dies with it.
pub fn kill(ns_dir: &Path) {
    if let Some(pid) = running(ns_dir) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = std::fs::remove_file(pid_file(ns_dir));
}
