//! Checking a PodSandboxConfig before anything is created, and turning it
//! into a plan the rest of RunPodSandbox follows.

use std::net::IpAddr;
use std::path::PathBuf;

use k8s_cri::v1::{NamespaceMode, PodSandboxConfig, Protocol};
use tonic::Status;
use vordr_config::CgroupDriver;
use vordr_net::netavark::PortMapping;
use vordr_net::resolv;
use vordr_net::sysctl::{self, Sysctl};

use crate::container::cgroup;
use crate::state::errors::invalid;

/// What RunPodSandbox will build.
#[derive(Debug, Clone, PartialEq)]
pub struct PodPlan {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub host_network: bool,
    pub host_ipc: bool,
    pub host_pid: bool,
    pub hostname: Option<String>,
    pub sysctls: Vec<Sysctl>,
    pub ports: Vec<PortMapping>,
    /// servers, searches, options; `None` copies the host's resolv.conf.
    pub dns: Dns,
    pub cgroup_parent: String,
    pub log_directory: Option<PathBuf>,
    /// The pod's user namespace mappings (userns mode POD).
    pub userns: Option<vordr_net::netns::IdMaps>,
}

/// The pod's user namespace mappings, when kubelet asked for one (mode POD).
pub fn pod_id_maps(sandbox: &k8s_cri::v1::PodSandboxConfig) -> Option<vordr_net::netns::IdMaps> {
    let u = sandbox
        .linux
        .as_ref()?
        .security_context
        .as_ref()?
        .namespace_options
        .as_ref()?
        .userns_options
        .as_ref()?;
    id_maps(u)
}

/// The mappings of a user namespace kubelet asked for (mode POD).
pub fn id_maps(u: &k8s_cri::v1::UserNamespace) -> Option<vordr_net::netns::IdMaps> {
    if u.mode != NamespaceMode::Pod as i32 {
        return None;
    }
    let map = |m: &[k8s_cri::v1::IdMapping]| {
        m.iter()
            .map(|m| (m.container_id, m.host_id, m.length))
            .collect()
    };
    Some(vordr_net::netns::IdMaps {
        uids: map(&u.uids),
        gids: map(&u.gids),
    })
}

fn mode(field: &str, v: i32) -> Result<NamespaceMode, Status> {
    NamespaceMode::try_from(v).map_err(|_| invalid(field, format!("unknown namespace mode {v}")))
}

