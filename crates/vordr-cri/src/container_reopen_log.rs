//! ReopenContainerLog: the shim opens the log path anew (after kubelet
//! rotated the file). The container must be running.

use k8s_cri::v1::{ReopenContainerLogRequest, ReopenContainerLogResponse};
use tonic::Status;
use vordr_shim_api::REOPEN_LOG_ANNOTATION;
use vordr_store::ContainerState;

use crate::container::{shim_of, shim_status};
use crate::state::Runtime;

pub async fn reopen_container_log(
    rt: &Runtime,
    req: ReopenContainerLogRequest,
) -> Result<ReopenContainerLogResponse, Status> {
    let c = rt.find_container(&req.container_id)?;
    if c.state != ContainerState::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is not running",
            c.id
        )));
    }
    let shim = shim_of(&c).await?;
    shim.update(None, &[(REOPEN_LOG_ANNOTATION, "1")])
        .await
        .map_err(|e| shim_status("reopening the log", e))?;
    Ok(ReopenContainerLogResponse {})
}
