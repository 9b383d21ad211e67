//! Attaching pod network namespaces to a bridge network with netavark.
//! Vordr allocates the addresses itself and hands them to netavark as
//! static IPs, which netavark 1.4 (iptables) and 2.x (nftables) both accept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// Errors from running netavark.
#[derive(Debug, thiserror::Error)]
pub enum NetavarkError {
    #[error("netavark binary {path} is not usable: {source}")]
    Missing {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("netavark {verb} failed ({status}): {message}")]
    Failed {
        verb: &'static str,
        status: String,
        message: String,
    },
    #[error("netavark {verb}: {source}")]
    Io {
        verb: &'static str,
        source: std::io::Error,
    },
}

/// A bridge network that pods attach to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeNetwork {
    pub name: String,
    pub bridge: String,
    pub subnet: IpNet,
    pub gateway: IpAddr,
    /// The other address family's subnet, for dual-stack pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<IpNet>,
    /// The bridge's and veths' MTU; 0 leaves netavark's default (1500).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtu: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl BridgeNetwork {
    /// netavark wants a 64-hex-digit network id; derive a stable one from
    /// the name, bridge and subnet.
    pub fn id(&self) -> String {
        let mut key = format!("{}\0{}\0{}", self.name, self.bridge, self.subnet);
        if let Some(s6) = self.subnet6 {
            key.push_str(&format!("\0{s6}"));
        }
        (0u64..4)
            .map(|seed| format!("{:016x}", fnv1a(seed, key.as_bytes())))
            .collect()
    }
}

fn fnv1a(seed: u64, data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325 ^ seed.wrapping_mul(0x9e3779b97f4a7c15);
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A CRI port mapping in netavark's form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub container_port: u16,
    pub host_ip: String,
    pub host_port: u16,
    /// "tcp", "udp" or "sctp"
    pub protocol: String,
    pub range: u16,
}

/// One pod's attachment: everything `setup` and `teardown` need.
#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    pub pod_id: &'a str,
    pub pod_name: &'a str,
    pub netns: &'a Path,
    pub network: &'a BridgeNetwork,
    pub ip: IpAddr,
    /// The pod's address in `network.subnet6`, when dual-stack.
    pub ip6: Option<IpAddr>,
    pub ports: &'a [PortMapping],
}

#[derive(Serialize)]
struct NetworkOptions<'a> {
    container_id: &'a str,
    container_name: &'a str,
    networks: HashMap<&'a str, PerNetworkOptions>,
    network_info: HashMap<&'a str, Network<'a>>,
    port_mappings: Option<&'a [PortMapping]>,
}

#[derive(Serialize)]
struct PerNetworkOptions {
    interface_name: &'static str,
    static_ips: Vec<IpAddr>,
}

#[derive(Serialize)]
struct Network<'a> {
    name: &'a str,
    id: String,
    driver: &'static str,
    network_interface: &'a str,
    subnets: Vec<Subnet>,
    ipv6_enabled: bool,
    internal: bool,
    dns_enabled: bool,
    ipam_options: HashMap<&'static str, &'static str>,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    options: HashMap<&'static str, String>,
}

#[derive(Serialize)]
struct Subnet {
    subnet: IpNet,
    gateway: IpAddr,
}

/// What `netavark setup` reports per network.
#[derive(Debug, Deserialize)]
pub struct StatusBlock {
    #[serde(default)]
    pub interfaces: Option<HashMap<String, NetInterface>>,
}

#[derive(Debug, Deserialize)]
pub struct NetInterface {
    pub mac_address: String,
}

/// Runs the netavark binary.
#[derive(Debug, Clone)]
pub struct Netavark {
    pub binary: PathBuf,
    /// netavark's `--config` directory (state for aardvark and firewalls).
    pub config_dir: PathBuf,
    /// Exported as NETAVARK_FW when not empty.
    pub firewall_driver: String,
}

/// The machine-wide lock every netavark run holds. netavark 1.4 does not
/// serialise concurrent runs itself: a teardown that finds a bridge empty
/// removes firewall rules while a setup is adding a pod, and runs for
/// different networks share the NETAVARK chains. One lock per machine, not
/// per daemon, so that several daemons (as in the tests) cannot race either.
pub const LOCK_FILE: &str = "/run/lock/vordr-netavark.lock";

