//! `vordr inspect`: a container's or a pod's status with the runtime's
//! verbose info, as JSON.

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use vordr_client::{cri, CriClient};

use super::common::{self, Common, Rpc, Target};

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Containers or pods (id, id prefix or name).
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// What `inspect` shows of one container or pod.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// "container" or "pod".
    pub kind: &'static str,
    pub id: String,
    /// The CRI status (ContainerStatus or PodSandboxStatus).
    pub status: serde_json::Value,
    /// The verbose info, each value as JSON where it is JSON.
    pub info: serde_json::Map<String, serde_json::Value>,
}

fn info_json(
    info: std::collections::HashMap<String, String>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut sorted: Vec<(String, String)> = info.into_iter().collect();
    sorted.sort();
    sorted
        .into_iter()
        .map(|(k, v)| {
            let v = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
            (k, v)
        })
        .collect()
}

/// The status of what `query` names.
pub async fn inspect(c: &mut CriClient, query: &str) -> Result<Inspection> {
    match common::resolve(c, query).await? {
        Target::Container(k) => {
            let r = c
                .runtime
                .container_status(cri::ContainerStatusRequest {
                    container_id: k.id.clone(),
                    verbose: true,
                })
                .await
                .rpc(&format!("container {}", k.name))?;
            Ok(Inspection {
                kind: "container",
                id: k.id,
                status: serde_json::to_value(r.status.context("the runtime sent no status")?)?,
                info: info_json(r.info),
            })
        }
        Target::Pod(p) => {
            let r = c
                .runtime
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: p.id.clone(),
                    verbose: true,
                })
                .await
                .rpc(&format!("pod {}", p.name))?;
            Ok(Inspection {
                kind: "pod",
                id: p.id,
                status: serde_json::to_value(r.status.context("the runtime sent no status")?)?,
                info: info_json(r.info),
            })
        }
    }
}

pub async fn cmd(a: InspectArgs) -> Result<i32> {
    let mut c = a.common.connect().await?;
    let mut all = Vec::new();
    for q in &a.ids {
        all.push(inspect(&mut c, q).await?);
    }
    // One object for one id, a list for several (JSON either way).
    if all.len() == 1 {
        common::print_json(&all[0])?;
    } else {
        common::print_json(&all)?;
    }
    Ok(0)
}
