//! Vordr's configuration: the TOML schema, the embedded defaults, and validation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The configuration compiled into the binary, used when no `--config` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// Errors from loading or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config {origin}: {source}")]
    Parse {
        origin: String,
        source: toml::de::Error,
    },
    #[error("invalid config: {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// The whole configuration of `vordr serve`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub cgroup: CgroupConfig,
    pub network: NetworkConfig,
    pub image: ImageConfig,
    pub runtime: RuntimeConfig,
    pub gatekeeper: GatekeeperConfig,
    pub streaming: StreamingConfig,
    pub stats: StatsConfig,
    pub events: EventsConfig,
}

/// The stats cache behind ContainerStats, PodSandboxStats and
/// ListPodSandboxMetrics.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatsConfig {
    /// How often the cgroup, process and network counters are sampled in
    /// the background (CPU rates are computed between two samples).
    #[serde(with = "duration")]
    pub interval: Duration,
    /// How often the writable layers are walked for their bytes and inodes.
    #[serde(with = "duration")]
    pub filesystem_interval: Duration,
}

/// GetContainerEvents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Events kept while no client streams them, for the next one (the
    /// oldest are dropped past this).
    pub backlog: usize,
    /// Events queued for one stream whose client reads too slowly; past
    /// this the stream ends with ResourceExhausted.
    pub stream_buffer: usize,
}

/// The streaming server behind Exec, Attach and PortForward (kubectl
/// exec/attach/port-forward through kubelet, crictl).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamingConfig {
    /// Address it listens on; keep it on loopback unless the URLs must be
    /// reached from elsewhere (they are single-use and expire in a minute).
    /// Any other address needs `tls_cert` and `tls_key`, or `insecure`.
    pub address: std::net::IpAddr,
    /// Port; 0 picks a free one at start.
    pub port: u16,
    /// How long a client has to finish the TLS handshake and to send its
    /// request's headers; a slower one is disconnected.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// An upgraded session with no open stream (an exec whose streams are
    /// not all open yet, a port-forward with no forwarded connection) is
    /// closed after this long without a frame from its client.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Connections at once, upgraded sessions included. At the cap a new
    /// connection displaces the oldest one still sending its headers, or
    /// gets a 503 when every connection is a session.
    pub max_connections: u32,
    /// Streams open at once in one SPDY session (an exec opens up to five,
    /// a forwarded connection holds two); more closes the session.
    pub max_streams_per_session: u32,
    /// Forwarded connections at once in one port-forward session (SPDY
    /// stream pairs, or ports in a WebSocket URL).
    pub max_port_forward_pairs: u32,
    /// PEM certificate chain and private key to serve HTTPS with; both
    /// empty serves plain HTTP.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Serve plain HTTP on a non-loopback address anyway.
    pub insecure: bool,
}

impl StreamingConfig {
    /// Whether the server speaks TLS.
    pub fn tls(&self) -> bool {
        !self.tls_cert.as_os_str().is_empty()
    }
}

/// Durations as humantime strings: "10s", "500ms", "4h", "1m 30s".
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration like \"10s\", \"500ms\" or \"4h\": {e}"
            ))
        })
    }
}

/// An optional `address:port`, written `""` when absent.
mod optional_socket_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.collect_str(a),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is not an address and port like \"127.0.0.1:9435\" or \"[::1]:9435\" \
                 (\"\" for none)"
            ))
        })
    }
}

/// The gatekeeper's profiles, least to most strict.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum GatekeeperProfile {
    /// Everything allowed; every decision still recorded.
    Privileged,
    /// Rules 1, 3, 5, 6 and 8: no privileged mode, SYS_ADMIN, host
    /// namespaces, sensitive host paths or unsafe sysctls.
    Baseline,
    /// Every rule: also no root without a user namespace, no privilege
    /// escalation, no Unconfined seccomp.
    Restricted,
}

impl GatekeeperProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            GatekeeperProfile::Privileged => "privileged",
            GatekeeperProfile::Baseline => "baseline",
            GatekeeperProfile::Restricted => "restricted",
        }
    }
}

impl std::str::FromStr for GatekeeperProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "privileged" => Ok(GatekeeperProfile::Privileged),
            "baseline" => Ok(GatekeeperProfile::Baseline),
            "restricted" => Ok(GatekeeperProfile::Restricted),
            _ => Err(format!(
                "unknown gatekeeper profile {s:?} (privileged, baseline or restricted)"
            )),
        }
    }
}

