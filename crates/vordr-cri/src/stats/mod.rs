//! The stats cache: every container's and pod's counters sampled in the
//! background (`stats.interval`, writable layers every
//! `stats.filesystem_interval`) on a blocking thread, so the stats and
//! metrics RPCs answer from memory. CPU rates come from the last two
//! samples.

pub(crate) mod cadvisor;
pub(crate) mod cgroup;
pub(crate) mod cri;
pub(crate) mod fs;
pub(crate) mod net;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex, RwLock};
use std::time::{Duration, Instant};

use vordr_store::{ContainerRecord, ContainerState, PodRecord};

use crate::state::Runtime;
use cgroup::CgroupSample;
use net::IfaceSample;

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Bytes and inodes of a writable layer, and when they were counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSample {
    pub at: i64,
    pub bytes: u64,
    pub inodes: u64,
}

/// One container's last sample.
#[derive(Debug, Clone)]
pub struct ContainerEntry {
    pub id: String,
    pub pod_id: String,
    pub name: String,
    pub attempt: u32,
    /// The image as the container's config names it.
    pub image: String,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
    /// When the counters were read (ns since the epoch).
    pub at: i64,
    /// `None` unless the container runs and its cgroup could be read.
    pub cgroup: Option<CgroupSample>,
    /// CPU use between the previous sample and this one, in nanocores.
    pub nano_cores: Option<u64>,
    pub fs: Option<FsSample>,
    /// The cgroup path (inside the hierarchy) found for the container.
    cgroup_path: Option<PathBuf>,
}

/// One pod's last sample.
#[derive(Debug, Clone)]
pub struct PodEntry {
    pub pod: Arc<PodRecord>,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
    pub at: i64,
    /// The pod's own cgroup (its containers and its overhead), read when
    /// the pod has one to itself; `None` otherwise, and then the pod's CPU
    /// and memory are its containers' sums.
    pub cgroup: Option<CgroupSample>,
    /// CPU use of the pod's cgroup between its last two samples.
    pub nano_cores: Option<u64>,
    /// Interfaces of the pod's network namespace; `None` for host-network
    /// pods and namespaces that could not be read.
    pub net: Option<Vec<IfaceSample>>,
}

/// Everything one refresh saw.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub containers: HashMap<String, Arc<ContainerEntry>>,
    pub pods: HashMap<String, Arc<PodEntry>>,
}

impl Snapshot {
    /// The containers of each pod, by id.
    pub fn by_pod(&self) -> HashMap<&str, Vec<&ContainerEntry>> {
        let mut out: HashMap<&str, Vec<&ContainerEntry>> = HashMap::new();
        for c in self.containers.values() {
            out.entry(c.pod_id.as_str()).or_default().push(c);
        }
        for cs in out.values_mut() {
            cs.sort_by(|a, b| a.id.cmp(&b.id));
        }
        out
    }
}

/// The cache the RPCs read.
pub struct StatsCache {
    snapshot: RwLock<Arc<Snapshot>>,
    /// Entries changed by lifecycle events since the running refresh
    /// started, applied over its result (it may have read the store
    /// before them). Written under `snapshot`'s write lock.
    pending: StdMutex<Vec<Change>>,
    cgroup_root: PathBuf,
}

/// An entry replaced (`Some`) or dropped (`None`) outside a refresh.
#[derive(Debug, Clone)]
enum Change {
    Container(String, Option<Arc<ContainerEntry>>),
    Pod(String, Option<Arc<PodEntry>>),
}

impl Snapshot {
    /// Applies `change`.
    fn apply(&mut self, change: Change) {
        match change {
            Change::Container(id, Some(e)) => drop(self.containers.insert(id, e)),
            Change::Container(id, None) => drop(self.containers.remove(&id)),
            Change::Pod(id, Some(e)) => drop(self.pods.insert(id, e)),
            Change::Pod(id, None) => drop(self.pods.remove(&id)),
        }
    }
}

impl Default for StatsCache {
    fn default() -> Self {
        StatsCache {
            snapshot: RwLock::default(),
            pending: StdMutex::default(),
            cgroup_root: PathBuf::from(CGROUP_ROOT),
        }
    }
}

