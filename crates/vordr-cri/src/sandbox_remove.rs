//! RemovePodSandbox: stop if needed, remove its containers, then free the
//! address, the files and the row. Idempotent, and success for an unknown pod.

use k8s_cri::v1::{RemovePodSandboxRequest, RemovePodSandboxResponse};
use tonic::Status;

use crate::errors::internal;
use crate::runtime::{PodLookupError, Runtime};
use crate::sandbox_cleanup;
use crate::sandbox_stop::stop_locked;

pub async fn remove_pod_sandbox(
    rt: &Runtime,
    req: RemovePodSandboxRequest,
) -> Result<RemovePodSandboxResponse, Status> {
    let pod = match rt.find_pod(&req.pod_sandbox_id) {
        Ok(p) => p,
        Err(PodLookupError::NotFound(_)) => return Ok(RemovePodSandboxResponse {}),
        Err(e) => return Err(e.into()),
    };
    let _lock = rt.lock_pod(&pod.id).await;
    let Some(pod) = rt
        .store
        .get_pod(&pod.id)
        .map_err(|e| internal("reading pod", e))?
    else {
        return Ok(RemovePodSandboxResponse {});
    };
    // The CRI says a ready sandbox is stopped first, forcibly.
    stop_locked(rt, &pod).await?;
    for c in rt
        .store
        .pod_containers(&pod.id)
        .map_err(|e| internal("listing the pod's containers", e))?
    {
        crate::container_remove::remove_locked(rt, &c).await?;
    }
    crate::faults::point("pod.containers-removed");
    sandbox_cleanup::remove_pod_files(rt, &pod.id).map_err(|e| internal("removing pod", e))?;
    crate::faults::point("pod.files-removed");
    rt.store
        .delete_pod(&pod.id)
        .map_err(|e| internal("removing pod record", e))?;
    tracing::info!(pod = %pod.id, "pod sandbox removed");
    Ok(RemovePodSandboxResponse {})
}
