//! CreateContainer: rootfs overlay, OCI spec, the gatekeeper's judgement of
//! that spec, host paths staged, bundle, and a shim holding the created
//! container. Any failure undoes every step; nothing is left behind.

use std::path::PathBuf;

use k8s_cri::v1::{
    ContainerConfig, CreateContainerRequest, CreateContainerResponse, NamespaceMode,
    PodSandboxConfig,
};
use serde::Deserialize;
use tonic::Status;
use vordr_shim_api::{CreateOptions, RuntimeKind};
use vordr_store::{NewContainer, PodState, StoreError};

use crate::container::{teardown, Gone};
use crate::image::{find, parse_name};
use crate::security::hostpath::HostPaths;
use crate::shim::client::{shim_binary, start_shim, Shim};
use crate::state::errors::{internal, invalid};
use crate::state::ids::{new_id, now_ns};
use crate::state::Runtime;

/// Refuses a request's pod config that differs from the stored one where
/// it matters: who the pod is, its security context, sysctls, cgroup
/// parent, ports and log directory.
fn same_pod(claimed: &PodSandboxConfig, stored: &PodSandboxConfig) -> Result<(), Status> {
    let linux = |c: &PodSandboxConfig| {
        c.linux.as_ref().map(|l| {
            (
                l.security_context.clone(),
                l.sysctls.clone(),
                l.cgroup_parent.clone(),
            )
        })
    };
    let field = if claimed.metadata != stored.metadata {
        "metadata"
    } else if linux(claimed) != linux(stored) {
        "linux"
    } else if claimed.port_mappings != stored.port_mappings {
        "port_mappings"
    } else if claimed.log_directory != stored.log_directory {
        "log_directory"
    } else {
        return Ok(());
    };
    Err(invalid(
        &format!("sandbox_config.{field}"),
        "differs from the pod sandbox as it was created",
    ))
}

/// What CreateContainer asked for, checked and resolved.
struct Request<'a> {
    config: &'a ContainerConfig,
    sandbox: &'a PodSandboxConfig,
    pod: &'a vordr_store::PodRecord,
    host_paths: &'a HostPaths,
    log_file: Option<&'a std::path::Path>,
}

/// What a retry of the same CreateContainer shares with the first call:
/// the pod and the container's name and attempt.
pub fn inflight_key(req: &CreateContainerRequest) -> Option<String> {
    let m = req.config.as_ref()?.metadata.as_ref()?;
    Some(format!(
        "container\0{}\0{}\0{}",
        req.pod_sandbox_id, m.name, m.attempt
    ))
}

