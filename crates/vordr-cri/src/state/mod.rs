//! The shared state behind every RPC: configuration, store, network.

pub(crate) mod errors;
pub mod faults;
pub(crate) mod ids;
pub(crate) mod inflight;
pub(crate) mod layout;

use std::collections::HashMap;

use std::sync::{Arc, Mutex as StdMutex, RwLock};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use vordr_config::Config;
use vordr_image::auth::AuthFile;
use vordr_image::content::ContentStore;
use vordr_image::pull::{PullOptions, Puller};
use vordr_image::registries::RegistriesConf;
use vordr_image::snapshots::Snapshots;
use vordr_image::unpack::UnpackLimits;
use vordr_net::netavark::{BridgeNetwork, Netavark};
use vordr_store::{Lookup, PodRecord, Store};

/// Settings key of the pod CIDR kubelet sent with UpdateRuntimeConfig.
pub const POD_CIDR_KEY: &str = "pod_cidr";

/// What the daemon was started with, beyond the config file.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub config: Config,
}

/// Failure to resolve a pod id.
#[derive(Debug)]
pub enum PodLookupError {
    NotFound(String),
    Ambiguous(String),
    Store(vordr_store::StoreError),
}

/// A pod row read under the pod's lifecycle lock, held until this drops.
pub struct LockedPod {
    pub pod: PodRecord,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// Everything the RPCs share.
pub struct Runtime {
    pub config: Config,
    /// Every path the daemon writes.
    pub layout: layout::Layout,
    pub store: Store,
    /// The audit chain over the store's audit table.
    pub audit: vordr_audit::AuditLog,
    pub netavark: Netavark,
    /// The network new pods attach to (changes with UpdateRuntimeConfig).
    network: RwLock<BridgeNetwork>,
    /// Serialises lifecycle operations on one pod.
    pod_locks: StdMutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Pulls into the content store and snapshots under `<root>/images`.
    pub puller: Puller,
    /// The registries config, read at start.
    pub registries: RegistriesConf,
    /// Credentials for pulls kubelet sends none for, read at start.
    pub auth_file: AuthFile,
    /// One pull per image name at a time; the second waits, then finds the
    /// blobs already there. (Image garbage collection leaves a pull's blobs
    /// alone through the pull's lease, not a lock: see vordr_image::pull.)
    pull_locks: StdMutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Wakes the warm-pool refill task.
    pub pool_notify: tokio::sync::Notify,
    /// Cached netavark health: (checked at, result).
    net_health: StdMutex<Option<(Instant, Result<String, String>)>>,
    /// Where kubelet keeps pods and logs, for the gatekeeper's rules.
    pub gate_node: vordr_gatekeeper::Node,
    /// The streaming server, once started.
    pub streaming: std::sync::OnceLock<Arc<vordr_streaming::Server>>,
    /// The CNI driver's state, when `network.driver` is "cni".
    pub(crate) cni: Option<crate::net::cni::CniNetwork>,
    /// RunPodSandbox and CreateContainer calls in flight, for retries to join.
    pub(crate) inflight: Arc<crate::state::inflight::Inflight>,
    /// The `Arc` this runtime lives in, for tasks that outlive a call.
    self_ref: std::sync::OnceLock<std::sync::Weak<Runtime>>,
    /// Whether idmapped layers and volumes work here (probed once).
    pub(crate) idmap: std::sync::OnceLock<crate::container::idmap::Support>,
    /// Which handlers make recursive read-only mounts (probed once).
    pub(crate) rro: std::sync::OnceLock<std::collections::BTreeMap<String, bool>>,
    /// Prometheus metrics (the process's one set), served when
    /// `server.metrics_address` is set.
    pub metrics: &'static crate::metrics::Metrics,
    /// Container and pod counters, refreshed in the background.
    pub(crate) stats: crate::stats::StatsCache,
    /// GetContainerEvents' streams and backlog.
    pub(crate) events: crate::container::events::EventHub,
}

impl Runtime {
    /// Opens the store and prepares the directories, with their modes set
    /// whatever the umask and whatever an older version left.
    pub fn open(opts: RuntimeOptions) -> Result<Runtime, crate::ServeError> {
        let config = opts.config;
        let layout = layout::Layout::new(&config);
        for (dir, mode) in layout.state_dirs() {
            vordr_fsmode::ensure_dir(&dir, mode)
                .map_err(|source| crate::ServeError::Dir { path: dir, source })?;
        }
        let store = Store::open(layout.root())?;
        let audit =
            vordr_audit::AuditLog::open(&store, layout.root(), config.gatekeeper.audit_max_rows)?;
        let images = layout.images_dir();
        let image_err = |e: String| crate::ServeError::Images(e);
        let puller = Puller::new(
            ContentStore::open(&images.join("content")).map_err(|e| image_err(e.to_string()))?,
            Snapshots::open(&images.join("snapshots")).map_err(|e| image_err(e.to_string()))?,
            pull_options(&config),
        );
        let registries = RegistriesConf::load(&config.server.registries_config)
            .map_err(|e| image_err(e.to_string()))?;
        let auth_file = if config.image.auth_file.as_os_str().is_empty() {
            AuthFile::default()
        } else {
            AuthFile::load(&config.image.auth_file).map_err(|e| image_err(e.to_string()))?
        };
        let netavark = Netavark {
            binary: config.network.netavark_path.clone(),
            config_dir: layout.netavark_dir(),
            firewall_driver: config.network.firewall_driver.clone(),
        };
        let pod_cidr = store.get_setting(POD_CIDR_KEY)?;
        let network = bridge_network(&config, pod_cidr.as_deref());
        let cni = (config.network.driver == vordr_config::NetworkDriver::Cni)
            .then(|| crate::net::cni::CniNetwork::new(&config));
        let events = crate::container::events::EventHub::new(
            config.events.backlog,
            config.events.stream_buffer,
        );
        Ok(Runtime {
            gate_node: vordr_gatekeeper::Node::new(
                &config.gatekeeper.kubelet_root,
                &config.gatekeeper.log_root,
                config.gatekeeper.refuse_unconfined_seccomp,
            ),
            config,
            layout,
            store,
            audit,
            netavark,
            network: RwLock::new(network),
            pod_locks: StdMutex::new(HashMap::new()),
            puller,
            registries,
            auth_file,
            pull_locks: StdMutex::new(HashMap::new()),
            pool_notify: tokio::sync::Notify::new(),
            net_health: StdMutex::new(None),
            streaming: std::sync::OnceLock::new(),
            cni,
            inflight: Arc::default(),
            self_ref: std::sync::OnceLock::new(),
            idmap: std::sync::OnceLock::new(),
            rro: std::sync::OnceLock::new(),
            metrics: crate::metrics::Metrics::global(),
            stats: crate::stats::StatsCache::default(),
            events,
        })
    }

