//! What the container RPCs share: paths, lookups, the shim connection and
//! the teardown every failed create and every remove goes through.

pub(crate) mod cgroup;
pub(crate) mod checkpoint;
pub(crate) mod events;
pub(crate) mod exit;
pub(crate) mod handler;
pub(crate) mod idmap;
pub(crate) mod image_volume;
pub(crate) mod judge;
pub(crate) mod reported;
pub(crate) mod rootfs;
pub(crate) mod rro;

use tonic::Status;
use vordr_store::{ContainerRecord, Lookup};

use crate::shim::client::{Shim, ShimError};
use crate::state::errors::internal;
use crate::state::Runtime;

impl Runtime {
    /// Resolves a full or unique-prefix container id.
    pub fn find_container(&self, id: &str) -> Result<ContainerRecord, Status> {
        match self
            .store
            .find_container(id)
            .map_err(|e| internal("reading container", e))?
        {
            Lookup::Found(c) => Ok(c),
            Lookup::NotFound => Err(Status::not_found(format!("container {id:?} not found"))),
            Lookup::Ambiguous => Err(Status::invalid_argument(format!(
                "container_id: {id:?} matches more than one container"
            ))),
        }
    }

    /// The container, if it is running (NotFound, FailedPrecondition).
    pub fn running_container(&self, container_id: &str) -> Result<ContainerRecord, Status> {
        let c = self.find_container(container_id)?;
        if c.state != vordr_store::ContainerState::Running {
            return Err(Status::failed_precondition(format!(
                "container {} is not running",
                c.id
            )));
        }
        Ok(c)
    }

    /// The container's own process (from its OCI spec) with `cmd` as its
    /// args, with a terminal or not: what an exec runs.
    pub fn exec_process(&self, id: &str, cmd: &[String], tty: bool) -> Result<Vec<u8>, Status> {
        let data = std::fs::read(self.layout.spec_file(id))
            .map_err(|e| internal("reading the container's config.json", e))?;
        let spec: serde_json::Value =
            serde_json::from_slice(&data).map_err(|e| internal("parsing config.json", e))?;
        let mut process = spec
            .get("process")
            .cloned()
            .ok_or_else(|| internal("config.json", "has no process"))?;
        process["args"] = serde_json::json!(cmd);
        process["terminal"] = serde_json::json!(tty);
        if let Some(o) = process.as_object_mut() {
            o.remove("consoleSize");
        }
        Ok(serde_json::to_vec(&process).expect("JSON serialises"))
    }
}

/// Connects to the shim of `c`.
pub async fn shim_of(c: &ContainerRecord) -> Result<Shim, Status> {
    if c.shim_address.is_empty() {
        return Err(Status::failed_precondition(format!(
            "container {} has no shim",
            c.id
        )));
    }
    Shim::connect(&c.id, &c.shim_address)
        .await
        .map_err(|e| internal("connecting to the container's shim", e))
}

/// Maps a shim failure onto a gRPC status.
pub fn shim_status(context: &str, e: ShimError) -> Status {
    match e {
        ShimError::NotFound(m) => Status::not_found(format!("{context}: {m}")),
        e => internal(context, e),
    }
}

