//! UpdatePodSandboxResources (Kubernetes 1.33, in-place pod resize): the
//! kubelet tells the runtime a pod's overhead and the sum of its containers'
//! resources after a resize.
//!
//! Where the kubelet named the pod's cgroup parent it has already resized
//! that cgroup itself, and the call is a notification, as containerd and
//! CRI-O take it (they pass it on to NRI plugins): the values are checked
//! and logged. Where Vordr made the pod's cgroup (no parent given, as from
//! crictl), Vordr sizes it: the resources plus the overhead are written to
//! it (container::cgroup::pod::apply_resources).

use k8s_cri::v1::{
    LinuxContainerResources, UpdatePodSandboxResourcesRequest, UpdatePodSandboxResourcesResponse,
};
use tonic::Status;
use vordr_store::PodState;

use crate::container::cgroup::{pod, CgroupError};
use crate::state::errors::{internal, invalid};
use crate::state::Runtime;

pub async fn update_pod_sandbox_resources(
    rt: &Runtime,
    req: UpdatePodSandboxResourcesRequest,
) -> Result<UpdatePodSandboxResourcesResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(Status::invalid_argument("pod_sandbox_id is empty"));
    }
    check("overhead", req.overhead.as_ref())?;
    check("resources", req.resources.as_ref())?;
    let found = rt.find_pod(&req.pod_sandbox_id)?;
    // Held against a concurrent Stop/RemovePodSandbox of the pod.
    let Some(locked) = rt.lock_existing_pod(&found.id).await? else {
        return Err(Status::not_found(format!(
            "pod sandbox {:?} not found",
            req.pod_sandbox_id
        )));
    };
    let pod = &locked.pod;
    if pod.state != PodState::Ready {
        return Err(Status::failed_precondition(format!(
            "pod sandbox {} is {}",
            pod.id,
            pod.state.as_str()
        )));
    }
    let cfg = crate::sandbox_status::config_of(pod)?;
    let kubelets = cfg
        .linux
        .as_ref()
        .is_some_and(|l| !l.cgroup_parent.is_empty());
    let total = combined(req.overhead.as_ref(), req.resources.as_ref());
    tracing::info!(
        pod = %pod.id,
        overhead = ?req.overhead,
        resources = ?req.resources,
        applied = !kubelets && total.is_some(),
        "pod resources updated by the kubelet"
    );
    if kubelets {
        return Ok(UpdatePodSandboxResourcesResponse {});
    }
    if let Some(total) = total {
        pod::apply_resources(rt.config.cgroup.driver, &pod.cgroup_parent, &total)
            .await
            .map_err(|e| match e {
                CgroupError::Invalid(m) => invalid("resources", m),
                e => internal("writing the pod's resources", e),
            })?;
    }
    Ok(UpdatePodSandboxResourcesResponse {})
}

/// Refuses negative values, which no cgroup file takes (but cpu_quota -1,
/// "no limit").
fn check(field: &str, r: Option<&LinuxContainerResources>) -> Result<(), Status> {
    let Some(r) = r else { return Ok(()) };
    let fields = [
        ("cpu_period", r.cpu_period, 0),
        ("cpu_quota", r.cpu_quota, -1),
        ("cpu_shares", r.cpu_shares, 0),
        ("memory_limit_in_bytes", r.memory_limit_in_bytes, 0),
        (
            "memory_swap_limit_in_bytes",
            r.memory_swap_limit_in_bytes,
            0,
        ),
    ];
    for (name, v, least) in fields {
        if v < least {
            return Err(Status::invalid_argument(format!(
                "{field}.{name} is negative ({v})"
            )));
        }
    }
    Ok(())
}

/// The pod cgroup's resources: the containers' sum plus the overhead, as
/// kubelet sizes a pod's cgroup. Memory and CPU shares add up; the CPU
/// quotas add up over the resources' period (the overhead's scaled to it).
/// Zero fields are left as the cgroup has them. The rest (cpusets,
/// hugepages, unified) comes from `resources`. `None` when there is nothing.
fn combined(
    overhead: Option<&LinuxContainerResources>,
    resources: Option<&LinuxContainerResources>,
) -> Option<LinuxContainerResources> {
    let (o, r) = match (overhead, resources) {
        (None, None) => return None,
        (Some(o), None) => return Some(o.clone()),
        (None, Some(r)) => return Some(r.clone()),
        (Some(o), Some(r)) => (o, r),
    };
    let mut t = r.clone();
    t.cpu_shares = if r.cpu_shares > 0 && o.cpu_shares > 0 {
        r.cpu_shares.saturating_add(o.cpu_shares)
    } else {
        r.cpu_shares.max(o.cpu_shares)
    };
    // Resources without a memory limit leave the cgroup's as it is (zero
    // fields are not written), whatever the overhead.
    t.memory_limit_in_bytes = if r.memory_limit_in_bytes > 0 {
        r.memory_limit_in_bytes
            .saturating_add(o.memory_limit_in_bytes.max(0))
    } else {
        0
    };
    t.cpu_quota = if r.cpu_quota > 0 && o.cpu_quota > 0 {
        let period = if r.cpu_period > 0 {
            r.cpu_period
        } else {
            100_000
        };
        let o_period = if o.cpu_period > 0 {
            o.cpu_period
        } else {
            100_000
        };
        t.cpu_period = period;
        r.cpu_quota
            .saturating_add(o.cpu_quota.saturating_mul(period) / o_period)
    } else {
        // Including -1, no limit.
        r.cpu_quota
    };
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(mem: i64, shares: i64, quota: i64, period: i64) -> LinuxContainerResources {
        LinuxContainerResources {
            memory_limit_in_bytes: mem,
            cpu_shares: shares,
            cpu_quota: quota,
            cpu_period: period,
            ..Default::default()
        }
    }

    #[test]
    fn negative_values_are_refused_by_name() {
        let e = check("overhead", Some(&res(-1, 0, 0, 0))).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("overhead.memory_limit_in_bytes"));
        let e = check("resources", Some(&res(0, 0, -2, 0))).unwrap_err();
        assert!(e.message().contains("resources.cpu_quota"), "{e}");
        assert!(check("resources", None).is_ok());
        assert!(check("resources", Some(&res(0, 512, -1, 0))).is_ok());
    }

    #[test]
    fn overhead_adds_to_the_resources() {
        assert!(combined(None, None).is_none());
        let r = res(256 << 20, 1024, 50_000, 100_000);
        assert_eq!(combined(None, Some(&r)), Some(r.clone()));
        // 10 MiB, 10 shares, 5 ms per 50 ms (= 10 ms per 100 ms) of overhead.
        let o = res(10 << 20, 10, 5_000, 50_000);
        let t = combined(Some(&o), Some(&r)).unwrap();
        assert_eq!(t.memory_limit_in_bytes, 266 << 20);
        assert_eq!(t.cpu_shares, 1034);
        assert_eq!((t.cpu_quota, t.cpu_period), (60_000, 100_000));
        // No limit in the resources: none written, whatever the overhead.
        let t = combined(Some(&o), Some(&res(0, 0, -1, 0))).unwrap();
        assert_eq!((t.memory_limit_in_bytes, t.cpu_quota), (0, -1));
        assert_eq!(t.cpu_shares, 10);
    }
}