    /// Records the `Arc` this runtime lives in (once, at start).
    pub fn set_arc(self: &Arc<Self>) {
        let _ = self.self_ref.set(Arc::downgrade(self));
    }

    /// The `Arc` this runtime lives in, while it lives.
    pub(crate) fn arc(&self) -> Option<Arc<Runtime>> {
        self.self_ref.get().and_then(std::sync::Weak::upgrade)
    }

    /// The network new pods attach to.
    pub fn network(&self) -> BridgeNetwork {
        self.network
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_network(&self, n: BridgeNetwork) {
        *self.network.write().unwrap_or_else(|e| e.into_inner()) = n;
    }

    /// Takes the lifecycle lock of one pod.
    pub async fn lock_pod(&self, pod_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        keyed_lock(&self.pod_locks, pod_id).await
    }

    /// The pod `id` names (full or unique prefix), its lifecycle lock taken
    /// and its row read again under the lock (a concurrent remove may have
    /// won the lock first). `None` when there is no such pod, before or
    /// after the lock.
    pub async fn lock_existing_pod(&self, id: &str) -> Result<Option<LockedPod>, tonic::Status> {
        let pod = match self.find_pod(id) {
            Ok(p) => p,
            Err(PodLookupError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let guard = self.lock_pod(&pod.id).await;
        let pod = self
            .store
            .get_pod(&pod.id)
            .map_err(|e| errors::internal("reading pod", e))?;
        Ok(pod.map(|pod| LockedPod { pod, _guard: guard }))
    }

    /// Takes the pull lock of one image name.
    pub async fn lock_pull(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        keyed_lock(&self.pull_locks, name).await
    }

    /// Resolves a full or unique-prefix pod id.
    pub fn find_pod(&self, id: &str) -> Result<PodRecord, PodLookupError> {
        match self.store.find_pod(id).map_err(PodLookupError::Store)? {
            Lookup::Found(p) if p.state.is_pool() => Err(PodLookupError::NotFound(id.to_string())),
            Lookup::Found(p) => Ok(p),
            Lookup::NotFound => Err(PodLookupError::NotFound(id.to_string())),
            Lookup::Ambiguous => Err(PodLookupError::Ambiguous(id.to_string())),
        }
    }

    /// Whether pods can be attached: with CNI, whether a valid config list
    /// is there; with netavark, whether it runs (checked at most every 10
    /// seconds).
    pub async fn network_health(&self) -> Result<String, String> {
        if let Some(cni) = &self.cni {
            let list = cni.current()?;
            // Spec 1.1 plugins say themselves whether they can take pods.
            cni.cni.status(&list).await.map_err(|e| e.to_string())?;
            return Ok(format!(
                "CNI network {} ({})",
                list.name,
                list.source.display()
            ));
        }
        if let Some((at, res)) = self
            .net_health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if at.elapsed() < Duration::from_secs(10) {
                return res.clone();
            }
        }
        let res = self.netavark.version().await.map_err(|e| e.to_string());
        *self.net_health.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), res.clone()));
        res
    }
}

