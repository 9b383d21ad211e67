//! StopPodSandbox: kill the pod's containers, detach the network and release
//! the pod's namespaces.
//! Idempotent, and success for an unknown pod, as kubelet requires.

use k8s_cri::v1::{StopPodSandboxRequest, StopPodSandboxResponse};
use tonic::Status;
use vordr_store::{PodRecord, PodState};

use crate::pod::cleanup;
use crate::state::errors::internal;
use crate::state::Runtime;

pub async fn stop_pod_sandbox(
    rt: &Runtime,
    req: StopPodSandboxRequest,
) -> Result<StopPodSandboxResponse, Status> {
    if let Some(locked) = rt.lock_existing_pod(&req.pod_sandbox_id).await? {
        stop_locked(rt, &locked.pod).await?;
    }
    Ok(StopPodSandboxResponse {})
}

/// Stops `pod`; the caller holds its lock.
pub async fn stop_locked(rt: &Runtime, pod: &PodRecord) -> Result<(), Status> {
    // Its containers first, at once (as containerd, with no grace period).
    let containers = rt
        .store
        .pod_containers(&pod.id)
        .map_err(|e| internal("listing the pod's containers", e))?;
    for c in &containers {
        crate::container_stop::stop(rt, c, 0).await?;
    }
    crate::state::faults::point("pod.containers-stopped");
    if pod.state == PodState::NotReady
        && !pod.network_attached
        && !rt.layout.ns_dir(&pod.id).exists()
    {
        return Ok(());
    }
    cleanup::detach_network(rt, pod)
        .await
        .map_err(|e| internal("detaching the pod network", e))?;
    cleanup::release_namespaces(rt, &pod.id)
        .await
        .map_err(|e| internal("releasing pod namespaces", e))?;
    crate::state::faults::point("pod.namespaces-released");
    if pod.state != PodState::NotReady {
        rt.store
            .set_pod_state(&pod.id, PodState::NotReady)
            .map_err(|e| internal("recording pod state", e))?;
        tracing::info!(pod = %pod.id, "pod sandbox stopped");
        crate::container::events::emit_pod(
            rt,
            pod,
            k8s_cri::v1::ContainerEventType::ContainerStoppedEvent,
        );
    }
    Ok(())
}
