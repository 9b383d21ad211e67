//! CreateContainer: rootfs overlay, OCI spec, bundle, and a shim holding the
//! created container. Any failure undoes every step; nothing is left behind.

use std::path::PathBuf;

use k8s_cri::v1::{
    ContainerConfig, CreateContainerRequest, CreateContainerResponse, NamespaceMode,
    PodSandboxConfig,
};
use serde::Deserialize;
use tonic::Status;
use vordr_shim_api::{CreateOptions, RuntimeKind};
use vordr_store::{NewContainer, PodState, StoreError};

use crate::containers::teardown;
use crate::errors::{internal, invalid};
use crate::images::{find, parse_name};
use crate::runtime::Runtime;
use crate::sandbox_run::{new_id, now_ns};
use crate::shim_client::{shim_binary, start_shim, Shim};

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
    let pod = rt.find_pod(&req.pod_sandbox_id)?;
    let _lock = rt.lock_pod(&pod.id).await;
    let pod = rt
        .store
        .get_pod(&pod.id)
        .map_err(|e| internal("reading pod", e))?
        .ok_or_else(|| {
            Status::not_found(format!("pod sandbox {:?} not found", req.pod_sandbox_id))
        })?;
    if pod.state != PodState::Ready {
        return Err(Status::failed_precondition(format!(
            "pod sandbox {} is not ready",
            pod.id
        )));
    }
    let sandbox: PodSandboxConfig = match req.sandbox_config {
        Some(s) => s,
        None => serde_json::from_str(&pod.config).map_err(|e| internal("reading pod config", e))?,
    };
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
    let default_sc = Default::default();
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .unwrap_or(&default_sc);
    let uid = vordr_spec::uid_before_rootfs(sc, &img, &lowers);
    crate::gatekeeper::check_container(rt, "CreateContainer", &config, &sandbox, &pod.id, uid)?;

    let id = new_id();
    let log_path = if sandbox.log_directory.is_empty() || config.log_path.is_empty() {
        String::new()
    } else {
        PathBuf::from(&sandbox.log_directory)
            .join(&config.log_path)
            .display()
            .to_string()
    };
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
    let mut shim_address = String::new();
    let res = build(
        rt,
        &id,
        &config,
        &sandbox,
        &pod,
        &lowers,
        img,
        &handler,
        &log_path,
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
            Ok(CreateContainerResponse { container_id: id })
        }
        Err(status) => {
            teardown(rt, &id, &shim_address).await;
            let _ = rt.store.delete_container(&id);
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
    let u = sandbox
        .linux
        .as_ref()?
        .security_context
        .as_ref()?
        .namespace_options
        .as_ref()?
        .userns_options
        .as_ref()?;
    let maps = crate::sandbox_validate::id_maps(u)?;
    Some(vordr_spec::UserNamespace {
        uid_mappings: maps.uids,
        gid_mappings: maps.gids,
        path: Some(rt.ns_dir(pod_id).join("user")),
    })
}

/// Everything after the row: returns the init's pid and the stop signal.
#[allow(clippy::too_many_arguments)]
async fn build(
    rt: &Runtime,
    id: &str,
    config: &ContainerConfig,
    sandbox: &PodSandboxConfig,
    pod: &vordr_store::PodRecord,
    lowers: &[PathBuf],
    img: vordr_spec::ImageConfig,
    handler: &vordr_config::RuntimeHandler,
    log_path: &str,
    shim_address: &mut String,
) -> Result<(u32, String), Status> {
    let bundle = rt.bundle_dir(id);
    let rootfs = bundle.join("rootfs");
    let cdir = rt.container_dir(id);
    crate::rootfs::mount_overlay(lowers, &cdir.join("upper"), &cdir.join("work"), &rootfs)
        .map_err(|e| internal("preparing the container rootfs", e))?;
    let pod_dir = rt.pod_dir(&pod.id);
    let hostname = std::fs::read_to_string(pod_dir.join("hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // Containers of a pod that shares its PID namespace join the pod's init.
    let pid_ns_path = if joins_pod_pid_namespace(config) {
        Some(crate::pod_init::pid_namespace(rt, &pod.id).await?)
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
        resolv_conf: Some(pod_dir.join("resolv.conf")),
        hosts: Some(pod_dir.join("hosts")),
        hostname_file: Some(pod_dir.join("hostname")),
        shm: None,
        cgroup_parent: pod.cgroup_parent.clone(),
        userns: pod_userns(rt, &pod.id, sandbox),
    };
    let opts = vordr_spec::SpecOptions {
        restrict_oom_score_adj: rt.config.runtime.restrict_oom_score_adj,
        seccomp_profile_root: rt.config.runtime.seccomp_profile_root.clone(),
        ..Default::default()
    };
    let built =
        vordr_spec::build_spec(id, config, sandbox, &img, &rootfs, &paths, &opts).map_err(|e| {
            if e.is_invalid_argument() {
                Status::invalid_argument(e.to_string())
            } else {
                internal("building the OCI spec", e)
            }
        })?;
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
        crate::rootfs::create_mountpoints(&rootfs, &points)
            .map_err(|e| internal("creating mount points in the rootfs", e))?;
    }
    let spec_json =
        serde_json::to_vec_pretty(&built.spec).map_err(|e| internal("config.json", e))?;
    std::fs::write(bundle.join("config.json"), spec_json)
        .map_err(|e| internal("writing config.json", e))?;

    let kind = if handler.kind == "runc" {
        RuntimeKind::Runc
    } else {
        RuntimeKind::Youki
    };
    let runtime_root = rt.runtime_root(&handler.kind);
    std::fs::create_dir_all(&runtime_root).map_err(|e| internal("runtime root", e))?;
    let socket_dir = rt.shim_socket_dir();
    std::fs::create_dir_all(&socket_dir).map_err(|e| internal("shim socket dir", e))?;
    let binary = shim_binary(&rt.config.runtime.shim_path);
    let address = start_shim(
        &binary,
        id,
        &bundle,
        &rt.config.server.socket,
        &rt.events_socket(),
        &socket_dir,
    )
    .await
    .map_err(|e| internal("starting the shim", e))?;
    *shim_address = address.clone();
    let shim = Shim::connect(id, &address)
        .await
        .map_err(|e| internal("connecting to the shim", e))?;
    let opts = CreateOptions {
        runtime: kind,
        runtime_path: handler.path.clone(),
        runtime_root,
        log_path: (!log_path.is_empty()).then(|| PathBuf::from(log_path)),
        max_log_line: rt.config.runtime.max_container_log_line_size,
        stdin: config.stdin,
        stdin_once: config.stdin_once,
    };
    let pid = shim
        .create(&bundle, config.tty, "", &opts)
        .await
        .map_err(|e| internal("creating the container", e))?;
    Ok((pid, built.stop_signal))
}