/// CPU use between two samples `(at_ns, cpu_ns)`, in nanocores (1e9 is one
/// core busy all the time). `None` unless time moved forward and the
/// counter did not go back (a restarted container's new cgroup).
pub fn nano_cores(prev: (i64, u64), now: (i64, u64)) -> Option<u64> {
    let dt = u128::try_from(i128::from(now.0) - i128::from(prev.0)).ok()?;
    let dcpu = u128::from(now.1.checked_sub(prev.1)?);
    if dt == 0 {
        return None;
    }
    u64::try_from(dcpu * 1_000_000_000 / dt).ok()
}

/// The cgroup (inside the hierarchy) `/proc/<pid>/cgroup` names for the
/// cpuacct controller (v1), else the unified one (v2).
pub fn cgroup_of_proc(text: &str) -> Option<PathBuf> {
    let mut unified = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        if ctrls.split(',').any(|c| c == "cpuacct") {
            return Some(PathBuf::from(path));
        }
        if ctrls.is_empty() {
            unified = Some(PathBuf::from(path));
        }
    }
    unified
}

fn json_map(text: &str) -> HashMap<String, String> {
    serde_json::from_str(text).unwrap_or_default()
}

impl StatsCache {
    /// The last snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies `change` to the snapshot now and to the result of a
    /// refresh under way.
    fn put(&self, change: Change) {
        let mut guard = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        let mut next = Snapshot {
            containers: guard.containers.clone(),
            pods: guard.pods.clone(),
        };
        next.apply(change.clone());
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(change);
        *guard = Arc::new(next);
    }

    fn put_container(&self, id: &str, e: Option<ContainerEntry>) {
        self.put(Change::Container(id.to_string(), e.map(Arc::new)));
    }

    /// Adds pod `id` after RunPodSandbox (its network read at the next
    /// refresh), or drops it when its row is gone, so ListPodSandboxStats
    /// lists pods without reading the store.
    pub fn pod_changed(&self, rt: &Runtime, id: &str) {
        let row = match rt.store.get_pod(id) {
            Ok(row) => row.filter(|p| !p.state.is_pool()),
            Err(e) => {
                tracing::warn!(pod = %id, "stats: reading the pod: {e}");
                return;
            }
        };
        let e = row.map(|p| {
            let net = self.snapshot().pods.get(id).and_then(|e| e.net.clone());
            Arc::new(PodEntry {
                labels: json_map(&p.labels),
                annotations: json_map(&p.annotations),
                at: crate::state::ids::now_ns(),
                net,
                cgroup: None,
                nano_cores: None,
                pod: Arc::new(p),
            })
        });
        self.put(Change::Pod(id.to_string(), e));
    }

    /// Samples container `id` again after its state changed (created,
    /// started, stopped), or drops it when its row is gone, so the stats
    /// RPCs see lifecycle changes at once rather than at the next refresh.
    /// Blocking (a few small reads).
    pub fn container_changed(&self, rt: &Runtime, id: &str) {
        let row = match rt.store.get_container(id) {
            Ok(row) => row,
            Err(e) => {
                tracing::warn!(container = %id, "stats: reading the container: {e}");
                return;
            }
        };
        let Some(c) = row else {
            self.put_container(id, None);
            return;
        };
        let parent = crate::recovery::parent_of(rt, &c.pod_id);
        let prev = self.snapshot().containers.get(id).cloned();
        let e = self.sample_container(rt, &c, &parent, prev.as_deref(), false);
        self.put_container(id, Some(e));
    }