pub async fn create_container(
    rt: &Runtime,
    req: CreateContainerRequest,
) -> Result<CreateContainerResponse, Status> {
    let config = req.config.ok_or_else(|| invalid("config", "is required"))?;
    let meta = config
        .metadata
        .as_ref()
        .ok_or_else(|| invalid("config.metadata", "is required"))?;
    if meta.name.is_empty() {
        return Err(invalid("config.metadata.name", "is required"));
    }
    let image_name = config
        .image
        .as_ref()
        .map(|i| i.image.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("config.image.image", "is required"))?;
    let locked = rt
        .lock_existing_pod(&req.pod_sandbox_id)
        .await?
        .ok_or_else(|| {
            Status::not_found(format!("pod sandbox {:?} not found", req.pod_sandbox_id))
        })?;
    let pod = locked.pod.clone();
    if pod.state != PodState::Ready {
        return Err(Status::failed_precondition(format!(
            "pod sandbox {} is not ready",
            pod.id
        )));
    }
    // The pod as it was judged and stored; a request's copy that says
    // otherwise is refused, never believed.
    let sandbox: PodSandboxConfig =
        serde_json::from_str(&pod.config).map_err(|e| internal("reading pod config", e))?;
    if let Some(claimed) = &req.sandbox_config {
        same_pod(claimed, &sandbox)?;
    }
    let name = parse_name(image_name).map_err(|e| invalid("config.image.image", e))?;
    let image = find(rt, &name)
        .map_err(|e| internal("reading images", e))?
        .ok_or_else(|| {
            Status::not_found(format!("image {image_name:?} not found: pull it first"))
        })?;
    let handler_name = if pod.runtime_handler.is_empty() {
        rt.config.runtime.default_runtime.clone()
    } else {
        pod.runtime_handler.clone()
    };
    let handler = rt
        .config
        .runtime
        .handlers
        .get(&handler_name)
        .ok_or_else(|| {
            invalid(
                "runtime_handler",
                format!("unknown runtime handler {handler_name:?}"),
            )
        })?
        .clone();
    let handler =
        if handler.kind == "youki" && joins_pod_pid_namespace(&config) && !cgroup_v2_only() {
            // youki 0.7 mounts cgroup v1 by reading /proc/<its pid> from the
            // host's /proc with the pid of the joined namespace: such containers
            // fail or see another process's cgroups. runc gets it right.
            tracing::debug!(pod = %pod.id, "shared PID namespace on cgroup v1: running with runc");
            runc_handler(rt)
        } else {
            handler
        };

    let lowers = image_lowers(rt, &image)?;
    let img = image_config(rt, &image)?;
    // Host paths and the log file resolved once: what is judged is what
    // is mounted and written.
    // On a blocking thread: a hung (NFS) path stalls this call only.
    let (mounts, log_dir, log_rel) = (
        config.mounts.clone(),
        sandbox.log_directory.clone(),
        config.log_path.clone(),
    );
    let (host_paths, log_file) = tokio::task::spawn_blocking(move || {
        let host_paths = HostPaths::resolve(&mounts)?;
        let log_file = crate::security::hostpath::log_file(&log_dir, &log_rel)?;
        Ok::<_, Status>((host_paths, log_file))
    })
    .await
    .map_err(|e| internal("resolving host paths", e))??;

    let id = new_id();
    let log_path = log_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let row = NewContainer {
        id: id.clone(),
        pod_id: pod.id.clone(),
        name: meta.name.clone(),
        attempt: meta.attempt,
        created_at: now_ns(),
        image_ref: image
            .repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone()),
        image_id: image.id.clone(),
        config: serde_json::to_string(&config).expect("CRI types serialise"),
        labels: serde_json::to_string(&config.labels).expect("maps serialise"),
        annotations: serde_json::to_string(&config.annotations).expect("maps serialise"),
        log_path: log_path.clone(),
        runtime: handler.kind.clone(),
        stop_signal: String::new(),
    };
    rt.store.insert_container(&row).map_err(|e| match e {
        StoreError::ContainerExists(n) => Status::already_exists(format!(
            "a container named {n} already exists in pod {}",
            pod.id
        )),
        e => internal("recording container", e),
    })?;
    crate::state::faults::point("container.recorded");
    let mut shim_address = String::new();
    let res = build(
        rt,
        &id,
        &Request {
            config: &config,
            sandbox: &sandbox,
            pod: &pod,
            host_paths: &host_paths,
            log_file: log_file.as_deref(),
        },
        &lowers,
        img,
        &handler,
        &mut shim_address,
    )
    .await;
    match res {
        Ok((pid, stop_signal)) => {
            rt.store
                .set_container_created(&id, &shim_address, pid)
                .map_err(|e| internal("recording container", e))?;
            rt.store
                .set_container_stop_signal(&id, &stop_signal)
                .map_err(|e| internal("recording container", e))?;
            tracing::info!(container = %id, pod = %pod.id, name = %row.name, "container created");
            if let Ok(shim) = crate::shim::client::Shim::connect(&id, &shim_address).await {
                crate::shim::watch::watch(rt, &shim).await;
            }
            Ok(CreateContainerResponse { container_id: id })
        }
        Err(status) => {
            let gone = Gone {
                id: &id,
                shim_address: &shim_address,
                cgroup_parent: &pod.cgroup_parent,
            };
            match teardown(rt, &gone).await {
                Ok(()) => {
                    let _ = rt.store.delete_container(&id);
                }
                // The row stays (creating): restart reconciliation retries.
                Err(e) => tracing::error!(container = %id, "undoing a failed create: {e}"),
            }
            Err(status)
        }
    }
}

/// The image's snapshot directories, bottom layer first.
fn image_lowers(rt: &Runtime, image: &vordr_store::ImageRecord) -> Result<Vec<PathBuf>, Status> {
    image
        .chain_ids
        .iter()
        .map(|c| {
            c.parse()
                .map(|d| rt.puller.snapshots.fs_path(&d))
                .map_err(|e| internal("image snapshot", format!("{c}: {e}")))
        })
        .collect()
}

