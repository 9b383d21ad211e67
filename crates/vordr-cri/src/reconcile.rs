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
