//! RunPodSandbox: validate, record, pin namespaces, allocate an address,
//! attach the network, write the pod's files. A failure at any step undoes
//! every earlier one.

use std::os::unix::fs::DirBuilderExt;

use k8s_cri::v1::{PodSandboxConfig, RunPodSandboxRequest, RunPodSandboxResponse};
use tonic::Status;
use vordr_net::netavark::Attachment;
use vordr_net::netns::{self, NsRequest};
use vordr_net::resolv;
use vordr_store::{NewPod, PodState, StoreError};

use crate::pod::cleanup::{self, PodNetwork};
use crate::pod::validate::{plan, PodPlan};
use crate::state::errors::{internal, invalid};
use crate::state::ids::{new_id, now_ns};
use crate::state::Runtime;

const HOSTS_BASE: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// What a retry of the same RunPodSandbox shares with the first call: the
/// pod's name, namespace, UID and attempt (`None` without metadata, which
/// validation refuses anyway).
pub fn inflight_key(req: &RunPodSandboxRequest) -> Option<String> {
    let m = req.config.as_ref()?.metadata.as_ref()?;
    Some(format!(
        "pod\0{}\0{}\0{}\0{}",
        m.namespace, m.name, m.uid, m.attempt
    ))
}

pub async fn run_pod_sandbox(
    rt: &Runtime,
    req: RunPodSandboxRequest,
) -> Result<RunPodSandboxResponse, Status> {
    let cfg = req.config.ok_or_else(|| invalid("config", "is required"))?;
    check_handler(rt, &req.runtime_handler)?;
    let mut plan = plan(&cfg, rt.config.cgroup.driver)?;
    if cfg
        .linux
        .as_ref()
        .is_none_or(|l| l.cgroup_parent.is_empty())
    {
        // No parent from kubelet: a pod cgroup of Vordr's own for this pod.
        plan.cgroup_parent = crate::container::cgroup::pod::default_parent(
            rt.config.cgroup.driver,
            rt.layout.root(),
            &plan.namespace,
            &plan.name,
            &plan.uid,
            plan.attempt,
        );
    }
    crate::security::gatekeeper::check_pod(rt, &cfg)?;
    let id = new_id();
    // With the CNI driver, the cluster's config list: a pod cannot start
    // before the network add-on wrote it (kubelet waits on NetworkReady).
    let cni_list = match &rt.cni {
        Some(cni) if !plan.host_network => Some(cni.current().map_err(|e| {
            Status::failed_precondition(format!("the pod network is not ready: {e}"))
        })?),
        _ => None,
    };
    let net = PodNetwork {
        network: rt.network(),
        ports: plan.ports.clone(),
        cni: cni_list.as_ref().map(|l| l.name.clone()),
    };
    let record = NewPod {
        id: id.clone(),
        name: plan.name.clone(),
        namespace: plan.namespace.clone(),
        uid: plan.uid.clone(),
        attempt: plan.attempt,
        created_at: now_ns(),
        runtime_handler: req.runtime_handler.clone(),
        config: json(&cfg),
        labels: json(&cfg.labels),
        annotations: json(&cfg.annotations),
        host_network: plan.host_network,
        cgroup_parent: plan.cgroup_parent.clone(),
        network: serde_json::to_string(&net).expect("network serialises"),
    };
    let (id, from_pool) = record_pod(rt, &record, &plan, &cfg)?;
    let _lock = rt.lock_pod(&id).await;
    crate::state::faults::point("pod.recorded");
    tracing::debug!(pod = %id, name = %plan.name, namespace = %plan.namespace, "creating pod sandbox");
    match build(rt, &id, &cfg, &plan, &net, from_pool, cni_list.as_deref()).await {
        Ok(()) => {
            tracing::info!(pod = %id, name = %plan.name, namespace = %plan.namespace, "pod sandbox ready");
            rt.stats.pod_changed(rt, &id);
            if let Ok(Some(p)) = rt.store.get_pod(&id) {
                use k8s_cri::v1::ContainerEventType as T;
                for kind in [T::ContainerCreatedEvent, T::ContainerStartedEvent] {
                    crate::container::events::emit_pod(rt, &p, kind);
                }
            }
            Ok(RunPodSandboxResponse { pod_sandbox_id: id })
        }
        Err(status) => {
            tracing::warn!(pod = %id, "RunPodSandbox failed, undoing: {}", status.message());
            undo(rt, &id).await;
            Err(status)
        }
    }
}

/// A runtime handler, when one is asked for, must be configured.
fn check_handler(rt: &Runtime, handler: &str) -> Result<(), Status> {
    if handler.is_empty() || rt.config.runtime.handlers.contains_key(handler) {
        return Ok(());
    }
    Err(invalid(
        "runtime_handler",
        format!("no runtime handler {handler:?} is configured"),
    ))
}