/// How the puller reaches registries and what it accepts, from `[image]`
/// (a zero duration or cap there is none).
pub fn pull_options(config: &Config) -> PullOptions {
    let i = &config.image;
    let wait = |d: Duration| (!d.is_zero()).then_some(d);
    let cap = |n: u64| (n > 0).then_some(n);
    PullOptions {
        parallel: i.parallel_downloads as usize,
        connect_timeout: wait(i.connect_timeout),
        read_timeout: wait(i.read_timeout),
        progress_timeout: wait(i.pull_progress_timeout),
        limits: UnpackLimits {
            max_bytes: cap(i.max_layer_unpacked_size),
            max_entries: cap(i.max_layer_entries),
        },
    }
}

/// Locks `key` in a map of per-key async locks, dropping idle entries.
async fn keyed_lock(
    locks: &StdMutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    key: &str,
) -> tokio::sync::OwnedMutexGuard<()> {
    let m = {
        let mut locks = locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, m| Arc::strong_count(m) > 1 || m.try_lock().is_err());
        locks.entry(key.to_string()).or_default().clone()
    };
    m.lock_owned().await
}

/// The bridge network from the config, with the pod CIDR from kubelet when
/// the config says to use it.
pub fn bridge_network(config: &Config, pod_cidr: Option<&str>) -> BridgeNetwork {
    let from_kubelet = pod_cidr
        .filter(|_| config.network.use_pod_cidr)
        .and_then(|c| pod_cidrs(c).ok());
    let (subnet, subnet6) = match from_kubelet {
        Some(nets) => {
            let first = primary(&nets).expect("pod_cidrs is never empty");
            let other = nets
                .iter()
                .copied()
                .find(|n| n.addr().is_ipv4() != first.addr().is_ipv4());
            (first, other)
        }
        None => (
            config.network.subnet,
            config.network.second_subnet().ok().flatten(),
        ),
    };
    // netavark gives a bridge its gateway address only when it creates it,
    // so a second subnet cannot share the first one's bridge: the pod CIDR
    // gets a bridge of its own, named after the configured one.
    let bridge = if subnet == config.network.subnet {
        config.network.bridge.clone()
    } else {
        let digest = subnet.to_string().bytes().fold(0x811c9dc5u32, |h, b| {
            (h ^ b as u32).wrapping_mul(0x01000193)
        });
        let stem: String = config.network.bridge.chars().take(10).collect();
        format!("{stem}{:04x}", digest & 0xffff)
    };
    BridgeNetwork {
        name: config.network.network_name.clone(),
        bridge,
        subnet,
        gateway: vordr_net::ipam::gateway(&subnet),
        subnet6,
        mtu: match config.network.mtu {
            0 => vordr_net::mtu::node_mtu().unwrap_or(0),
            m => m,
        },
    }
}

/// The CIDRs of kubelet's (possibly comma-separated, dual-stack) pod CIDR,
/// each checked and normalised to its network address.
pub fn pod_cidrs(pod_cidr: &str) -> Result<Vec<IpNet>, String> {
    let mut nets = Vec::new();
    for part in pod_cidr.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let n: IpNet = part
            .parse()
            .map_err(|_| format!("{part:?} is not a CIDR"))?;
        let too_small = match n {
            IpNet::V4(v) => v.prefix_len() > 30,
            IpNet::V6(v) => v.prefix_len() > 126,
        };
        if too_small {
            return Err(format!("{part:?} is too small for pods"));
        }
        nets.push(n.trunc());
    }
    if nets.is_empty() {
        return Err("empty pod CIDR".to_string());
    }
    Ok(nets)
}

