//! `vordr run`: an image in a new pod sandbox of its own, as `docker run`
//! would: pulled if missing, a pod and one container of the same name,
//! started; then attached (its output followed from the log file until it
//! exits, or a terminal with `-it`), or its id printed with `-d`. The
//! runtime's gatekeeper judges the pod and the container like any other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use vordr_client::{cri, CriClient};

use super::common::{self, key_value, Common, Rpc};
use super::{images, logs};

/// The label `vordr run` puts on its pods: `vordr rm` of the container
/// removes such a pod with it.
pub const RUN_LABEL: &str = "vordr.io/run";

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// The pod's and the container's name [default: from the image, with a random suffix]
    #[arg(long)]
    pub name: Option<String>,
    /// The pod's namespace.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// An environment variable (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE", value_parser = key_value)]
    pub env: Vec<(String, String)>,
    /// A host path in the container: SRC:DST or SRC:DST:ro (repeatable).
    #[arg(long = "mount", short = 'v', value_name = "SRC:DST[:ro]", value_parser = parse_mount)]
    pub mounts: Vec<MountSpec>,
    /// A host port to a container port: [IP:]HOST:CONTAINER[/tcp|udp|sctp] (repeatable).
    #[arg(long = "port", short = 'p', value_name = "HOST:CONTAINER", value_parser = parse_port)]
    pub ports: Vec<PortSpec>,
    /// A label on the pod and the container (repeatable).
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// Run the container privileged (the gatekeeper's profile decides).
    #[arg(long)]
    pub privileged: bool,
    /// The runtime handler (e.g. runc).
    #[arg(long, default_value = "")]
    pub runtime: String,
    /// Start it and print its id.
    #[arg(short, long, conflicts_with_all = ["interactive", "tty", "rm"])]
    pub detach: bool,
    /// Keep stdin open and feed it to the container.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the container a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Remove the pod once the container has exited.
    #[arg(long)]
    pub rm: bool,
    /// The image, e.g. docker.io/library/busybox:1.36
    pub image: String,
    /// The command and its arguments (the image's CMD otherwise).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}

/// `--mount SRC:DST[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountSpec {
    pub host_path: String,
    pub container_path: String,
    pub readonly: bool,
}

/// `--port [IP:]HOST:CONTAINER[/PROTO]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

pub fn parse_mount(s: &str) -> Result<MountSpec, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, readonly) = match parts[..] {
        [src, dst] => (src, dst, false),
        [src, dst, "ro"] => (src, dst, true),
        [src, dst, "rw"] => (src, dst, false),
        [_, _, opt] => return Err(format!("'{s}': unknown mount option '{opt}' (ro or rw)")),
        _ => return Err(format!("'{s}' is not SRC:DST or SRC:DST:ro")),
    };
    if src.is_empty() || dst.is_empty() {
        return Err(format!("'{s}' is not SRC:DST or SRC:DST:ro"));
    }
    if !dst.starts_with('/') {
        return Err(format!(
            "'{s}': the container path '{dst}' must be absolute"
        ));
    }
    // A relative source is relative to here, as docker -v takes it.
    let host = if Path::new(src).is_absolute() {
        PathBuf::from(src)
    } else {
        std::env::current_dir()
            .map_err(|e| format!("'{s}': {e}"))?
            .join(src)
    };
    Ok(MountSpec {
        host_path: host.display().to_string(),
        container_path: dst.to_string(),
        readonly,
    })
}

pub fn parse_port(s: &str) -> Result<PortSpec, String> {
    let (addr, protocol) = match s.rsplit_once('/') {
        Some((a, p @ ("tcp" | "udp" | "sctp"))) => (a, p),
        Some((_, p)) => return Err(format!("'{s}': unknown protocol '{p}' (tcp, udp or sctp)")),
        None => (s, "tcp"),
    };
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("'{s}': '{p}' is not a port (1-65535)")),
        }
    };
    let (ip, host, container) = match addr.rsplitn(3, ':').collect::<Vec<_>>()[..] {
        [c, h] => ("", h, c),
        [c, h, ip] => (ip, h, c),
        _ => return Err(format!("'{s}' is not [IP:]HOST:CONTAINER")),
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("'{s}': '{ip}' is not an IP address"));
    }
    Ok(PortSpec {
        host_ip: ip.to_string(),
        host_port: port(host)?,
        container_port: port(container)?,
        protocol: protocol.to_string(),
    })
}