/// The pod's row: a warm-pool slot claimed for it, or a new row. Returns
/// the pod's id (the slot's, when claimed) and whether it came from the pool.
fn record_pod(
    rt: &Runtime,
    record: &NewPod,
    plan: &PodPlan,
    cfg: &PodSandboxConfig,
) -> Result<(String, bool), Status> {
    let exists = |e| match e {
        StoreError::PodExists(name) => Status::already_exists(format!(
            "pod sandbox {name} already exists (same name, namespace, uid and attempt)"
        )),
        e => internal("recording pod sandbox", e),
    };
    // A pod with its own network and no port mappings takes a pre-attached
    // namespace from the warm pool when there is one.
    // Pool slots' network namespaces belong to the host's user namespace.
    let poolable = !plan.host_network
        && plan.ports.is_empty()
        && plan.userns.is_none()
        // Per-pod capability arguments cannot be given to a slot.
        && !cfg.annotations.keys().any(|k| k.ends_with("-bandwidth"))
        && crate::net::pool::enabled(rt);
    if poolable {
        if let Some(slot) = rt.store.claim_pool_slot(record).map_err(exists)? {
            rt.pool_notify.notify_one();
            return Ok((slot, true));
        }
    }
    rt.store.insert_pod(record).map_err(exists)?;
    Ok((record.id.clone(), false))
}