    /// Samples container `c` (whose pod's cgroup parent is `parent`) now,
    /// rate from `prev` when given, layer walked unless `prev` has it and
    /// `walk_fs` is false. Blocking.
    pub fn sample_container(
        &self,
        rt: &Runtime,
        c: &ContainerRecord,
        parent: &str,
        prev: Option<&ContainerEntry>,
        walk_fs: bool,
    ) -> ContainerEntry {
        let at = crate::state::ids::now_ns();
        let mut cgroup_path = prev.and_then(|p| p.cgroup_path.clone());
        let mut cgroup = None;
        if c.state == ContainerState::Running {
            if let Some(p) = &cgroup_path {
                cgroup = cgroup::read_cgroup(&self.cgroup_root, p);
            }
            if cgroup.is_none() {
                cgroup_path = self.find_cgroup(c, parent);
                cgroup = cgroup_path
                    .as_deref()
                    .and_then(|p| cgroup::read_cgroup(&self.cgroup_root, p));
            }
        }
        let nano_cores = match (prev, &cgroup) {
            (Some(p), Some(now)) => p
                .cgroup
                .as_ref()
                .and_then(|before| nano_cores((p.at, before.cpu_ns), (at, now.cpu_ns))),
            _ => None,
        };
        let fs = match prev.and_then(|p| p.fs) {
            Some(fs) if !walk_fs => Some(fs),
            _ => fs::disk_usage(&rt.layout.container_dir(&c.id).join("upper")).map(
                |(bytes, inodes)| FsSample {
                    at: crate::state::ids::now_ns(),
                    bytes,
                    inodes,
                },
            ),
        };
        ContainerEntry {
            id: c.id.clone(),
            pod_id: c.pod_id.clone(),
            name: c.name.clone(),
            attempt: c.attempt,
            image: match prev {
                Some(p) => p.image.clone(),
                None => crate::container_status::config_of(c)
                    .image
                    .map(|i| i.image)
                    .unwrap_or_default(),
            },
            labels: json_map(&c.labels),
            annotations: json_map(&c.annotations),
            at,
            cgroup,
            nano_cores,
            fs,
            cgroup_path,
        }
    }

    /// The container's cgroup: where its init process is, else where
    /// Vordr put it.
    fn find_cgroup(&self, c: &ContainerRecord, parent: &str) -> Option<PathBuf> {
        if c.pid > 0 {
            let text = std::fs::read_to_string(format!("/proc/{}/cgroup", c.pid)).ok();
            if let Some(p) = text.as_deref().and_then(cgroup_of_proc) {
                if p != Path::new("/") {
                    return Some(p);
                }
            }
        }
        Some(vordr_spec::cgroups_path(parent, &c.id))
    }

    /// Samples every container and pod. Blocking.
    fn refresh(&self, rt: &Runtime, walk_fs: bool) -> Result<(), vordr_store::StoreError> {
        let prev = {
            let guard = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            guard.clone()
        };
        let pods: Vec<PodRecord> = rt
            .store
            .list_pods()?
            .into_iter()
            .filter(|p| !p.state.is_pool())
            .collect();
        let containers = rt.store.list_containers()?;
        let parents: HashMap<&str, &str> = pods
            .iter()
            .map(|p| (p.id.as_str(), p.cgroup_parent.as_str()))
            .collect();
        let mut next = Snapshot::default();
        for c in &containers {
            let parent = parents.get(c.pod_id.as_str()).copied().unwrap_or("");
            let before = prev.containers.get(&c.id).map(Arc::as_ref);
            let e = self.sample_container(rt, c, parent, before, walk_fs);
            next.containers.insert(c.id.clone(), Arc::new(e));
        }
        let nets = pod_networks(&pods, &containers);
        let mut sharing: HashMap<&str, usize> = HashMap::new();
        for p in &pods {
            *sharing.entry(p.cgroup_parent.as_str()).or_default() += 1;
        }
        let own: Vec<bool> = pods
            .iter()
            .map(|p| own_cgroup(&p.cgroup_parent, sharing[p.cgroup_parent.as_str()]))
            .collect();
        for ((p, net), own) in pods.into_iter().zip(nets).zip(own) {
            let at = crate::state::ids::now_ns();
            let cgroup = own
                .then(|| cgroup::read_cgroup(&self.cgroup_root, Path::new(&p.cgroup_parent)))
                .flatten();
            let before = prev.pods.get(&p.id);
            let nano_cores = match (
                before.and_then(|b| Some((b.at, b.cgroup.as_ref()?))),
                &cgroup,
            ) {
                (Some((then, b)), Some(now)) => nano_cores((then, b.cpu_ns), (at, now.cpu_ns)),
                _ => None,
            };
            let e = PodEntry {
                labels: json_map(&p.labels),
                annotations: json_map(&p.annotations),
                at,
                net,
                cgroup,
                nano_cores,
                pod: Arc::new(p),
            };
            next.pods.insert(e.pod.id.clone(), Arc::new(e));
        }
        let mut guard = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        for change in self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            next.apply(change);
        }
        *guard = Arc::new(next);
        Ok(())
    }
}