fn valid_hostname(h: &str) -> bool {
    h.len() <= 64
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Validates `cfg` and returns the plan, or InvalidArgument naming the field.
pub fn plan(cfg: &PodSandboxConfig, driver: CgroupDriver) -> Result<PodPlan, Status> {
    let md = metadata(cfg)?;
    let linux = cfg.linux.clone().unwrap_or_default();
    let ns = namespaces(&linux)?;
    let hostname = hostname(cfg, ns.host_network)?;
    let sysctls = sysctls(&linux, ns.host_network, ns.host_ipc)?;
    let ports = ports(cfg, ns.host_network)?;
    let dns = dns(cfg)?;
    let cgroup_parent = cgroup::resolve_parent(driver, &linux.cgroup_parent)
        .map_err(|e| invalid("config.linux.cgroup_parent", e))?;
    let log_directory = log_directory(cfg)?;
    Ok(PodPlan {
        userns: ns.userns,
        name: md.name.clone(),
        namespace: md.namespace.clone(),
        uid: md.uid.clone(),
        attempt: md.attempt,
        host_network: ns.host_network,
        host_ipc: ns.host_ipc,
        host_pid: ns.host_pid,
        hostname,
        sysctls,
        ports,
        dns,
        cgroup_parent,
        log_directory,
    })
}

/// The pod's name, namespace and uid: present, and safe in CNI_ARGS.
fn metadata(cfg: &PodSandboxConfig) -> Result<&k8s_cri::v1::PodSandboxMetadata, Status> {
    let md = cfg
        .metadata
        .as_ref()
        .ok_or_else(|| invalid("config.metadata", "is required"))?;
    if md.name.is_empty() {
        return Err(invalid("config.metadata.name", "must not be empty"));
    }
    if md.uid.is_empty() {
        return Err(invalid("config.metadata.uid", "must not be empty"));
    }
    for (field, v) in [
        ("config.metadata.name", &md.name),
        ("config.metadata.namespace", &md.namespace),
        ("config.metadata.uid", &md.uid),
    ] {
        // ';' and '=' would add keys to the CNI_ARGS plugins are given
        // (host-local, for one, takes IP= from there).
        if v.len() > 253
            || v.chars()
                .any(|c| c.is_control() || matches!(c, '/' | ';' | '='))
        {
            return Err(invalid(
                field,
                format!("{v:?} has a control character, '/', ';' or '=', or is too long"),
            ));
        }
    }
    Ok(md)
}

/// Which of the host's namespaces the pod shares, and its user namespace.
struct Namespaces {
    host_network: bool,
    host_ipc: bool,
    host_pid: bool,
    userns: Option<vordr_net::netns::IdMaps>,
}

fn namespaces(linux: &k8s_cri::v1::LinuxPodSandboxConfig) -> Result<Namespaces, Status> {
    const FIELD: &str = "config.linux.security_context.namespace_options";
    let ns = linux
        .security_context
        .as_ref()
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    let mut host = [false; 3];
    for (i, (name, v)) in [("network", ns.network), ("ipc", ns.ipc), ("pid", ns.pid)]
        .into_iter()
        .enumerate()
    {
        let field = format!("{FIELD}.{name}");
        match mode(&field, v)? {
            NamespaceMode::Target => {
                return Err(invalid(
                    &field,
                    "mode TARGET is only valid for a container's PID namespace",
                ))
            }
            m => host[i] = m == NamespaceMode::Node,
        }
    }
    let mut userns = None;
    if let Some(u) = &ns.userns_options {
        let field = format!("{FIELD}.userns_options");
        match mode(&format!("{field}.mode"), u.mode)? {
            NamespaceMode::Node => {}
            NamespaceMode::Pod => {
                id_mappings(&format!("{field}.uids"), &u.uids)?;
                id_mappings(&format!("{field}.gids"), &u.gids)?;
                userns = id_maps(u);
            }
            _ => {
                return Err(invalid(
                    &format!("{field}.mode"),
                    "a user namespace is POD or NODE",
                ))
            }
        }
    }
    let [host_network, host_ipc, host_pid] = host;
    Ok(Namespaces {
        host_network,
        host_ipc,
        host_pid,
        userns,
    })
}

/// The most ranges a user namespace's uid_map or gid_map takes (the
/// kernel's UID_GID_MAP_MAX_EXTENTS).
pub const MAX_ID_RANGES: usize = 340;

/// Checks one list of a user namespace's mappings as the kernel would take
/// it, and that it maps container id 0 (the container's root, which owns
/// the image's files through the idmapped layers): not empty, at most
/// [`MAX_ID_RANGES`] ranges, each of length > 0 and not past the last
/// valid id (4294967294) inside or on the host, none overlapping another
/// inside or on the host.
pub fn id_mappings(field: &str, maps: &[k8s_cri::v1::IdMapping]) -> Result<(), Status> {
    if maps.is_empty() {
        return Err(invalid(field, "mode POD needs at least one mapping"));
    }
    if maps.len() > MAX_ID_RANGES {
        return Err(invalid(
            field,
            format!("{} mappings, more than {MAX_ID_RANGES}", maps.len()),
        ));
    }
    // Half-open ranges in u64: the end may be 2^32 - 1 at most (the id
    // u32::MAX is "no id" to the kernel).
    let end = |start: u32, len: u32| u64::from(start) + u64::from(len);
    for (i, m) in maps.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if m.length == 0 {
            return Err(invalid(&format!("{at}.length"), "must be greater than 0"));
        }
        for (what, start) in [("container_id", m.container_id), ("host_id", m.host_id)] {
            if end(start, m.length) > u64::from(u32::MAX) {
                return Err(invalid(
                    &at,
                    format!(
                        "{what} {start} + length {} passes the last id 4294967294",
                        m.length
                    ),
                ));
            }
        }
        for (j, o) in maps.iter().enumerate().take(i) {
            let overlaps =
                |a: u32, b: u32| u64::from(a) < end(b, o.length) && u64::from(b) < end(a, m.length);
            if overlaps(m.container_id, o.container_id) {
                return Err(invalid(
                    &at,
                    format!("its container ids overlap those of {field}[{j}]"),
                ));
            }
            if overlaps(m.host_id, o.host_id) {
                return Err(invalid(
                    &at,
                    format!("its host ids overlap those of {field}[{j}]"),
                ));
            }
        }
    }
    if !maps.iter().any(|m| m.container_id == 0 && m.length > 0) {
        return Err(invalid(field, "container id 0 is not mapped"));
    }
    Ok(())
}

/// The pod's own hostname; none on the host network or when not given.
fn hostname(cfg: &PodSandboxConfig, host_network: bool) -> Result<Option<String>, Status> {
    if cfg.hostname.is_empty() || host_network {
        Ok(None)
    } else if valid_hostname(&cfg.hostname) {
        Ok(Some(cfg.hostname.clone()))
    } else {
        Err(invalid(
            "config.hostname",
            format!("{:?} is not a valid hostname", cfg.hostname),
        ))
    }
}

