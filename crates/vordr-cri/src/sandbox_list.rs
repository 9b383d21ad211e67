//! ListPodSandbox with CRI's filters: id (or unique prefix), state, labels.

use k8s_cri::v1::{ListPodSandboxRequest, ListPodSandboxResponse, PodSandbox};
use tonic::Status;
use vordr_store::PodState;

use crate::sandbox_status::to_pod_sandbox;
use crate::state::errors::internal;
use crate::state::Runtime;

pub async fn list_pod_sandbox(
    rt: &Runtime,
    req: ListPodSandboxRequest,
) -> Result<ListPodSandboxResponse, Status> {
    let filter = req.filter.unwrap_or_default();
    let pods = rt
        .store
        .list_pods()
        .map_err(|e| internal("listing pods", e))?;
    let mut items: Vec<PodSandbox> = Vec::with_capacity(pods.len());
    for pod in pods
        .iter()
        // A pod still being created has not been handed to anyone yet.
        .filter(|p| p.state != PodState::Creating && !p.state.is_pool())
        .filter(|p| filter.id.is_empty() || p.id.starts_with(&filter.id))
    {
        let item = to_pod_sandbox(pod);
        if let Some(s) = &filter.state {
            if item.state != s.state {
                continue;
            }
        }
        if !filter
            .label_selector
            .iter()
            .all(|(k, v)| item.labels.get(k) == Some(v))
        {
            continue;
        }
        items.push(item);
    }
    Ok(ListPodSandboxResponse { items })
}
