//! UpdatePodSandboxResources (Kubernetes 1.33, in-place pod resize): the
//! kubelet tells the runtime a pod's new overhead and the sum of its
//! containers' resources after it has resized the pod's cgroup itself.
//!
//! The kubelet treats the call as best effort. Vordr checks the pod and the
//! values and records the new resources in its log; the containers' own
//! limits come with UpdateContainerResources.

use k8s_cri::v1::{
    LinuxContainerResources, UpdatePodSandboxResourcesRequest, UpdatePodSandboxResourcesResponse,
};
use tonic::Status;

use crate::state::Runtime;

pub async fn update_pod_sandbox_resources(
    rt: &Runtime,
    req: UpdatePodSandboxResourcesRequest,
) -> Result<UpdatePodSandboxResourcesResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(Status::invalid_argument("pod_sandbox_id is empty"));
    }
    let pod = rt.find_pod(&req.pod_sandbox_id)?;
    check("overhead", req.overhead.as_ref())?;
    check("resources", req.resources.as_ref())?;
    tracing::info!(
        pod = %pod.id,
        overhead = ?req.overhead,
        resources = ?req.resources,
        "pod resources updated by the kubelet"
    );
    Ok(UpdatePodSandboxResourcesResponse {})
}

/// Refuses negative values, which no cgroup file takes.
fn check(field: &str, r: Option<&LinuxContainerResources>) -> Result<(), Status> {
    let Some(r) = r else { return Ok(()) };
    let fields = [
        ("cpu_period", r.cpu_period),
        ("cpu_shares", r.cpu_shares),
        ("memory_limit_in_bytes", r.memory_limit_in_bytes),
        ("memory_swap_limit_in_bytes", r.memory_swap_limit_in_bytes),
    ];
    for (name, v) in fields {
        if v < 0 {
            return Err(Status::invalid_argument(format!(
                "{field}.{name} is negative ({v})"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_values_are_refused_by_name() {
        let r = LinuxContainerResources {
            memory_limit_in_bytes: -1,
            ..Default::default()
        };
        let e = check("overhead", Some(&r)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("overhead.memory_limit_in_bytes"));
        assert!(check("resources", None).is_ok());
        let ok = LinuxContainerResources {
            cpu_quota: -1,
            cpu_shares: 512,
            ..Default::default()
        };
        assert!(check("resources", Some(&ok)).is_ok());
    }
}