/// What a namespace's pods may do with the network: NET_ADMIN needs
/// `restricted` or `admin`, the host's network needs `admin`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    Restricted,
    Admin,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Default => "default",
            NetworkMode::Restricted => "restricted",
            NetworkMode::Admin => "admin",
        }
    }
}

/// The node's security policy settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatekeeperConfig {
    /// The profile of namespaces no `[[gatekeeper.namespaces]]` entry names.
    pub profile: GatekeeperProfile,
    /// Their network mode.
    pub network: NetworkMode,
    /// Whether they may run privileged containers or add SYS_ADMIN.
    pub allow_privileged: bool,
    /// Audit rows kept; older ones are dropped.
    pub audit_max_rows: u64,
    /// kubelet's root directory: bind mounts from `<kubelet_root>/pods/<pod
    /// uid>/` are the pod's own volumes, any other is a host path.
    pub kubelet_root: PathBuf,
    /// kubelet's pod log directory: container logs must stay under it.
    pub log_root: PathBuf,
    /// Baseline refuses an Unconfined seccomp profile: set it where kubelet
    /// runs with seccompDefault (it then sends Unconfined only when a pod
    /// asks for it; without it, an unset profile arrives as Unconfined).
    pub refuse_unconfined_seccomp: bool,
    /// Per-namespace overrides; the first whose pattern matches wins.
    #[serde(default)]
    pub namespaces: Vec<NamespacePolicyConfig>,
}

/// One `[[gatekeeper.namespaces]]` entry: unset keys take the defaults
/// above.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamespacePolicyConfig {
    /// A namespace name or a glob (`team-*`, `ci-?`, `[ab]-prod`).
    #[serde(rename = "match")]
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<GatekeeperProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privileged: Option<bool>,
}

/// The policy settings that apply to one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespacePolicy {
    pub profile: GatekeeperProfile,
    pub network: NetworkMode,
    pub allow_privileged: bool,
}

impl GatekeeperConfig {
    /// The settings for pods of `namespace`.
    pub fn for_namespace(&self, namespace: &str) -> NamespacePolicy {
        let entry = self.namespaces.iter().find(|n| {
            globset::Glob::new(&n.pattern)
                .map(|g| g.compile_matcher().is_match(namespace))
                .unwrap_or(false)
        });
        NamespacePolicy {
            profile: entry.and_then(|e| e.profile).unwrap_or(self.profile),
            network: entry.and_then(|e| e.network).unwrap_or(self.network),
            allow_privileged: entry
                .and_then(|e| e.allow_privileged)
                .unwrap_or(self.allow_privileged),
        }
    }
}

/// How containers are run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The handler used when kubelet names none.
    pub default_runtime: String,
    /// The shim binary; empty means next to the vordr binary, then PATH.
    pub shim_path: PathBuf,
    /// Longer container log lines are split into partial records.
    pub max_container_log_line_size: usize,
    /// Never lower a container's oom_score_adj below the daemon's own.
    pub restrict_oom_score_adj: bool,
    /// Base directory of `localhost/` seccomp profiles.
    pub seccomp_profile_root: PathBuf,
    /// Runtime handlers by name (kubelet's RuntimeClass handler).
    pub handlers: std::collections::BTreeMap<String, RuntimeHandler>,
}

/// What a runtime handler (RuntimeClass) runs containers with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandler {
    /// "youki" (libcontainer inside the shim) or "runc" (its command line).
    #[serde(rename = "type")]
    pub kind: String,
    /// The runc binary (runc only).
    #[serde(default)]
    pub path: PathBuf,
}

