//! Undoing what RunPodSandbox built, step by step. Shared by StopPodSandbox,
//! RemovePodSandbox, a RunPodSandbox that fails half-way, and restart
//! reconciliation; every step is idempotent.

use serde::{Deserialize, Serialize};
use vordr_net::netavark::{Attachment, BridgeNetwork, NetavarkError, PortMapping, POD_INTERFACE};
use vordr_net::{link, netns};
use vordr_store::PodRecord;

use crate::state::layout::Layout;
use crate::state::Runtime;

/// How a pod is attached, as stored in its row: enough to tear it down
/// even after the configuration changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PodNetwork {
    pub network: BridgeNetwork,
    pub ports: Vec<PortMapping>,
    /// The CNI network (config list name) the pod is attached to, when
    /// the CNI driver attached it; `network` is then unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<String>,
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
    crate::state::faults::point("pod.network-detached");
    rt.store
        .set_pod_network_attached(&pod.id, false)
        .map_err(|e| e.to_string())
}

/// netavark teardown for `pod`, whatever a crash left of its attachment.
///
/// netavark 1.4 removes the port mappings, then the pod's veth, then (for
/// the bridge's last pod) the bridge and the network's firewall rules, and
/// stops with an error at the first step it cannot do. So that a teardown
/// cut short (or never reached) can always be finished, it runs in the
/// pod's pinned namespace or, when the pin is gone, in a scratch one, with
/// a placeholder veth standing in for one already deleted. A bridge that no
/// longer exists (a reboot, or an earlier teardown removed it) means
/// nothing of the pod is left on the host.
pub async fn teardown(rt: &Runtime, pod: &PodRecord) -> Result<(), String> {
    let net = PodNetwork::from_record(pod)?;
    if net.cni.is_some() {
        // CNI DEL is idempotent and works without the namespace; what ADD
        // was given comes from the attachment cache (even an ADD cut short).
        let netns = rt.layout.ns_pin(&pod.id, "net");
        let _timer = rt.metrics.timer(crate::metrics::NetOp::CniDel);
        return match &rt.cni {
            Some(cni) => crate::net::cni::detach(cni, &pod.id, &netns).await,
            None => {
                let cni = crate::net::cni::CniNetwork::new(&rt.config);
                crate::net::cni::detach(&cni, &pod.id, &netns).await
            }
        };
    }
    let Some(ip) = pod.ip else {
        return Ok(());
    };
    // The second family's address, when dual-stack.
    let ip6 = rt
        .store
        .pod_ips(&pod.id)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|a| a.is_ipv4() != ip.is_ipv4());
    let attached = Attached {
        pod_id: pod.id.clone(),
        pod_name: pod.name.clone(),
        ip,
        ip6,
        net,
    };
    teardown_attached(rt, &attached).await
}

/// What netavark was given for a pod: kept next to the pod's pins
/// (`Layout::attachment_file`) from before netavark runs until the pins are
/// released, so that a pod whose row is lost can still be detached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attached {
    pub pod_id: String,
    pub pod_name: String,
    pub ip: std::net::IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<std::net::IpAddr>,
    pub net: PodNetwork,
}

impl Attached {
    /// Writes the record into the pod's namespace directory.
    pub fn save(&self, rt: &Runtime) -> std::io::Result<()> {
        let data = serde_json::to_vec(self).expect("attachment serialises");
        vordr_fsmode::write_private(&rt.layout.attachment_file(&self.pod_id), &data)
    }

    /// The record left beside a pod's pins, if any.
    pub fn load(layout: &Layout, pod_id: &str) -> Option<Attached> {
        let data = std::fs::read(layout.attachment_file(pod_id)).ok()?;
        serde_json::from_slice(&data).ok()
    }
}