/// The sysctls, in name order, each allowed for the namespaces the pod owns.
fn sysctls(
    linux: &k8s_cri::v1::LinuxPodSandboxConfig,
    host_network: bool,
    host_ipc: bool,
) -> Result<Vec<Sysctl>, Status> {
    let mut names: Vec<_> = linux.sysctls.iter().collect();
    names.sort();
    names
        .into_iter()
        .map(|(k, v)| {
            sysctl::check(k, v, host_network, host_ipc)
                .map_err(|e| invalid(&format!("config.linux.sysctls[{k:?}]"), e))
        })
        .collect()
}

/// The host ports to publish.
fn ports(cfg: &PodSandboxConfig, host_network: bool) -> Result<Vec<PortMapping>, Status> {
    let mut ports = Vec::new();
    for (i, p) in cfg.port_mappings.iter().enumerate() {
        let field = |f: &str| format!("config.port_mappings[{i}].{f}");
        let protocol = match Protocol::try_from(p.protocol) {
            Ok(Protocol::Tcp) => "tcp",
            Ok(Protocol::Udp) => "udp",
            Ok(Protocol::Sctp) => "sctp",
            Err(_) => {
                return Err(invalid(
                    &field("protocol"),
                    format!("unknown protocol {}", p.protocol),
                ))
            }
        };
        if !(1..=65535).contains(&p.container_port) {
            return Err(invalid(
                &field("container_port"),
                format!("{} is out of range 1-65535", p.container_port),
            ));
        }
        if !(0..=65535).contains(&p.host_port) {
            return Err(invalid(
                &field("host_port"),
                format!("{} is out of range 0-65535", p.host_port),
            ));
        }
        if !p.host_ip.is_empty() && p.host_ip.parse::<IpAddr>().is_err() {
            return Err(invalid(
                &field("host_ip"),
                format!("{:?} is not an IP address", p.host_ip),
            ));
        }
        // As with CNI's portmap plugin: host port 0 publishes nothing, and a
        // pod on the host network needs no mapping.
        if p.host_port == 0 || host_network {
            continue;
        }
        ports.push(PortMapping {
            container_port: p.container_port as u16,
            host_ip: p.host_ip.clone(),
            host_port: p.host_port as u16,
            protocol: protocol.into(),
            range: 1,
        });
    }
    Ok(ports)
}

/// The pod's resolv.conf entries; `None` copies the host's.
type Dns = Option<(Vec<String>, Vec<String>, Vec<String>)>;

fn dns(cfg: &PodSandboxConfig) -> Result<Dns, Status> {
    let Some(d) = &cfg.dns_config else {
        return Ok(None);
    };
    for (i, s) in d.servers.iter().enumerate() {
        if s.parse::<IpAddr>().is_err() {
            return Err(invalid(
                &format!("config.dns_config.servers[{i}]"),
                format!("{s:?} is not an IP address"),
            ));
        }
    }
    for (name, list) in [("searches", &d.searches), ("options", &d.options)] {
        for (i, s) in list.iter().enumerate() {
            if !resolv::valid_entry(s) {
                return Err(invalid(
                    &format!("config.dns_config.{name}[{i}]"),
                    format!("{s:?} is empty or has whitespace"),
                ));
            }
        }
    }
    Ok(Some((
        d.servers.clone(),
        d.searches.clone(),
        d.options.clone(),
    )))
}

