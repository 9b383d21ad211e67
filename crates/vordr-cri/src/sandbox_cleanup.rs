//! Undoing what RunPodSandbox built, step by step. Shared by StopPodSandbox,
//! RemovePodSandbox, a RunPodSandbox that fails half-way, and restart
//! reconciliation; every step is idempotent.

use serde::{Deserialize, Serialize};
use vordr_net::netavark::{Attachment, BridgeNetwork, PortMapping};
use vordr_net::netns;
use vordr_store::PodRecord;

use crate::runtime::Runtime;

/// How a pod is attached, as stored in its row: enough to tear it down
/// even after the configuration changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PodNetwork {
    pub network: BridgeNetwork,
    pub ports: Vec<PortMapping>,
}

impl PodNetwork {
    pub fn from_record(pod: &PodRecord) -> Result<PodNetwork, String> {
        serde_json::from_str(&pod.network)
            .map_err(|e| format!("pod {} has an unreadable network record: {e}", pod.id))
    }
}

/// Runs netavark teardown if the pod's network is attached. When the
/// namespace pin is gone (the machine rebooted), there is nothing left to
/// tear down and the pod is marked detached.
pub async fn detach_network(rt: &Runtime, pod: &PodRecord) -> Result<(), String> {
    if !pod.network_attached {
        return Ok(());
    }
    teardown(rt, pod).await?;
    rt.store
        .set_pod_network_attached(&pod.id, false)
        .map_err(|e| e.to_string())
}

/// netavark teardown for `pod`, when its namespace is still pinned.
pub async fn teardown(rt: &Runtime, pod: &PodRecord) -> Result<(), String> {
    let netns_path = rt.ns_dir(&pod.id).join("net");
    let (Some(ip), true) = (pod.ip, netns::is_pinned(&netns_path)) else {
        return Ok(());
    };
    let net = PodNetwork::from_record(pod)?;
    rt.netavark
        .teardown(&Attachment {
            pod_id: &pod.id,
            pod_name: &pod.name,
            netns: &netns_path,
            network: &net.network,
            ip,
            ports: &net.ports,
        })
        .await
        .map_err(|e| e.to_string())
}

/// Unpins the pod's namespaces.
pub async fn release_namespaces(rt: &Runtime, pod_id: &str) -> Result<(), String> {
    let dir = rt.ns_dir(pod_id);
    crate::pod_init::kill(&dir);
    tokio::task::spawn_blocking(move || netns::release_dir(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Deletes the pod's files (resolv.conf, hostname, hosts).
pub fn remove_pod_files(rt: &Runtime, pod_id: &str) -> Result<(), String> {
    match std::fs::remove_dir_all(rt.pod_dir(pod_id)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing pod files: {e}")),
    }
}

/// Removes every trace of a pod: network, namespaces, files, IP and row.
/// The row goes last, so a crash part-way leaves something to retry.
pub async fn destroy(rt: &Runtime, pod: &PodRecord) -> Result<(), String> {
    // A pod caught half-way through setup may have netavark state even
    // though the flag was not yet written: tear down regardless.
    if pod.network_attached
        || matches!(
            pod.state,
            vordr_store::PodState::Creating | vordr_store::PodState::PoolCreating
        )
    {
        if let Err(e) = teardown(rt, pod).await {
            if pod.network_attached {
                return Err(e);
            }
            tracing::debug!(pod = %pod.id, "teardown of a half-created pod: {e}");
        }
        rt.store
            .set_pod_network_attached(&pod.id, false)
            .map_err(|e| e.to_string())?;
    }
    release_namespaces(rt, &pod.id).await?;
    remove_pod_files(rt, &pod.id)?;
    rt.store.delete_pod(&pod.id).map_err(|e| e.to_string())
}