/// What to run (the MCP tool takes the same).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSpec {
    pub image: String,
    pub name: Option<String>,
    pub namespace: String,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<MountSpec>,
    pub ports: Vec<PortSpec>,
    pub labels: BTreeMap<String, String>,
    pub privileged: bool,
    pub runtime_handler: String,
    pub stdin: bool,
    pub tty: bool,
    pub cmd: Vec<String>,
}

/// What [`run`] started.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub container_id: String,
    pub pod_id: String,
    pub name: String,
    pub namespace: String,
    pub image: String,
    /// Whether the image had to be pulled.
    pub pulled: bool,
    pub log_path: String,
}

/// A name from the image: its last path part without tag or digest, and
/// a random suffix.
fn default_name(image: &str) -> String {
    let base = image.split('@').next().unwrap_or(image);
    let base = base.rsplit('/').next().unwrap_or(base);
    let base = base.split(':').next().unwrap_or(base);
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_matches('-');
    format!(
        "{}-{}",
        if clean.is_empty() { "run" } else { clean },
        &random_hex()[..6]
    )
}

fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// The runtime's pod log root (Vordr's `gatekeeper.log_root`, from its
/// verbose Status); kubelet's /var/log/pods for other runtimes.
async fn log_root(c: &mut CriClient) -> String {
    common::runtime_config(c).await["gatekeeper"]["log_root"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| "/var/log/pods".into())
}

/// Pulls `image` unless the runtime has it; whether it pulled.
pub async fn ensure_image(c: &mut CriClient, image: &str) -> Result<bool> {
    if images::present(c, image).await? {
        return Ok(false);
    }
    images::pull(c, image, None).await?;
    Ok(true)
}

/// The pod and container configs for `spec`.
fn configs(
    spec: &RunSpec,
    name: &str,
    log_directory: String,
    uid: String,
) -> (cri::PodSandboxConfig, cri::ContainerConfig) {
    (
        pod_config(spec, name, log_directory, uid),
        container_config(spec, name),
    )
}

/// The pod: labelled as `vordr run`'s, its ports, privileged with its container.
fn pod_config(
    spec: &RunSpec,
    name: &str,
    log_directory: String,
    uid: String,
) -> cri::PodSandboxConfig {
    let mut labels: std::collections::HashMap<String, String> =
        spec.labels.clone().into_iter().collect();
    labels.insert(RUN_LABEL.into(), "true".into());
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid,
            namespace: spec.namespace.clone(),
            attempt: 0,
        }),
        hostname: name.chars().take(63).collect(),
        log_directory,
        labels,
        port_mappings: spec
            .ports
            .iter()
            .map(|p| cri::PortMapping {
                protocol: match p.protocol.as_str() {
                    "udp" => cri::Protocol::Udp,
                    "sctp" => cri::Protocol::Sctp,
                    _ => cri::Protocol::Tcp,
                } as i32,
                container_port: p.container_port.into(),
                host_port: p.host_port.into(),
                host_ip: p.host_ip.clone(),
            })
            .collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                // kubelet marks the pod of a privileged container privileged.
                privileged: spec.privileged,
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What kubelet sends for a container by default, or privileged.
fn container_security(spec: &RunSpec) -> cri::LinuxContainerSecurityContext {
    cri::LinuxContainerSecurityContext {
        privileged: spec.privileged,
        namespace_options: Some(cri::NamespaceOption {
            pid: cri::NamespaceMode::Container as i32,
            ..Default::default()
        }),
        // What kubelet sends by default (seccompDefault, procMount Default).
        seccomp: Some(cri::SecurityProfile {
            profile_type: if spec.privileged {
                cri::security_profile::ProfileType::Unconfined
            } else {
                cri::security_profile::ProfileType::RuntimeDefault
            } as i32,
            ..Default::default()
        }),
        masked_paths: if spec.privileged {
            Vec::new()
        } else {
            vordr_spec::DEFAULT_MASKED_PATHS.map(String::from).to_vec()
        },
        readonly_paths: if spec.privileged {
            Vec::new()
        } else {
            vordr_spec::DEFAULT_READONLY_PATHS
                .map(String::from)
                .to_vec()
        },
        ..Default::default()
    }
}