/// Image pulls: credentials, and the bounds that keep a pull from hanging
/// or filling the node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    pub parallel_downloads: u32,
    pub auth_file: PathBuf,
    pub pinned_images: Vec<String>,
    /// A pull that receives no data (and unpacks none) for this long is
    /// cancelled, as containerd's `image_pull_progress_timeout` and CRI-O's
    /// `pull_progress_timeout` do; zero never cancels.
    #[serde(with = "duration")]
    pub pull_progress_timeout: Duration,
    /// Connecting to a registry gives up after this long; zero leaves it
    /// to the kernel.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// A registry request that receives nothing for this long (waiting for
    /// the response, or between two reads of its body) fails; zero never.
    #[serde(with = "duration")]
    pub read_timeout: Duration,
    /// Bytes of file content one layer may unpack to; 0 for no cap.
    pub max_layer_unpacked_size: u64,
    /// Entries (files, directories, links, whiteouts) one layer may hold;
    /// 0 for no cap.
    pub max_layer_entries: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub socket: PathBuf,
    pub root: PathBuf,
    pub run_dir: PathBuf,
    pub log_level: String,
    pub registries_config: PathBuf,
    /// Where Prometheus metrics are served over plain HTTP (`/metrics`),
    /// e.g. `127.0.0.1:9435`; `""` (the default) serves none.
    #[serde(with = "optional_socket_addr")]
    pub metrics_address: Option<std::net::SocketAddr>,
}

/// How pod and container cgroups are named and created.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

impl CgroupDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupDriver::Cgroupfs => "cgroupfs",
            CgroupDriver::Systemd => "systemd",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CgroupConfig {
    pub driver: CgroupDriver,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub netavark_path: PathBuf,
    pub firewall_driver: String,
    pub network_name: String,
    pub bridge: String,
    pub subnet: IpNet,
    /// The other address family's subnet for dual-stack pods ("" for none).
    pub subnet6: String,
    pub use_pod_cidr: bool,
    pub pool_size: u32,
    pub host_resolv_conf: PathBuf,
    /// The bridge's and pods' MTU; 0 takes the node's default-route
    /// interface's.
    pub mtu: u32,
    /// Who attaches pods: netavark with Vordr's IPAM, or the cluster's CNI
    /// plugins.
    pub driver: NetworkDriver,
    pub cni: CniConfig,
}

impl NetworkConfig {
    /// `subnet6`, parsed: the second family of dual-stack pods.
    pub fn second_subnet(&self) -> Result<Option<IpNet>, ConfigError> {
        if self.subnet6.trim().is_empty() {
            return Ok(None);
        }
        let n: IpNet = self
            .subnet6
            .trim()
            .parse()
            .map_err(|_| ConfigError::Invalid {
                field: "network.subnet6",
                reason: format!("{:?} is not a CIDR", self.subnet6),
            })?;
        if n.network() != n.addr() {
            return Err(ConfigError::Invalid {
                field: "network.subnet6",
                reason: "host bits must be zero".into(),
            });
        }
        Ok(Some(n))
    }
}

/// Who attaches pod network namespaces.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NetworkDriver {
    Netavark,
    Cni,
}

impl std::str::FromStr for NetworkDriver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "netavark" => Ok(NetworkDriver::Netavark),
            "cni" => Ok(NetworkDriver::Cni),
            _ => Err(format!("unknown network driver {s:?} (netavark or cni)")),
        }
    }
}

/// `[network.cni]`: where the cluster's network add-on puts its config
/// lists and plugins.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CniConfig {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    /// Attachment cache; empty for `<root>/cni/cache`.
    pub cache_dir: PathBuf,
    #[serde(with = "duration")]
    pub plugin_timeout: std::time::Duration,
}

/// A user's file, parsed only to reject unknown sections by name.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialConfig {
    #[serde(default)]
    server: toml::Table,
    #[serde(default)]
    cgroup: toml::Table,
    #[serde(default)]
    network: toml::Table,
    #[serde(default)]
    image: toml::Table,
    #[serde(default)]
    runtime: toml::Table,
    #[serde(default)]
    gatekeeper: toml::Table,
    #[serde(default)]
    streaming: toml::Table,
    #[serde(default)]
    stats: toml::Table,
    #[serde(default)]
    events: toml::Table,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_toml_str(EMBEDDED_DEFAULT, "embedded default")
            .expect("the embedded default config is valid")
    }
}

/// Sets every key of `src` in `dst`, table by table (a user's
/// `[network.cni]` with one key keeps the defaults of the others).
fn overlay_table(dst: &mut toml::Table, src: toml::Table) {
    for (k, v) in src {
        match (dst.get_mut(&k), v) {
            (Some(toml::Value::Table(d)), toml::Value::Table(s)) => overlay_table(d, s),
            (_, v) => {
                dst.insert(k, v);
            }
        }
    }
}