/// Undoes everything a container may have on the machine: its shim, its
/// processes and cgroup, its rootfs mount, bundle and writable layer.
/// Leaves the row to the caller, which deletes it only after this
/// succeeded, so that a failure leaves something to retry. Safe to call on
/// any partial state, and again after a crash part-way.
pub async fn teardown(rt: &Runtime, c: &Gone<'_>) -> Result<(), String> {
    let id = c.id;
    // A create cut short may have started the shim before recording it;
    // its socket path follows from the id.
    let address = if c.shim_address.is_empty() {
        format!("unix://{}", rt.layout.shim_socket(id).display())
    } else {
        c.shim_address.to_string()
    };
    if let Ok(Ok(shim)) = tokio::time::timeout(SHIM_CONNECT, Shim::connect(id, &address)).await {
        let _ = shim.kill("", 9, true).await;
        let _ = shim.delete("").await;
        let _ = shim.shutdown().await;
    }
    crate::state::faults::point("container.teardown.shim");
    let bundle = rt.layout.bundle_dir(id);
    // The shim may be gone: finish with the runtime's own state.
    if bundle.exists() {
        runtime_delete(rt, id).await;
    }
    let cgroup = vordr_spec::cgroups_path(c.cgroup_parent, id);
    let socket = rt.layout.shim_socket(id);
    let attach = rt.layout.attach_socket(id);
    let layer = rt.layout.container_dir(id);
    let rootfs = rt.layout.rootfs_dir(id);
    let staging = rt.layout.idmap_dir(id);
    let image_volumes = rt.layout.image_volumes_dir(id);
    tokio::task::spawn_blocking(move || {
        crate::container::idmap::release(&staging)?;
        crate::container::image_volume::release(&image_volumes)?;
        crate::container::cgroup::remove(&cgroup)?;
        let _ = std::fs::remove_file(socket);
        let _ = std::fs::remove_file(attach);
        crate::container::rootfs::unmount(&rootfs);
        remove_tree(&bundle)?;
        remove_tree(&layer)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// What [`teardown`] needs to know of a container, with or without a row.
pub struct Gone<'a> {
    pub id: &'a str,
    pub shim_address: &'a str,
    /// The pod's cgroup parent (resolved), for the container's cgroup.
    pub cgroup_parent: &'a str,
}

impl<'a> Gone<'a> {
    /// A recorded container of a pod with `cgroup_parent`.
    pub fn of(c: &'a ContainerRecord, cgroup_parent: &'a str) -> Gone<'a> {
        Gone {
            id: &c.id,
            shim_address: &c.shim_address,
            cgroup_parent,
        }
    }
}

/// `remove_dir_all` that treats a missing tree as removed.
pub(crate) fn remove_tree(p: &std::path::Path) -> Result<(), String> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", p.display())),
    }
}

/// How long connecting to a shim may take before it counts as gone.
pub const SHIM_CONNECT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the shim binary's `delete` (the runtime's forced delete) may take.
const RUNTIME_DELETE: std::time::Duration = std::time::Duration::from_secs(30);

/// The shim binary's `delete` verb in the bundle: kills the container
/// through the OCI runtime and deletes the runtime's state, for a
/// container whose shim is gone.
pub async fn runtime_delete(rt: &Runtime, id: &str) {
    let run = tokio::process::Command::new(crate::shim::client::shim_binary(
        &rt.config.runtime.shim_path,
    ))
    .current_dir(rt.layout.bundle_dir(id))
    .args(["-namespace", vordr_shim_api::NAMESPACE, "-id", id, "delete"])
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true)
    .status();
    if tokio::time::timeout(RUNTIME_DELETE, run).await.is_err() {
        tracing::warn!(container = %id, "the runtime's delete did not finish in {RUNTIME_DELETE:?}");
    }
}

/// Records the end of a container whose shim is gone: the exit the shim
/// wrote before it died, else exit code 255 with reason Unknown.
pub fn record_lost_shim(rt: &Runtime, id: &str) {
    match vordr_shim_api::ExitRecord::read(&rt.layout.bundle_dir(id)) {
        Some(r) => crate::container::exit::record_exit(rt, id, r.exit_code, r.exited_at_ns),
        None => {
            let exit = vordr_store::ContainerExit {
                finished_at: crate::state::ids::now_ns(),
                exit_code: 255,
                reason: "Unknown".into(),
                message: "the container's shim is gone".into(),
            };
            match rt.store.set_container_exited(id, &exit) {
                Ok(true) => crate::container::events::emit(
                    rt,
                    id,
                    k8s_cri::v1::ContainerEventType::ContainerStoppedEvent,
                ),
                Ok(false) => {}
                Err(e) => tracing::error!(container = %id, "recording exit: {e}"),
            }
        }
    }
}

/// Connects to the shim of `c`; `None` when it is gone (not running, or
/// not answering within [`SHIM_CONNECT`]).
pub async fn live_shim(c: &ContainerRecord) -> Option<Shim> {
    if c.shim_address.is_empty() {
        return None;
    }
    let shim = tokio::time::timeout(SHIM_CONNECT, Shim::connect(&c.id, &c.shim_address))
        .await
        .ok()?
        .ok()?;
    // A socket file left behind by a dead shim refuses connections; a live
    // listener that answers nothing fails the state call.
    tokio::time::timeout(SHIM_CONNECT, shim.state(""))
        .await
        .ok()?
        .ok()
        .map(|_| shim)
}
