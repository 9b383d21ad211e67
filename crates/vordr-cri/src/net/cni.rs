//! The CNI network driver: the cluster's config list (reread whenever the
//! config directory changes, so NetworkReady turns true as soon as the
//! network add-on writes its config), and pod attachments through it with
//! the arguments kubelet-driven runtimes give plugins.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_cri::v1::PodSandboxConfig;
use serde_json::{json, Map, Value};
use vordr_cni::{Attachment, Cni, ConfList};
use vordr_config::Config;
use vordr_net::netavark::PortMapping;

/// The pod interface every plugin is asked to create.
pub const IFNAME: &str = "eth0";

/// The driver's state in the runtime.
pub struct CniNetwork {
    pub cni: Cni,
    conf_dir: PathBuf,
    loaded: Mutex<Loaded>,
}

struct Loaded {
    fingerprint: Option<u64>,
    list: Result<Arc<ConfList>, String>,
}

impl CniNetwork {
    pub fn new(config: &Config) -> CniNetwork {
        let c = &config.network.cni;
        let cache_dir = if c.cache_dir.as_os_str().is_empty() {
            crate::state::layout::Layout::new(config).default_cni_cache_dir()
        } else {
            c.cache_dir.clone()
        };
        CniNetwork {
            cni: Cni {
                bin_dirs: c.bin_dirs.clone(),
                cache_dir,
                timeout: c.plugin_timeout,
            },
            conf_dir: c.conf_dir.clone(),
            loaded: Mutex::new(Loaded {
                fingerprint: None,
                list: Err("not loaded yet".into()),
            }),
        }
    }

    /// The config list in use: reread when the directory changed since
    /// the last call (one directory read when it did not).
    pub fn current(&self) -> Result<Arc<ConfList>, String> {
        let now = vordr_cni::conf::fingerprint(&self.conf_dir);
        let mut l = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if l.fingerprint != Some(now) {
            let (list, skipped) = vordr_cni::conf::load_dir(&self.conf_dir);
            for e in &skipped {
                tracing::warn!("skipping a CNI config: {e}");
            }
            l.list = match list {
                Some(list) => {
                    tracing::info!(network = %list.name, file = %list.source.display(), plugins = ?list.plugin_types(), "CNI config loaded");
                    Ok(Arc::new(list))
                }
                None => Err(format!(
                    "no valid CNI config list in {}{}",
                    self.conf_dir.display(),
                    skipped
                        .first()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )),
            };
            l.fingerprint = Some(now);
        }
        l.list.clone()
    }
}

/// Bits per second from a Kubernetes quantity ("10M", "1Gi", "500k").
pub fn bandwidth_bits(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        _ => return None,
    };
    let bits = n * mult;
    (bits.is_finite() && bits >= 1.0 && bits < u64::MAX as f64).then_some(bits as u64)
}

/// The capability arguments for a pod: its host ports, DNS, bandwidth
/// annotations and the node's pod CIDR.
pub fn capability_args(
    cfg: &PodSandboxConfig,
    ports: &[PortMapping],
    pod_cidr: Option<&str>,
) -> Result<Map<String, Value>, String> {
    let mut caps = Map::new();
    if !ports.is_empty() {
        let list: Vec<Value> = ports
            .iter()
            .map(|p| {
                json!({
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": p.protocol,
                    "hostIP": p.host_ip,
                })
            })
            .collect();
        caps.insert("portMappings".into(), Value::Array(list));
    }
    if let Some(d) = &cfg.dns_config {
        caps.insert(
            "dns".into(),
            json!({"servers": d.servers, "searches": d.searches, "options": d.options}),
        );
    }
    let mut bw = Map::new();
    for (annotation, rate, burst) in [
        (
            "kubernetes.io/ingress-bandwidth",
            "ingressRate",
            "ingressBurst",
        ),
        (
            "kubernetes.io/egress-bandwidth",
            "egressRate",
            "egressBurst",
        ),
    ] {
        if let Some(v) = cfg.annotations.get(annotation) {
            let bits = bandwidth_bits(v)
                .ok_or_else(|| format!("annotation {annotation}: {v:?} is not a bandwidth"))?;
            bw.insert(rate.into(), json!(bits));
            // As containerd: no burst limit beyond the rate.
            bw.insert(burst.into(), json!(i32::MAX));
        }
    }
    if !bw.is_empty() {
        caps.insert("bandwidth".into(), Value::Object(bw));
    }
    if let Some(cidr) = pod_cidr {
        // One range set per CIDR (dual-stack: one per family).
        let ranges: Vec<Value> = cidr
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| json!([{ "subnet": c }]))
            .collect();
        caps.insert("ipRanges".into(), Value::Array(ranges));
    }
    Ok(caps)
}

