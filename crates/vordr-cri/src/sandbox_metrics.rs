//! ListMetricDescriptors and ListPodSandboxMetrics: cAdvisor's metrics of
//! every pod and container, from the stats cache (see `stats::cadvisor`).

use k8s_cri::v1::*;

use crate::state::Runtime;

pub fn list_metric_descriptors(_: ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse {
    ListMetricDescriptorsResponse {
        descriptors: crate::stats::cadvisor::descriptors(),
    }
}

/// From the cache alone: no blocking call.
pub fn list_pod_sandbox_metrics(
    rt: &Runtime,
    _: ListPodSandboxMetricsRequest,
) -> ListPodSandboxMetricsResponse {
    let snap = rt.stats.snapshot();
    let mount = crate::container_stats::fs_mount(rt);
    let pods = crate::sandbox_stats::selected_pods(&snap, "", &Default::default());
    let by_pod = snap.by_pod();
    let pod_metrics = pods
        .into_iter()
        .map(|p| {
            let cs = by_pod.get(p.pod.id.as_str()).map_or(&[][..], Vec::as_slice);
            crate::stats::cadvisor::pod_metrics(p, cs, &mount)
        })
        .collect();
    ListPodSandboxMetricsResponse { pod_metrics }
}
