//! `vordr stop`: a container (its process signalled, killed after the
//! grace period) or a pod (all its containers, its network).

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use vordr_client::{cri, CriClient};

use super::common::{self, Common, Rpc, Target};

#[derive(Args, Debug)]
pub struct StopArgs {
    #[command(flatten)]
    pub common: Common,
    /// Seconds to wait before killing.
    #[arg(short, long, default_value_t = 10)]
    pub timeout: i64,
    /// Containers or pods (id, id prefix or name).
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// What was stopped.
#[derive(Debug, Clone, Serialize)]
pub struct Stopped {
    /// "container" or "pod".
    pub kind: &'static str,
    pub id: String,
    pub name: String,
}

/// Stops the container (`timeout` seconds of grace) or pod `t`.
pub async fn stop_target(c: &mut CriClient, t: &Target, timeout: i64) -> Result<Stopped> {
    match t {
        Target::Container(k) => {
            c.runtime
                .stop_container(cri::StopContainerRequest {
                    container_id: k.id.clone(),
                    timeout,
                })
                .await
                .rpc(&format!("stopping container {}", k.name))?;
            Ok(Stopped {
                kind: "container",
                id: k.id.clone(),
                name: k.name.clone(),
            })
        }
        Target::Pod(p) => {
            c.runtime
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: p.id.clone(),
                })
                .await
                .rpc(&format!("stopping pod {}", p.name))?;
            Ok(Stopped {
                kind: "pod",
                id: p.id.clone(),
                name: p.name.clone(),
            })
        }
    }
}

/// Stops what `query` names.
pub async fn stop(c: &mut CriClient, query: &str, timeout: i64) -> Result<Stopped> {
    let t = common::resolve(c, query).await?;
    stop_target(c, &t, timeout).await
}

pub async fn cmd(a: StopArgs) -> Result<i32> {
    let f = async |c: &mut CriClient, q: &str| stop(c, q, a.timeout).await;
    common::each(&a.common, &a.ids, f, |s| &s.id).await
}
