//! RemovePodSandbox: stop if needed, remove its containers, then free the
//! address, the files and the row. Idempotent, and success for an unknown pod.

use k8s_cri::v1::{RemovePodSandboxRequest, RemovePodSandboxResponse};
use tonic::Status;

use crate::pod::cleanup;
use crate::sandbox_stop::stop_locked;
use crate::state::errors::internal;
use crate::state::Runtime;

pub async fn remove_pod_sandbox(
    rt: &Runtime,
    req: RemovePodSandboxRequest,
) -> Result<RemovePodSandboxResponse, Status> {
    let Some(locked) = rt.lock_existing_pod(&req.pod_sandbox_id).await? else {
        return Ok(RemovePodSandboxResponse {});
    };
    let pod = &locked.pod;
    // The CRI says a ready sandbox is stopped first, forcibly.
    stop_locked(rt, pod).await?;
    for c in rt
        .store
        .pod_containers(&pod.id)
        .map_err(|e| internal("listing the pod's containers", e))?
    {
        crate::container_remove::remove_locked(rt, &c).await?;
    }
    crate::state::faults::point("pod.containers-removed");
    crate::container::cgroup::pod::remove_for(rt, pod)
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    crate::state::faults::point("pod.cgroup-removed");
    cleanup::remove_pod_files(rt, &pod.id).map_err(|e| internal("removing pod", e))?;
    crate::state::faults::point("pod.files-removed");
    rt.store
        .delete_pod(&pod.id)
        .map_err(|e| internal("removing pod record", e))?;
    tracing::info!(pod = %pod.id, "pod sandbox removed");
    rt.stats.pod_changed(rt, &pod.id);
    crate::container::events::emit_pod(
        rt,
        pod,
        k8s_cri::v1::ContainerEventType::ContainerDeletedEvent,
    );
    Ok(RemovePodSandboxResponse {})
}
