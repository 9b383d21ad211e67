//! ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats:
//! CPU and memory read from the container's cgroup (v1 or v2), writable
//! layer usage from its upper dir.

use std::collections::HashMap;
use std::path::Path;

use k8s_cri::v1::*;
use tonic::Status;
use vordr_store::{ContainerRecord, ContainerState};

use crate::state::errors::internal;
use crate::state::ids::now_ns;
use crate::state::Runtime;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn stat_field(p: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(p)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// (cpu nanoseconds, memory usage, working set) of a cgroup, v1 or v2.
pub fn cgroup_usage(cgroup: &Path) -> Option<(u64, u64, u64)> {
    let rel = cgroup.strip_prefix("/").unwrap_or(cgroup);
    let root = Path::new(CGROUP_ROOT);
    let v1_cpu = root.join("cpuacct").join(rel).join("cpuacct.usage");
    if let Some(cpu) = read_u64(&v1_cpu) {
        let mem = root.join("memory").join(rel);
        let usage = read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0);
        let inactive = stat_field(&mem.join("memory.stat"), "total_inactive_file").unwrap_or(0);
        return Some((cpu, usage, usage.saturating_sub(inactive)));
    }
    let v2 = root.join(rel);
    let cpu = stat_field(&v2.join("cpu.stat"), "usage_usec")? * 1000;
    let usage = read_u64(&v2.join("memory.current")).unwrap_or(0);
    let inactive = stat_field(&v2.join("memory.stat"), "inactive_file").unwrap_or(0);
    Some((cpu, usage, usage.saturating_sub(inactive)))
}

/// Bytes and inodes under `dir`, not following symlinks or other mounts.
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut inodes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.metadata() else { continue };
            bytes += md.blocks() * 512;
            inodes += 1;
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

/// The labels of a container, from their own column.
fn labels_of(c: &ContainerRecord) -> HashMap<String, String> {
    serde_json::from_str(&c.labels).unwrap_or_default()
}

/// Stats of `c`, whose pod's cgroup parent is `cgroup_parent`.
fn stats_of(rt: &Runtime, c: &ContainerRecord, cgroup_parent: &str) -> ContainerStats {
    let ts = now_ns();
    let usage = if c.state == ContainerState::Running {
        cgroup_usage(&vordr_spec::cgroups_path(cgroup_parent, &c.id))
    } else {
        None
    };
    let (bytes, inodes) = disk_usage(&rt.layout.container_dir(&c.id).join("upper"));
    ContainerStats {
        attributes: Some(ContainerAttributes {
            id: c.id.clone(),
            metadata: Some(ContainerMetadata {
                name: c.name.clone(),
                attempt: c.attempt,
            }),
            labels: labels_of(c),
            annotations: serde_json::from_str(&c.annotations).unwrap_or_default(),
        }),
        cpu: usage.map(|(cpu, _, _)| CpuUsage {
            timestamp: ts,
            usage_core_nano_seconds: Some(UInt64Value { value: cpu }),
            ..Default::default()
        }),
        memory: usage.map(|(_, u, ws)| MemoryUsage {
            timestamp: ts,
            working_set_bytes: Some(UInt64Value { value: ws }),
            usage_bytes: Some(UInt64Value { value: u }),
            ..Default::default()
        }),
        writable_layer: Some(FilesystemUsage {
            timestamp: ts,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: rt.layout.containers_dir().display().to_string(),
            }),
            used_bytes: Some(UInt64Value { value: bytes }),
            inodes_used: Some(UInt64Value { value: inodes }),
        }),
        ..Default::default()
    }
}

pub async fn container_stats(
    rt: &Runtime,
    req: ContainerStatsRequest,
) -> Result<ContainerStatsResponse, Status> {
    let c = rt.find_container(&req.container_id)?;
    let parent = rt
        .store
        .get_pod(&c.pod_id)
        .map_err(|e| internal("reading pod", e))?
        .map(|p| p.cgroup_parent)
        .unwrap_or_default();
    Ok(ContainerStatsResponse {
        stats: Some(stats_of(rt, &c, &parent)),
    })
}

