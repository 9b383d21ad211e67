//! CreateContainer: rootfs overlay, OCI spec, the gatekeeper's judgement of
//! that spec, host paths staged, bundle, and a shim holding the created
//! container. Any failure undoes every step; nothing is left behind.

use std::path::PathBuf;

use k8s_cri::v1::{
    ContainerConfig, CreateContainerRequest, CreateContainerResponse, PodSandboxConfig,
};
use tonic::Status;
use vordr_shim_api::{CreateOptions, RuntimeKind};
use vordr_store::{NewContainer, PodState, StoreError};

use crate::container::judge::{judge, pod_paths, Request};
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
    let image_name = required_fields(&config)?;
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
    let handler = crate::container::handler::for_container(rt, &pod, &config)?;
    rt.require_rro(&pod.runtime_handler, &config)?;
    let lowers = image_lowers(rt, &image)?;
    let img = image_config(rt, &image)?;
    let id = new_id();
    // Image volumes mounted read-only, as binds of Vordr's staged paths.
    let (mounted, image_volumes) = match crate::container::image_volume::stage(rt, &id, &config) {
        Ok(Some((mounted, staged))) => (Some(mounted), staged),
        Ok(None) => (None, Vec::new()),
        Err(e) => {
            release_image_volumes(rt, &id);
            return Err(e);
        }
    };
    let resolved = resolve_paths(mounted.as_ref().unwrap_or(&config), &sandbox).await;
    let (host_paths, log_file) = resolved.inspect_err(|_| release_image_volumes(rt, &id))?;

    record(
        rt,
        &id,
        &config,
        &pod,
        &image,
        &handler,
        log_file.as_deref(),
    )
    .inspect_err(|_| release_image_volumes(rt, &id))?;
    crate::state::faults::point("container.recorded");
    let mut shim_address = String::new();
    let request = Request {
        config: mounted.as_ref().unwrap_or(&config),
        sandbox: &sandbox,
        pod: &pod,
        host_paths: &host_paths,
        log_file: log_file.as_deref(),
        image_volumes: &image_volumes,
    };
    let res = build(rt, &id, &request, &lowers, img, &handler, &mut shim_address).await;
    match res {
        Ok((pid, stop_signal)) => {
            rt.store
                .set_container_created(&id, &shim_address, pid)
                .map_err(|e| internal("recording container", e))?;
            rt.store
                .set_container_stop_signal(&id, &stop_signal)
                .map_err(|e| internal("recording container", e))?;
            let name = config.metadata.as_ref().map_or("", |m| m.name.as_str());
            tracing::info!(container = %id, pod = %pod.id, name, "container created");
            crate::container::events::emit(
                rt,
                &id,
                k8s_cri::v1::ContainerEventType::ContainerCreatedEvent,
            );
            if let Ok(shim) = crate::shim::client::Shim::connect(&id, &shim_address).await {
                crate::shim::watch::watch(rt, &shim).await;
            }
            Ok(CreateContainerResponse { container_id: id })
        }
        Err(status) => {
            undo(rt, &id, &shim_address, &pod.cgroup_parent).await;
            Err(status)
        }
    }
}

/// Detaches the image volumes staged for a create that failed before its
/// row was recorded (after, the undo's teardown does it).
fn release_image_volumes(rt: &Runtime, id: &str) {
    let dir = rt.layout.image_volumes_dir(id);
    if let Err(e) = crate::container::image_volume::release(&dir) {
        tracing::error!(container = %id, "releasing image volumes: {e}");
    }
}

/// The fields every CreateContainer needs; the image it names.
fn required_fields(config: &ContainerConfig) -> Result<&str, Status> {
    let meta = config
        .metadata
        .as_ref()
        .ok_or_else(|| invalid("config.metadata", "is required"))?;
    if meta.name.is_empty() {
        return Err(invalid("config.metadata.name", "is required"));
    }
    config
        .image
        .as_ref()
        .map(|i| i.image.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("config.image.image", "is required"))
}

/// Host paths and the log file, resolved once: what is judged is what is
/// mounted and written. On a blocking thread: a hung (NFS) path stalls
/// this call only.
async fn resolve_paths(
    config: &ContainerConfig,
    sandbox: &PodSandboxConfig,
) -> Result<(HostPaths, Option<PathBuf>), Status> {
    let (mounts, log_dir, log_rel) = (
        config.mounts.clone(),
        sandbox.log_directory.clone(),
        config.log_path.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let host_paths = HostPaths::resolve(&mounts)?;
        let log_file = crate::security::hostpath::log_file(&log_dir, &log_rel)?;
        Ok::<_, Status>((host_paths, log_file))
    })
    .await
    .map_err(|e| internal("resolving host paths", e))?
}