/// The container: the image, command, environment, mounts and terminal asked for.
fn container_config(spec: &RunSpec, name: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: spec.image.clone(),
            user_specified_image: spec.image.clone(),
            ..Default::default()
        }),
        args: spec.cmd.clone(),
        envs: spec
            .env
            .iter()
            .map(|(k, v)| cri::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        mounts: spec
            .mounts
            .iter()
            .map(|m| cri::Mount {
                host_path: m.host_path.clone(),
                container_path: m.container_path.clone(),
                readonly: m.readonly,
                ..Default::default()
            })
            .collect(),
        labels: spec.labels.clone().into_iter().collect(),
        log_path: format!("{name}/0.log"),
        stdin: spec.stdin,
        stdin_once: spec.stdin,
        tty: spec.tty,
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(container_security(spec)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Pulls the image if needed, runs a pod and a container in it, starts
/// it. A failure after the pod exists removes the pod.
pub async fn run(c: &mut CriClient, spec: &RunSpec) -> Result<RunResult> {
    let pulled = ensure_image(c, &spec.image).await?;
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| default_name(&spec.image));
    let uid = random_hex();
    let log_directory = format!(
        "{}/{}_{}_{}",
        log_root(c).await.trim_end_matches('/'),
        spec.namespace,
        name,
        uid
    );
    let (pod_cfg, container_cfg) = configs(spec, &name, log_directory.clone(), uid);
    let pod_id = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_cfg.clone()),
            runtime_handler: spec.runtime_handler.clone(),
        })
        .await
        .rpc(&format!("creating pod {}/{name}", spec.namespace))?
        .pod_sandbox_id;
    let started = async {
        let id = c
            .runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(container_cfg),
                sandbox_config: Some(pod_cfg),
            })
            .await
            .rpc(&format!("creating container {name}"))?
            .container_id;
        c.runtime
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .rpc(&format!("starting container {name}"))?;
        anyhow::Ok(id)
    }
    .await;
    let container_id = match started {
        Ok(id) => id,
        Err(e) => {
            let _ = c
                .runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: pod_id,
                })
                .await;
            return Err(e);
        }
    };
    Ok(RunResult {
        container_id,
        pod_id,
        log_path: format!("{log_directory}/{name}/0.log"),
        name,
        namespace: spec.namespace.clone(),
        image: spec.image.clone(),
        pulled,
    })
}