pub async fn list_container_stats(
    rt: &Runtime,
    req: ListContainerStatsRequest,
) -> Result<ListContainerStatsResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let all = rt
        .store
        .list_containers()
        .map_err(|e| internal("listing containers", e))?;
    let parents: HashMap<String, String> = rt
        .store
        .list_pods()
        .map_err(|e| internal("listing pods", e))?
        .into_iter()
        .map(|p| (p.id, p.cgroup_parent))
        .collect();
    let stats = all
        .iter()
        .filter(|c| f.id.is_empty() || c.id.starts_with(&f.id))
        .filter(|c| f.pod_sandbox_id.is_empty() || c.pod_id.starts_with(&f.pod_sandbox_id))
        .filter(|c| {
            let labels = labels_of(c);
            f.label_selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .map(|c| stats_of(rt, c, parents.get(&c.pod_id).map_or("", String::as_str)))
        .collect();
    Ok(ListContainerStatsResponse { stats })
}

fn pod_stats(rt: &Runtime, pod: &vordr_store::PodRecord) -> Result<PodSandboxStats, Status> {
    let ts = now_ns();
    let containers: Vec<ContainerStats> = rt
        .store
        .pod_containers(&pod.id)
        .map_err(|e| internal("listing containers", e))?
        .iter()
        .map(|c| stats_of(rt, c, &pod.cgroup_parent))
        .collect();
    let sum = |f: &dyn Fn(&ContainerStats) -> Option<u64>| -> u64 {
        containers.iter().filter_map(f).sum()
    };
    let cpu = sum(&|c| {
        c.cpu
            .as_ref()?
            .usage_core_nano_seconds
            .as_ref()
            .map(|v| v.value)
    });
    let ws = sum(&|c| {
        c.memory
            .as_ref()?
            .working_set_bytes
            .as_ref()
            .map(|v| v.value)
    });
    let labels: HashMap<String, String> = serde_json::from_str(&pod.labels).unwrap_or_default();
    let annotations: HashMap<String, String> =
        serde_json::from_str(&pod.annotations).unwrap_or_default();
    Ok(PodSandboxStats {
        attributes: Some(PodSandboxAttributes {
            id: pod.id.clone(),
            metadata: Some(PodSandboxMetadata {
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                namespace: pod.namespace.clone(),
                attempt: pod.attempt,
            }),
            labels,
            annotations,
        }),
        linux: Some(LinuxPodSandboxStats {
            cpu: Some(CpuUsage {
                timestamp: ts,
                usage_core_nano_seconds: Some(UInt64Value { value: cpu }),
                ..Default::default()
            }),
            memory: Some(MemoryUsage {
                timestamp: ts,
                working_set_bytes: Some(UInt64Value { value: ws }),
                ..Default::default()
            }),
            containers,
            ..Default::default()
        }),
        windows: None,
    })
}

pub async fn pod_sandbox_stats(
    rt: &Runtime,
    req: PodSandboxStatsRequest,
) -> Result<PodSandboxStatsResponse, Status> {
    let pod = rt.find_pod(&req.pod_sandbox_id)?;
    Ok(PodSandboxStatsResponse {
        stats: Some(pod_stats(rt, &pod)?),
    })
}

pub async fn list_pod_sandbox_stats(
    rt: &Runtime,
    req: ListPodSandboxStatsRequest,
) -> Result<ListPodSandboxStatsResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let pods = rt
        .store
        .list_pods()
        .map_err(|e| internal("listing pods", e))?;
    let mut stats = Vec::new();
    for p in pods.iter().filter(|p| !p.state.is_pool()) {
        if !f.id.is_empty() && !p.id.starts_with(&f.id) {
            continue;
        }
        let labels: HashMap<String, String> = serde_json::from_str(&p.labels).unwrap_or_default();
        if !f
            .label_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            continue;
        }
        stats.push(pod_stats(rt, p)?);
    }
    Ok(ListPodSandboxStatsResponse { stats })
}
