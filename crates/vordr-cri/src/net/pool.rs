//! The warm pool: network namespaces pinned and attached by netavark ahead
//! of time, each with its own address, so RunPodSandbox hands one to a pod
//! instead of waiting for netavark (tens of milliseconds with iptables).
//! Slots are rows in the pods table (states `pool-creating` and `pooled`),
//! so the same reconciliation and cleanup cover them. With the CNI driver
//! there is a pool only when the config list says it is safe
//! (`"vordr.io/pool-safe": true`): plugins are given the pod's name at ADD,
//! and a slot is attached before any pod exists.

use std::sync::Arc;

use vordr_net::netavark::Attachment;
use vordr_net::netns::{self, NsRequest};
use vordr_store::PodState;

use crate::pod::cleanup::{self, PodNetwork};
use crate::state::ids::{new_id, now_ns};
use crate::state::Runtime;

/// The network record a pod without port mappings would get now: slots
/// must match it exactly to be claimed.
pub fn current_network_record(rt: &Runtime) -> String {
    serde_json::to_string(&PodNetwork {
        cni: pool_cni_list(rt).map(|l| l.name.clone()),
        network: rt.network(),
        ports: vec![],
    })
    .expect("network serialises")
}

/// With the CNI driver, the config list when it allows a pool.
fn pool_cni_list(rt: &Runtime) -> Option<std::sync::Arc<vordr_cni::ConfList>> {
    rt.cni.as_ref()?.current().ok().filter(|l| l.pool_safe)
}

/// Whether the warm pool is on: a size, and a network that allows one.
pub fn enabled(rt: &Runtime) -> bool {
    rt.config.network.pool_size > 0 && (rt.cni.is_none() || pool_cni_list(rt).is_some())
}

/// Creates one slot; on failure, nothing is left of it.
async fn create_slot(rt: &Runtime, network: &str) -> Result<(), String> {
    let id = new_id();
    rt.store
        .insert_pool_slot(&id, now_ns(), network)
        .map_err(|e| e.to_string())?;
    let res = async {
        let net: PodNetwork = serde_json::from_str(network).map_err(|e| e.to_string())?;
        let dir = rt.layout.ns_dir(&id);
        let req = NsRequest {
            net: true,
            ..Default::default()
        };
        let pins = tokio::task::spawn_blocking(move || netns::create(&dir, &req))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let netns_path = pins.net.clone().expect("a net pin was asked for");
        cleanup::loopback_up(&netns_path).await?;
        rt.store
            .set_pod_namespaces(&id, Some(&netns_path.to_string_lossy()), None, None)
            .map_err(|e| e.to_string())?;
        if let (Some(cni), Some(list)) = (&rt.cni, pool_cni_list(rt)) {
            // A slot has no pod yet: it is attached under its own name.
            let cfg = k8s_cri::v1::PodSandboxConfig {
                metadata: Some(k8s_cri::v1::PodSandboxMetadata {
                    name: format!("pool-{}", &id[..12]),
                    namespace: "vordr-pool".into(),
                    uid: id.clone(),
                    attempt: 0,
                }),
                ..Default::default()
            };
            let a = crate::net::cni::attachment(&id, &cfg, &netns_path, Default::default());
            let ips = crate::net::cni::attach(cni, &list, &a).await?;
            rt.store
                .record_ips(&id, &format!("cni:{}", list.name), &ips)
                .map_err(|e| e.to_string())?;
            rt.store
                .set_pod_network_attached(&id, true)
                .map_err(|e| e.to_string())?;
            return rt
                .store
                .set_pod_state(&id, PodState::Pooled)
                .map_err(|e| e.to_string());
        }
        let (ip, ip6) =
            crate::net::ipam::allocate_addresses(rt, &id, &net.network).map_err(|e| match e {
                crate::net::ipam::AllocError::Exhausted(m)
                | crate::net::ipam::AllocError::Store(m) => m,
            })?;
        let pod_name = format!("pool-{}", &id[..12]);
        cleanup::Attached {
            pod_id: id.clone(),
            pod_name: pod_name.clone(),
            ip,
            ip6,
            net: net.clone(),
        }
        .save(rt)
        .map_err(|e| format!("recording the attachment: {e}"))?;
        rt.netavark
            .setup(&Attachment {
                pod_id: &id,
                pod_name: &pod_name,
                netns: &netns_path,
                network: &net.network,
                ip,
                ip6,
                ports: &[],
            })
            .await
            .map_err(|e| e.to_string())?;
        rt.store
            .set_pod_network_attached(&id, true)
            .map_err(|e| e.to_string())?;
        rt.store
            .set_pod_state(&id, PodState::Pooled)
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = &res {
        if let Ok(Some(rec)) = rt.store.get_pod(&id) {
            if let Err(e2) = cleanup::destroy(rt, &rec).await {
                tracing::error!(slot = %id, "cleaning up a failed pool slot: {e2}");
            }
        }
        tracing::warn!("warm pool: creating a slot failed: {e}");
    }
    res
}

/// Brings the pool to its configured size: drops slots for another network
/// (the pod CIDR changed) or beyond the size, then creates missing ones.
pub async fn refill(rt: &Runtime) -> Result<(), String> {
    let network = current_network_record(rt);
    // Plugins get the pod's name at ADD, which a pooled namespace cannot
    // know: with the CNI driver there is a pool only if the list allows one.
    let size = if enabled(rt) {
        rt.config.network.pool_size as usize
    } else {
        0
    };
    let slots: Vec<_> = rt
        .store
        .list_pods()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|p| p.state == PodState::Pooled)
        .collect();
    let mut kept = 0;
    for slot in slots {
        if slot.network == network && kept < size {
            kept += 1;
            continue;
        }
        // Take it out of the pool atomically: RunPodSandbox may be claiming it.
        if rt
            .store
            .set_pod_state_if(&slot.id, PodState::Pooled, PodState::PoolCreating)
            .map_err(|e| e.to_string())?
        {
            if let Ok(Some(s)) = rt.store.get_pod(&slot.id) {
                cleanup::destroy(rt, &s).await?;
            }
        }
    }
    for _ in kept..size {
        create_slot(rt, &network).await?;
    }
    Ok(())
}

/// Keeps the pool full for the life of the daemon: refills at start and
/// whenever RunPodSandbox takes a slot.
pub fn spawn_refill_task(rt: Arc<Runtime>) {
    if rt.config.network.pool_size == 0 {
        // Drop slots a previous configuration left.
        tokio::spawn(async move {
            if let Err(e) = refill(&rt).await {
                tracing::warn!("warm pool: {e}");
            }
        });
        return;
    }
    tokio::spawn(async move {
        loop {
            if rt.network_health().await.is_ok() {
                if let Err(e) = refill(&rt).await {
                    tracing::warn!("warm pool: refill failed: {e}");
                    // Do not spin on a persistent failure.
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
            }
            tokio::select! {
                _ = rt.pool_notify.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
            }
        }
    });
}
