//! CheckpointContainer: the running container dumped with criu (through
//! its shim and runtime, leaving it running) into an archive at kubelet's
//! `location`, laid out as CRI-O's checkpoint archives are. Where criu
//! cannot run, FailedPrecondition says why before anything is touched.

use std::path::Path;

use k8s_cri::v1::{CheckpointContainerRequest, CheckpointContainerResponse};
use tonic::Status;
use vordr_store::ContainerState;

use crate::container::checkpoint::{self, Target, IMAGES_DIR};
use crate::container::{shim_of, shim_status};
use crate::state::errors::internal;
use crate::state::Runtime;

pub async fn checkpoint_container(
    rt: &Runtime,
    req: CheckpointContainerRequest,
) -> Result<CheckpointContainerResponse, Status> {
    let (dir, name) = checkpoint::parse_location(&req.location)?;
    let timeout = checkpoint::timeout(req.timeout)?;
    let c = rt.find_container(&req.container_id)?;
    if c.state != ContainerState::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is {}: only a running container can be checkpointed",
            c.id,
            c.state.as_str()
        )));
    }
    checkpoint::criu_ready().await?;
    let target = Target::create(&dir, &name)?;
    let staging = rt.layout.container_dir(&c.id).join("checkpoint");
    let result = dump(rt, &c, &staging, target, timeout).await;
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(staging)).await;
    result.map(|_| CheckpointContainerResponse {})
}

/// criu's images from the shim (within `timeout`), then the archive's
/// other files, then the archive itself; `target` is removed again on any
/// failure.
async fn dump(
    rt: &Runtime,
    c: &vordr_store::ContainerRecord,
    staging: &Path,
    target: Target,
    timeout: std::time::Duration,
) -> Result<(), Status> {
    let images = staging.join(IMAGES_DIR);
    let _ = std::fs::remove_dir_all(staging);
    std::fs::create_dir_all(&images)
        .and_then(|_| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o700))
        })
        .map_err(|e| internal("creating the checkpoint's directory", e))?;
    let shim = shim_of(c).await?;
    tokio::time::timeout(timeout, shim.checkpoint(&images, timeout))
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "checkpointing container {} took longer than {} s",
                c.id,
                timeout.as_secs()
            ))
        })?
        .map_err(|e| shim_status("checkpointing with criu", e))?;
    let config = checkpoint::config_dump(c, &c.runtime, std::time::SystemTime::now());
    let spec = rt.layout.spec_file(&c.id);
    let upper = rt.layout.container_dir(&c.id).join("upper");
    let staging = staging.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::write(
            staging.join("config.dump"),
            serde_json::to_vec_pretty(&config).expect("JSON"),
        )?;
        std::fs::copy(&spec, staging.join("spec.dump"))?;
        checkpoint::write_rootfs_diff(&upper, &staging)?;
        checkpoint::write_archive(&staging, &target.file)?;
        target.keep()
    })
    .await
    .map_err(|e| internal("writing the checkpoint archive", e))?
    .map_err(|e| internal("writing the checkpoint archive", e))
}
