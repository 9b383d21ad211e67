//! The gatekeeper's judgement of a container's built spec: at
//! CreateContainer, and again on UpdateContainerResources from the spec it
//! was judged on (kept in the bundle), under the policy then in force.

use std::path::{Path, PathBuf};

use k8s_cri::v1::{ContainerConfig, PodSandboxConfig};
use tonic::Status;

use crate::security::hostpath::HostPaths;
use crate::state::errors::internal;
use crate::state::Runtime;

/// What CreateContainer asked for, checked and resolved.
pub struct Request<'a> {
    pub config: &'a ContainerConfig,
    pub sandbox: &'a PodSandboxConfig,
    pub pod: &'a vordr_store::PodRecord,
    pub host_paths: &'a HostPaths,
    pub log_file: Option<&'a Path>,
    /// The container's staged image volumes (container::image_volume):
    /// Vordr's own read-only mounts, not host paths.
    pub image_volumes: &'a [PathBuf],
}

/// The pod's files every container of it mounts.
pub fn pod_paths(rt: &Runtime, pod_id: &str) -> vordr_spec::PodPaths {
    vordr_spec::PodPaths {
        resolv_conf: Some(rt.layout.resolv_conf(pod_id)),
        hosts: Some(rt.layout.hosts_file(pod_id)),
        hostname_file: Some(rt.layout.hostname_file(pod_id)),
        ..Default::default()
    }
}

/// Judges the built spec of a container (CreateContainer and, on a stored
/// judged spec, UpdateContainerResources).
pub fn judge(
    rt: &Runtime,
    action: &'static str,
    r: &Request<'_>,
    built: &vordr_spec::Built,
    paths: &vordr_spec::PodPaths,
) -> Result<(), Status> {
    let sc = r
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    let added = vordr_gatekeeper::CapSet::of(&built.added_capabilities)
        .map_err(|c| internal("judging capabilities", format!("unknown capability {c}")))?;
    let mut pod_files = pod_files(paths);
    pod_files.extend(r.image_volumes.iter().cloned());
    let name = r.config.metadata.as_ref().map_or("", |m| m.name.as_str());
    crate::security::gatekeeper::check_container(
        rt,
        action,
        name,
        &vordr_gatekeeper::Container {
            spec: &built.spec,
            privileged: sc.is_some_and(|s| s.privileged),
            added,
            pod: r.sandbox,
            pod_files: &pod_files,
            log_path: r.log_file,
        },
        &r.pod.id,
    )
}

/// The files Vordr binds into every container of the pod, resolved as the
/// spec names them: not host paths.
pub fn pod_files(paths: &vordr_spec::PodPaths) -> Vec<PathBuf> {
    [
        &paths.resolv_conf,
        &paths.hosts,
        &paths.hostname_file,
        &paths.shm,
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| std::fs::canonicalize(p).ok())
    // With the host's IPC namespace, the host's /dev/shm (judged as such).
    .chain(paths.ipcns.is_none().then(|| PathBuf::from("/dev/shm")))
    .collect()
}

/// Judges a container again under the policy now in force (the config may
/// have changed since it was created) on the spec it was created from,
/// with `unified` resources an update would write.
pub fn rejudge(
    rt: &Runtime,
    c: &vordr_store::ContainerRecord,
    unified: &std::collections::HashMap<String, String>,
) -> Result<(), Status> {
    let config: ContainerConfig =
        serde_json::from_str(&c.config).map_err(|e| internal("reading container config", e))?;
    let pod = rt
        .store
        .get_pod(&c.pod_id)
        .map_err(|e| internal("reading pod", e))?
        .ok_or_else(|| Status::not_found(format!("pod sandbox {:?} not found", c.pod_id)))?;
    let sandbox: PodSandboxConfig =
        serde_json::from_str(&pod.config).map_err(|e| internal("reading pod config", e))?;
    let text = std::fs::read(rt.layout.judged_spec_file(&c.id))
        .or_else(|_| std::fs::read(rt.layout.spec_file(&c.id)))
        .map_err(|e| internal("reading the container's spec", e))?;
    let mut spec: oci_spec::runtime::Spec =
        serde_json::from_slice(&text).map_err(|e| internal("reading the container's spec", e))?;
    if !unified.is_empty() {
        if let Some(linux) = spec.linux_mut() {
            let mut res = linux.resources().clone().unwrap_or_default();
            let mut all = res.unified().clone().unwrap_or_default();
            all.extend(unified.iter().map(|(k, v)| (k.clone(), v.clone())));
            res.set_unified(Some(all));
            linux.set_resources(Some(res));
        }
    }
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    let added_capabilities = vordr_spec::requested_adds(&sc)
        .map_err(|e| internal("reading the container's capabilities", e))?;
    let paths = vordr_spec::PodPaths {
        ipcns: pod.ipc_path.as_ref().map(PathBuf::from),
        ..pod_paths(rt, &pod.id)
    };
    let host_paths = HostPaths::default();
    let log_file = (!c.log_path.is_empty()).then(|| PathBuf::from(&c.log_path));
    let r = Request {
        config: &config,
        sandbox: &sandbox,
        pod: &pod,
        host_paths: &host_paths,
        log_file: log_file.as_deref(),
        image_volumes: &crate::container::image_volume::staged_paths(rt, &c.id),
    };
    let built = vordr_spec::Built {
        spec,
        stop_signal: String::new(),
        added_capabilities,
    };
    judge(rt, "UpdateContainerResources", &r, &built, &paths)
}