/// [`teardown`] from an attachment record.
pub async fn teardown_attached(rt: &Runtime, a: &Attached) -> Result<(), String> {
    let _timer = rt.metrics.timer(crate::metrics::NetOp::NetavarkTeardown);
    let (pod_id, ip, ip6, net) = (&a.pod_id, a.ip, a.ip6, &a.net);
    let pinned = rt.layout.ns_pin(pod_id, "net");
    let scratch_dir = rt.layout.teardown_ns_dir(pod_id);
    let netns_path = if netns::is_pinned(&pinned) {
        pinned
    } else {
        let dir = scratch_dir.clone();
        blocking(move || {
            let _ = netns::release_dir(&dir);
            netns::create(
                &dir,
                &netns::NsRequest {
                    net: true,
                    ..Default::default()
                },
            )
            .map(|p| p.net.expect("a new network namespace was asked for"))
            .map_err(|e| format!("a scratch namespace for teardown: {e}"))
        })
        .await?
    };
    let res = async {
        let path = netns_path.clone();
        blocking(move || {
            if link::exists(&path, POD_INTERFACE).map_err(|e| e.to_string())? {
                return Ok(());
            }
            link::add_placeholder_veth(&path, POD_INTERFACE, PLACEHOLDER_PEER)
                .map_err(|e| format!("a placeholder veth for teardown: {e}"))
        })
        .await?;
        let done = rt
            .netavark
            .teardown(&Attachment {
                pod_id,
                pod_name: &a.pod_name,
                netns: &netns_path,
                network: &net.network,
                ip,
                ip6,
                ports: &net.ports,
            })
            .await;
        match done {
            Err(NetavarkError::Failed { message, .. }) if message.contains(BRIDGE_GONE) => {
                tracing::debug!(pod = %pod_id, "teardown: bridge {} is gone", net.network.bridge);
                Ok(())
            }
            r => r.map_err(|e| e.to_string()),
        }
    }
    .await;
    if netns_path.starts_with(&scratch_dir) {
        let dir = scratch_dir.clone();
        if let Err(e) = blocking(move || netns::release_dir(&dir).map_err(|e| e.to_string())).await
        {
            tracing::warn!(pod = %pod_id, "releasing the scratch namespace: {e}");
        }
    }
    res
}

/// The other end of the placeholder veth (inside the pod's namespace too).
const PLACEHOLDER_PEER: &str = "vordr-ph0";

/// How netavark 1.4 says the bridge it should detach from does not exist.
const BRIDGE_GONE: &str = "failed to get bridge interface";

/// Runs blocking work (namespaces, netlink, mounts) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
}

/// Brings up the loopback of a new pod network namespace (whatever
/// attaches the network: a CNI list need not include the loopback plugin,
/// and containerd brings it up too).
pub async fn loopback_up(netns: &std::path::Path) -> Result<(), String> {
    let netns = netns.to_path_buf();
    blocking(move || {
        link::set_up(&netns, "lo").map_err(|e| format!("bringing up the loopback: {e}"))
    })
    .await
}

/// Unpins the pod's namespaces.
pub async fn release_namespaces(rt: &Runtime, pod_id: &str) -> Result<(), String> {
    let dir = rt.layout.ns_dir(pod_id);
    crate::pod::init::kill(&rt.layout, pod_id);
    match std::fs::remove_file(rt.layout.attachment_file(pod_id)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing the attachment record: {e}")),
    }
    blocking(move || netns::release_dir(&dir).map_err(|e| e.to_string())).await
}

/// Deletes the pod's files (resolv.conf, hostname, hosts).
pub fn remove_pod_files(rt: &Runtime, pod_id: &str) -> Result<(), String> {
    crate::container::remove_tree(&rt.layout.pod_dir(pod_id))
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
    crate::container::cgroup::pod::remove_for(rt, pod).await?;
    remove_pod_files(rt, &pod.id)?;
    rt.store.delete_pod(&pod.id).map_err(|e| e.to_string())?;
    rt.stats.pod_changed(rt, &pod.id);
    Ok(())
}