/// The attachment of pod `id` (named by `cfg`) in the namespace at `netns`.
pub fn attachment<'a>(
    id: &'a str,
    cfg: &PodSandboxConfig,
    netns: &'a Path,
    capability_args: Map<String, Value>,
) -> Attachment<'a> {
    let m = cfg.metadata.clone().unwrap_or_default();
    Attachment {
        container_id: id,
        netns,
        ifname: IFNAME,
        args: vec![
            ("K8S_POD_NAMESPACE".into(), m.namespace),
            ("K8S_POD_NAME".into(), m.name),
            ("K8S_POD_INFRA_CONTAINER_ID".into(), id.to_string()),
            ("K8S_POD_UID".into(), m.uid),
        ],
        capability_args,
    }
}

/// Attaches pod `id` through `list`; its addresses, IPv4 first.
pub async fn attach(
    net: &CniNetwork,
    list: &ConfList,
    a: &Attachment<'_>,
) -> Result<Vec<IpAddr>, String> {
    let r = net.cni.add(list, a).await.map_err(|e| e.to_string())?;
    let mut ips = r.ips;
    ips.sort_by_key(|ip| ip.is_ipv6());
    if ips.is_empty() {
        return Err(format!(
            "the CNI network {} gave the pod no address",
            list.name
        ));
    }
    Ok(ips)
}

/// Detaches pod `id` (what ADD was given, from the cache; the current
/// list otherwise). The namespace may be gone.
pub async fn detach(net: &CniNetwork, id: &str, netns: &Path) -> Result<(), String> {
    let fallback = net.current().ok();
    let a = Attachment {
        container_id: id,
        netns,
        ifname: IFNAME,
        args: Vec::new(),
        capability_args: Map::new(),
    };
    net.cni
        .del(fallback.as_deref(), &a)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_quantities() {
        assert_eq!(bandwidth_bits("10M"), Some(10_000_000));
        assert_eq!(bandwidth_bits("1Gi"), Some(1 << 30));
        assert_eq!(bandwidth_bits("500k"), Some(500_000));
        assert_eq!(bandwidth_bits("1.5M"), Some(1_500_000));
        assert_eq!(bandwidth_bits("100"), Some(100));
        for bad in ["", "M", "10X", "-5M", "0", "1e400"] {
            assert_eq!(bandwidth_bits(bad), None, "{bad}");
        }
    }

    #[test]
    fn capability_arguments_from_the_pod() {
        let mut cfg = PodSandboxConfig::default();
        cfg.annotations
            .insert("kubernetes.io/ingress-bandwidth".into(), "10M".into());
        cfg.dns_config = Some(k8s_cri::v1::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        });
        let ports = [PortMapping {
            container_port: 80,
            host_ip: "127.0.0.1".into(),
            host_port: 8080,
            protocol: "tcp".into(),
            range: 1,
        }];
        let caps = capability_args(&cfg, &ports, Some("10.244.1.0/24")).unwrap();
        assert_eq!(caps["portMappings"][0]["hostPort"], 8080);
        assert_eq!(caps["portMappings"][0]["protocol"], "tcp");
        assert_eq!(caps["bandwidth"]["ingressRate"], 10_000_000);
        assert!(caps["bandwidth"].get("egressRate").is_none());
        assert_eq!(caps["dns"]["servers"][0], "10.96.0.10");
        assert_eq!(caps["ipRanges"][0][0]["subnet"], "10.244.1.0/24");
        let dual = capability_args(&cfg, &ports, Some("10.244.1.0/24, fd00:1::/64")).unwrap();
        assert_eq!(dual["ipRanges"][1][0]["subnet"], "fd00:1::/64");
        cfg.annotations
            .insert("kubernetes.io/egress-bandwidth".into(), "lots".into());
        let e = capability_args(&cfg, &ports, None).unwrap_err();
        assert!(e.contains("kubernetes.io/egress-bandwidth"), "{e}");
        assert!(capability_args(&PodSandboxConfig::default(), &[], None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_config_list_follows_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.network.cni.conf_dir = d.path().to_path_buf();
        config.server.root = d.path().join("root");
        let net = CniNetwork::new(&config);
        assert!(net
            .current()
            .unwrap_err()
            .contains("no valid CNI config list"));
        std::fs::write(
            d.path().join("10-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        assert_eq!(net.current().unwrap().name, "a");
        std::fs::write(
            d.path().join("05-b.conflist"),
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"ptp"}]}"#,
        )
        .unwrap();
        assert_eq!(net.current().unwrap().name, "b");
        assert_eq!(net.cni.cache_dir, d.path().join("root/cni/cache"));
    }
}
