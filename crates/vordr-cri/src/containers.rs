//! What the container RPCs share: paths, lookups, the shim connection and
//! the teardown every failed create and every remove goes through.

use std::path::PathBuf;

use tonic::Status;
use vordr_store::{ContainerRecord, Lookup};

use crate::errors::internal;
use crate::runtime::Runtime;
use crate::shim_client::{Shim, ShimError};

impl Runtime {
    /// The OCI bundle of a container (volatile): config.json, rootfs, shim files.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.config.server.run_dir.join("bundles").join(id)
    }

    /// The container's writable layer (persistent): upper and work dirs.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.config.server.root.join("containers").join(id)
    }

    /// Where shims put their sockets.
    pub fn shim_socket_dir(&self) -> PathBuf {
        self.config.server.run_dir.join("s")
    }

    /// The TTRPC endpoint shims publish events to.
    pub fn events_socket(&self) -> PathBuf {
        self.config.server.run_dir.join("events.sock")
    }

    /// Where OCI runtimes keep their state.
    pub fn runtime_root(&self, kind: &str) -> PathBuf {
        self.config.server.run_dir.join("runtime").join(kind)
    }

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
/// rootfs mount, bundle and writable layer. Leaves the row to the caller.
/// Safe to call on any partial state.
pub async fn teardown(rt: &Runtime, id: &str, shim_address: &str) {
    // A create cut short may have started the shim before recording it;
    // its socket path follows from the id.
    let address = if shim_address.is_empty() {
        format!(
            "unix://{}",
            vordr_shim_api::socket_path(&rt.shim_socket_dir(), id).display()
        )
    } else {
        shim_address.to_string()
    };
    if let Ok(shim) = Shim::connect(id, &address).await {
        let _ = shim.kill("", 9, true).await;
        let _ = shim.delete("").await;
        let _ = shim.shutdown().await;
    }
    let bundle = rt.bundle_dir(id);
    // The shim may be gone: finish with the runtime's own state.
    if bundle.exists() {
        let _ = tokio::process::Command::new(crate::shim_client::shim_binary(
            &rt.config.runtime.shim_path,
        ))
        .current_dir(&bundle)
        .args(["-namespace", vordr_shim_api::NAMESPACE, "-id", id, "delete"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    }
    let _ = std::fs::remove_file(vordr_shim_api::socket_path(&rt.shim_socket_dir(), id));
    let _ = std::fs::remove_file(crate::container_attach::socket(rt, id));
    crate::rootfs::unmount(&bundle.join("rootfs"));
    let _ = std::fs::remove_dir_all(&bundle);
    let _ = std::fs::remove_dir_all(rt.container_dir(id));
}
