//! PodSandboxStatus, and the conversion of a stored pod into CRI's views of it.

use std::collections::HashMap;

use k8s_cri::v1::{
    LinuxPodSandboxStatus, Namespace, PodIp, PodSandbox, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxNetworkStatus, PodSandboxState, PodSandboxStatus, PodSandboxStatusRequest,
    PodSandboxStatusResponse,
};
use tonic::Status;
use vordr_store::{PodRecord, PodState};

use crate::state::errors::internal;
use crate::state::ids::now_ns;
use crate::state::Runtime;

/// CRI's state for a stored state: only `ready` is ready.
pub fn cri_state(s: PodState) -> PodSandboxState {
    match s {
        PodState::Ready => PodSandboxState::SandboxReady,
        PodState::Creating | PodState::NotReady | PodState::PoolCreating | PodState::Pooled => {
            PodSandboxState::SandboxNotready
        }
    }
}

fn map(json: &str) -> HashMap<String, String> {
    serde_json::from_str(json).unwrap_or_default()
}

pub fn config_of(pod: &PodRecord) -> Result<PodSandboxConfig, Status> {
    serde_json::from_str(&pod.config)
        .map_err(|e| internal(&format!("pod {} has an unreadable config", pod.id), e))
}

/// The pod's metadata, from its row's columns.
pub fn metadata_of(pod: &PodRecord) -> PodSandboxMetadata {
    PodSandboxMetadata {
        name: pod.name.clone(),
        uid: pod.uid.clone(),
        namespace: pod.namespace.clone(),
        attempt: pod.attempt,
    }
}

/// The ListPodSandbox view: built from columns alone, without parsing the
/// stored config (List is called constantly by kubelet).
pub fn to_pod_sandbox(pod: &PodRecord) -> PodSandbox {
    PodSandbox {
        id: pod.id.clone(),
        metadata: Some(metadata_of(pod)),
        state: cri_state(pod.state) as i32,
        created_at: pod.created_at,
        labels: map(&pod.labels),
        annotations: map(&pod.annotations),
        runtime_handler: pod.runtime_handler.clone(),
    }
}

pub async fn pod_sandbox_status(
    rt: &Runtime,
    req: PodSandboxStatusRequest,
) -> Result<PodSandboxStatusResponse, Status> {
    let pod = rt.find_pod(&req.pod_sandbox_id)?;
    let cfg = config_of(&pod)?;
    let status = status_of(rt, &pod, &cfg)?;
    let mut info = HashMap::new();
    if req.verbose {
        let network: serde_json::Value = serde_json::from_str(&pod.network).unwrap_or_default();
        let v = serde_json::json!({
            "id": pod.id,
            "state": pod.state.as_str(),
            "hostNetwork": pod.host_network,
            "netNamespacePath": pod.netns_path,
            "ipcNamespacePath": pod.ipc_path,
            "utsNamespacePath": pod.uts_path,
            "netNamespaceClosed": pod.netns_path.is_none() && !pod.host_network,
            "networkAttached": pod.network_attached,
            "network": network,
            "cgroupParent": pod.cgroup_parent,
            "podFiles": rt.layout.pod_dir(&pod.id),
            "config": cfg,
        });
        info.insert("info".to_string(), v.to_string());
    }
    Ok(PodSandboxStatusResponse {
        status: Some(status),
        info,
        containers_statuses: rt
            .store
            .pod_containers(&pod.id)
            .map_err(|e| crate::state::errors::internal("reading the pod's containers", e))?
            .iter()
            .map(|c| crate::container_status::full_status(rt, c))
            .collect(),
        timestamp: now_ns(),
    })
}

/// The CRI status of `pod`, whose config is `cfg` (also sent with
/// container events).
pub fn status_of(
    rt: &Runtime,
    pod: &PodRecord,
    cfg: &PodSandboxConfig,
) -> Result<PodSandboxStatus, Status> {
    let ns_options = cfg
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    let status = PodSandboxStatus {
        id: pod.id.clone(),
        metadata: Some(metadata_of(pod)),
        state: cri_state(pod.state) as i32,
        created_at: pod.created_at,
        network: Some(PodSandboxNetworkStatus {
            ip: pod.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            // Dual-stack: the other family's addresses.
            additional_ips: rt
                .store
                .pod_ips(&pod.id)
                .map_err(|e| crate::state::errors::internal("reading the pod's addresses", e))?
                .into_iter()
                .filter(|ip| Some(*ip) != pod.ip)
                .map(|ip| PodIp { ip: ip.to_string() })
                .collect(),
        }),
        linux: Some(LinuxPodSandboxStatus {
            namespaces: Some(Namespace {
                options: Some(ns_options),
            }),
        }),
        labels: map(&pod.labels),
        annotations: map(&pod.annotations),
        runtime_handler: pod.runtime_handler.clone(),
    };
    Ok(status)
}
