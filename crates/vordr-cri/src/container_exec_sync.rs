//! ExecSync: run a command in a running container and return its output and
//! exit code. The process joins every namespace of the container and runs
//! with its user, capabilities, no_new_privs, seccomp profile and cgroup
//! (the shim sees to it). On timeout it is killed and the call fails.

use std::path::Path;
use std::time::Duration;

use k8s_cri::v1::{ExecSyncRequest, ExecSyncResponse};
use tokio::io::AsyncReadExt;
use tonic::Status;

use crate::container::{shim_of, shim_status};
use crate::state::errors::{internal, invalid};
use crate::state::Runtime;

/// Output beyond this much per stream is dropped (kubelet's probes read little).
const MAX_OUTPUT: u64 = 16 << 20;

pub async fn exec_sync(rt: &Runtime, req: ExecSyncRequest) -> Result<ExecSyncResponse, Status> {
    if req.cmd.is_empty() {
        return Err(invalid("cmd", "is required"));
    }
    let c = rt.running_container(&req.container_id)?;
    let bundle = rt.layout.bundle_dir(&c.id);
    let process = rt.exec_process(&c.id, &req.cmd, false)?;
    let exec_id = crate::state::ids::new_exec_id();
    let out_path = bundle.join(format!("exec-{exec_id}.stdout"));
    let err_path = bundle.join(format!("exec-{exec_id}.stderr"));
    let mut guard = ExecGuard {
        fifos: [out_path.clone(), err_path.clone()],
        started: None,
    };
    run(&c, &exec_id, process, &mut guard, req.timeout).await
}

/// Cleans up after an ExecSync however it ends. A caller that goes away
/// (kubelet's probe deadline) drops the call and with it this guard: the
/// FIFOs are removed and a process still known to the shim is killed and
/// deleted, so that an abandoned probe leaves nothing running.
struct ExecGuard {
    fifos: [std::path::PathBuf; 2],
    /// The shim and exec id, from the moment the shim knows the process
    /// until the call deleted it itself.
    started: Option<(crate::shim::client::Shim, String)>,
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        for p in &self.fifos {
            let _ = std::fs::remove_file(p);
        }
        let Some((shim, exec_id)) = self.started.take() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        tracing::info!(container = %shim.id, exec = %exec_id, "ExecSync abandoned by its caller: killing the process");
        handle.spawn(async move {
            let _ = shim.kill(&exec_id, 9, false).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), shim.wait(&exec_id)).await;
            let _ = shim.delete(&exec_id).await;
        });
    }
}

async fn run(
    c: &vordr_store::ContainerRecord,
    exec_id: &str,
    process: Vec<u8>,
    guard: &mut ExecGuard,
    timeout: i64,
) -> Result<ExecSyncResponse, Status> {
    let [out_path, err_path] = guard.fifos.clone();
    let (out_path, err_path) = (out_path.as_path(), err_path.as_path());
    for p in [out_path, err_path] {
        nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| internal("creating exec fifo", e))?;
    }
    let open = |p: &Path| {
        tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(p)
            .map_err(|e| internal("opening exec fifo", e))
    };
    let (out, err) = (open(out_path)?, open(err_path)?);
    let shim = shim_of(c).await?;
    let (o, e) = (
        out_path.display().to_string(),
        err_path.display().to_string(),
    );
    shim.exec(exec_id, process, "", &o, &e, false)
        .await
        .map_err(|e| shim_status("exec", e))?;
    guard.started = Some((shim.clone(), exec_id.to_string()));
    let started = shim.start(exec_id).await;
    if let Err(e) = started {
        guard.started = None;
        let _ = shim.delete(exec_id).await;
        return Err(shim_status("starting exec", e));
    }
    let read_all = |mut r: tokio::net::unix::pipe::Receiver| async move {
        let mut buf = Vec::new();
        let mut limited = (&mut r).take(MAX_OUTPUT);
        let _ = limited.read_to_end(&mut buf).await;
        // Drain the rest so the process never blocks on a full pipe.
        let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
        buf
    };
    let work = async {
        let (stdout, stderr, waited) =
            tokio::join!(read_all(out), read_all(err), shim.wait(exec_id));
        (stdout, stderr, waited)
    };
    let result = if timeout > 0 {
        tokio::time::timeout(Duration::from_secs(timeout as u64), work).await
    } else {
        Ok(work.await)
    };
    match result {
        Ok((stdout, stderr, waited)) => {
            guard.started = None;
            let _ = shim.delete(exec_id).await;
            let (code, _) = waited.map_err(|e| shim_status("waiting for exec", e))?;
            Ok(ExecSyncResponse {
                stdout,
                stderr,
                exit_code: code as i32,
            })
        }
        Err(_) => {
            guard.started = None;
            let _ = shim.kill(exec_id, 9, false).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), shim.wait(exec_id)).await;
            let _ = shim.delete(exec_id).await;
            Err(Status::deadline_exceeded(format!(
                "exec in container {}: timeout {timeout}s exceeded; the process was killed",
                c.id
            )))
        }
    }
}
