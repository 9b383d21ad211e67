//! PodSandboxStats and ListPodSandboxStats, answered from the stats cache:
//! the pod's containers, their sums, the pod's network and processes.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_cri::v1::*;
use tonic::Status;
use vordr_store::PodRecord;

use crate::container_stats::{fs_mount, selected};
use crate::state::errors::internal;
use crate::state::Runtime;
use crate::stats::{ContainerEntry, PodEntry, Snapshot};

/// The cached entry of `pod`, or one made now for a pod the cache has not
/// seen yet (its network read through a running container, if any).
fn entry_of(snap: &Snapshot, pod: PodRecord) -> Arc<PodEntry> {
    match snap.pods.get(&pod.id) {
        Some(e) => e.clone(),
        None => Arc::new(PodEntry {
            labels: serde_json::from_str(&pod.labels).unwrap_or_default(),
            annotations: serde_json::from_str(&pod.annotations).unwrap_or_default(),
            at: crate::state::ids::now_ns(),
            net: None,
            pod: Arc::new(pod),
        }),
    }
}

fn stats_of(
    by_pod: &HashMap<&str, Vec<&ContainerEntry>>,
    p: &PodEntry,
    mount: &str,
) -> PodSandboxStats {
    let containers = by_pod.get(p.pod.id.as_str()).map_or(&[][..], Vec::as_slice);
    crate::stats::cri::pod_stats(p, containers, mount)
}

pub async fn pod_sandbox_stats(
    rt: &Runtime,
    req: PodSandboxStatsRequest,
) -> Result<PodSandboxStatsResponse, Status> {
    let pod = rt.find_pod(&req.pod_sandbox_id)?;
    let snap = rt.stats.snapshot();
    let p = entry_of(&snap, pod);
    Ok(PodSandboxStatsResponse {
        stats: Some(stats_of(&snap.by_pod(), &p, &fs_mount(rt))),
    })
}

/// The pods `f` selects, current ones from the store (a pod removed since
/// the last refresh is not listed, a new one is), with their cached entries.
pub fn selected_pods(
    rt: &Runtime,
    snap: &Snapshot,
    id: &str,
    labels: &std::collections::HashMap<String, String>,
) -> Result<Vec<Arc<PodEntry>>, Status> {
    let pods = rt
        .store
        .list_pods()
        .map_err(|e| internal("listing pods", e))?;
    Ok(pods
        .into_iter()
        .filter(|p| !p.state.is_pool() && p.id.starts_with(id))
        .map(|p| entry_of(snap, p))
        .filter(|e| selected(&e.labels, labels))
        .collect())
}

pub async fn list_pod_sandbox_stats(
    rt: &Runtime,
    req: ListPodSandboxStatsRequest,
) -> Result<ListPodSandboxStatsResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let snap = rt.stats.snapshot();
    let mount = fs_mount(rt);
    let by_pod = snap.by_pod();
    let stats = selected_pods(rt, &snap, &f.id, &f.label_selector)?
        .iter()
        .map(|p| stats_of(&by_pod, p, &mount))
        .collect();
    Ok(ListPodSandboxStatsResponse { stats })
}
