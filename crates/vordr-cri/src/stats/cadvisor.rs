//! ListMetricDescriptors and ListPodSandboxMetrics: the stats cache as
//! cAdvisor's metrics (names, help and labels of kubelet's
//! `/metrics/cadvisor`), so kubelet can serve that endpoint from the
//! runtime. Label values follow cAdvisor: `id` is the cgroup path, `name`
//! the container id, `container` the container's name (`POD` for the
//! pod's own network metrics). CRI metric values are integers: seconds are
//! whole seconds, as CRI-O reports them.

use k8s_cri::v1::{
    ContainerMetrics, Metric, MetricDescriptor, MetricType, PodSandboxMetrics, UInt64Value,
};

use super::{ContainerEntry, PodEntry};

/// Labels of every metric, in order.
const BASE: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

/// What each metric is: name, help, counter or gauge, extra label keys.
struct Def {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    extra: &'static [&'static str],
}

const fn def(
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    extra: &'static [&'static str],
) -> Def {
    Def {
        name,
        help,
        kind,
        extra,
    }
}

use MetricType::{Counter, Gauge};

const CPU_USAGE: Def = def(
    "container_cpu_usage_seconds_total",
    "Cumulative cpu time consumed in seconds.",
    Counter,
    &["cpu"],
);
const CPU_USER: Def = def(
    "container_cpu_user_seconds_total",
    "Cumulative user cpu time consumed in seconds.",
    Counter,
    &[],
);
const CPU_SYSTEM: Def = def(
    "container_cpu_system_seconds_total",
    "Cumulative system cpu time consumed in seconds.",
    Counter,
    &[],
);
const MEM_USAGE: Def = def(
    "container_memory_usage_bytes",
    "Current memory usage in bytes, including all memory regardless of when it was accessed",
    Gauge,
    &[],
);
const MEM_WORKING_SET: Def = def(
    "container_memory_working_set_bytes",
    "Current working set in bytes.",
    Gauge,
    &[],
);
const MEM_RSS: Def = def("container_memory_rss", "Size of RSS in bytes.", Gauge, &[]);
const MEM_CACHE: Def = def(
    "container_memory_cache",
    "Number of bytes of page cache memory.",
    Gauge,
    &[],
);
const MEM_SWAP: Def = def(
    "container_memory_swap",
    "Container swap usage in bytes.",
    Gauge,
    &[],
);
const MEM_FAILCNT: Def = def(
    "container_memory_failcnt",
    "Number of memory usage hits limits",
    Counter,
    &[],
);
const MEM_FAILURES: Def = def(
    "container_memory_failures_total",
    "Cumulative count of memory allocation failures.",
    Counter,
    &["failure_type", "scope"],
);
const SPEC_MEM_LIMIT: Def = def(
    "container_spec_memory_limit_bytes",
    "Memory limit for the container.",
    Gauge,
    &[],
);
const PROCESSES: Def = def(
    "container_processes",
    "Number of processes running inside the container.",
    Gauge,
    &[],
);
const FS_USAGE: Def = def(
    "container_fs_usage_bytes",
    "Number of bytes that are consumed by the container on this filesystem.",
    Gauge,
    &["device"],
);
const FS_INODES: Def = def(
    "container_fs_inodes_used",
    "Number of inodes used by the container on this filesystem.",
    Gauge,
    &["device"],
);
const NET_RX_BYTES: Def = def(
    "container_network_receive_bytes_total",
    "Cumulative count of bytes received",
    Counter,
    &["interface"],
);
const NET_RX_PACKETS: Def = def(
    "container_network_receive_packets_total",
    "Cumulative count of packets received",
    Counter,
    &["interface"],
);
const NET_RX_DROPPED: Def = def(
    "container_network_receive_packets_dropped_total",
    "Cumulative count of packets dropped while receiving",
    Counter,
    &["interface"],
);
const NET_RX_ERRORS: Def = def(
    "container_network_receive_errors_total",
    "Cumulative count of errors encountered while receiving",
    Counter,
    &["interface"],
);
const NET_TX_BYTES: Def = def(
    "container_network_transmit_bytes_total",
    "Cumulative count of bytes transmitted",
    Counter,
    &["interface"],
);
const NET_TX_PACKETS: Def = def(
    "container_network_transmit_packets_total",
    "Cumulative count of packets transmitted",
    Counter,
    &["interface"],
);
const NET_TX_DROPPED: Def = def(
    "container_network_transmit_packets_dropped_total",
    "Cumulative count of packets dropped while transmitting",
    Counter,
    &["interface"],
);
const NET_TX_ERRORS: Def = def(
    "container_network_transmit_errors_total",
    "Cumulative count of errors encountered while transmitting",
    Counter,
    &["interface"],
);

