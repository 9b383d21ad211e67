//! Cache entries as the CRI's ContainerStats and PodSandboxStats.

use k8s_cri::v1::*;

use super::{ContainerEntry, PodEntry};

fn v(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

/// The CRI stats of one container; `fs_mount` is the filesystem holding
/// the writable layers.
pub fn container_stats(e: &ContainerEntry, fs_mount: &str) -> ContainerStats {
    let cg = e.cgroup.as_ref();
    ContainerStats {
        attributes: Some(ContainerAttributes {
            id: e.id.clone(),
            metadata: Some(ContainerMetadata {
                name: e.name.clone(),
                attempt: e.attempt,
            }),
            labels: e.labels.clone(),
            annotations: e.annotations.clone(),
        }),
        cpu: cg.map(|s| CpuUsage {
            timestamp: e.at,
            usage_core_nano_seconds: v(s.cpu_ns),
            usage_nano_cores: e.nano_cores.and_then(v),
            ..Default::default()
        }),
        memory: cg.map(|s| MemoryUsage {
            timestamp: e.at,
            working_set_bytes: v(s.working_set),
            available_bytes: s.available().and_then(v),
            usage_bytes: v(s.memory_usage),
            rss_bytes: v(s.rss),
            page_faults: v(s.page_faults),
            major_page_faults: v(s.major_page_faults),
            ..Default::default()
        }),
        swap: cg.and_then(|s| s.swap).map(|swap| SwapUsage {
            timestamp: e.at,
            swap_usage_bytes: v(swap),
            ..Default::default()
        }),
        writable_layer: e.fs.map(|fs| FilesystemUsage {
            timestamp: fs.at,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: fs_mount.to_string(),
            }),
            used_bytes: v(fs.bytes),
            inodes_used: v(fs.inodes),
        }),
        ..Default::default()
    }
}

/// Sums one counter over the containers that report it.
fn sum(cs: &[&ContainerEntry], f: impl Fn(&ContainerEntry) -> Option<u64>) -> Option<u64> {
    cs.iter()
        .filter_map(|c| f(c))
        .fold(None, |acc, x| Some(acc.unwrap_or(0).saturating_add(x)))
}

fn net_usage(p: &PodEntry) -> Option<NetworkUsage> {
    let ifaces: Vec<NetworkInterfaceUsage> = p
        .net
        .as_ref()?
        .iter()
        .map(|i| NetworkInterfaceUsage {
            name: i.name.clone(),
            rx_bytes: v(i.rx_bytes),
            rx_errors: v(i.rx_errors),
            tx_bytes: v(i.tx_bytes),
            tx_errors: v(i.tx_errors),
        })
        .collect();
    // kubelet's default interface is eth0 (the CNI convention).
    let default = ifaces
        .iter()
        .find(|i| i.name == "eth0")
        .or(ifaces.first())
        .cloned();
    Some(NetworkUsage {
        timestamp: p.at,
        default_interface: default,
        interfaces: ifaces,
    })
}

/// The CRI stats of one pod: its containers' own and their sums, its
/// network, its processes.
pub fn pod_stats(p: &PodEntry, containers: &[&ContainerEntry], fs_mount: &str) -> PodSandboxStats {
    let running: Vec<&ContainerEntry> = containers
        .iter()
        .copied()
        .filter(|c| c.cgroup.is_some())
        .collect();
    let cg = |f: fn(&super::cgroup::CgroupSample) -> u64| {
        move |c: &ContainerEntry| c.cgroup.as_ref().map(f)
    };
    let at = running.iter().map(|c| c.at).max().unwrap_or(p.at);
    let cpu = sum(&running, cg(|s| s.cpu_ns)).map(|ns| CpuUsage {
        timestamp: at,
        usage_core_nano_seconds: v(ns),
        usage_nano_cores: sum(&running, |c| c.nano_cores).and_then(v),
        ..Default::default()
    });
    let memory = sum(&running, cg(|s| s.memory_usage)).map(|usage| MemoryUsage {
        timestamp: at,
        working_set_bytes: sum(&running, cg(|s| s.working_set)).and_then(v),
        usage_bytes: v(usage),
        rss_bytes: sum(&running, cg(|s| s.rss)).and_then(v),
        page_faults: sum(&running, cg(|s| s.page_faults)).and_then(v),
        major_page_faults: sum(&running, cg(|s| s.major_page_faults)).and_then(v),
        ..Default::default()
    });
    let process = Some(ProcessUsage {
        timestamp: at,
        process_count: v(sum(&running, |c| c.cgroup.as_ref()?.pids).unwrap_or(0)),
    });
    PodSandboxStats {
        attributes: Some(PodSandboxAttributes {
            id: p.pod.id.clone(),
            metadata: Some(PodSandboxMetadata {
                name: p.pod.name.clone(),
                uid: p.pod.uid.clone(),
                namespace: p.pod.namespace.clone(),
                attempt: p.pod.attempt,
            }),
            labels: p.labels.clone(),
            annotations: p.annotations.clone(),
        }),
        linux: Some(LinuxPodSandboxStats {
            cpu,
            memory,
            network: net_usage(p),
            process,
            containers: containers
                .iter()
                .map(|c| container_stats(c, fs_mount))
                .collect(),
            ..Default::default()
        }),
        windows: None,
    }
}
