//! Stats and metrics end to end: ContainerStats, PodSandboxStats and
//! ListPodSandboxMetrics of real containers checked against their cgroup
//! files (a container that fills 64 MiB of memory, a busy loop's CPU
//! rate), the writable layer, the pod's network and processes, the list
//! filters, and metric descriptors covering every metric returned.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use vordr_e2e::setup::*;
use vordr_e2e::*;

/// A fast filesystem walk, so the test sees its writes within seconds.
const STATS: &str = "[stats]\ninterval = \"500ms\"\nfilesystem_interval = \"1s\"\n";

/// The cgroup of process `pid` as (v1 memory dir, v1 cpuacct dir) or the
/// v2 dir for both.
fn cgroup_dirs(pid: u32) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mut v2 = None;
    let (mut mem, mut cpu) = (None, None);
    for l in text.lines() {
        let mut p = l.splitn(3, ':');
        let (_, ctrls, path) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
        let path = path.trim_start_matches('/');
        if ctrls.split(',').any(|c| c == "memory") {
            mem = Some(PathBuf::from("/sys/fs/cgroup/memory").join(path));
        }
        if ctrls.split(',').any(|c| c == "cpuacct") {
            cpu = Some(PathBuf::from("/sys/fs/cgroup/cpuacct").join(path));
        }
        if ctrls.is_empty() {
            v2 = Some(PathBuf::from("/sys/fs/cgroup").join(path));
        }
    }
    match (mem, cpu) {
        (Some(m), Some(c)) => (m, c),
        _ => {
            let d = v2.expect("a cgroup");
            (d.clone(), d)
        }
    }
}

/// The cgroup v2 directory of process `pid`: in the unified tree, or in
/// the v2 hierarchy a hybrid host mounts beside the v1 controllers; `None`
/// when the process has none of its own there (the v2 root: on a hybrid
/// host, a runtime need not put containers in the v2 hierarchy).
fn v2_dir(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim_start_matches('/');
    if path.is_empty() {
        return None;
    }
    let hybrid = std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs");
    Some(match hybrid.exists() {
        true => PathBuf::from("/sys/fs/cgroup/unified").join(path),
        false => PathBuf::from("/sys/fs/cgroup").join(path),
    })
}

/// The `some` total of a pressure file, in nanoseconds.
fn psi_some_total_ns(file: PathBuf) -> u64 {
    let text = std::fs::read_to_string(&file).unwrap();
    let some = text.lines().find_map(|l| l.strip_prefix("some ")).unwrap();
    let total = some
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("total="))
        .unwrap();
    total.parse::<u64>().unwrap() * 1000
}

