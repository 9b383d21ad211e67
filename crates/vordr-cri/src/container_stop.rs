//! StopContainer: the stop signal (the config's `stop_signal`, else the
//! image's, else SIGTERM), then SIGKILL to
//! every process once the timeout passes. Stopping a stopped container, or
//! an unknown one, succeeds.

use std::time::Duration;

use k8s_cri::v1::{StopContainerRequest, StopContainerResponse};
use tonic::Status;
use vordr_store::{ContainerRecord, ContainerState};

use crate::container::exit::record_exit;
use crate::container::shim_status;
use crate::state::Runtime;

pub async fn stop_container(
    rt: &Runtime,
    req: StopContainerRequest,
) -> Result<StopContainerResponse, Status> {
    let c = match rt.find_container(&req.container_id) {
        Ok(c) => c,
        Err(s) if s.code() == tonic::Code::NotFound => return Ok(StopContainerResponse {}),
        Err(s) => return Err(s),
    };
    stop(rt, &c, req.timeout.max(0) as u64).await?;
    Ok(StopContainerResponse {})
}

/// Stops `c`, waiting `timeout` seconds for the stop signal to work.
pub async fn stop(rt: &Runtime, c: &ContainerRecord, timeout: u64) -> Result<(), Status> {
    match c.state {
        ContainerState::Running | ContainerState::Created => {}
        ContainerState::Exited | ContainerState::Creating => return Ok(()),
    }
    let Some(shim) = crate::container::live_shim(c).await else {
        // The shim died (kill -9, OOM): kill the container through the
        // runtime and record it as ended.
        tracing::warn!(container = %c.id, "the container's shim is gone; stopping through the runtime");
        crate::container::runtime_delete(rt, &c.id).await;
        crate::container::record_lost_shim(rt, &c.id);
        return Ok(());
    };
    let signal = if timeout > 0 {
        signal_number(&c.stop_signal)
    } else {
        9
    };
    if signal != 9 {
        shim.kill("", signal, false)
            .await
            .map_err(|e| shim_status("signalling the container", e))?;
        if let Ok(Ok((code, at))) =
            tokio::time::timeout(Duration::from_secs(timeout), shim.wait("")).await
        {
            record_exit(rt, &c.id, code as i32, at);
            return Ok(());
        }
    }
    shim.kill("", 9, true)
        .await
        .map_err(|e| shim_status("killing the container", e))?;
    crate::state::faults::point("container.killed");
    let (code, at) = tokio::time::timeout(Duration::from_secs(30), shim.wait(""))
        .await
        .map_err(|_| Status::deadline_exceeded(format!("container {} did not die", c.id)))?
        .map_err(|e| shim_status("waiting for the container", e))?;
    record_exit(rt, &c.id, code as i32, at);
    Ok(())
}

/// A signal name ("SIGTERM", "TERM", "15", "SIGRTMIN+3") as its number;
/// SIGTERM if unknown.
pub fn signal_number(name: &str) -> u32 {
    vordr_spec::signal::number(name).unwrap_or(15) as u32
}

#[cfg(test)]
mod tests {
    use super::signal_number;

    #[test]
    fn signal_names() {
        assert_eq!(signal_number("SIGTERM"), 15);
        assert_eq!(signal_number("quit"), 3);
        assert_eq!(signal_number("SIGRTMIN+3"), 37);
        assert_eq!(signal_number("9"), 9);
        assert_eq!(signal_number(""), 15);
        assert_eq!(signal_number("SIGBOGUS"), 15);
    }
}