/// The pod network's primary CIDR: the first IPv4 one, else the first.
fn primary(nets: &[IpNet]) -> Option<IpNet> {
    nets.iter()
        .find(|n| n.addr().is_ipv4())
        .or(nets.first())
        .copied()
}

/// The first CIDR of kubelet's pod CIDR, IPv4 preferred.
pub fn first_cidr(pod_cidr: &str) -> Result<IpNet, String> {
    primary(&pod_cidrs(pod_cidr)?).ok_or_else(|| "empty pod CIDR".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_stack_pod_cidrs_give_the_bridge_both_families() {
        let c = Config::default();
        let n = bridge_network(&c, Some("fd00:10::/64, 10.5.0.0/16"));
        assert_eq!(n.subnet.to_string(), "10.5.0.0/16");
        assert_eq!(n.subnet6.unwrap().to_string(), "fd00:10::/64");
        assert_eq!(bridge_network(&c, Some("10.5.0.0/16")).subnet6, None);
        let mut c = Config::default();
        c.network.subnet6 = "fd00:88::/64".into();
        assert_eq!(
            bridge_network(&c, None).subnet6.unwrap().to_string(),
            "fd00:88::/64"
        );
        assert_eq!(pod_cidrs("10.1.0.0/24,fd00::/64").unwrap().len(), 2);
    }

    #[test]
    fn pod_cidr_parsing() {
        assert_eq!(
            first_cidr("10.244.1.0/24").unwrap().to_string(),
            "10.244.1.0/24"
        );
        assert_eq!(
            first_cidr("fd00::/64, 10.244.1.7/24").unwrap().to_string(),
            "10.244.1.0/24"
        );
        assert_eq!(first_cidr("fd00::/64").unwrap().to_string(), "fd00::/64");
        assert!(first_cidr("").is_err());
        assert!(first_cidr("10.0.0.0/31").is_err());
        assert!(first_cidr("banana").is_err());
    }

    #[test]
    fn pull_options_follow_the_image_section() {
        let d = pull_options(&Config::default());
        assert_eq!(d.parallel, 3);
        assert_eq!(d.progress_timeout, Some(Duration::from_secs(300)));
        assert_eq!(d.connect_timeout, Some(Duration::from_secs(30)));
        assert_eq!(d.read_timeout, Some(Duration::from_secs(60)));
        assert_eq!(d.limits, UnpackLimits::default());
        let mut c = Config::default();
        c.image.pull_progress_timeout = Duration::ZERO;
        c.image.read_timeout = Duration::ZERO;
        c.image.connect_timeout = Duration::from_secs(2);
        c.image.max_layer_entries = 10;
        c.image.max_layer_unpacked_size = 1 << 20;
        let o = pull_options(&c);
        assert_eq!((o.progress_timeout, o.read_timeout), (None, None));
        assert_eq!(o.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(
            o.limits,
            UnpackLimits {
                max_bytes: Some(1 << 20),
                max_entries: Some(10)
            }
        );
    }

    #[test]
    fn pod_cidr_only_used_when_configured() {
        let mut c = Config::default();
        c.network.use_pod_cidr = true;
        assert_eq!(
            bridge_network(&c, Some("10.5.0.0/16")).subnet.to_string(),
            "10.5.0.0/16"
        );
        assert_eq!(
            bridge_network(&c, Some("10.5.0.0/16")).gateway.to_string(),
            "10.5.0.1"
        );
        assert_eq!(bridge_network(&c, None).subnet.to_string(), "10.88.0.0/16");
        assert_eq!(bridge_network(&c, None).bridge, "vordr0");
        let other = bridge_network(&c, Some("10.5.0.0/16")).bridge;
        assert!(
            other.starts_with("vordr0") && other.len() <= 15 && other != "vordr0",
            "{other}"
        );
        assert_ne!(other, bridge_network(&c, Some("10.6.0.0/16")).bridge);
        assert_eq!(bridge_network(&c, Some("10.88.0.0/16")).bridge, "vordr0");
        c.network.use_pod_cidr = false;
        assert_eq!(
            bridge_network(&c, Some("10.5.0.0/16")).subnet.to_string(),
            "10.88.0.0/16"
        );
    }
}
