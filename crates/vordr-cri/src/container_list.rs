//! ListContainers, with the CRI filter: id or id prefix, state, pod (id or
//! prefix) and labels.

use k8s_cri::v1::{Container, ContainerMetadata, ListContainersRequest, ListContainersResponse};
use tonic::Status;

use crate::container_status::{config_of, cri_state};
use crate::state::errors::internal;
use crate::state::Runtime;

pub async fn list_containers(
    rt: &Runtime,
    req: ListContainersRequest,
) -> Result<ListContainersResponse, Status> {
    let all = rt
        .store
        .list_containers()
        .map_err(|e| internal("listing containers", e))?;
    let f = req.filter.unwrap_or_default();
    let containers = all
        .into_iter()
        .filter(|c| f.id.is_empty() || c.id.starts_with(&f.id))
        .filter(|c| f.pod_sandbox_id.is_empty() || c.pod_id.starts_with(&f.pod_sandbox_id))
        .filter(|c| {
            f.state
                .as_ref()
                .is_none_or(|s| s.state == cri_state(c.state) as i32)
        })
        .filter_map(|c| {
            let cfg = config_of(&c);
            if !f
                .label_selector
                .iter()
                .all(|(k, v)| cfg.labels.get(k) == Some(v))
            {
                return None;
            }
            Some(Container {
                id: c.id.clone(),
                pod_sandbox_id: c.pod_id.clone(),
                metadata: Some(ContainerMetadata {
                    name: c.name.clone(),
                    attempt: c.attempt,
                }),
                image: cfg.image.clone().map(|mut i| {
                    i.image = c.image_id.clone();
                    i
                }),
                image_ref: c.image_ref.clone(),
                image_id: c.image_id.clone(),
                state: cri_state(c.state) as i32,
                created_at: c.created_at,
                labels: cfg.labels,
                annotations: cfg.annotations,
            })
        })
        .collect();
    Ok(ListContainersResponse { containers })
}