/// Whether a pod's cgroup parent (as stored: a path inside the
/// hierarchies) is the pod's own, `pods_using_it` pods having it: not the
/// root, and no other pod's. Kubelet gives each pod its own; a parent that
/// pods share would count each pod's neighbours as its own.
fn own_cgroup(parent: &str, pods_using_it: usize) -> bool {
    pods_using_it == 1 && !parent.trim_matches('/').is_empty()
}

/// The network counters of each pod, in order: through a running
/// container's process when there is one, else by joining the pinned
/// namespace.
fn pod_networks(
    pods: &[PodRecord],
    containers: &[ContainerRecord],
) -> Vec<Option<Vec<IfaceSample>>> {
    let mut out: Vec<Option<Vec<IfaceSample>>> = vec![None; pods.len()];
    let mut pinned = Vec::new();
    for (i, p) in pods.iter().enumerate() {
        if p.host_network {
            continue;
        }
        let via_pid = containers
            .iter()
            .filter(|c| c.pod_id == p.id && c.state == ContainerState::Running && c.pid > 0)
            .find_map(|c| net::of_pid(c.pid));
        match (via_pid, &p.netns_path) {
            (Some(v), _) => out[i] = Some(v),
            (None, Some(path)) => pinned.push((i, path.clone())),
            (None, None) => {}
        }
    }
    if !pinned.is_empty() {
        let (idx, paths): (Vec<usize>, Vec<String>) = pinned.into_iter().unzip();
        for (i, v) in idx.into_iter().zip(net::of_pinned(paths)) {
            out[i] = v;
        }
    }
    out
}

/// Refreshes `rt`'s cache every `stats.interval` until the runtime goes.
pub fn spawn_refresh_task(rt: &Arc<Runtime>) {
    let weak = Arc::downgrade(rt);
    let every = rt.config.stats.interval;
    let fs_every = rt.config.stats.filesystem_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_fs: Option<Instant> = None;
        loop {
            tick.tick().await;
            let Some(rt) = weak.upgrade() else { return };
            let walk_fs = last_fs.is_none_or(|t| t.elapsed() >= fs_every);
            if walk_fs {
                last_fs = Some(Instant::now());
            }
            let started = Instant::now();
            let res = tokio::task::spawn_blocking(move || rt.stats.refresh(&rt, walk_fs)).await;
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("refreshing stats: {e}"),
                Err(e) => tracing::error!("the stats refresh failed: {e}"),
            }
            if started.elapsed() > every.max(Duration::from_secs(1)) {
                tracing::warn!(took = ?started.elapsed(), "a stats refresh took longer than its interval");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_between_two_samples() {
        // 0.5 s of CPU over 1 s: half a core.
        assert_eq!(
            nano_cores((1_000_000_000, 100), (2_000_000_000, 500_000_100)),
            Some(500_000_000)
        );
        // Two cores busy for 250 ms.
        assert_eq!(
            nano_cores((0, 0), (250_000_000, 500_000_000)),
            Some(2_000_000_000)
        );
        // No time passed, time went back, the counter went back.
        assert_eq!(nano_cores((5, 10), (5, 20)), None);
        assert_eq!(nano_cores((6, 10), (5, 20)), None);
        assert_eq!(nano_cores((5, 20), (6, 10)), None);
        // Extremes do not overflow.
        assert_eq!(nano_cores((0, 0), (1, u64::MAX)), None);
        assert_eq!(nano_cores((i64::MIN, 0), (i64::MAX, 1)), Some(0));
    }

    #[test]
    fn a_pod_cgroup_is_read_only_when_it_is_the_pods_own() {
        assert!(own_cgroup("/kubepods/burstable/pod1", 1));
        assert!(own_cgroup("/kubepods.slice/kubepods-pod1.slice", 1));
        assert!(!own_cgroup("/shared", 2));
        assert!(!own_cgroup("/", 1));
        assert!(!own_cgroup("", 1));
    }

    #[test]
    fn cgroup_from_proc() {
        let v1 = "12:pids:/vordr/vordr-a\n4:cpu,cpuacct:/vordr/vordr-a\n0::/\n";
        assert_eq!(cgroup_of_proc(v1), Some(PathBuf::from("/vordr/vordr-a")));
        let v2 = "0::/kubepods.slice/cri-vordr-a.scope\n";
        assert_eq!(
            cgroup_of_proc(v2),
            Some(PathBuf::from("/kubepods.slice/cri-vordr-a.scope"))
        );
        assert_eq!(cgroup_of_proc("garbage"), None);
    }
}