impl Config {
    /// Parses a complete configuration.
    fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_string(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Loads the embedded defaults, then overlays the keys set in `text`.
    pub fn from_overlay_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let parse_err = |source| ConfigError::Parse {
            origin: origin.to_string(),
            source,
        };
        // Reject unknown sections early with a clear message.
        let _: PartialConfig = toml::from_str(text).map_err(parse_err)?;
        let mut base: toml::Table = toml::from_str(EMBEDDED_DEFAULT).map_err(parse_err)?;
        let overlay: toml::Table = toml::from_str(text).map_err(parse_err)?;
        overlay_table(&mut base, overlay);
        let merged = toml::to_string(&base).expect("a TOML table serialises");
        Config::from_toml_str(&merged, origin)
    }

    /// Loads the configuration from `path`, or the embedded default when `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Ok(Config::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Config::from_overlay_str(&text, &p.display().to_string())
            }
        }
    }

    /// Checks values that TOML types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_string(),
            })
        };
        for (field, p) in [
            ("server.socket", &self.server.socket),
            ("server.root", &self.server.root),
            ("server.run_dir", &self.server.run_dir),
        ] {
            if !p.is_absolute() {
                return invalid(field, "must be an absolute path");
            }
        }
        if !self
            .runtime
            .handlers
            .contains_key(&self.runtime.default_runtime)
        {
            return invalid(
                "runtime.default_runtime",
                "names no [runtime.handlers] entry",
            );
        }
        for h in self.runtime.handlers.values() {
            if h.kind != "youki" && h.kind != "runc" {
                return invalid("runtime.handlers.type", "must be \"youki\" or \"runc\"");
            }
        }
        for n in &self.gatekeeper.namespaces {
            if n.pattern.is_empty() || globset::Glob::new(&n.pattern).is_err() {
                return Err(ConfigError::Invalid {
                    field: "gatekeeper.namespaces.match",
                    reason: format!("{:?} is not a namespace name or glob", n.pattern),
                });
            }
        }
        if let Some(second) = self.network.second_subnet()? {
            if second.addr().is_ipv4() == self.network.subnet.addr().is_ipv4() {
                return invalid(
                    "network.subnet6",
                    "must be of the other address family than network.subnet",
                );
            }
        }
        let subnet = &self.network.subnet;
        match subnet {
            IpNet::V4(n) if n.prefix_len() > 30 => {
                return invalid(
                    "network.subnet",
                    "an IPv4 subnet needs a prefix of /30 or shorter",
                )
            }
            IpNet::V6(n) if n.prefix_len() > 126 => {
                return invalid(
                    "network.subnet",
                    "an IPv6 subnet needs a prefix of /126 or shorter",
                )
            }
            _ => {}
        }
        if subnet.network() != subnet.addr() {
            return invalid("network.subnet", "host bits must be zero");
        }
        let b = &self.network.bridge;
        if b.is_empty() || b.len() > 15 || b.contains('/') || b.contains(char::is_whitespace) {
            return invalid(
                "network.bridge",
                "must be a Linux interface name (1-15 characters, no '/' or spaces)",
            );
        }
        let n = &self.network.network_name;
        if n.is_empty()
            || !n.chars().next().unwrap().is_ascii_alphanumeric()
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return invalid(
                "network.network_name",
                "must match [a-zA-Z0-9][a-zA-Z0-9_.-]*",
            );
        }
        if !matches!(
            self.network.firewall_driver.as_str(),
            "" | "iptables" | "nftables" | "firewalld"
        ) {
            return invalid(
                "network.firewall_driver",
                "must be empty, \"iptables\", \"nftables\" or \"firewalld\"",
            );
        }
        self.validate_streaming()?;
        self.validate_stats()
    }

    fn validate_stats(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_string(),
            })
        };
        for (field, d) in [
            ("stats.interval", self.stats.interval),
            ("stats.filesystem_interval", self.stats.filesystem_interval),
        ] {
            if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
                return invalid(field, "must be between 100ms and 1h");
            }
        }
        if self.events.backlog > 1_000_000 {
            return invalid("events.backlog", "must be at most 1000000");
        }
        if !(1..=1_000_000).contains(&self.events.stream_buffer) {
            return invalid("events.stream_buffer", "must be between 1 and 1000000");
        }
        Ok(())
    }

    fn validate_streaming(&self) -> Result<(), ConfigError> {
        let s = &self.streaming;
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_string(),
            })
        };
        for (field, d) in [
            ("streaming.header_read_timeout", s.header_read_timeout),
            ("streaming.idle_timeout", s.idle_timeout),
        ] {
            if d.is_zero() {
                return invalid(field, "must be longer than zero");
            }
        }
        if s.max_connections == 0 {
            return invalid("streaming.max_connections", "must be at least 1");
        }
        if s.max_streams_per_session < 5 {
            return invalid(
                "streaming.max_streams_per_session",
                "must be at least 5 (an exec opens error, stdin, stdout, stderr and resize)",
            );
        }
        if s.max_port_forward_pairs == 0 {
            return invalid("streaming.max_port_forward_pairs", "must be at least 1");
        }
        let (cert, key) = (&s.tls_cert, &s.tls_key);
        if cert.as_os_str().is_empty() != key.as_os_str().is_empty() {
            return invalid(
                "streaming.tls_cert",
                "tls_cert and tls_key go together: set both or neither",
            );
        }
        for (field, p) in [("streaming.tls_cert", cert), ("streaming.tls_key", key)] {
            if !p.as_os_str().is_empty() && !p.is_absolute() {
                return invalid(field, "must be an absolute path");
            }
        }
        if !s.address.is_loopback() && !s.tls() && !s.insecure {
            return Err(ConfigError::Invalid {
                field: "streaming.address",
                reason: format!(
                    "{} is not a loopback address: streaming URLs reached from elsewhere need \
                     TLS (set tls_cert and tls_key), or `insecure = true` to serve them over \
                     plain HTTP anyway",
                    s.address
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::default();
        assert_eq!(c.server.socket, PathBuf::from("/run/vordr/vordr.sock"));
        assert_eq!(c.server.root, PathBuf::from("/var/lib/vordr"));
        assert_eq!(c.cgroup.driver, CgroupDriver::Cgroupfs);
        assert_eq!(c.network.subnet.to_string(), "10.88.0.0/16");
    }

    #[test]
    fn metrics_address_is_off_by_default_and_parsed_when_set() {
        assert_eq!(Config::default().server.metrics_address, None);
        let c = Config::from_overlay_str("[server]\nmetrics_address = \"127.0.0.1:9435\"\n", "t")
            .unwrap();
        let addr: std::net::SocketAddr = "127.0.0.1:9435".parse().unwrap();
        assert_eq!(c.server.metrics_address, Some(addr));
        // Written back as it was read, and "" for none.
        let text = toml::to_string(&c).unwrap();
        assert!(
            text.contains("metrics_address = \"127.0.0.1:9435\""),
            "{text}"
        );
        let off = toml::to_string(&Config::default()).unwrap();
        assert!(off.contains("metrics_address = \"\""), "{off}");
        for bad in ["127.0.0.1", "localhost:9435", ":9435"] {
            let e =
                Config::from_overlay_str(&format!("[server]\nmetrics_address = {bad:?}\n"), "t")
                    .unwrap_err()
                    .to_string();
            assert!(
                e.contains("metrics_address") && e.contains("address and port"),
                "{e}"
            );
        }
    }

    #[test]
    fn overlay_replaces_only_given_keys() {
        let c = Config::from_overlay_str(
            "[network]\nsubnet = \"10.99.0.0/24\"\n[cgroup]\ndriver = \"systemd\"\n",
            "test",
        )
        .unwrap();
        assert_eq!(c.network.subnet.to_string(), "10.99.0.0/24");
        assert_eq!(c.network.bridge, "vordr0");
        assert_eq!(c.cgroup.driver, CgroupDriver::Systemd);
    }

    #[test]
    fn gatekeeper_namespaces_take_the_first_matching_entry() {
        let c = Config::from_overlay_str(
            r#"
[gatekeeper]
profile = "restricted"
[[gatekeeper.namespaces]]
match = "team-*"
network = "restricted"
[[gatekeeper.namespaces]]
match = "team-admin"
profile = "privileged"
[[gatekeeper.namespaces]]
match = "infra"
profile = "baseline"
network = "admin"
allow_privileged = true
"#,
            "t",
        )
        .unwrap();
        let g = &c.gatekeeper;
        let p = |ns| g.for_namespace(ns);
        assert_eq!(
            p("default"),
            NamespacePolicy {
                profile: GatekeeperProfile::Restricted,
                network: NetworkMode::Default,
                allow_privileged: false
            }
        );
        // team-admin matches team-* first: restricted, network restricted.
        assert_eq!(p("team-admin").profile, GatekeeperProfile::Restricted);
        assert_eq!(p("team-admin").network, NetworkMode::Restricted);
        assert_eq!(
            p("infra"),
            NamespacePolicy {
                profile: GatekeeperProfile::Baseline,
                network: NetworkMode::Admin,
                allow_privileged: true
            }
        );
        // The embedded default lets kube-system run the node's own pods.
        let d = Config::default().gatekeeper;
        assert_eq!(d.profile, GatekeeperProfile::Baseline);
        assert_eq!(
            d.for_namespace("kube-system").profile,
            GatekeeperProfile::Privileged
        );
        assert_eq!(d.for_namespace("kube-systemx").profile, d.profile);
        // So does Vordr's installer (deploy/k8s), not on the host network.
        assert_eq!(
            d.for_namespace("vordr-system"),
            NamespacePolicy {
                profile: GatekeeperProfile::Privileged,
                network: NetworkMode::Default,
                allow_privileged: true
            }
        );
        let e = Config::from_overlay_str("[gatekeeper]\nprofile = \"strict\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("strict"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = Config::from_overlay_str("[network]\nsubnett = \"10.0.0.0/8\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("subnett"), "{e}");
        let e = Config::from_overlay_str("[netwrk]\n", "t").unwrap_err();
        assert!(e.to_string().contains("netwrk"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        for (text, field) in [
            ("[network]\nsubnet = \"10.0.0.1/8\"", "network.subnet"),
            ("[network]\nsubnet = \"10.0.0.0/31\"", "network.subnet"),
            (
                "[network]\nbridge = \"a-very-long-bridge-name\"",
                "network.bridge",
            ),
            ("[network]\nnetwork_name = \"-x\"", "network.network_name"),
            ("[server]\nroot = \"relative\"", "server.root"),
            (
                "[[gatekeeper.namespaces]]\nmatch = \"a[\"",
                "gatekeeper.namespaces.match",
            ),
            (
                "[network]\nfirewall_driver = \"pf\"",
                "network.firewall_driver",
            ),
        ] {
            let e = Config::from_overlay_str(text, "t").unwrap_err();
            assert!(e.to_string().contains(field), "{text}: {e}");
        }
        let e = Config::from_overlay_str("[cgroup]\ndriver = \"cgroupv3\"", "t").unwrap_err();
        assert!(e.to_string().contains("cgroupv3"), "{e}");
    }

    #[test]
    fn streaming_limits_and_durations() {
        let d = Config::default().streaming;
        assert_eq!(d.header_read_timeout, Duration::from_secs(10));
        assert_eq!(d.idle_timeout, Duration::from_secs(60));
        assert_eq!(
            (
                d.max_connections,
                d.max_streams_per_session,
                d.max_port_forward_pairs
            ),
            (1000, 256, 64)
        );
        assert!(!d.tls() && !d.insecure && d.address.is_loopback());
        let c = Config::from_overlay_str(
            "[streaming]\nheader_read_timeout = \"250ms\"\nidle_timeout = \"1m 30s\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.streaming.header_read_timeout, Duration::from_millis(250));
        assert_eq!(c.streaming.idle_timeout, Duration::from_secs(90));
        // Durations survive a round trip through TOML.
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("header_read_timeout = \"250ms\""), "{text}");
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), c);
        for (text, field) in [
            ("[streaming]\nidle_timeout = \"10\"", "idle_timeout"),
            (
                "[streaming]\nidle_timeout = \"0s\"",
                "streaming.idle_timeout",
            ),
            (
                "[streaming]\nheader_read_timeout = \"soon\"",
                "header_read_timeout",
            ),
            (
                "[streaming]\nmax_connections = 0",
                "streaming.max_connections",
            ),
            (
                "[streaming]\nmax_streams_per_session = 4",
                "streaming.max_streams_per_session",
            ),
            (
                "[streaming]\nmax_port_forward_pairs = 0",
                "streaming.max_port_forward_pairs",
            ),
            (
                "[streaming]\ntls_cert = \"/etc/vordr/cert.pem\"",
                "streaming.tls_cert",
            ),
            (
                "[streaming]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"",
                "streaming.tls_cert",
            ),
        ] {
            let e = Config::from_overlay_str(text, "t").unwrap_err();
            assert!(e.to_string().contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn stats_and_events_settings() {
        let c = Config::default();
        assert_eq!(c.stats.interval, Duration::from_secs(1));
        assert_eq!(c.stats.filesystem_interval, Duration::from_secs(10));
        assert_eq!((c.events.backlog, c.events.stream_buffer), (1024, 4096));
        let c = Config::from_overlay_str("[stats]\ninterval = \"250ms\"\n", "t").unwrap();
        assert_eq!(c.stats.interval, Duration::from_millis(250));
        for (text, field) in [
            ("[stats]\ninterval = \"10ms\"", "stats.interval"),
            (
                "[stats]\nfilesystem_interval = \"2h\"",
                "stats.filesystem_interval",
            ),
            ("[events]\nbacklog = 2000000", "events.backlog"),
            ("[events]\nstream_buffer = 0", "events.stream_buffer"),
        ] {
            let e = Config::from_overlay_str(text, "t").unwrap_err();
            assert!(e.to_string().contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn a_non_loopback_streaming_address_needs_tls_or_insecure() {
        for address in ["0.0.0.0", "::", "10.1.2.3"] {
            let text = format!("[streaming]\naddress = \"{address}\"\n");
            let e = Config::from_overlay_str(&text, "t").unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("streaming.address"), "{msg}");
            assert!(
                msg.contains("tls_cert") && msg.contains("insecure = true"),
                "{msg}"
            );
            let insecure = format!("{text}insecure = true\n");
            assert!(Config::from_overlay_str(&insecure, "t").is_ok());
            let tls =
                format!("{text}tls_cert = \"/etc/vordr/c.pem\"\ntls_key = \"/etc/vordr/k.pem\"\n");
            assert!(Config::from_overlay_str(&tls, "t").unwrap().streaming.tls());
        }
        for address in ["127.0.0.1", "127.0.0.2", "::1"] {
            let text = format!("[streaming]\naddress = \"{address}\"\n");
            assert!(Config::from_overlay_str(&text, "t").is_ok(), "{address}");
        }
    }

    #[test]
    fn image_pull_bounds() {
        let d = Config::default().image;
        assert_eq!(d.pull_progress_timeout, Duration::from_secs(300));
        assert_eq!(d.connect_timeout, Duration::from_secs(30));
        assert_eq!(d.read_timeout, Duration::from_secs(60));
        assert_eq!((d.max_layer_unpacked_size, d.max_layer_entries), (0, 0));
        let c = Config::from_overlay_str(
            "[image]\npull_progress_timeout = \"0s\"\nconnect_timeout = \"1500ms\"\n\
             read_timeout = \"2m 30s\"\nmax_layer_unpacked_size = 1073741824\n\
             max_layer_entries = 100000\n",
            "t",
        )
        .unwrap()
        .image;
        assert_eq!(c.pull_progress_timeout, Duration::ZERO);
        assert_eq!(c.connect_timeout, Duration::from_millis(1500));
        assert_eq!(c.read_timeout, Duration::from_secs(150));
        assert_eq!(c.max_layer_unpacked_size, 1 << 30);
        assert_eq!(c.max_layer_entries, 100_000);
        for text in [
            "[image]\npull_progress_timeout = \"5 minutes please\"",
            "[image]\nread_timeout = 60",
            "[image]\nmax_layer_entries = -1",
        ] {
            let e = Config::from_overlay_str(text, "t").unwrap_err();
            let key = text.split('\n').nth(1).unwrap().split(' ').next().unwrap();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = Config::load(Some(Path::new("/nonexistent/vordr.toml"))).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
    }

    #[test]
    fn nested_tables_overlay_key_by_key() {
        let c = Config::from_overlay_str(
            "[network]\ndriver = \"cni\"\n[network.cni]\nconf_dir = \"/tmp/net.d\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.network.driver, NetworkDriver::Cni);
        assert_eq!(c.network.cni.conf_dir, PathBuf::from("/tmp/net.d"));
        // The keys not given keep their defaults.
        assert_eq!(
            c.network.cni.bin_dirs,
            [PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(
            c.network.cni.plugin_timeout,
            std::time::Duration::from_secs(60)
        );
        assert_eq!(Config::default().network.driver, NetworkDriver::Netavark);
        let e = Config::from_overlay_str("[network]\ndriver = \"flannel\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("flannel"), "{e}");
    }
}
