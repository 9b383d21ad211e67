//! StartContainer: the shim starts the created container.

use k8s_cri::v1::{StartContainerRequest, StartContainerResponse};
use tonic::Status;
use vordr_store::ContainerState;

use crate::container::{shim_of, shim_status};
use crate::state::errors::internal;
use crate::state::Runtime;

pub async fn start_container(
    rt: &Runtime,
    req: StartContainerRequest,
) -> Result<StartContainerResponse, Status> {
    let c = rt.find_container(&req.container_id)?;
    let _lock = rt.lock_pod(&c.pod_id).await;
    let c = rt.find_container(&c.id)?;
    if c.state != ContainerState::Created {
        return Err(Status::failed_precondition(format!(
            "container {} is {}, not created",
            c.id,
            c.state.as_str()
        )));
    }
    let shim = shim_of(&c).await?;
    shim.start("")
        .await
        .map_err(|e| shim_status("starting the container", e))?;
    crate::state::faults::point("container.started");
    rt.store
        .set_container_running(&c.id, crate::state::ids::now_ns())
        .map_err(|e| internal("recording container", e))?;
    tracing::info!(container = %c.id, "container started");
    crate::container::events::emit(
        rt,
        &c.id,
        k8s_cri::v1::ContainerEventType::ContainerStartedEvent,
    );
    Ok(StartContainerResponse {})
}