/// Pressure stall metrics (cAdvisor's `PressureMetrics`, kubelet's
/// KubeletPSI): `waiting` is the `some` line, `stalled` the `full` one.
const PSI_CPU_STALLED: Def = def(
    "container_pressure_cpu_stalled_seconds_total",
    "Total time duration no tasks in the container could make progress due to CPU congestion.",
    Counter,
    &[],
);
const PSI_CPU_WAITING: Def = def(
    "container_pressure_cpu_waiting_seconds_total",
    "Total time duration tasks in the container have waited due to CPU congestion.",
    Counter,
    &[],
);
const PSI_MEM_STALLED: Def = def(
    "container_pressure_memory_stalled_seconds_total",
    "Total time duration no tasks in the container could make progress due to memory congestion.",
    Counter,
    &[],
);
const PSI_MEM_WAITING: Def = def(
    "container_pressure_memory_waiting_seconds_total",
    "Total time duration tasks in the container have waited due to memory congestion.",
    Counter,
    &[],
);
const PSI_IO_STALLED: Def = def(
    "container_pressure_io_stalled_seconds_total",
    "Total time duration no tasks in the container could make progress due to IO congestion.",
    Counter,
    &[],
);
const PSI_IO_WAITING: Def = def(
    "container_pressure_io_waiting_seconds_total",
    "Total time duration tasks in the container have waited due to IO congestion.",
    Counter,
    &[],
);

const ALL: [&Def; 29] = [
    &CPU_USAGE,
    &CPU_USER,
    &CPU_SYSTEM,
    &MEM_USAGE,
    &MEM_WORKING_SET,
    &MEM_RSS,
    &MEM_CACHE,
    &MEM_SWAP,
    &MEM_FAILCNT,
    &MEM_FAILURES,
    &SPEC_MEM_LIMIT,
    &PROCESSES,
    &FS_USAGE,
    &FS_INODES,
    &NET_RX_BYTES,
    &NET_RX_PACKETS,
    &NET_RX_DROPPED,
    &NET_RX_ERRORS,
    &NET_TX_BYTES,
    &NET_TX_PACKETS,
    &NET_TX_DROPPED,
    &NET_TX_ERRORS,
    &Def {
        name: "container_last_seen",
        help: "Last time a container was seen by the exporter",
        kind: Gauge,
        extra: &[],
    },
    &PSI_CPU_STALLED,
    &PSI_CPU_WAITING,
    &PSI_MEM_STALLED,
    &PSI_MEM_WAITING,
    &PSI_IO_STALLED,
    &PSI_IO_WAITING,
];

/// Every metric ListPodSandboxMetrics can return.
pub fn descriptors() -> Vec<MetricDescriptor> {
    ALL.iter()
        .map(|d| MetricDescriptor {
            name: d.name.into(),
            help: d.help.into(),
            label_keys: BASE.iter().chain(d.extra).map(|k| k.to_string()).collect(),
        })
        .collect()
}

const NS_PER_S: u64 = 1_000_000_000;

/// Collects metrics sharing one set of base label values.
struct Out<'a> {
    base: [&'a str; 6],
    at: i64,
    metrics: Vec<Metric>,
}

impl Out<'_> {
    fn push(&mut self, d: &Def, extra: &[&str], value: u64) {
        debug_assert_eq!(extra.len(), d.extra.len(), "{}", d.name);
        self.metrics.push(Metric {
            name: d.name.into(),
            timestamp: self.at,
            metric_type: d.kind as i32,
            label_values: self
                .base
                .iter()
                .chain(extra)
                .map(|v| v.to_string())
                .collect(),
            value: Some(UInt64Value { value }),
        });
    }
}

