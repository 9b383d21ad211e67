//! Cache entries as the CRI's ContainerStats and PodSandboxStats.

use k8s_cri::v1::*;

use super::cgroup::{CgroupSample, Pressure, PsiLine};
use super::{ContainerEntry, PodEntry};

fn v(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

fn psi_data(l: &PsiLine) -> PsiData {
    PsiData {
        total: l.total_ns,
        avg10: l.avg10,
        avg60: l.avg60,
        avg300: l.avg300,
    }
}

/// A pressure file as CRI's PsiStats (a missing `full` line as zeros).
fn psi(p: Option<Pressure>) -> Option<PsiStats> {
    p.map(|p| PsiStats {
        full: Some(p.full.as_ref().map(psi_data).unwrap_or_default()),
        some: Some(psi_data(&p.some)),
    })
}

/// The cgroup's I/O pressure; I/O has nothing else in the CRI.
fn io_usage(at: i64, s: &CgroupSample) -> Option<IoUsage> {
    s.psi.io.map(|p| IoUsage {
        timestamp: at,
        psi: psi(Some(p)),
    })
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
        cpu: cg.map(|s| cpu_usage(e.at, s, e.nano_cores)),
        memory: cg.map(|s| memory_usage(e.at, s)),
        io: cg.and_then(|s| io_usage(e.at, s)),
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

/// A cgroup's CPU use at `at`, with its rate when there is one.
fn cpu_usage(at: i64, s: &CgroupSample, nano_cores: Option<u64>) -> CpuUsage {
    CpuUsage {
        timestamp: at,
        usage_core_nano_seconds: v(s.cpu_ns),
        usage_nano_cores: nano_cores.and_then(v),
        psi: psi(s.psi.cpu),
    }
}

/// A cgroup's memory use at `at`.
fn memory_usage(at: i64, s: &CgroupSample) -> MemoryUsage {
    MemoryUsage {
        timestamp: at,
        working_set_bytes: v(s.working_set),
        available_bytes: s.available().and_then(v),
        usage_bytes: v(s.memory_usage),
        rss_bytes: v(s.rss),
        page_faults: v(s.page_faults),
        major_page_faults: v(s.major_page_faults),
        psi: psi(s.psi.memory),
    }
}

/// What a pod uses: CPU, memory, I/O pressure and processes.
type PodUsage = (
    Option<CpuUsage>,
    Option<MemoryUsage>,
    Option<IoUsage>,
    Option<ProcessUsage>,
);

/// A pod's use from its own cgroup.
fn pod_usage_from_cgroup(p: &PodEntry, s: &CgroupSample) -> PodUsage {
    let process = ProcessUsage {
        timestamp: p.at,
        process_count: v(s.pids.unwrap_or(0)),
    };
    (
        Some(cpu_usage(p.at, s, p.nano_cores)),
        Some(memory_usage(p.at, s)),
        io_usage(p.at, s),
        Some(process),
    )
}

/// A pod's CPU, memory and process counts as its running containers' sums.
/// Pressure is not summed: it is a share of time, not a quantity.
fn pod_usage_summed(p: &PodEntry, containers: &[&ContainerEntry]) -> PodUsage {
    let running: Vec<&ContainerEntry> = containers
        .iter()
        .copied()
        .filter(|c| c.cgroup.is_some())
        .collect();
    let cg = |f: fn(&CgroupSample) -> u64| move |c: &ContainerEntry| c.cgroup.as_ref().map(f);
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
    (cpu, memory, None, process)
}

/// The CRI stats of one pod: CPU, memory and processes from the pod's own
/// cgroup (what its containers and its overhead use, as containerd reads
/// the sandbox's cgroup parent), or its running containers' sums where it
/// has none to itself; its network; each container's own.
pub fn pod_stats(p: &PodEntry, containers: &[&ContainerEntry], fs_mount: &str) -> PodSandboxStats {
    let (cpu, memory, io, process) = match &p.cgroup {
        Some(s) => pod_usage_from_cgroup(p, s),
        None => pod_usage_summed(p, containers),
    };
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
            io,
            containers: containers
                .iter()
                .map(|c| container_stats(c, fs_mount))
                .collect(),
        }),
        windows: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::cadvisor::tests::{container, pod};

    fn usage(s: &PodSandboxStats) -> (u64, u64, u64, Option<u64>) {
        let l = s.linux.as_ref().unwrap();
        let val = |x: &Option<UInt64Value>| x.as_ref().map(|v| v.value);
        (
            val(&l.cpu.as_ref().unwrap().usage_core_nano_seconds).unwrap(),
            val(&l.memory.as_ref().unwrap().usage_bytes).unwrap(),
            val(&l.process.as_ref().unwrap().process_count).unwrap(),
            val(&l.cpu.as_ref().unwrap().usage_nano_cores),
        )
    }

    #[test]
    fn a_pod_with_its_own_cgroup_reports_it_else_its_containers_sums() {
        let (a, mut b) = (container(), container());
        b.id = "c2".into();
        if let Some(cg) = b.cgroup.as_mut() {
            cg.memory_usage = 10;
        }
        let mut p = pod();
        // No cgroup of its own: the two containers' sums.
        let s = pod_stats(&p, &[&a, &b], "/m");
        assert_eq!(usage(&s), (5_000_000_000, 10, 4, Some(2)));
        assert_eq!(s.linux.unwrap().containers.len(), 2);
        // Its own cgroup (containers plus overhead) wins.
        p.cgroup = Some(CgroupSample {
            cpu_ns: 6_000_000_000,
            memory_usage: 100,
            working_set: 90,
            pids: Some(5),
            memory_limit: Some(1000),
            ..Default::default()
        });
        p.nano_cores = Some(7);
        let s = pod_stats(&p, &[&a, &b], "/m");
        assert_eq!(usage(&s), (6_000_000_000, 100, 5, Some(7)));
        let m = s.linux.unwrap().memory.unwrap();
        assert_eq!(m.available_bytes.map(|v| v.value), Some(910));
        assert_eq!(m.timestamp, p.at);
    }
}