#[derive(Deserialize, Default)]
struct ImageConfigFile {
    #[serde(default)]
    config: Option<ImageConfigBody>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ImageConfigBody {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    stop_signal: Option<String>,
}

fn image_config(
    rt: &Runtime,
    image: &vordr_store::ImageRecord,
) -> Result<vordr_spec::ImageConfig, Status> {
    let digest = image
        .id
        .parse()
        .map_err(|e| internal("image id", format!("{}: {e}", image.id)))?;
    let data = rt
        .puller
        .content
        .read(&digest)
        .map_err(|e| internal("reading the image config", e))?;
    let c = serde_json::from_slice::<ImageConfigFile>(&data)
        .map_err(|e| internal("parsing the image config", e))?
        .config
        .unwrap_or_default();
    Ok(vordr_spec::ImageConfig {
        user: c.user.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        working_dir: c.working_dir.unwrap_or_default(),
        stop_signal: c.stop_signal.unwrap_or_default(),
        name: image.repo_tags.first().cloned().unwrap_or_default(),
    })
}

/// Whether the container joins its pod's PID namespace (mode POD).
fn joins_pod_pid_namespace(config: &ContainerConfig) -> bool {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .map(|n| n.pid)
        .unwrap_or(NamespaceMode::Pod as i32)
        == NamespaceMode::Pod as i32
}

fn cgroup_v2_only() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The configured runc handler, or runc from PATH.
fn runc_handler(rt: &Runtime) -> vordr_config::RuntimeHandler {
    rt.config
        .runtime
        .handlers
        .values()
        .find(|h| h.kind == "runc")
        .cloned()
        .unwrap_or(vordr_config::RuntimeHandler {
            kind: "runc".into(),
            path: "runc".into(),
        })
}

/// The pod's user namespace (pinned with the pod), when kubelet asked for one.
fn pod_userns(
    rt: &Runtime,
    pod_id: &str,
    sandbox: &PodSandboxConfig,
) -> Option<vordr_spec::UserNamespace> {
    let maps = crate::pod::validate::pod_id_maps(sandbox)?;
    Some(vordr_spec::UserNamespace {
        uid_mappings: maps.uids,
        gid_mappings: maps.gids,
        path: Some(rt.layout.ns_pin(pod_id, "user")),
    })
}

/// Everything after the row: returns the init's pid and the stop signal.
/// The pod's files every container of it mounts.
fn pod_paths(rt: &Runtime, pod_id: &str) -> vordr_spec::PodPaths {
    vordr_spec::PodPaths {
        resolv_conf: Some(rt.layout.resolv_conf(pod_id)),
        hosts: Some(rt.layout.hosts_file(pod_id)),
        hostname_file: Some(rt.layout.hostname_file(pod_id)),
        ..Default::default()
    }
}

async fn build(
    rt: &Runtime,
    id: &str,
    r: &Request<'_>,
    lowers: &[PathBuf],
    img: vordr_spec::ImageConfig,
    handler: &vordr_config::RuntimeHandler,
    shim_address: &mut String,
) -> Result<(u32, String), Status> {
    let (config, sandbox, pod) = (r.config, r.sandbox, r.pod);
    let bundle = rt.layout.bundle_dir(id);
    let rootfs = rt.layout.rootfs_dir(id);
    let cdir = rt.layout.container_dir(id);
    crate::container::rootfs::mount_overlay(
        lowers,
        &cdir.join("upper"),
        &cdir.join("work"),
        &rootfs,
    )
    .map_err(|e| internal("preparing the container rootfs", e))?;
    crate::state::faults::point("container.rootfs-mounted");
    let hostname = std::fs::read_to_string(rt.layout.hostname_file(&pod.id))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // Containers of a pod that shares its PID namespace join the pod's init.
    let pid_ns_path = if joins_pod_pid_namespace(config) {
        Some(crate::pod::init::pid_namespace(rt, pod).await?)
    } else {
        None
    };
    let paths = vordr_spec::PodPaths {
        sandbox_id: pod.id.clone(),
        netns: pod.netns_path.as_ref().map(PathBuf::from),
        ipcns: pod.ipc_path.as_ref().map(PathBuf::from),
        utsns: pod.uts_path.as_ref().map(PathBuf::from),
        pid_ns_path,
        hostname,
        shm: None,
        cgroup_parent: pod.cgroup_parent.clone(),
        userns: pod_userns(rt, &pod.id, sandbox),
        ..pod_paths(rt, &pod.id)
    };
    let opts = vordr_spec::SpecOptions {
        restrict_oom_score_adj: rt.config.runtime.restrict_oom_score_adj,
        seccomp_profile_root: rt.config.runtime.seccomp_profile_root.clone(),
        host_paths: r.host_paths.real_paths(),
        ..Default::default()
    };
    let mut built = vordr_spec::build_spec(id, config, sandbox, &img, &rootfs, &paths, &opts)
        .map_err(|e| {
            if e.is_invalid_argument() {
                Status::invalid_argument(e.to_string())
            } else {
                internal("building the OCI spec", e)
            }
        })?;
    judge(rt, "CreateContainer", r, &built, &paths)?;
    let judged = serde_json::to_vec_pretty(&built.spec).map_err(|e| internal("judged spec", e))?;
    vordr_fsmode::write_private(&bundle.join(JUDGED_SPEC), &judged)
        .map_err(|e| internal("writing the judged spec", e))?;
    crate::security::gatekeeper::node_supports(&mut built.spec)?;
    if paths.userns.is_some() {
        let points: Vec<(PathBuf, bool)> = built
            .spec
            .mounts()
            .iter()
            .flatten()
            .map(|m| {
                let file = m.source().as_ref().is_some_and(|s| s.is_file());
                (m.destination().clone(), !file)
            })
            .collect();
        crate::container::rootfs::create_mountpoints(&rootfs, &points)
            .map_err(|e| internal("creating mount points in the rootfs", e))?;
    }
    let spec_json =
        serde_json::to_vec_pretty(&built.spec).map_err(|e| internal("config.json", e))?;
    vordr_fsmode::write_private(&rt.layout.spec_file(id), &spec_json)
        .map_err(|e| internal("writing config.json", e))?;

    let kind = if handler.kind == "runc" {
        RuntimeKind::Runc
    } else {
        RuntimeKind::Youki
    };
    let runtime_root = rt.layout.runtime_root(&handler.kind);
    std::fs::create_dir_all(&runtime_root).map_err(|e| internal("runtime root", e))?;
    let socket_dir = rt.layout.shim_socket_dir();
    std::fs::create_dir_all(&socket_dir).map_err(|e| internal("shim socket dir", e))?;
    let binary = shim_binary(&rt.config.runtime.shim_path);
    let address = start_shim(
        &binary,
        id,
        &bundle,
        &rt.config.server.socket,
        &rt.layout.events_socket(),
        &socket_dir,
    )
    .await
    .map_err(|e| internal("starting the shim", e))?;
    *shim_address = address.clone();
    crate::state::faults::point("container.shim-started");
    let shim = Shim::connect(id, &address)
        .await
        .map_err(|e| internal("connecting to the shim", e))?;
    let opts = CreateOptions {
        runtime: kind,
        runtime_path: handler.path.clone(),
        runtime_root,
        log_path: r.log_file.map(PathBuf::from),
        max_log_line: rt.config.runtime.max_container_log_line_size,
        stdin: config.stdin,
        stdin_once: config.stdin_once,
    };
    let pid = shim
        .create(&bundle, config.tty, "", &opts)
        .await
        .map_err(|e| internal("creating the container", e))?;
    // Before anything in it runs: what is mounted is what was judged.
    r.host_paths.verify(pid, &built.spec)?;
    crate::state::faults::point("container.shim-created");
    Ok((pid, built.stop_signal))
}

/// The spec as the gatekeeper judged it (before this node's adjustments),
/// kept in the bundle to judge again on UpdateContainerResources.
pub const JUDGED_SPEC: &str = "judged.json";

/// Judges the built spec of a container (CreateContainer and, on a stored
/// judged spec, UpdateContainerResources).
fn judge(
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
    let pod_files = pod_files(paths);
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
    let bundle = rt.layout.bundle_dir(&c.id);
    let text = std::fs::read(bundle.join(JUDGED_SPEC))
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
    };
    let built = vordr_spec::Built {
        spec,
        stop_signal: String::new(),
        added_capabilities,
    };
    judge(rt, "UpdateContainerResources", &r, &built, &paths)
}
