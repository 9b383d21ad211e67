//! Restart reconciliation: after a crash or kill -9 at any point, bring the
//! database and the machine back into agreement. Half-created pods and
//! containers are undone, half-stopped pods finished, pods whose namespaces
//! vanished (a reboot) marked not ready, containers whose shim died marked
//! exited; then everything on the machine with no row is released: pins,
//! pod files, pod inits, shims, bundles and rootfs mounts, writable layers,
//! container cgroups, addresses.

pub(crate) mod orphans;

use vordr_net::netns;
use vordr_store::{PodRecord, PodState};

use crate::pod::cleanup;
use crate::state::Runtime;

/// What reconciliation did, for the log and the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub undone_creating: usize,
    pub finished_stopping: usize,
    pub lost_namespaces: usize,
    pub orphan_pins: usize,
    pub orphan_files: usize,
    /// Containers half-created when the daemon died, undone.
    pub undone_containers: usize,
    /// Containers that exited while the daemon was down.
    pub exited_while_down: usize,
    /// Pod inits (`__pod-init`) of pods with no row, or not the pod's own.
    pub orphan_inits: usize,
    /// Shims, bundles, rootfs mounts and writable layers of containers
    /// with no row, torn down.
    pub orphan_containers: usize,
    /// Container cgroups under a pod's parent with no container row.
    pub orphan_cgroups: usize,
    /// Addresses held for pods with no row.
    pub orphan_ips: usize,
    /// Network attachments of pods with no row, torn down.
    pub orphan_networks: usize,
    /// Scratch namespaces of an interrupted network teardown.
    pub orphan_scratch: usize,
    pub errors: Vec<String>,
}

fn pins_alive(rt: &Runtime, pod: &PodRecord) -> bool {
    let dir = rt.layout.ns_dir(&pod.id);
    let expect = |recorded: &Option<String>, name: &str| {
        recorded.is_none() || netns::is_pinned(&dir.join(name))
    };
    expect(&pod.netns_path, "net") && expect(&pod.ipc_path, "ipc") && expect(&pod.uts_path, "uts")
}

pub async fn reconcile(rt: &Runtime) -> Report {
    let mut report = Report::default();
    // A netavark started by the crashed daemon may still be running.
    if let Err(e) = rt.netavark.wait_idle().await {
        report.errors.push(format!("waiting for netavark: {e}"));
    }
    let pods = match rt.store.list_pods() {
        Ok(p) => p,
        Err(e) => {
            report.errors.push(format!("listing pods: {e}"));
            return report;
        }
    };
    for pod in &pods {
        let res = match pod.state {
            PodState::Creating | PodState::PoolCreating => {
                report.undone_creating += 1;
                cleanup::destroy(rt, pod).await
            }
            PodState::Pooled if !pins_alive(rt, pod) => {
                report.lost_namespaces += 1;
                cleanup::destroy(rt, pod).await
            }
            PodState::Pooled => Ok(()),
            PodState::Ready if !pins_alive(rt, pod) => {
                report.lost_namespaces += 1;
                // Whatever netavark set up died with the namespace.
                let r = async {
                    rt.store
                        .set_pod_network_attached(&pod.id, false)
                        .map_err(|e| e.to_string())?;
                    cleanup::release_namespaces(rt, &pod.id).await?;
                    rt.store
                        .set_pod_state(&pod.id, PodState::NotReady)
                        .map_err(|e| e.to_string())
                };
                r.await
            }
            PodState::Ready => Ok(()),
            PodState::NotReady => {
                if pod.network_attached || rt.layout.ns_dir(&pod.id).exists() {
                    report.finished_stopping += 1;
                    let r = async {
                        cleanup::detach_network(rt, pod).await?;
                        cleanup::release_namespaces(rt, &pod.id).await
                    };
                    r.await
                } else {
                    Ok(())
                }
            }
        };
        if let Err(e) = res {
            report.errors.push(format!("pod {}: {e}", pod.id));
        }
    }

    containers(rt, &mut report).await;
    crate::recovery::orphans::sweep(rt, &mut report).await;
    report
}

/// The resolved cgroup parent of pod `pod_id` ("" when it has no row).
pub(crate) fn parent_of(rt: &Runtime, pod_id: &str) -> String {
    rt.store
        .get_pod(pod_id)
        .ok()
        .flatten()
        .map(|p| p.cgroup_parent)
        .unwrap_or_default()
}

/// Brings container rows up to date with their shims.
async fn containers(rt: &Runtime, report: &mut Report) {
    use vordr_store::ContainerState;
    let all = match rt.store.list_containers() {
        Ok(c) => c,
        Err(e) => {
            report.errors.push(format!("listing containers: {e}"));
            return;
        }
    };
    for c in all {
        match c.state {
            ContainerState::Creating => {
                report.undone_containers += 1;
                let parent = parent_of(rt, &c.pod_id);
                let done = crate::container::teardown(rt, &crate::container::Gone::of(&c, &parent))
                    .await
                    .and_then(|()| rt.store.delete_container(&c.id).map_err(|e| e.to_string()));
                if let Err(e) = done {
                    report.errors.push(format!("container {}: {e}", c.id));
                }
            }
            ContainerState::Created | ContainerState::Running => {
                let state = async {
                    let shim = crate::shim::client::Shim::connect(&c.id, &c.shim_address)
                        .await
                        .ok()?;
                    let state = shim.state("").await.ok()?;
                    Some((shim, state))
                };
                let (shim, state) =
                    match tokio::time::timeout(crate::container::SHIM_CONNECT, state)
                        .await
                        .ok()
                        .flatten()
                    {
                        Some((shim, state)) => (Some(shim), Some(state)),
                        None => (None, None),
                    };
                if let Some(shim) = &shim {
                    crate::shim::watch::watch(rt, shim).await;
                }
                use containerd_shim_protos::types::task::Status as S;
                match state {
                    Some(s) if s.status.enum_value_or_default() == S::STOPPED => {
                        report.exited_while_down += 1;
                        let at = crate::shim::client::timestamp_ns(&s.exited_at);
                        crate::container::exit::record_exit(rt, &c.id, s.exit_status as i32, at);
                    }
                    Some(s)
                        if s.status.enum_value_or_default() == S::RUNNING
                            && c.state == ContainerState::Created =>
                    {
                        // Started just before the daemon died.
                        if rt
                            .store
                            .set_container_running(&c.id, crate::state::ids::now_ns())
                            .is_ok()
                        {
                            crate::container::events::emit(
                                rt,
                                &c.id,
                                k8s_cri::v1::ContainerEventType::ContainerStartedEvent,
                            );
                        }
                    }
                    Some(_) => {}
                    None => {
                        // The shim is gone: whatever still runs of the
                        // container is killed, its exit file is the last word.
                        report.exited_while_down += 1;
                        crate::container::runtime_delete(rt, &c.id).await;
                        crate::container::record_lost_shim(rt, &c.id);
                    }
                }
            }
            ContainerState::Exited => {}
        }
    }
}