/// The metrics of one container.
fn container_metrics(p: &PodEntry, c: &ContainerEntry, fs_mount: &str) -> ContainerMetrics {
    let cgroup_path = c
        .cgroup_path
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut out = Out {
        base: [
            &c.name,
            &cgroup_path,
            &c.image,
            &c.id,
            &p.pod.namespace,
            &p.pod.name,
        ],
        at: c.at,
        metrics: Vec::new(),
    };
    if let Some(s) = &c.cgroup {
        out.push(&CPU_USAGE, &["total"], s.cpu_ns / NS_PER_S);
        out.push(&CPU_USER, &[], s.cpu_user_ns / NS_PER_S);
        out.push(&CPU_SYSTEM, &[], s.cpu_system_ns / NS_PER_S);
        out.push(&MEM_USAGE, &[], s.memory_usage);
        out.push(&MEM_WORKING_SET, &[], s.working_set);
        out.push(&MEM_RSS, &[], s.rss);
        out.push(&MEM_CACHE, &[], s.cache);
        if let Some(swap) = s.swap {
            out.push(&MEM_SWAP, &[], swap);
        }
        out.push(&MEM_FAILCNT, &[], s.memory_failcnt);
        for scope in ["container", "hierarchy"] {
            out.push(&MEM_FAILURES, &["pgfault", scope], s.page_faults);
            out.push(&MEM_FAILURES, &["pgmajfault", scope], s.major_page_faults);
        }
        out.push(&SPEC_MEM_LIMIT, &[], s.memory_limit.unwrap_or(0));
        if let Some(n) = s.pids {
            out.push(&PROCESSES, &[], n);
        }
        out.push(ALL[22], &[], u64::try_from(c.at).unwrap_or(0) / NS_PER_S);
        for (pressure, stalled, waiting) in [
            (s.psi.cpu, &PSI_CPU_STALLED, &PSI_CPU_WAITING),
            (s.psi.memory, &PSI_MEM_STALLED, &PSI_MEM_WAITING),
            (s.psi.io, &PSI_IO_STALLED, &PSI_IO_WAITING),
        ] {
            if let Some(p) = pressure {
                let full = p.full.map_or(0, |l| l.total_ns);
                out.push(stalled, &[], full / NS_PER_S);
                out.push(waiting, &[], p.some.total_ns / NS_PER_S);
            }
        }
    }
    if let Some(fs) = c.fs {
        out.push(&FS_USAGE, &[fs_mount], fs.bytes);
        out.push(&FS_INODES, &[fs_mount], fs.inodes);
    }
    ContainerMetrics {
        container_id: c.id.clone(),
        metrics: out.metrics,
    }
}

