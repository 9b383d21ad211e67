//! RemoveContainer: kill it if it runs, then the shim, the rootfs, the
//! bundle and the row. Removing an unknown container succeeds.

use k8s_cri::v1::{RemoveContainerRequest, RemoveContainerResponse};
use tonic::Status;
use vordr_store::ContainerRecord;

use crate::container::{teardown, Gone};
use crate::state::errors::internal;
use crate::state::Runtime;

pub async fn remove_container(
    rt: &Runtime,
    req: RemoveContainerRequest,
) -> Result<RemoveContainerResponse, Status> {
    let c = match rt.find_container(&req.container_id) {
        Ok(c) => c,
        Err(s) if s.code() == tonic::Code::NotFound => return Ok(RemoveContainerResponse {}),
        Err(s) => return Err(s),
    };
    let _lock = rt.lock_pod(&c.pod_id).await;
    remove_locked(rt, &c).await?;
    Ok(RemoveContainerResponse {})
}

/// Removes `c`; the caller holds its pod's lock.
pub async fn remove_locked(rt: &Runtime, c: &ContainerRecord) -> Result<(), Status> {
    let _ = crate::container_stop::stop(rt, c, 0).await;
    let parent = rt
        .store
        .get_pod(&c.pod_id)
        .map_err(|e| internal("reading the container's pod", e))?
        .map(|p| p.cgroup_parent)
        .unwrap_or_default();
    teardown(rt, &Gone::of(c, &parent))
        .await
        .map_err(|e| internal("removing the container", e))?;
    crate::state::faults::point("container.torn-down");
    rt.store
        .delete_container(&c.id)
        .map_err(|e| internal("deleting container", e))?;
    tracing::info!(container = %c.id, "container removed");
    crate::container::events::emit_deleted(rt, c);
    Ok(())
}