fn read_u64(p: PathBuf) -> u64 {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

fn stat_field(p: PathBuf, key: &str) -> u64 {
    std::fs::read_to_string(&p)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in {}", p.display()))
}

/// Memory usage and inactive file bytes from the files of `mem`.
fn memory_files(mem: &std::path::Path) -> (u64, u64) {
    if mem.join("memory.usage_in_bytes").exists() {
        (
            read_u64(mem.join("memory.usage_in_bytes")),
            stat_field(mem.join("memory.stat"), "total_inactive_file"),
        )
    } else {
        (
            read_u64(mem.join("memory.current")),
            stat_field(mem.join("memory.stat"), "inactive_file"),
        )
    }
}

/// CPU nanoseconds from the files of `cpu`.
fn cpu_file(cpu: &std::path::Path) -> u64 {
    if cpu.join("cpuacct.usage").exists() {
        read_u64(cpu.join("cpuacct.usage"))
    } else {
        stat_field(cpu.join("cpu.stat"), "usage_usec") * 1000
    }
}

async fn stats_of(c: &mut CriClient, id: &str) -> cri::ContainerStats {
    c.runtime
        .container_stats(cri::ContainerStatsRequest {
            container_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

/// Polls ContainerStats of `id` until `ok` holds (the cache refreshes in
/// the background).
async fn wait_stats(
    c: &mut CriClient,
    id: &str,
    what: &str,
    ok: impl Fn(&cri::ContainerStats) -> bool,
) -> cri::ContainerStats {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = stats_of(c, id).await;
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn v(x: &Option<cri::UInt64Value>) -> u64 {
    x.as_ref().expect("a value").value
}

#[tokio::test]
async fn stats_match_the_cgroup_files() {
    let Some(mut s) = setup_full("stats", STATS, "").await else {
        return;
    };
    let pod = s.pod("stats", "").await;
    // Listed at once, not at the cache's next refresh.
    assert_eq!(listed_pods(&mut s.c).await, [pod.0.as_str()]);
    // 64 MiB in /dev/shm (charged to the container, never inactive file),
    // 8 MiB in the writable layer.
    let mem = s
        .run(
            &pod,
            s.config(
                "mem",
                &[
                    "sh",
                    "-c",
                    "head -c 67108864 /dev/zero > /dev/shm/fill; \
                     head -c 8388608 /dev/urandom > /layerfile; sync; exec sleep 1000",
                ],
            ),
        )
        .await;
    let busy = s
        .run(&pod, s.config("busy", &["sh", "-c", "while :; do :; done"]))
        .await;
    let mem_pid = container_info(&mut s.c, &mem).await["pid"]
        .as_u64()
        .unwrap() as u32;
    let busy_pid = container_info(&mut s.c, &busy).await["pid"]
        .as_u64()
        .unwrap() as u32;

    // The writable layer: the 8 MiB file, counted in the background.
    let st = wait_stats(&mut s.c, &mem, "the 8 MiB layer file", |st| {
        st.writable_layer
            .as_ref()
            .is_some_and(|w| v(&w.used_bytes) >= 8 << 20)
    })
    .await;
    let w = st.writable_layer.unwrap();
    assert!(v(&w.inodes_used) >= 1, "{w:?}");
    assert!(!w.fs_id.unwrap().mountpoint.is_empty());
    // The shell has written both files and sleeps: a few refreshes later
    // its memory holds still.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Memory: usage and working set as the files say, within what a
    // sleeping shell's page cache moves in a second.
    let st = wait_stats(&mut s.c, &mem, "64 MiB never showed", |st| {
        st.memory
            .as_ref()
            .is_some_and(|m| v(&m.working_set_bytes) >= 64 << 20)
    })
    .await;
    let (mem_dir, _) = cgroup_dirs(mem_pid);
    let (usage, inactive) = memory_files(&mem_dir);
    let m = st.memory.as_ref().unwrap();
    let near = |a: u64, b: u64| a.abs_diff(b) <= 4 << 20;
    assert!(near(v(&m.usage_bytes), usage), "{m:?} vs usage {usage}");
    assert!(
        near(v(&m.working_set_bytes), usage - inactive),
        "{m:?} vs working set {}",
        usage - inactive
    );
    assert!(v(&m.page_faults) > 0, "{m:?}");
    assert!(
        m.rss_bytes.is_some() && m.major_page_faults.is_some(),
        "{m:?}"
    );
    // No limit: nothing available to report.
    assert!(m.available_bytes.is_none(), "{m:?}");
    assert_eq!(
        st.attributes
            .as_ref()
            .unwrap()
            .labels
            .get("c")
            .map(String::as_str),
        Some("mem")
    );

    // CPU: the busy loop's rate between two samples, and its total.
    let st = wait_stats(&mut s.c, &busy, "a CPU rate", |st| {
        st.cpu
            .as_ref()
            .is_some_and(|c| c.usage_nano_cores.is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st2 = stats_of(&mut s.c, &busy).await;
    let (_, cpu_dir) = cgroup_dirs(busy_pid);
    let file = cpu_file(&cpu_dir);
    let c = st2.cpu.as_ref().unwrap();
    let total = v(&c.usage_core_nano_seconds);
    assert!(
        total <= file && file - total < 3_000_000_000,
        "stats {total} vs cpuacct {file}"
    );
    let rate = v(&c.usage_nano_cores);
    // One core at most; on a busy 2-core machine, at least a fifth of one.
    assert!(
        (200_000_000..=1_100_000_000).contains(&rate),
        "busy loop at {rate} nanocores"
    );
    assert!(total > v(&st.cpu.unwrap().usage_core_nano_seconds));
    // Pressure stall information where the kernel keeps it for the cgroup
    // (its v2 directory): CPU, memory and I/O, never ahead of the files.
    let psi_dir = v2_dir(busy_pid).filter(|d| d.join("cpu.pressure").exists());
    if let Some(psi_dir) = psi_dir {
        for (kind, psi) in [
            ("cpu", c.psi.as_ref()),
            ("memory", st2.memory.as_ref().and_then(|m| m.psi.as_ref())),
            ("io", st2.io.as_ref().and_then(|i| i.psi.as_ref())),
        ] {
            let some = psi
                .and_then(|p| p.some.as_ref())
                .unwrap_or_else(|| panic!("{kind} psi: {st2:?}"));
            let file = psi_some_total_ns(psi_dir.join(format!("{kind}.pressure")));
            assert!(
                some.total <= file,
                "{kind}: {some:?} vs {file} ns in the file"
            );
            assert!((0.0..=100.0).contains(&some.avg10), "{kind}: {some:?}");
        }
    } else {
        eprintln!("the container has no cgroup v2 directory with PSI here: not checked");
    }

    // The pod: its own cgroup (the containers' parent), network, processes.
    let ps =
        s.c.runtime
            .pod_sandbox_stats(cri::PodSandboxStatsRequest {
                pod_sandbox_id: pod.0.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
    let linux = ps.linux.unwrap();
    assert_eq!(linux.containers.len(), 2);
    let pm = linux.memory.unwrap();
    assert!(v(&pm.working_set_bytes) >= 64 << 20, "{pm:?}");
    let (pod_usage, _) = memory_files(mem_dir.parent().unwrap());
    assert!(
        near(v(&pm.usage_bytes), pod_usage),
        "{pm:?} vs pod usage {pod_usage}"
    );
    let pod_cpu = cpu_file(cpu_dir.parent().unwrap());
    let pc = linux.cpu.unwrap();
    let pod_total = v(&pc.usage_core_nano_seconds);
    assert!(pod_total >= total);
    assert!(
        pod_total <= pod_cpu && pod_cpu - pod_total < 3_000_000_000,
        "pod stats {pod_total} vs the pod cgroup's {pod_cpu}"
    );
    assert!(pc.usage_nano_cores.is_some(), "{pc:?}");
    assert!(v(&linux.process.unwrap().process_count) >= 2);
    let net = linux.network.expect("the pod's network");
    let eth0 = net.default_interface.expect("a default interface");
    assert_eq!(eth0.name, "eth0");
    // The same counters the pod's namespace shows (they only grow).
    let dev = std::fs::read_to_string(format!("/proc/{mem_pid}/net/dev")).unwrap();
    let rx_now: u64 = dev
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("eth0:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap();
    assert!(v(&eth0.rx_bytes) <= rx_now, "{eth0:?} vs {rx_now}");

    // Filters: id, pod, labels.
    let client = s.c.clone();
    let list = |f: cri::ContainerStatsFilter| {
        let mut c = client.clone();
        async move {
            c.runtime
                .list_container_stats(cri::ListContainerStatsRequest { filter: Some(f) })
                .await
                .unwrap()
                .into_inner()
                .stats
                .into_iter()
                .map(|s| s.attributes.unwrap().id)
                .collect::<Vec<_>>()
        }
    };
    let mut both = vec![mem.clone(), busy.clone()];
    both.sort();
    assert_eq!(list(Default::default()).await, both);
    let by_pod = cri::ContainerStatsFilter {
        pod_sandbox_id: pod.0.clone(),
        ..Default::default()
    };
    assert_eq!(list(by_pod).await, both);
    let by_id = cri::ContainerStatsFilter {
        id: busy.clone(),
        ..Default::default()
    };
    assert_eq!(list(by_id).await, [busy.as_str()]);
    let by_label = cri::ContainerStatsFilter {
        label_selector: HashMap::from([("c".to_string(), "mem".to_string())]),
        ..Default::default()
    };
    assert_eq!(list(by_label).await, [mem.as_str()]);
    let other_pod = cri::ContainerStatsFilter {
        pod_sandbox_id: "nosuchpod".into(),
        ..Default::default()
    };
    assert!(list(other_pod).await.is_empty());

    // Metrics: every one has its descriptor, labels matching; the
    // container's memory as the stats say.
    let descs: HashMap<String, cri::MetricDescriptor> =
        s.c.runtime
            .list_metric_descriptors(cri::ListMetricDescriptorsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .descriptors
            .into_iter()
            .map(|d| (d.name.clone(), d))
            .collect();
    for name in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_memory_usage_bytes",
        "container_memory_rss",
        "container_cpu_user_seconds_total",
        "container_cpu_system_seconds_total",
        "container_network_receive_bytes_total",
    ] {
        assert!(descs.contains_key(name), "no descriptor {name}");
    }
    let pms =
        s.c.runtime
            .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .pod_metrics;
    let pm = pms.iter().find(|p| p.pod_sandbox_id == pod.0).unwrap();
    let all: Vec<&cri::Metric> = pm
        .metrics
        .iter()
        .chain(pm.container_metrics.iter().flat_map(|c| &c.metrics))
        .collect();
    for m in &all {
        let d = descs
            .get(&m.name)
            .unwrap_or_else(|| panic!("{} has no descriptor", m.name));
        assert_eq!(d.label_keys.len(), m.label_values.len(), "{m:?}");
    }
    assert!(all
        .iter()
        .any(|m| m.name == "container_network_receive_bytes_total"));
    let cm = pm
        .container_metrics
        .iter()
        .find(|c| c.container_id == mem)
        .unwrap();
    let ws = cm
        .metrics
        .iter()
        .find(|m| m.name == "container_memory_working_set_bytes")
        .unwrap();
    assert!(v(&ws.value) >= 64 << 20, "{ws:?}");
    let keys = &descs["container_memory_working_set_bytes"].label_keys;
    let label = |k: &str| ws.label_values[keys.iter().position(|x| x == k).unwrap()].clone();
    assert_eq!(label("container"), "mem");
    assert_eq!(label("pod"), "stats");
    assert_eq!(label("namespace"), "e2e");

    // A removed container leaves the list at once.
    s.stop_remove(&busy).await;
    assert_eq!(list(Default::default()).await, [mem.as_str()]);
    s.stop_remove(&mem).await;
    s.d.remove_all_pods().await;
    assert!(listed_pods(&mut s.c).await.is_empty());
}

/// The pods ListPodSandboxStats lists.
async fn listed_pods(c: &mut CriClient) -> Vec<String> {
    c.runtime
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .stats
        .into_iter()
        .map(|s| s.attributes.unwrap().id)
        .collect()
}