/// The metrics of one pod: its network as the `POD` container, and each
/// of its containers'.
pub fn pod_metrics(
    p: &PodEntry,
    containers: &[&ContainerEntry],
    fs_mount: &str,
) -> PodSandboxMetrics {
    let mut out = Out {
        base: [
            "POD",
            &p.pod.cgroup_parent,
            "",
            &p.pod.id,
            &p.pod.namespace,
            &p.pod.name,
        ],
        at: p.at,
        metrics: Vec::new(),
    };
    for i in p.net.iter().flatten() {
        let n = [i.name.as_str()];
        out.push(&NET_RX_BYTES, &n, i.rx_bytes);
        out.push(&NET_RX_PACKETS, &n, i.rx_packets);
        out.push(&NET_RX_DROPPED, &n, i.rx_dropped);
        out.push(&NET_RX_ERRORS, &n, i.rx_errors);
        out.push(&NET_TX_BYTES, &n, i.tx_bytes);
        out.push(&NET_TX_PACKETS, &n, i.tx_packets);
        out.push(&NET_TX_DROPPED, &n, i.tx_dropped);
        out.push(&NET_TX_ERRORS, &n, i.tx_errors);
    }
    PodSandboxMetrics {
        pod_sandbox_id: p.pod.id.clone(),
        metrics: out.metrics,
        container_metrics: containers
            .iter()
            .map(|c| container_metrics(p, c, fs_mount))
            .collect(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::stats::cgroup::{CgroupSample, Pressure, Psi, PsiLine};
    use crate::stats::net::IfaceSample;
    use crate::stats::FsSample;

    /// A pod with one interface and no cgroup of its own.
    pub(crate) fn pod() -> PodEntry {
        PodEntry {
            pod: Arc::new(vordr_store::PodRecord {
                id: "p1".into(),
                name: "web".into(),
                namespace: "default".into(),
                uid: "u".into(),
                attempt: 0,
                state: vordr_store::PodState::Ready,
                created_at: 1,
                runtime_handler: String::new(),
                config: "{}".into(),
                labels: "{}".into(),
                annotations: "{}".into(),
                host_network: false,
                netns_path: None,
                ipc_path: None,
                uts_path: None,
                network_attached: true,
                cgroup_parent: "/kubepods/podu".into(),
                network: String::new(),
                ip: None,
            }),
            labels: HashMap::new(),
            annotations: HashMap::new(),
            at: 5,
            net: Some(vec![IfaceSample {
                name: "eth0".into(),
                rx_bytes: 10,
                ..Default::default()
            }]),
            cgroup: None,
            nano_cores: None,
        }
    }

    /// A running container of `pod()`.
    pub(crate) fn container() -> ContainerEntry {
        ContainerEntry {
            id: "c1".into(),
            pod_id: "p1".into(),
            name: "app".into(),
            attempt: 0,
            image: "busybox:1".into(),
            labels: HashMap::new(),
            annotations: HashMap::new(),
            at: 3_000_000_000,
            cgroup: Some(CgroupSample {
                cpu_ns: 2_500_000_000,
                swap: Some(1),
                pids: Some(2),
                psi: Psi {
                    cpu: Some(Pressure {
                        some: PsiLine {
                            total_ns: 3_200_000_000,
                            ..Default::default()
                        },
                        full: Some(PsiLine {
                            total_ns: 1_100_000_000,
                            ..Default::default()
                        }),
                    }),
                    memory: Some(Pressure::default()),
                    io: Some(Pressure::default()),
                },
                ..Default::default()
            }),
            nano_cores: Some(1),
            fs: Some(FsSample {
                at: 1,
                bytes: 4096,
                inodes: 1,
            }),
            cgroup_path: Some("/kubepods/podu/vordr-c1".into()),
        }
    }

    #[test]
    fn every_metric_has_its_descriptor_and_labels() {
        let descs: HashMap<String, MetricDescriptor> = descriptors()
            .into_iter()
            .map(|d| (d.name.clone(), d))
            .collect();
        assert_eq!(descs.len(), ALL.len(), "names are unique");
        let (p, c) = (pod(), container());
        let m = pod_metrics(&p, &[&c], "/var/lib/vordr/containers");
        let all: Vec<&Metric> = m
            .metrics
            .iter()
            .chain(m.container_metrics.iter().flat_map(|c| &c.metrics))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for metric in &all {
            let d = descs
                .get(&metric.name)
                .unwrap_or_else(|| panic!("{}", metric.name));
            assert_eq!(
                d.label_keys.len(),
                metric.label_values.len(),
                "{}",
                metric.name
            );
            seen.insert(metric.name.clone());
        }
        assert_eq!(seen.len(), ALL.len(), "every descriptor is used");
        let cpu = all
            .iter()
            .find(|m| m.name == "container_cpu_usage_seconds_total")
            .unwrap();
        assert_eq!(cpu.value.as_ref().unwrap().value, 2, "whole seconds");
        assert_eq!(
            cpu.label_values,
            [
                "app",
                "/kubepods/podu/vordr-c1",
                "busybox:1",
                "c1",
                "default",
                "web",
                "total"
            ]
        );
        assert_eq!(cpu.metric_type, MetricType::Counter as i32);
        let rx = all
            .iter()
            .find(|m| m.name == "container_network_receive_bytes_total")
            .unwrap();
        assert_eq!(rx.label_values[0], "POD");
        assert_eq!(rx.label_values[6], "eth0");
        let value = |name: &str| {
            let m = all.iter().find(|m| m.name == name).unwrap();
            m.value.as_ref().unwrap().value
        };
        assert_eq!(value("container_pressure_cpu_waiting_seconds_total"), 3);
        assert_eq!(value("container_pressure_cpu_stalled_seconds_total"), 1);
    }
}