/// Where kubelet wants the pod's container logs: absolute, if given.
fn log_directory(cfg: &PodSandboxConfig) -> Result<Option<PathBuf>, Status> {
    if cfg.log_directory.is_empty() {
        return Ok(None);
    }
    let p = PathBuf::from(&cfg.log_directory);
    if !p.is_absolute() {
        return Err(invalid(
            "config.log_directory",
            format!("{:?} must be an absolute path", cfg.log_directory),
        ));
    }
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{
        DnsConfig, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption,
        PodSandboxMetadata,
    };

    fn idm(container_id: u32, host_id: u32, length: u32) -> k8s_cri::v1::IdMapping {
        k8s_cri::v1::IdMapping {
            container_id,
            host_id,
            length,
        }
    }

    fn with_userns(
        uids: Vec<k8s_cri::v1::IdMapping>,
        gids: Vec<k8s_cri::v1::IdMapping>,
    ) -> PodSandboxConfig {
        let mut c = with_ns(0, 0, 0);
        let ns = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
        ns.namespace_options.as_mut().unwrap().userns_options = Some(k8s_cri::v1::UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids,
            gids,
        });
        c
    }

    /// The message of the InvalidArgument a pod with these mappings gets.
    fn userns_refusal(
        uids: Vec<k8s_cri::v1::IdMapping>,
        gids: Vec<k8s_cri::v1::IdMapping>,
    ) -> String {
        let err = plan(&with_userns(uids, gids), CgroupDriver::Cgroupfs).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        err.message().to_string()
    }

    #[test]
    fn user_namespace_mappings_are_checked_as_the_kernel_would() {
        const F: &str = "config.linux.security_context.namespace_options.userns_options";
        let ok = plan(
            &with_userns(vec![idm(0, 100_000, 65_536)], vec![idm(0, 100_000, 65_536)]),
            CgroupDriver::Cgroupfs,
        )
        .unwrap();
        assert_eq!(ok.userns.unwrap().uids, vec![(0, 100_000, 65_536)]);
        // Several ranges that neither overlap inside nor on the host.
        plan(
            &with_userns(
                vec![idm(0, 100_000, 1000), idm(1000, 300_000, 1000)],
                vec![idm(0, 100_000, 65_536)],
            ),
            CgroupDriver::Cgroupfs,
        )
        .unwrap();
        // critest: container id 0 not mapped.
        let m = userns_refusal(vec![idm(1, 1000, 100_000)], vec![idm(1, 1000, 100_000)]);
        assert!(
            m.contains(&format!("{F}.uids")) && m.contains("container id 0 is not mapped"),
            "{m}"
        );
        let m = userns_refusal(vec![idm(0, 1000, 100_000)], vec![idm(5, 1000, 10)]);
        assert!(
            m.contains(&format!("{F}.gids")) && m.contains("id 0 is not mapped"),
            "{m}"
        );
        // critest: two mappings of the same container ids.
        let m = userns_refusal(
            vec![idm(0, 1000, 100_000), idm(0, 2000, 100_000)],
            vec![idm(0, 1000, 100_000)],
        );
        assert!(
            m.contains(&format!("{F}.uids[1]")) && m.contains("container ids overlap"),
            "{m}"
        );
        let m = userns_refusal(
            vec![idm(0, 1000, 10), idm(10, 1005, 10)],
            vec![idm(0, 1000, 100_000)],
        );
        assert!(m.contains("host ids overlap"), "{m}");
        let m = userns_refusal(vec![idm(0, 1000, 0)], vec![idm(0, 1000, 1)]);
        assert!(m.contains(&format!("{F}.uids[0].length")), "{m}");
        let m = userns_refusal(vec![idm(0, u32::MAX - 10, 11)], vec![idm(0, 1000, 1)]);
        assert!(
            m.contains("host_id") && m.contains("passes the last id"),
            "{m}"
        );
        plan(
            &with_userns(vec![idm(0, u32::MAX - 10, 10)], vec![idm(0, 1000, 1)]),
            CgroupDriver::Cgroupfs,
        )
        .unwrap();
        let m = userns_refusal(
            vec![idm(4_000_000_000, 0, 400_000_000)],
            vec![idm(0, 1000, 1)],
        );
        assert!(m.contains("container_id"), "{m}");
        let m = userns_refusal(vec![], vec![idm(0, 1000, 1)]);
        assert!(m.contains(&format!("{F}.uids")), "{m}");
        let many: Vec<_> = (0..=MAX_ID_RANGES as u32)
            .map(|i| idm(i, 10_000 + i, 1))
            .collect();
        let m = userns_refusal(many, vec![idm(0, 1000, 1)]);
        assert!(m.contains("more than 340"), "{m}");
    }

    fn base() -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "web-0".into(),
            ..Default::default()
        }
    }

    fn with_ns(net: i32, ipc: i32, pid: i32) -> PodSandboxConfig {
        let mut c = base();
        c.linux = Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: net,
                    ipc,
                    pid,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    }

    fn err_of(c: &PodSandboxConfig) -> Status {
        plan(c, CgroupDriver::Cgroupfs).unwrap_err()
    }

    #[test]
    fn minimal_pod() {
        let p = plan(&base(), CgroupDriver::Cgroupfs).unwrap();
        assert!(!p.host_network && !p.host_ipc && !p.host_pid);
        assert_eq!(p.hostname.as_deref(), Some("web-0"));
        assert_eq!(p.cgroup_parent, "/vordr");
        assert_eq!(p.dns, None);
    }

    #[test]
    fn metadata_is_required() {
        let mut c = base();
        c.metadata = None;
        assert!(err_of(&c).message().contains("config.metadata"));
        let mut c = base();
        c.metadata.as_mut().unwrap().name.clear();
        let e = err_of(&c);
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("config.metadata.name"),
            "{}",
            e.message()
        );
        let mut c = base();
        c.metadata.as_mut().unwrap().uid.clear();
        assert!(err_of(&c).message().contains("config.metadata.uid"));
        let mut c = base();
        c.metadata.as_mut().unwrap().namespace = "a/b".into();
        assert!(err_of(&c).message().contains("config.metadata.namespace"));
        // Names travel in CNI_ARGS: no key of their own may ride along.
        let mut c = base();
        c.metadata.as_mut().unwrap().name = "web;IP=10.0.0.9".into();
        assert!(err_of(&c).message().contains("config.metadata.name"));
    }

    #[test]
    fn namespace_modes() {
        let p = plan(&with_ns(2, 2, 2), CgroupDriver::Cgroupfs).unwrap();
        assert!(p.host_network && p.host_ipc && p.host_pid);
        assert_eq!(p.hostname, None, "host network keeps the host's name");
        let e = err_of(&with_ns(7, 0, 0));
        assert!(
            e.message().contains("namespace_options.network")
                && e.message().contains("unknown namespace mode 7")
        );
        let e = err_of(&with_ns(0, 9, 0));
        assert!(e.message().contains("namespace_options.ipc"));
        let e = err_of(&with_ns(0, 0, 3));
        assert!(e.message().contains("namespace_options.pid"));
    }

    #[test]
    fn sysctls_checked_against_modes() {
        let mut c = with_ns(0, 0, 0);
        let l = c.linux.as_mut().unwrap();
        l.sysctls
            .insert("net.ipv4.ip_unprivileged_port_start".into(), "0".into());
        l.sysctls
            .insert("kernel.shm_rmid_forced".into(), "1".into());
        assert_eq!(plan(&c, CgroupDriver::Cgroupfs).unwrap().sysctls.len(), 2);
        let mut c = with_ns(2, 0, 0);
        c.linux
            .as_mut()
            .unwrap()
            .sysctls
            .insert("net.core.somaxconn".into(), "1".into());
        let e = err_of(&c);
        assert!(
            e.message()
                .contains("config.linux.sysctls[\"net.core.somaxconn\"]"),
            "{}",
            e.message()
        );
        let mut c = base();
        c.linux = Some(Default::default());
        c.linux
            .as_mut()
            .unwrap()
            .sysctls
            .insert("kernel.pid_max".into(), "1".into());
        assert!(err_of(&c).message().contains("not namespaced"));
    }

    #[test]
    fn ports() {
        use k8s_cri::v1::PortMapping as P;
        let mut c = base();
        c.port_mappings = vec![
            P {
                protocol: 0,
                container_port: 80,
                host_port: 8080,
                host_ip: "127.0.0.1".into(),
            },
            P {
                protocol: 1,
                container_port: 53,
                host_port: 0,
                host_ip: String::new(),
            },
        ];
        let p = plan(&c, CgroupDriver::Cgroupfs).unwrap();
        assert_eq!(p.ports.len(), 1);
        assert_eq!(p.ports[0].protocol, "tcp");
        c.port_mappings[0].container_port = 0;
        assert!(err_of(&c)
            .message()
            .contains("port_mappings[0].container_port"));
        c.port_mappings[0].container_port = 80;
        c.port_mappings[0].host_ip = "localhost".into();
        assert!(err_of(&c).message().contains("port_mappings[0].host_ip"));
        c.port_mappings[0].host_ip.clear();
        c.port_mappings[1].protocol = 5;
        assert!(err_of(&c).message().contains("port_mappings[1].protocol"));
    }

    #[test]
    fn dns_and_hostname_and_paths() {
        let mut c = base();
        c.dns_config = Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        });
        assert!(plan(&c, CgroupDriver::Cgroupfs).unwrap().dns.is_some());
        c.dns_config
            .as_mut()
            .unwrap()
            .servers
            .push("dns.google".into());
        assert!(err_of(&c).message().contains("dns_config.servers[1]"));
        let mut c = base();
        c.hostname = "bad_host name".into();
        assert!(err_of(&c).message().contains("config.hostname"));
        let mut c = base();
        c.log_directory = "relative/logs".into();
        assert!(err_of(&c).message().contains("config.log_directory"));
        let mut c = base();
        c.linux = Some(LinuxPodSandboxConfig {
            cgroup_parent: "kubepods.slice".into(),
            ..Default::default()
        });
        assert!(err_of(&c).message().contains("config.linux.cgroup_parent"));
        assert!(plan(&c, CgroupDriver::Systemd).is_ok());
    }
}
