//! ContainerStatus, from the store (with the resources last applied, the
//! image id and the stop signal) and the OCI spec (the user the process runs
//! as); `verbose` adds the pid, the shim and the OCI spec, as containerd's
//! info does.

use std::collections::HashMap;

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState as CriState, ContainerStatus,
    ContainerStatusRequest, ContainerStatusResponse, ImageSpec,
};
use tonic::Status;
use vordr_store::{ContainerRecord, ContainerState};

use crate::container::reported;
use crate::state::Runtime;

pub async fn container_status(
    rt: &Runtime,
    req: ContainerStatusRequest,
) -> Result<ContainerStatusResponse, Status> {
    let c = rt.find_container(&req.container_id)?;
    let mut info = HashMap::new();
    if req.verbose {
        let spec: serde_json::Value = std::fs::read(rt.layout.spec_file(&c.id))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or(serde_json::Value::Null);
        let v = serde_json::json!({
            "sandboxID": c.pod_id,
            "pid": c.pid,
            "runtimeType": c.runtime,
            "shimAddress": c.shim_address,
            "runtimeSpec": spec,
        });
        info.insert("info".to_string(), v.to_string());
    }
    Ok(ContainerStatusResponse {
        status: Some(full_status(rt, &c)),
        info,
    })
}

pub fn cri_state(s: ContainerState) -> CriState {
    match s {
        ContainerState::Creating | ContainerState::Created => CriState::ContainerCreated,
        ContainerState::Running => CriState::ContainerRunning,
        ContainerState::Exited => CriState::ContainerExited,
    }
}

pub fn config_of(c: &ContainerRecord) -> ContainerConfig {
    serde_json::from_str(&c.config).unwrap_or_default()
}

/// [`to_status`] with the user the process runs as (from its OCI spec).
pub fn full_status(rt: &Runtime, c: &ContainerRecord) -> ContainerStatus {
    let mut status = to_status(c);
    status.user = reported::user_of(&rt.layout.spec_file(&c.id));
    status
}

/// The CRI status of `c` from its row (also sent with container events).
pub fn to_status(c: &ContainerRecord) -> ContainerStatus {
    let cfg = config_of(c);
    ContainerStatus {
        id: c.id.clone(),
        metadata: Some(ContainerMetadata {
            name: c.name.clone(),
            attempt: c.attempt,
        }),
        state: cri_state(c.state) as i32,
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        image: Some(ImageSpec {
            image: c.image_id.clone(),
            ..cfg.image.clone().unwrap_or_default()
        }),
        image_ref: c.image_ref.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        labels: cfg.labels.clone(),
        annotations: cfg.annotations.clone(),
        mounts: cfg.mounts.clone(),
        log_path: c.log_path.clone(),
        resources: reported::resources_of(&cfg),
        image_id: c.image_id.clone(),
        stop_signal: reported::stop_signal_of(c) as i32,
        ..Default::default()
    }
}
