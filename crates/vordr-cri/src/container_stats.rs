//! ContainerStats and ListContainerStats, answered from the stats cache
//! (see `stats`): CPU (total and rate), memory, swap and the writable
//! layer of each container.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_cri::v1::*;
use tonic::Status;

use crate::state::Runtime;
use crate::stats::ContainerEntry;

/// The filesystem the writable layers are on, as the stats name it.
pub fn fs_mount(rt: &Runtime) -> String {
    rt.layout.containers_dir().display().to_string()
}

/// Whether `labels` has every pair of `selector`.
pub fn selected(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub async fn container_stats(
    rt: &Runtime,
    req: ContainerStatsRequest,
) -> Result<ContainerStatsResponse, Status> {
    let c = rt.find_container(&req.container_id)?;
    let entry = match rt.stats.snapshot().containers.get(&c.id) {
        Some(e) => e.clone(),
        None => {
            // Not sampled yet (created since the last refresh).
            let parent = crate::recovery::parent_of(rt, &c.pod_id);
            Arc::new(rt.stats.sample_container(rt, &c, &parent, None, true))
        }
    };
    Ok(ContainerStatsResponse {
        stats: Some(crate::stats::cri::container_stats(&entry, &fs_mount(rt))),
    })
}

/// The cached containers `f` selects (id and pod id as prefixes, as the
/// other list calls take them; every label of the selector).
pub fn filtered<'a>(
    containers: impl Iterator<Item = &'a Arc<ContainerEntry>>,
    f: &ContainerStatsFilter,
) -> Vec<&'a Arc<ContainerEntry>> {
    let mut out: Vec<&Arc<ContainerEntry>> = containers
        .filter(|c| c.id.starts_with(&f.id))
        .filter(|c| c.pod_id.starts_with(&f.pod_sandbox_id))
        .filter(|c| selected(&c.labels, &f.label_selector))
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// From the cache alone: no blocking call.
pub fn list_container_stats(
    rt: &Runtime,
    req: ListContainerStatsRequest,
) -> ListContainerStatsResponse {
    let f = req.filter.unwrap_or_default();
    let snap = rt.stats.snapshot();
    let mount = fs_mount(rt);
    let stats = filtered(snap.containers.values(), &f)
        .into_iter()
        .map(|c| crate::stats::cri::container_stats(c, &mount))
        .collect();
    ListContainerStatsResponse { stats }
}