/// The interface name inside every pod.
pub const POD_INTERFACE: &str = "eth0";

impl Netavark {
    /// The binary's version line, or why it cannot run.
    pub async fn version(&self) -> Result<String, NetavarkError> {
        let out = tokio::process::Command::new(&self.binary)
            .arg("--version")
            .output()
            .await
            .map_err(|source| NetavarkError::Missing {
                path: self.binary.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(NetavarkError::Failed {
                verb: "version",
                status: out.status.to_string(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn options<'a>(a: &'a Attachment<'a>) -> NetworkOptions<'a> {
        let n = a.network;
        NetworkOptions {
            container_id: a.pod_id,
            container_name: a.pod_name,
            networks: HashMap::from([(
                n.name.as_str(),
                PerNetworkOptions {
                    interface_name: POD_INTERFACE,
                    static_ips: std::iter::once(a.ip).chain(a.ip6).collect(),
                },
            )]),
            network_info: HashMap::from([(
                n.name.as_str(),
                Network {
                    name: &n.name,
                    id: n.id(),
                    driver: "bridge",
                    network_interface: &n.bridge,
                    subnets: std::iter::once(Subnet {
                        subnet: n.subnet,
                        gateway: n.gateway,
                    })
                    .chain(n.subnet6.map(|s| Subnet {
                        subnet: s,
                        gateway: crate::ipam::gateway(&s),
                    }))
                    .collect(),
                    ipv6_enabled: n.subnet.addr().is_ipv6() || n.subnet6.is_some(),
                    internal: false,
                    dns_enabled: false,
                    ipam_options: HashMap::from([("driver", "host-local")]),
                    options: if n.mtu > 0 {
                        HashMap::from([("mtu", n.mtu.to_string())])
                    } else {
                        HashMap::new()
                    },
                },
            )]),
            port_mappings: (!a.ports.is_empty()).then_some(a.ports),
        }
    }

    /// Creates the pod's interface, bridge and firewall rules.
    pub async fn setup(
        &self,
        a: &Attachment<'_>,
    ) -> Result<HashMap<String, StatusBlock>, NetavarkError> {
        let out = self.run("setup", a).await?;
        serde_json::from_slice(&out).map_err(|e| NetavarkError::Failed {
            verb: "setup",
            status: "ok".into(),
            message: format!("unreadable output: {e}"),
        })
    }

    /// Removes what `setup` created.
    pub async fn teardown(&self, a: &Attachment<'_>) -> Result<(), NetavarkError> {
        self.run("teardown", a).await.map(|_| ())
    }

    /// Takes the exclusive lock that every netavark run holds (see [`LOCK_FILE`]).
    async fn lock(&self) -> Result<std::fs::File, NetavarkError> {
        let path = PathBuf::from(LOCK_FILE);
        let io = |source| NetavarkError::Io {
            verb: "lock",
            source,
        };
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(path.parent().expect("lock file has a parent"))?;
            let f = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            // SAFETY: flock on a file descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(f)
        })
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(io)
    }

    /// Waits until no netavark started by this or an earlier (crashed)
    /// daemon is still running, so reconciliation does not race it.
    pub async fn wait_idle(&self) -> Result<(), NetavarkError> {
        self.lock().await.map(drop)
    }

    async fn run(&self, verb: &'static str, a: &Attachment<'_>) -> Result<Vec<u8>, NetavarkError> {
        let input = serde_json::to_vec(&Self::options(a)).expect("options serialise");
        let lock = self.lock().await?;
        let lock_fd = lock.as_raw_fd();
        let mut cmd = tokio::process::Command::new(&self.binary);
        // The child inherits the locked file description, so the lock is
        // held until netavark exits, even if this daemon dies first.
        // SAFETY: only async-signal-safe fcntl calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let flags = libc::fcntl(lock_fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(lock_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.arg("--config")
            .arg(&self.config_dir)
            .arg(verb)
            .arg(a.netns)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Never kill netavark half-way (it would leave a bridge without its
        // address): if this future is dropped or the daemon exits, netavark
        // finishes, and the lock it holds makes the next daemon wait for it.
        if !self.firewall_driver.is_empty() {
            cmd.env("NETAVARK_FW", &self.firewall_driver);
        }
        let mut child = cmd.spawn().map_err(|source| NetavarkError::Missing {
            path: self.binary.clone(),
            source,
        })?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(&input)
            .await
            .map_err(|source| NetavarkError::Io { verb, source })?;
        drop(stdin);
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| NetavarkError::Io { verb, source })?;
        drop(lock);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // netavark reports errors as JSON {"error": "..."} on stdout.
            let stdout = String::from_utf8_lossy(&out.stdout);
            let message = serde_json::from_str::<serde_json::Value>(&stdout)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                .unwrap_or_else(|| {
                    format!("{} {}", stdout.trim(), stderr.trim())
                        .trim()
                        .to_string()
                });
            return Err(NetavarkError::Failed {
                verb,
                status: out.status.to_string(),
                message,
            });
        }
        Ok(out.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> BridgeNetwork {
        BridgeNetwork {
            name: "vordr".into(),
            bridge: "vordr0".into(),
            subnet: "10.88.0.0/16".parse().unwrap(),
            gateway: "10.88.0.1".parse().unwrap(),
            subnet6: None,
            mtu: 0,
        }
    }

    #[test]
    fn network_id_is_stable_64_hex() {
        let id = net().id();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id, net().id());
        let mut other = net();
        other.bridge = "vordr1".into();
        assert_ne!(id, other.id());
    }

    #[test]
    fn options_json_has_static_ip_and_ports() {
        let n = net();
        let ports = vec![PortMapping {
            container_port: 80,
            host_ip: "127.0.0.1".into(),
            host_port: 8080,
            protocol: "tcp".into(),
            range: 1,
        }];
        let a = Attachment {
            pod_id: "abc",
            pod_name: "pod",
            netns: Path::new("/run/x"),
            network: &n,
            ip: "10.88.0.5".parse().unwrap(),
            ip6: None,
            ports: &ports,
        };
        let v = serde_json::to_value(Netavark::options(&a)).unwrap();
        assert_eq!(v["networks"]["vordr"]["static_ips"][0], "10.88.0.5");
        assert_eq!(v["networks"]["vordr"]["interface_name"], "eth0");
        assert_eq!(v["network_info"]["vordr"]["network_interface"], "vordr0");
        assert_eq!(
            v["network_info"]["vordr"]["subnets"][0]["gateway"],
            "10.88.0.1"
        );
        assert_eq!(v["port_mappings"][0]["host_port"], 8080);
        assert!(v["network_info"]["vordr"].get("options").is_none());
        let no_ports = Attachment { ports: &[], ..a };
        let v = serde_json::to_value(Netavark::options(&no_ports)).unwrap();
        assert!(v["port_mappings"].is_null());
        let small = BridgeNetwork {
            mtu: 1400,
            ..n.clone()
        };
        let v = serde_json::to_value(Netavark::options(&Attachment {
            network: &small,
            ..a
        }))
        .unwrap();
        assert_eq!(v["network_info"]["vordr"]["options"]["mtu"], "1400");
        let dual = BridgeNetwork {
            subnet6: Some("fd00:88::/64".parse().unwrap()),
            ..n.clone()
        };
        assert_ne!(dual.id(), n.id());
        let v = serde_json::to_value(Netavark::options(&Attachment {
            network: &dual,
            ip6: Some("fd00:88::2".parse().unwrap()),
            ..a
        }))
        .unwrap();
        assert_eq!(v["networks"]["vordr"]["static_ips"][1], "fd00:88::2");
        assert_eq!(
            v["network_info"]["vordr"]["subnets"][1]["gateway"],
            "fd00:88::1"
        );
        assert_eq!(v["network_info"]["vordr"]["ipv6_enabled"], true);
    }

    #[tokio::test]
    async fn missing_binary_is_reported() {
        let nv = Netavark {
            binary: "/nonexistent/netavark".into(),
            config_dir: "/tmp".into(),
            firewall_driver: String::new(),
        };
        assert!(matches!(
            nv.version().await,
            Err(NetavarkError::Missing { .. })
        ));
    }
}
