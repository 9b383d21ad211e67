//! `vordr ps`: containers (running ones, or all with `-a`), by pod and
//! labels; `vordr pods`: pod sandboxes.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use vordr_client::{cri, CriClient};

use super::common::{self, key_value, short, table, Common, Rpc};

#[derive(Args, Debug)]
pub struct PsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Every container, exited ones too.
    #[arg(short, long)]
    pub all: bool,
    /// Only the containers of this pod (id, id prefix or name).
    #[arg(long)]
    pub pod: Option<String>,
    /// Only containers with this label (repeatable; all must match).
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// Only the ids.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Which containers [`ps`] lists.
#[derive(Debug, Default, Clone)]
pub struct PsFilter {
    pub all: bool,
    /// A pod id, id prefix or name.
    pub pod: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// One container as `ps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerRow {
    pub id: String,
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub image_ref: String,
    pub state: &'static str,
    /// RFC 3339.
    pub created: String,
    #[serde(skip)]
    pub created_ns: i64,
    pub pod_id: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// The containers `f` selects, newest first.
pub async fn ps(c: &mut CriClient, f: &PsFilter) -> Result<Vec<ContainerRow>> {
    let pod_sandbox_id = match &f.pod {
        Some(q) => common::resolve_pod(c, q).await?.id,
        None => String::new(),
    };
    let state = (!f.all).then_some(cri::ContainerStateValue {
        state: cri::ContainerState::ContainerRunning as i32,
    });
    let containers = c
        .runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                id: String::new(),
                state,
                pod_sandbox_id,
                label_selector: f.labels.clone().into_iter().collect(),
            }),
        })
        .await
        .rpc("listing containers")?
        .containers;
    let pods: HashMap<String, cri::PodSandboxMetadata> = c
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .rpc("listing pods")?
        .items
        .into_iter()
        .map(|p| (p.id, p.metadata.unwrap_or_default()))
        .collect();
    let mut rows: Vec<ContainerRow> = containers
        .into_iter()
        .map(|k| {
            let md = k.metadata.unwrap_or_default();
            let pod = pods.get(&k.pod_sandbox_id).cloned().unwrap_or_default();
            // What was asked for (kubelet and `vordr run` say), else the id.
            let image = k
                .image
                .map(|i| {
                    if i.user_specified_image.is_empty() {
                        i.image
                    } else {
                        i.user_specified_image
                    }
                })
                .unwrap_or_default();
            ContainerRow {
                id: k.id,
                name: md.name,
                attempt: md.attempt,
                image,
                image_ref: k.image_ref,
                state: common::container_state(k.state),
                created: common::rfc3339(k.created_at),
                created_ns: k.created_at,
                pod_id: k.pod_sandbox_id,
                pod_name: pod.name,
                pod_namespace: pod.namespace,
                labels: k.labels.into_iter().collect(),
            }
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.created_ns));
    Ok(rows)
}

pub async fn cmd(a: PsArgs) -> Result<i32> {
    let mut c = a.common.connect().await?;
    let f = PsFilter {
        all: a.all,
        pod: a.pod,
        labels: a.labels.into_iter().collect(),
    };
    let rows = ps(&mut c, &f).await?;
    if a.common.json {
        common::print_json(&rows)?;
    } else if a.quiet {
        for r in rows {
            println!("{}", r.id);
        }
    } else {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    short(&r.id).to_string(),
                    r.image.clone(),
                    common::ago(r.created_ns),
                    r.state.to_string(),
                    r.name.clone(),
                    r.attempt.to_string(),
                    short(&r.pod_id).to_string(),
                    r.pod_name.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "CONTAINER",
                    "IMAGE",
                    "CREATED",
                    "STATE",
                    "NAME",
                    "ATTEMPT",
                    "POD ID",
                    "POD"
                ],
                &cells
            )
        );
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct PodsArgs {
    #[command(flatten)]
    pub common: Common,
}

/// One pod as `pods` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PodRow {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub state: &'static str,
    pub created: String,
    pub runtime_handler: String,
    pub labels: BTreeMap<String, String>,
}

/// Every pod sandbox.
pub async fn pods(c: &mut CriClient) -> Result<Vec<PodRow>> {
    let items = c
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .rpc("listing pods")?
        .items;
    Ok(items
        .into_iter()
        .map(|p| {
            let md = p.metadata.unwrap_or_default();
            PodRow {
                id: p.id,
                name: md.name,
                namespace: md.namespace,
                uid: md.uid,
                attempt: md.attempt,
                state: common::pod_state(p.state),
                created: common::rfc3339(p.created_at),
                runtime_handler: p.runtime_handler,
                labels: p.labels.into_iter().collect(),
            }
        })
        .collect())
}

pub async fn pods_cmd(a: PodsArgs) -> Result<i32> {
    let mut c = a.common.connect().await?;
    let rows = pods(&mut c).await?;
    if a.common.json {
        common::print_json(&rows)?;
        return Ok(0);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|p| {
            vec![
                short(&p.id).to_string(),
                p.state.to_string(),
                p.name.clone(),
                p.namespace.clone(),
                p.attempt.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["POD ID", "STATE", "NAME", "NAMESPACE", "ATTEMPT"], &cells)
    );
    Ok(0)
}