/// Undoes a failed RunPodSandbox; what cannot be undone now is left to
/// restart reconciliation.
async fn undo(rt: &Runtime, id: &str) {
    match rt.store.get_pod(id) {
        Ok(Some(rec)) => {
            if let Err(e) = cleanup::destroy(rt, &rec).await {
                tracing::error!(pod = %id, "undoing a failed RunPodSandbox: {e}; restart will retry");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!(pod = %id, "undoing a failed RunPodSandbox: {e}"),
    }
}

async fn build(
    rt: &Runtime,
    id: &str,
    cfg: &PodSandboxConfig,
    plan: &PodPlan,
    net: &PodNetwork,
    from_pool: bool,
    cni_list: Option<&vordr_cni::ConfList>,
) -> Result<(), Status> {
    pod_cgroup(rt, cfg, plan).await?;
    let pins = pin_namespaces(rt, id, plan, from_pool).await?;
    let ip = match (&pins.net, cni_list, &rt.cni) {
        (Some(netns_path), Some(list), Some(cni)) => {
            attach_cni(rt, id, cfg, net, netns_path, cni, list).await?
        }
        (Some(netns_path), _, _) => Some(attach_netavark(rt, id, plan, net, netns_path).await?),
        _ => None,
    };
    write_pod_files(rt, id, cfg, plan, ip).map_err(|e| internal("writing pod files", e))?;
    crate::state::faults::point("pod.files-written");
    if let Some(dir) = &plan.log_directory {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| internal(&format!("creating log directory {}", dir.display()), e))?;
    }
    rt.store
        .set_pod_state(id, PodState::Ready)
        .map_err(|e| internal("recording pod state", e))
}

/// The pod's own cgroup; when it is one of Vordr's (kubelet sent no
/// parent, kubelet sizes its own), `linux.resources` written to it.
async fn pod_cgroup(rt: &Runtime, cfg: &PodSandboxConfig, plan: &PodPlan) -> Result<(), Status> {
    use crate::container::cgroup::{pod, CgroupError};
    let driver = rt.config.cgroup.driver;
    pod::create(driver, &plan.cgroup_parent)
        .await
        .map_err(|e| match e {
            CgroupError::Unavailable(m) => Status::failed_precondition(m),
            e => internal("creating the pod's cgroup", e),
        })?;
    crate::state::faults::point("pod.cgroup-created");
    let Some(linux) = cfg.linux.as_ref().filter(|l| l.cgroup_parent.is_empty()) else {
        return Ok(());
    };
    if let Some(res) = &linux.resources {
        pod::apply_resources(driver, &plan.cgroup_parent, res)
            .await
            .map_err(|e| match e {
                CgroupError::Invalid(m) => invalid("config.linux.resources", m),
                e => internal("writing the pod's resources", e),
            })?;
    }
    Ok(())
}

/// The pod's namespaces, pinned (the network one joined from the pool
/// slot when the pod took one) and recorded.
async fn pin_namespaces(
    rt: &Runtime,
    id: &str,
    plan: &PodPlan,
    from_pool: bool,
) -> Result<netns::Pins, Status> {
    let pool_net = rt.layout.ns_pin(id, "net");
    let req = NsRequest {
        net: !plan.host_network && !from_pool,
        join_net: from_pool.then(|| pool_net.clone()),
        ipc: !plan.host_ipc,
        uts: !plan.host_network,
        hostname: plan.hostname.clone(),
        sysctls: plan.sysctls.clone(),
        userns: plan.userns.clone(),
    };
    let dir = rt.layout.ns_dir(id);
    let pins = tokio::task::spawn_blocking(move || netns::create(&dir, &req))
        .await
        .map_err(|e| internal("pinning namespaces", e))?
        .map_err(|e| match e {
            netns::NsError::Sysctl { .. } => invalid("config.linux.sysctls", e),
            e => internal("pinning namespaces", e),
        })?;
    let s = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
    // A pod from the pool joined the slot's pinned network namespace.
    let net_pin = pins.net.clone().or_else(|| from_pool.then_some(pool_net));
    rt.store
        .set_pod_namespaces(
            id,
            s(&net_pin).as_deref(),
            s(&pins.ipc).as_deref(),
            s(&pins.uts).as_deref(),
        )
        .map_err(|e| internal("recording namespaces", e))?;
    crate::state::faults::point("pod.pinned");
    if let Some(p) = &pins.net {
        cleanup::loopback_up(p)
            .await
            .map_err(|e| internal("the pod's network", e))?;
    }

    Ok(pins)
}

/// Attaches the pod through the cluster's CNI config list; its first
/// address, if the plugins gave one.
async fn attach_cni(
    rt: &Runtime,
    id: &str,
    cfg: &PodSandboxConfig,
    net: &PodNetwork,
    netns_path: &std::path::Path,
    cni: &crate::net::cni::CniNetwork,
    list: &vordr_cni::ConfList,
) -> Result<Option<std::net::IpAddr>, Status> {
    let pod_cidr = rt
        .config
        .network
        .use_pod_cidr
        .then(|| {
            rt.store
                .get_setting(crate::state::POD_CIDR_KEY)
                .ok()
                .flatten()
        })
        .flatten();
    let caps = crate::net::cni::capability_args(cfg, &net.ports, pod_cidr.as_deref())
        .map_err(|e| invalid("config.annotations", e))?;
    let a = crate::net::cni::attachment(id, cfg, netns_path, caps);
    let _timer = rt.metrics.timer(crate::metrics::NetOp::CniAdd);
    let ips: Vec<std::net::IpAddr> = crate::net::cni::attach(cni, list, &a)
        .await
        .map_err(|e| internal("attaching the pod network", e))?;
    crate::state::faults::point("cni.added");
    rt.store
        .record_ips(id, &format!("cni:{}", list.name), &ips)
        .map_err(|e| internal("recording the pod's addresses", e))?;
    rt.store
        .set_pod_network_attached(id, true)
        .map_err(|e| internal("recording the network attachment", e))?;
    Ok(ips.first().copied())
}

/// Attaches the pod to the bridge network through netavark, with an
/// address from Vordr's IPAM; the IPv4 (or only) address.
async fn attach_netavark(
    rt: &Runtime,
    id: &str,
    plan: &PodPlan,
    net: &PodNetwork,
    netns_path: &std::path::Path,
) -> Result<std::net::IpAddr, Status> {
    let (addr, addr6) =
        crate::net::ipam::allocate_addresses(rt, id, &net.network).map_err(|e| match e {
            crate::net::ipam::AllocError::Exhausted(m) => Status::resource_exhausted(m),
            crate::net::ipam::AllocError::Store(m) => internal("allocating an IP address", m),
        })?;
    crate::state::faults::point("pod.ip-allocated");
    cleanup::Attached {
        pod_id: id.to_string(),
        pod_name: plan.name.clone(),
        ip: addr,
        ip6: addr6,
        net: net.clone(),
    }
    .save(rt)
    .map_err(|e| internal("recording the attachment", e))?;
    let _timer = rt.metrics.timer(crate::metrics::NetOp::NetavarkSetup);
    rt.netavark
        .setup(&Attachment {
            pod_id: id,
            pod_name: &plan.name,
            netns: netns_path,
            network: &net.network,
            ip: addr,
            ip6: addr6,
            ports: &net.ports,
        })
        .await
        .map_err(|e| {
            let msg = e.to_string();
            if msg.contains("address already in use") || msg.contains("port is already") {
                Status::already_exists(msg)
            } else {
                internal("attaching the pod network", msg)
            }
        })?;
    crate::state::faults::point("pod.netavark-setup");
    rt.store
        .set_pod_network_attached(id, true)
        .map_err(|e| internal("recording the network attachment", e))?;
    Ok(addr)
}

fn write_pod_files(
    rt: &Runtime,
    id: &str,
    cfg: &PodSandboxConfig,
    plan: &PodPlan,
    ip: Option<std::net::IpAddr>,
) -> std::io::Result<()> {
    let dir = rt.layout.pod_dir(id);
    std::fs::create_dir_all(&dir)?;
    let resolv_conf = match &plan.dns {
        Some((servers, searches, options)) => resolv::render(servers, searches, options),
        None => std::fs::read_to_string(&rt.config.network.host_resolv_conf).unwrap_or_default(),
    };
    std::fs::write(rt.layout.resolv_conf(id), resolv_conf)?;
    let hostname = match &plan.hostname {
        Some(h) => h.clone(),
        None if plan.host_network || cfg.hostname.is_empty() => {
            nix::unistd::gethostname()?.to_string_lossy().into_owned()
        }
        None => cfg.hostname.clone(),
    };
    std::fs::write(rt.layout.hostname_file(id), format!("{hostname}\n"))?;
    let mut hosts = HOSTS_BASE.to_string();
    if let Some(ip) = ip {
        hosts.push_str(&format!("{ip}\t{hostname}\n"));
    }
    std::fs::write(rt.layout.hosts_file(id), hosts)
}

/// The CRI types derive serde; none of them can fail to serialise.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("CRI types serialise")
}
