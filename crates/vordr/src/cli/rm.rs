//! `vordr rm`: a container or a pod. A running one is refused unless
//! `-f`, which stops it first. Removing the container `vordr run` made
//! removes its pod too, when nothing else runs there.

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use vordr_client::{cri, CriClient};

use super::common::{self, short, Common, Rpc, Target};
use super::run::RUN_LABEL;

#[derive(Args, Debug)]
pub struct RmArgs {
    #[command(flatten)]
    pub common: Common,
    /// Stop it first if it runs.
    #[arg(short, long)]
    pub force: bool,
    /// Containers or pods (id, id prefix or name).
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// What was removed.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    /// "container" or "pod".
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    /// The pod `vordr run` made for the container, removed with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_id: Option<String>,
}

/// Removes what `query` names (stopping it first when `force`).
pub async fn rm(c: &mut CriClient, query: &str, force: bool) -> Result<Removed> {
    match common::resolve(c, query).await? {
        Target::Container(k) => {
            let st = c
                .runtime
                .container_status(cri::ContainerStatusRequest {
                    container_id: k.id.clone(),
                    verbose: false,
                })
                .await
                .rpc(&format!("container {}", k.name))?
                .status
                .unwrap_or_default();
            let running = st.state == cri::ContainerState::ContainerRunning as i32
                || st.state == cri::ContainerState::ContainerCreated as i32;
            if running && !force {
                anyhow::bail!(
                    "container {} ({}) is {}: stop it first or use rm -f",
                    k.name,
                    short(&k.id),
                    common::container_state(st.state).to_lowercase()
                );
            }
            if running {
                c.runtime
                    .stop_container(cri::StopContainerRequest {
                        container_id: k.id.clone(),
                        timeout: 0,
                    })
                    .await
                    .rpc(&format!("stopping container {}", k.name))?;
            }
            c.runtime
                .remove_container(cri::RemoveContainerRequest {
                    container_id: k.id.clone(),
                })
                .await
                .rpc(&format!("removing container {}", k.name))?;
            let pod_id = remove_run_pod(c, &k.pod_id).await?;
            Ok(Removed {
                kind: "container",
                id: k.id,
                name: k.name,
                pod_id,
            })
        }
        Target::Pod(p) => {
            let st = c
                .runtime
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: p.id.clone(),
                    verbose: false,
                })
                .await
                .rpc(&format!("pod {}", p.name))?
                .status
                .unwrap_or_default();
            if st.state == cri::PodSandboxState::SandboxReady as i32 {
                if !force {
                    anyhow::bail!(
                        "pod {}/{} ({}) is ready: stop it first or use rm -f",
                        p.namespace,
                        p.name,
                        short(&p.id)
                    );
                }
                c.runtime
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: p.id.clone(),
                    })
                    .await
                    .rpc(&format!("stopping pod {}", p.name))?;
            }
            c.runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: p.id.clone(),
                })
                .await
                .rpc(&format!("removing pod {}", p.name))?;
            Ok(Removed {
                kind: "pod",
                id: p.id,
                name: p.name,
                pod_id: None,
            })
        }
    }
}

/// Removes pod `pod_id` if `vordr run` made it and no container is left
/// in it; its id if so.
async fn remove_run_pod(c: &mut CriClient, pod_id: &str) -> Result<Option<String>> {
    let made_by_run = c
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                id: pod_id.into(),
                label_selector: [(RUN_LABEL.to_string(), "true".to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .rpc("listing pods")?
        .items
        .iter()
        .any(|p| p.id == pod_id);
    if !made_by_run {
        return Ok(None);
    }
    let left = c
        .runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod_id.into(),
                ..Default::default()
            }),
        })
        .await
        .rpc("listing containers")?
        .containers;
    if !left.is_empty() {
        return Ok(None);
    }
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.into(),
        })
        .await
        .rpc("removing the container's pod")?;
    Ok(Some(pod_id.to_string()))
}

pub async fn cmd(a: RmArgs) -> Result<i32> {
    let f = async |c: &mut CriClient, q: &str| rm(c, q, a.force).await;
    common::each(&a.common, &a.ids, f, |r| &r.id).await
}
