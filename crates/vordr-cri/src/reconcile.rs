//! Restart reconciliation: after a crash or kill -9 at any point, bring the
//! database and the machine back into agreement. Half-created pods are
//! undone, half-stopped pods finished, pods whose namespaces vanished (a
//! reboot) marked not ready, and pins or files without a row released.

use std::collections::HashSet;

use vordr_net::netns;
use vordr_store::{PodRecord, PodState};

use crate::runtime::Runtime;
use crate::sandbox_cleanup;

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
    pub errors: Vec<String>,
}

fn pins_alive(rt: &Runtime, pod: &PodRecord) -> bool {
    let dir = rt.ns_dir(&pod.id);
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
                sandbox_cleanup::destroy(rt, pod).await
            }
            PodState::Pooled if !pins_alive(rt, pod) => {
                report.lost_namespaces += 1;
                sandbox_cleanup::destroy(rt, pod).await
            }
            PodState::Pooled => Ok(()),
            PodState::Ready if !pins_alive(rt, pod) => {
                report.lost_namespaces += 1;
                // Whatever netavark set up died with the namespace.
                let r = async {
                    rt.store
                        .set_pod_network_attached(&pod.id, false)
                        .map_err(|e| e.to_string())?;
                    sandbox_cleanup::release_namespaces(rt, &pod.id).await?;
                    rt.store
                        .set_pod_state(&pod.id, PodState::NotReady)
                        .map_err(|e| e.to_string())
                };
                r.await
            }
            PodState::Ready => Ok(()),
            PodState::NotReady => {
                if pod.network_attached || rt.ns_dir(&pod.id).exists() {
                    report.finished_stopping += 1;
                    let r = async {
                        sandbox_cleanup::detach_network(rt, pod).await?;
                        sandbox_cleanup::release_namespaces(rt, &pod.id).await
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

    let known: HashSet<String> = match rt.store.list_pods() {
        Ok(p) => p.into_iter().map(|p| p.id).collect(),
        Err(e) => {
            report.errors.push(format!("listing pods: {e}"));
            return report;
        }
    };
    let dirs = |root: std::path::PathBuf| -> Vec<String> {
        std::fs::read_dir(root)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    for id in dirs(rt.config.server.run_dir.join("ns")) {
        if !known.contains(&id) {
            report.orphan_pins += 1;
            if let Err(e) = sandbox_cleanup::release_namespaces(rt, &id).await {
                report.errors.push(format!("orphan pins {id}: {e}"));
            }
        }
    }
    for id in dirs(rt.config.server.root.join("pods")) {
        if !known.contains(&id) {
            report.orphan_files += 1;
            if let Err(e) = sandbox_cleanup::remove_pod_files(rt, &id) {
                report.errors.push(format!("orphan files {id}: {e}"));
            }
        }
    }
    report
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
                crate::containers::teardown(rt, &c.id, &c.shim_address).await;
                if let Err(e) = rt.store.delete_container(&c.id) {
                    report.errors.push(format!("container {}: {e}", c.id));
                }
            }
            ContainerState::Created | ContainerState::Running => {
                let state = match crate::shim_client::Shim::connect(&c.id, &c.shim_address).await {
                    Ok(shim) => shim.state("").await.ok(),
                    Err(_) => None,
                };
                use containerd_shim_protos::types::task::Status as S;
                match state {
                    Some(s) if s.status.enum_value_or_default() == S::STOPPED => {
                        report.exited_while_down += 1;
                        let at = crate::shim_client::timestamp_ns(&s.exited_at);
                        crate::container_exit::record_exit(rt, &c.id, s.exit_status as i32, at);
                    }
                    Some(s)
                        if s.status.enum_value_or_default() == S::RUNNING
                            && c.state == ContainerState::Created =>
                    {
                        // Started just before the daemon died.
                        let _ = rt
                            .store
                            .set_container_running(&c.id, crate::sandbox_run::now_ns());
                    }
                    Some(_) => {}
                    None => {
                        // The shim is gone: its exit file is the last word.
                        report.exited_while_down += 1;
                        match vordr_shim_api::ExitRecord::read(&rt.bundle_dir(&c.id)) {
                            Some(r) => crate::container_exit::record_exit(
                                rt,
                                &c.id,
                                r.exit_code,
                                r.exited_at_ns,
                            ),
                            None => {
                                let exit = vordr_store::ContainerExit {
                                    finished_at: crate::sandbox_run::now_ns(),
                                    exit_code: 255,
                                    reason: "Unknown".into(),
                                    message: "the container's shim is gone".into(),
                                };
                                let _ = rt.store.set_container_exited(&c.id, &exit);
                            }
                        }
                    }
                }
            }
            ContainerState::Exited => {}
        }
    }
}