/// Waits until container `id` has exited; its exit code.
pub async fn wait_exit(c: &mut CriClient, id: &str) -> Result<i32> {
    loop {
        let st = logs::status(c, id).await?;
        if st.state == cri::ContainerState::ContainerExited as i32 {
            return Ok(st.exit_code);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes the pod `vordr run` made.
pub async fn remove_pod(c: &mut CriClient, pod_id: &str) -> Result<()> {
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.into(),
        })
        .await
        .rpc("removing the pod")?;
    Ok(())
}

pub async fn cmd(a: RunArgs) -> Result<i32> {
    let mut c = a.common.connect().await?;
    let spec = RunSpec {
        image: a.image.clone(),
        name: a.name.clone(),
        namespace: a.namespace.clone(),
        env: a.env.clone(),
        mounts: a.mounts.clone(),
        ports: a.ports.clone(),
        labels: a.labels.iter().cloned().collect(),
        privileged: a.privileged,
        runtime_handler: a.runtime.clone(),
        stdin: a.interactive,
        tty: a.tty,
        cmd: a.cmd.clone(),
    };
    let r = run(&mut c, &spec).await?;
    if a.detach {
        if a.common.json {
            common::print_json(&r)?;
        } else {
            println!("{}", r.container_id);
        }
        return Ok(0);
    }
    let code = if a.interactive || a.tty {
        let url = c
            .runtime
            .attach(cri::AttachRequest {
                container_id: r.container_id.clone(),
                stdin: a.interactive,
                tty: a.tty,
                stdout: true,
                stderr: !a.tty,
            })
            .await
            .rpc("attaching")?
            .url;
        let outcome = super::exec::attach_terminal(&url, a.interactive, a.tty).await?;
        if let Some(m) = outcome.failure() {
            eprintln!("vordr: attach: {m}");
        }
        wait_exit(&mut c, &r.container_id).await?
    } else {
        let mut file = logs::LogFile::open(Path::new(&r.log_path))?;
        let json = a.common.json;
        let show = |l: &vordr_client::crilog::LogLine| {
            if json {
                println!("{}", serde_json::to_string(l).unwrap_or_default());
            } else {
                logs::print_line(l, false);
            }
        };
        logs::follow(&mut c, &r.container_id, &mut file, None, show).await?;
        wait_exit(&mut c, &r.container_id).await?
    };
    if a.rm {
        remove_pod(&mut c, &r.pod_id).await?;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        assert_eq!(
            parse_mount("/data:/srv:ro").unwrap(),
            MountSpec {
                host_path: "/data".into(),
                container_path: "/srv".into(),
                readonly: true
            }
        );
        assert!(!parse_mount("/data:/srv").unwrap().readonly);
        assert!(!parse_mount("/data:/srv:rw").unwrap().readonly);
        let rel = parse_mount("sub/dir:/x").unwrap();
        assert_eq!(
            rel.host_path,
            std::env::current_dir()
                .unwrap()
                .join("sub/dir")
                .display()
                .to_string()
        );
        for bad in ["/data", "/a:/b:rx", "/a:b", ":/b", "/a:", "/a:/b:ro:x"] {
            assert!(parse_mount(bad).is_err(), "{bad}");
        }
        assert!(parse_mount("/a:/b:rx")
            .unwrap_err()
            .contains("unknown mount option 'rx'"));
    }

    #[test]
    fn ports() {
        let p = |host_ip: &str, h: u16, c: u16, proto: &str| PortSpec {
            host_ip: host_ip.into(),
            host_port: h,
            container_port: c,
            protocol: proto.into(),
        };
        assert_eq!(parse_port("8080:80").unwrap(), p("", 8080, 80, "tcp"));
        assert_eq!(parse_port("53:53/udp").unwrap(), p("", 53, 53, "udp"));
        assert_eq!(
            parse_port("127.0.0.1:8080:80").unwrap(),
            p("127.0.0.1", 8080, 80, "tcp")
        );
        assert_eq!(
            parse_port("[::1]:8080:80/sctp").unwrap(),
            p("::1", 8080, 80, "sctp")
        );
        for bad in [
            "80",
            "0:80",
            "8080:70000",
            "a:80",
            "1:2/icmp",
            "x.y:1:2",
            "",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        assert!(parse_port("1:2/icmp")
            .unwrap_err()
            .contains("unknown protocol 'icmp'"));
    }

    #[test]
    fn names_and_configs() {
        let n = default_name("registry:5000/e2e/busybox:1");
        assert!(
            n.starts_with("busybox-") && n.len() == "busybox-".len() + 6,
            "{n}"
        );
        assert!(default_name("x/Web_App@sha256:abc").starts_with("web-app-"));
        let spec = RunSpec {
            image: "busybox".into(),
            namespace: "ns".into(),
            privileged: true,
            stdin: true,
            tty: true,
            cmd: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec![("A".into(), "1".into())],
            labels: [("app".to_string(), "web".to_string())].into(),
            ports: vec![parse_port("8080:80").unwrap()],
            ..Default::default()
        };
        let (pod, c) = configs(&spec, "web", "/logs/ns_web_u".into(), "u".into());
        let md = pod.metadata.as_ref().unwrap();
        assert_eq!((md.name.as_str(), md.namespace.as_str()), ("web", "ns"));
        assert_eq!(pod.labels[RUN_LABEL], "true");
        assert_eq!(pod.labels["app"], "web");
        assert_eq!(pod.port_mappings[0].host_port, 8080);
        assert!(pod.linux.unwrap().security_context.unwrap().privileged);
        assert_eq!(c.args, spec.cmd);
        assert!(c.command.is_empty());
        assert_eq!(c.log_path, "web/0.log");
        assert!(c.tty && c.stdin && c.stdin_once);
        assert!(!c.labels.contains_key(RUN_LABEL));
        let sc = c.linux.unwrap().security_context.unwrap();
        assert!(sc.privileged && sc.masked_paths.is_empty());
    }
}