/// The container's row, state `creating` (AlreadyExists for a taken name).
fn record(
    rt: &Runtime,
    id: &str,
    config: &ContainerConfig,
    pod: &vordr_store::PodRecord,
    image: &vordr_store::ImageRecord,
    handler: &vordr_config::RuntimeHandler,
    log_file: Option<&std::path::Path>,
) -> Result<(), Status> {
    let meta = config.metadata.clone().unwrap_or_default();
    let row = NewContainer {
        id: id.to_string(),
        pod_id: pod.id.clone(),
        name: meta.name,
        attempt: meta.attempt,
        created_at: now_ns(),
        image_ref: image
            .repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone()),
        image_id: image.id.clone(),
        config: serde_json::to_string(config).expect("CRI types serialise"),
        labels: serde_json::to_string(&config.labels).expect("maps serialise"),
        annotations: serde_json::to_string(&config.annotations).expect("maps serialise"),
        log_path: log_file
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        runtime: handler.kind.clone(),
        stop_signal: String::new(),
    };
    rt.store.insert_container(&row).map_err(|e| match e {
        StoreError::ContainerExists(n) => Status::already_exists(format!(
            "a container named {n} already exists in pod {}",
            pod.id
        )),
        e => internal("recording container", e),
    })
}

/// Undoes a failed create: everything built, then the row. A teardown
/// that fails leaves the row (creating) for restart reconciliation.
async fn undo(rt: &Runtime, id: &str, shim_address: &str, cgroup_parent: &str) {
    let gone = Gone {
        id,
        shim_address,
        cgroup_parent,
    };
    match teardown(rt, &gone).await {
        Ok(()) => {
            let _ = rt.store.delete_container(id);
        }
        Err(e) => tracing::error!(container = %id, "undoing a failed create: {e}"),
    }
}

/// The image's snapshot directories, bottom layer first.
fn image_lowers(rt: &Runtime, image: &vordr_store::ImageRecord) -> Result<Vec<PathBuf>, Status> {
    let chain_ids = image
        .chain_ids
        .iter()
        .map(|c| c.parse())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| internal("image snapshot", e))?;
    Ok(rt.puller.snapshot_dirs(&chain_ids))
}

