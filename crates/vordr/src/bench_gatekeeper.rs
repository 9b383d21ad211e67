//! `vordr bench-gatekeeper`: how long the gatekeeper takes to judge a spec,
//! in this process (no daemon): the SPARK policy call alone, a kubelet-like
//! pod, and a kubelet-like container's OCI spec (reduction of the spec,
//! the policy call, the message), with the resolution of its host paths
//! (which CreateContainer does once, before building the spec) apart.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use vordr_client::cri;
use vordr_config::{GatekeeperProfile, NamespacePolicy, NetworkMode};
use vordr_gatekeeper::{judge_container, judge_pod, CapSet, Container, Node};

#[derive(Args)]
pub struct BenchGatekeeperArgs {
    /// Judgements timed per row
    #[arg(long, short = 'n', default_value_t = 100_000)]
    pub iterations: usize,
    /// Print the results as JSON as well
    #[arg(long)]
    pub json: bool,
}

const POD_UID: &str = "0b5c3f3e-5f43-4a56-9d0e-3a7f";

/// A pod as kubelet sends it for a restricted workload.
fn pod() -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "web-7d4b9c".into(),
            uid: POD_UID.into(),
            namespace: "team-a".into(),
            attempt: 0,
        }),
        linux: Some(cri::LinuxPodSandboxConfig {
            sysctls: [("net.ipv4.ip_unprivileged_port_start".into(), "0".into())].into(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption::default()),
                run_as_user: Some(cri::Int64Value { value: 1000 }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Its container: the three host paths kubelet mounts into every container
/// (which exist, under `dir`, kubelet's directory for the pod), non-root,
/// no escalation, RuntimeDefault, every capability dropped, /proc masked.
fn container(dir: &std::path::Path) -> cri::ContainerConfig {
    let mount = |host: &str, ctr: &str| cri::Mount {
        host_path: dir.join(host).display().to_string(),
        container_path: ctr.into(),
        ..Default::default()
    };
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "web".into(),
            attempt: 0,
        }),
        command: vec!["/server".into()],
        mounts: vec![
            mount("etc-hosts", "/etc/hosts"),
            mount("containers/web/0a1b2c", "/dev/termination-log"),
            mount(
                "volumes/kubernetes.io~projected/kube-api-access",
                "/var/run/secrets/kubernetes.io/serviceaccount",
            ),
        ],
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                run_as_user: Some(cri::Int64Value { value: 1000 }),
                no_new_privs: true,
                capabilities: Some(cri::Capability {
                    drop_capabilities: vec!["ALL".into()],
                    ..Default::default()
                }),
                seccomp: Some(cri::SecurityProfile::default()),
                masked_paths: vordr_spec::DEFAULT_MASKED_PATHS.map(String::from).to_vec(),
                readonly_paths: vordr_spec::DEFAULT_READONLY_PATHS
                    .map(String::from)
                    .to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn time(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

fn quantile_us(v: &[Duration], q: f64) -> f64 {
    crate::bench::quantile_ms(v, q) * 1000.0
}

pub fn run(a: BenchGatekeeperArgs) -> Result<()> {
    let kubelet = tempfile::tempdir()?;
    let dir = pod_dir(kubelet.path())?;
    let rootfs = tempfile::tempdir()?;
    let node = Node::new(kubelet.path(), std::path::Path::new("/var/log/pods"), false);
    let policy = NamespacePolicy {
        profile: GatekeeperProfile::Restricted,
        network: NetworkMode::Default,
        allow_privileged: false,
    };
    let (pod, ctr) = (pod(), container(&dir));
    let (allowed, denied) = specs(&pod, &ctr, rootfs.path())?;
    let judged = Container {
        spec: &allowed.spec,
        privileged: false,
        added: CapSet::default(),
        pod: &pod,
        pod_files: &[],
        log_path: None,
    };
    let input = judge_container(&judged, policy, &node)?;
    anyhow::ensure!(
        input.verdict == vordr_gatekeeper::Verdict::Allowed,
        "the benchmark's container should be admitted: {:?}",
        input.denial("container \"web\"", "team-a")
    );
    let denied = Container {
        spec: &denied.spec,
        ..judged
    };
    let rows: Vec<(&str, Vec<Duration>)> = vec![
        (
            "policy call (SPARK Validate)",
            time(a.iterations, || {
                std::hint::black_box(vordr_gatekeeper::validate(&input.input).ok());
            }),
        ),
        (
            "judge pod",
            time(a.iterations, || {
                std::hint::black_box(judge_pod(&pod, policy, &node).ok());
            }),
        ),
        (
            "judge container spec",
            time(a.iterations, || {
                std::hint::black_box(judge_container(&judged, policy, &node).ok());
            }),
        ),
        (
            "judge + message (denied)",
            time(a.iterations, || {
                let d = judge_container(&denied, policy, &node);
                std::hint::black_box(d.ok().and_then(|d| d.denial("container \"web\"", "team-a")));
            }),
        ),
        (
            "resolve 3 host paths",
            time(a.iterations, || {
                std::hint::black_box(vordr_cri::HostPaths::resolve(&ctr.mounts).ok());
            }),
        ),
        ("audit chain append (record)", audit_appends(a.iterations)?),
    ];
    print(&a, &rows);
    Ok(())
}

/// Records appended to an audit chain in a fresh state directory (SQLite
/// as the daemon opens it, the head file, trimming at the default 100,000
/// rows not reached): a pod + container lifecycle appends about a dozen.
fn audit_appends(n: usize) -> Result<Vec<Duration>> {
    let root = tempfile::tempdir()?;
    let store = vordr_store::Store::open(root.path())?;
    let log = vordr_audit::AuditLog::open(&store, root.path(), 100_000)?;
    let record = vordr_store::AuditRecord {
        kind: "lifecycle".into(),
        action: "StartContainer".into(),
        container: "c".repeat(64),
        verdict: "ok".into(),
        ..Default::default()
    };
    let mut failed = None;
    let times = time(n.min(20_000), || {
        if let Err(e) = log.append(&store, &record) {
            failed = Some(e);
        }
    });
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(times),
    }
}

/// kubelet's directory for the pod under `kubelet`, with the files its
/// container mounts.
fn pod_dir(kubelet: &std::path::Path) -> Result<std::path::PathBuf> {
    let dir = kubelet.join("pods").join(POD_UID);
    for p in [
        "containers/web",
        "volumes/kubernetes.io~projected/kube-api-access",
    ] {
        std::fs::create_dir_all(dir.join(p))?;
    }
    std::fs::write(dir.join("etc-hosts"), "")?;
    std::fs::write(dir.join("containers/web/0a1b2c"), "")?;
    Ok(dir)
}

/// The OCI specs of `ctr` as it is (admitted) and with escalation allowed
/// (denied), its host paths resolved once.
fn specs(
    pod: &cri::PodSandboxConfig,
    ctr: &cri::ContainerConfig,
    rootfs: &std::path::Path,
) -> Result<(vordr_spec::Built, vordr_spec::Built)> {
    let held = vordr_cri::HostPaths::resolve(&ctr.mounts)?;
    let opts = vordr_spec::SpecOptions {
        host_paths: held.real_paths(),
        ..Default::default()
    };
    // The pod's own namespaces (these stand for its pins).
    let pod_paths = vordr_spec::PodPaths {
        netns: Some("/proc/self/ns/net".into()),
        ipcns: Some("/proc/self/ns/ipc".into()),
        utsns: Some("/proc/self/ns/uts".into()),
        ..Default::default()
    };
    let spec = |c: &cri::ContainerConfig| {
        vordr_spec::build_spec(
            "0123456789abcdef",
            c,
            pod,
            &vordr_spec::ImageConfig::default(),
            rootfs,
            &pod_paths,
            &opts,
        )
    };
    let allowed = spec(ctr)?;
    let mut escalating = ctr.clone();
    let sc = escalating
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut());
    sc.expect("set above").no_new_privs = false;
    Ok((allowed, spec(&escalating)?))
}

/// Prints the rows' quantiles, and the JSON with `--json`.
fn print(a: &BenchGatekeeperArgs, rows: &[(&str, Vec<Duration>)]) {
    println!(
        "{} judgements per row (microseconds; goal: under 20 per spec)",
        a.iterations
    );
    println!("{:<30} {:>8} {:>8} {:>8}", "", "p50", "p90", "p99");
    let mut json = serde_json::Map::new();
    for (name, v) in rows {
        let (p50, p90, p99) = (
            quantile_us(v, 0.5),
            quantile_us(v, 0.9),
            quantile_us(v, 0.99),
        );
        println!("{name:<30} {p50:>8.2} {p90:>8.2} {p99:>8.2}");
        json.insert(
            name.to_string(),
            serde_json::json!({"p50_us": p50, "p90_us": p90, "p99_us": p99}),
        );
    }
    if a.json {
        println!("{}", serde_json::Value::Object(json));
    }
}
