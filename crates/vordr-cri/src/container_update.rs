//! UpdateContainerResources: new CPU and memory limits, applied by the
//! runtime to the container's cgroup.

use k8s_cri::v1::{
    LinuxContainerResources, UpdateContainerResourcesRequest, UpdateContainerResourcesResponse,
};
use tonic::Status;
use vordr_store::ContainerState;

use crate::container::{shim_of, shim_status};
use crate::state::Runtime;

pub async fn update_container_resources(
    rt: &Runtime,
    req: UpdateContainerResourcesRequest,
) -> Result<UpdateContainerResourcesResponse, Status> {
    let c = rt.find_container(&req.container_id)?;
    if !matches!(c.state, ContainerState::Running | ContainerState::Created) {
        return Err(Status::failed_precondition(format!(
            "container {} is {}",
            c.id,
            c.state.as_str()
        )));
    }
    let unified = req
        .linux
        .as_ref()
        .map(|r| r.unified.clone())
        .unwrap_or_default();
    crate::container::judge::rejudge(rt, &c, &unified)?;
    // After the gatekeeper, which names its own rule for core files.
    vordr_spec::validate_unified(&unified).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let Some(r) = req.linux else {
        return Ok(UpdateContainerResourcesResponse {});
    };
    let shim = shim_of(&c).await?;
    shim.update(Some(oci_resources(&r)), &[])
        .await
        .map_err(|e| shim_status("updating resources", e))?;
    // ContainerStatus reports them from now on.
    crate::container::reported::remember_resources(rt, &c, &r)?;
    Ok(UpdateContainerResourcesResponse {})
}

/// Whether this host has the hugetlb controller (kubelet sends hugepage
/// limits for every page size; without the controller they are dropped, as
/// at create).
fn hugetlb_present() -> bool {
    use crate::container::cgroup::{mode, ROOT};
    mode::has_controller(std::path::Path::new(ROOT), mode::host(), "hugetlb")
}

/// The OCI `LinuxResources` JSON for CRI resources (zero means unset).
pub fn oci_resources(r: &LinuxContainerResources) -> Vec<u8> {
    let mut cpu = serde_json::Map::new();
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), r.cpu_shares.into());
    }
    if r.cpu_quota != 0 {
        cpu.insert("quota".into(), r.cpu_quota.into());
    }
    if r.cpu_period > 0 {
        cpu.insert("period".into(), r.cpu_period.into());
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), r.cpuset_cpus.clone().into());
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), r.cpuset_mems.clone().into());
    }
    let mut memory = serde_json::Map::new();
    if r.memory_limit_in_bytes > 0 {
        memory.insert("limit".into(), r.memory_limit_in_bytes.into());
    }
    if r.memory_swap_limit_in_bytes > 0 {
        memory.insert("swap".into(), r.memory_swap_limit_in_bytes.into());
    } else if r.memory_limit_in_bytes > 0 {
        // As at create: no swap beyond the limit (else raising the limit
        // above the old memory+swap limit is refused by the kernel).
        memory.insert("swap".into(), r.memory_limit_in_bytes.into());
    }
    let mut v = serde_json::json!({ "cpu": cpu, "memory": memory });
    if !r.hugepage_limits.is_empty() && hugetlb_present() {
        let limits: Vec<serde_json::Value> = r
            .hugepage_limits
            .iter()
            .map(|h| serde_json::json!({ "pageSize": h.page_size, "limit": h.limit }))
            .collect();
        v["hugepageLimits"] = limits.into();
    }
    if !r.unified.is_empty() {
        // v2 files (memory.high, io.weight, pids.max...), checked before.
        v["unified"] = serde_json::json!(r.unified);
    }
    serde_json::to_vec(&v).expect("JSON serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_set_fields_only() {
        let r = LinuxContainerResources {
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_slice(&oci_resources(&r)).unwrap();
        assert_eq!(v["cpu"]["quota"], 50_000);
        assert_eq!(v["cpu"]["period"], 100_000);
        assert!(v["cpu"].get("shares").is_none());
        assert_eq!(v["memory"]["limit"], 64 << 20);
        assert!(v.get("unified").is_none() && v.get("hugepageLimits").is_none());
        let r = LinuxContainerResources {
            hugepage_limits: vec![k8s_cri::v1::HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            unified: [("memory.high".to_string(), "1000000".to_string())].into(),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_slice(&oci_resources(&r)).unwrap();
        assert_eq!(v["unified"]["memory.high"], "1000000");
        if hugetlb_present() {
            assert_eq!(v["hugepageLimits"][0]["pageSize"], "2MB");
            assert_eq!(v["hugepageLimits"][0]["limit"], 4 << 20);
        } else {
            assert!(v.get("hugepageLimits").is_none());
        }
        // What the runtimes parse.
        let _: oci_spec::runtime::LinuxResources = serde_json::from_value(v).unwrap();
    }
}
