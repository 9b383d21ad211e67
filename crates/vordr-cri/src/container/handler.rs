//! Which OCI runtime a container runs with: its pod's runtime handler, or
//! runc where youki cannot do what the container asks.

use k8s_cri::v1::{ContainerConfig, NamespaceMode};
use tonic::Status;

use crate::state::errors::invalid;
use crate::state::Runtime;

/// The handler for a container of `pod` (its runtime handler, or the
/// default).
pub fn for_container(
    rt: &Runtime,
    pod: &vordr_store::PodRecord,
    config: &ContainerConfig,
) -> Result<vordr_config::RuntimeHandler, Status> {
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
    if handler.kind == "youki" && joins_pod_pid_namespace(config) && !cgroup_v2_only() {
        // youki 0.7 mounts cgroup v1 by reading /proc/<its pid> from the
        // host's /proc with the pid of the joined namespace: such containers
        // fail or see another process's cgroups. runc gets it right.
        tracing::debug!(pod = %pod.id, "shared PID namespace on cgroup v1: running with runc");
        return Ok(runc_handler(rt));
    }
    Ok(handler)
}

/// Whether the container joins its pod's PID namespace (mode POD).
pub fn joins_pod_pid_namespace(config: &ContainerConfig) -> bool {
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
    runc_of(&rt.config.runtime.handlers)
}

/// The first runc handler of `handlers`, or runc from PATH.
pub fn runc_of(
    handlers: &std::collections::BTreeMap<String, vordr_config::RuntimeHandler>,
) -> vordr_config::RuntimeHandler {
    handlers
        .values()
        .find(|h| h.kind == "runc")
        .cloned()
        .unwrap_or(vordr_config::RuntimeHandler {
            kind: "runc".into(),
            path: "runc".into(),
        })
}
