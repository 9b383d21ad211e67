//! PodSandboxStats and ListPodSandboxStats, answered from the stats cache:
//! the pod's own cgroup (else its containers' sums), its containers, network and processes.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_cri::v1::*;
use tonic::Status;
use vordr_store::PodRecord;

use crate::container_stats::{fs_mount, selected};
use crate::state::Runtime;
use crate::stats::{ContainerEntry, PodEntry, Snapshot};

/// The cached entry of `pod`, or one made now for a pod the cache has not
/// seen yet (its network comes with the next refresh).
fn entry_of(snap: &Snapshot, pod: PodRecord) -> Arc<PodEntry> {
    match snap.pods.get(&pod.id) {
        Some(e) => e.clone(),
        None => Arc::new(PodEntry {
            labels: serde_json::from_str(&pod.labels).unwrap_or_default(),
            annotations: serde_json::from_str(&pod.annotations).unwrap_or_default(),
            at: crate::state::ids::now_ns(),
            net: None,
            cgroup: None,
            nano_cores: None,
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

/// The cached pods `f` selects (the cache adds and drops pods as they are
/// run and removed), by id.
pub fn selected_pods<'a>(
    snap: &'a Snapshot,
    id: &str,
    labels: &HashMap<String, String>,
) -> Vec<&'a Arc<PodEntry>> {
    let mut out: Vec<&Arc<PodEntry>> = snap
        .pods
        .values()
        .filter(|p| p.pod.id.starts_with(id) && selected(&p.labels, labels))
        .collect();
    out.sort_by(|a, b| a.pod.id.cmp(&b.pod.id));
    out
}

/// From the cache alone: no blocking call.
pub fn list_pod_sandbox_stats(
    rt: &Runtime,
    req: ListPodSandboxStatsRequest,
) -> ListPodSandboxStatsResponse {
    let f = req.filter.unwrap_or_default();
    let snap = rt.stats.snapshot();
    let mount = fs_mount(rt);
    let by_pod = snap.by_pod();
    let stats = selected_pods(&snap, &f.id, &f.label_selector)
        .into_iter()
        .map(|p| stats_of(&by_pod, p, &mount))
        .collect();
    ListPodSandboxStatsResponse { stats }
}
