//! Recording a container's exit, from whichever source learns it first: the
//! shim's event, a Wait, or after a restart the shim's state or exit file.

use vordr_shim_api::ExitRecord;
use vordr_store::ContainerExit;

use crate::state::Runtime;

/// Records that container `id` exited with `code` at `at_ns`. The reason is
/// OOMKilled when the shim saw the memory cgroup kill, else Completed or
/// Error, as containerd reports.
pub fn record_exit(rt: &Runtime, id: &str, code: i32, at_ns: i64) {
    let rec = ExitRecord::read(&rt.layout.bundle_dir(id));
    let oom = rec.is_some_and(|r| r.oom_killed);
    let reason = if oom {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let exit = ContainerExit {
        finished_at: if at_ns > 0 {
            at_ns
        } else {
            crate::state::ids::now_ns()
        },
        exit_code: code,
        reason: reason.to_string(),
        message: String::new(),
    };
    match rt.store.set_container_exited(id, &exit) {
        Ok(true) => {
            tracing::info!(container = %id, code, reason, "container exited");
            crate::container::events::emit(
                rt,
                id,
                k8s_cri::v1::ContainerEventType::ContainerStoppedEvent,
            );
        }
        Ok(false) => {}
        Err(e) => tracing::error!(container = %id, "recording exit: {e}"),
    }
}