/// What the image says a container runs as, with, and how it stops.
fn image_config(
    rt: &Runtime,
    image: &vordr_store::ImageRecord,
) -> Result<vordr_spec::ImageConfig, Status> {
    let digest = image
        .id
        .parse()
        .map_err(|e| internal("image id", format!("{}: {e}", image.id)))?;
    let c = rt
        .puller
        .image_config(&digest)
        .map_err(|e| internal("the image config", e))?;
    Ok(vordr_spec::ImageConfig {
        user: c.user,
        env: c.env,
        entrypoint: c.entrypoint,
        cmd: c.cmd,
        working_dir: c.working_dir,
        stop_signal: c.stop_signal,
        name: image.repo_tags.first().cloned().unwrap_or_default(),
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

/// Mounts the container's overlay; for a pod with a user namespace, over
/// idmapped layers (see `container::idmap`), whose namespace is returned.
fn mount_rootfs(
    rt: &Runtime,
    id: &str,
    r: &Request<'_>,
    lowers: &[PathBuf],
) -> Result<Option<std::fs::File>, Status> {
    let rootfs = rt.layout.rootfs_dir(id);
    let cdir = rt.layout.container_dir(id);
    let (upper, work) = (cdir.join("upper"), cdir.join("work"));
    let Some(maps) = crate::pod::validate::pod_id_maps(r.sandbox) else {
        crate::container::rootfs::mount_overlay(lowers, &upper, &work, &rootfs)
            .map_err(|e| internal("preparing the container rootfs", e))?;
        return Ok(None);
    };
    rt.require_idmap()?;
    let root = crate::container::idmap::host_root(&maps).ok_or_else(|| {
        invalid(
            "sandbox_config.linux.security_context.namespace_options.userns_options",
            "container id 0 is not mapped",
        )
    })?;
    let pin = rt.layout.ns_pin(&r.pod.id, "user");
    let userns = std::fs::File::open(&pin).map_err(|e| {
        internal(
            "the pod's user namespace",
            format!("{}: {e}", pin.display()),
        )
    })?;
    use std::os::fd::AsFd;
    crate::container::idmap::mount_overlay(
        lowers,
        &upper,
        &work,
        &rootfs,
        userns.as_fd(),
        root,
        &rt.layout.idmap_dir(id),
    )
    .map_err(|e| internal("preparing the container's idmapped rootfs", e))?;
    Ok(Some(userns))
}

/// Everything after the row: returns the init's pid and the stop signal.
async fn build(
    rt: &Runtime,
    id: &str,
    r: &Request<'_>,
    lowers: &[PathBuf],
    img: vordr_spec::ImageConfig,
    handler: &vordr_config::RuntimeHandler,
    shim_address: &mut String,
) -> Result<(u32, String), Status> {
    let userns = mount_rootfs(rt, id, r, lowers)?;
    crate::state::faults::point("container.rootfs-mounted");
    let built = spec(rt, id, r, &img, userns.as_ref()).await?;
    let shim = start(rt, id, shim_address).await?;
    let opts = CreateOptions {
        runtime: if handler.kind == "runc" {
            RuntimeKind::Runc
        } else {
            RuntimeKind::Youki
        },
        runtime_path: handler.path.clone(),
        runtime_root: rt.layout.runtime_root(&handler.kind),
        log_path: r.log_file.map(PathBuf::from),
        max_log_line: rt.config.runtime.max_container_log_line_size,
        stdin: r.config.stdin,
        stdin_once: r.config.stdin_once,
    };
    std::fs::create_dir_all(&opts.runtime_root).map_err(|e| internal("runtime root", e))?;
    let created = shim
        .create(&rt.layout.bundle_dir(id), r.config.tty, "", &opts)
        .await;
    if userns.is_some() {
        // The container's mount namespace holds its own copies now.
        crate::container::idmap::release(&rt.layout.idmap_dir(id))
            .map_err(|e| internal("releasing the idmapped volumes", e))?;
    }
    let pid = created.map_err(|e| internal("creating the container", e))?;
    // Before anything in it runs: what is mounted is what was judged.
    r.host_paths.verify(pid, &built.spec)?;
    crate::state::faults::point("container.shim-created");
    Ok((pid, built.stop_signal))
}

/// The OCI spec: built, judged (and kept as judged), adjusted to what this
/// node supports, and written as the bundle's config.json.
async fn spec(
    rt: &Runtime,
    id: &str,
    r: &Request<'_>,
    img: &vordr_spec::ImageConfig,
    userns: Option<&std::fs::File>,
) -> Result<vordr_spec::Built, Status> {
    let (config, sandbox, pod) = (r.config, r.sandbox, r.pod);
    let rootfs = rt.layout.rootfs_dir(id);
    let hostname = std::fs::read_to_string(rt.layout.hostname_file(&pod.id))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // Containers of a pod that shares its PID namespace join the pod's init.
    let pid_ns_path = if crate::container::handler::joins_pod_pid_namespace(config) {
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
        cgroup_v2: Some(
            crate::container::cgroup::mode::host() == crate::container::cgroup::mode::Mode::Unified,
        ),
        ..Default::default()
    };
    let mut built = vordr_spec::build_spec(id, config, sandbox, img, &rootfs, &paths, &opts)
        .map_err(|e| {
            if e.is_invalid_argument() {
                Status::invalid_argument(e.to_string())
            } else {
                internal("building the OCI spec", e)
            }
        })?;
    judge(rt, "CreateContainer", r, &built, &paths)?;
    if let Some(res) = config.linux.as_ref().and_then(|l| l.resources.as_ref()) {
        // After the gatekeeper, which names its own rule for core files.
        vordr_spec::validate_unified(&res.unified)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
    }
    let judged = serde_json::to_vec_pretty(&built.spec).map_err(|e| internal("judged spec", e))?;
    vordr_fsmode::write_private(&rt.layout.judged_spec_file(id), &judged)
        .map_err(|e| internal("writing the judged spec", e))?;
    crate::security::gatekeeper::node_supports(&mut built.spec)?;
    // What the runtime gets: for a user-namespaced pod, idmapped volumes
    // (the rootfs already is); `built.spec` stays as judged, for the check
    // of what got mounted.
    let mut runtime_spec = built.spec.clone();
    if let Some(userns) = userns {
        use std::os::fd::AsFd;
        let staging = rt.layout.idmap_dir(id);
        crate::container::idmap::create_staging(&staging)
            .map_err(|e| internal("the idmap staging directory", e))?;
        crate::container::idmap::stage_volumes(
            &mut runtime_spec,
            r.host_paths,
            userns.as_fd(),
            &staging,
        )?;
        crate::container::idmap::stage_pod_files(
            &mut runtime_spec,
            &rt.layout.pod_dir(&pod.id),
            userns.as_fd(),
            &staging,
        )
        .map_err(|e| internal("idmapping the pod's files", e))?;
    }
    let spec_json =
        serde_json::to_vec_pretty(&runtime_spec).map_err(|e| internal("config.json", e))?;
    vordr_fsmode::write_private(&rt.layout.spec_file(id), &spec_json)
        .map_err(|e| internal("writing config.json", e))?;
    Ok(built)
}

/// The container's shim, started and connected; its address goes to
/// `shim_address` at once, so that a failure later can still stop it.
async fn start(rt: &Runtime, id: &str, shim_address: &mut String) -> Result<Shim, Status> {
    let socket_dir = rt.layout.shim_socket_dir();
    std::fs::create_dir_all(&socket_dir).map_err(|e| internal("shim socket dir", e))?;
    let address = start_shim(
        &shim_binary(&rt.config.runtime.shim_path),
        id,
        &rt.layout.bundle_dir(id),
        &rt.config.server.socket,
        &rt.layout.events_socket(),
        &socket_dir,
    )
    .await
    .map_err(|e| internal("starting the shim", e))?;
    *shim_address = address.clone();
    crate::state::faults::point("container.shim-started");
    Shim::connect(id, &address)
        .await
        .map_err(|e| internal("connecting to the shim", e))
}
