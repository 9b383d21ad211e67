//! Command-line interface: `serve` and the operator commands. The
//! container and image verbs (`ps`, `run`, `exec`, `logs`, `inspect`, `stop`, `rm`,
//! `stats`, `pods`, `pull`, `images`, `rmi`) have a module each; each module's typed functions
//! (returning serde-serializable results) are separate from its `cmd`,
//! which prints them as a table or as JSON.

pub mod audit;
pub mod audit_chain;
pub mod common;
pub mod exec;
pub mod images;
pub mod inspect;
pub mod logs;
pub mod ps;
pub mod rm;
pub mod run;
pub mod stats;
pub mod stop;
mod term;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use vordr_client::{cri, CriClient};
use vordr_config::Config;
use vordr_cri::RuntimeOptions;

#[derive(Parser)]
#[command(
    name = "vordr",
    version,
    about = "Vordr: a Kubernetes container runtime (CRI v1)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the CRI server.
    Serve(ServeArgs),
    /// Print the runtime's Version over CRI.
    Version(EndpointArgs),
    /// Print the runtime's Status with verbose info, as `crictl info` does.
    Info(EndpointArgs),
    /// List pod sandboxes.
    Pods(ps::PodsArgs),
    /// List containers (running ones; all with -a).
    Ps(ps::PsArgs),
    /// Run an image in a new pod: attached, or detached with -d.
    Run(run::RunArgs),
    /// Run a command in a running container.
    Exec(exec::ExecArgs),
    /// Print a container's log.
    Logs(logs::LogsArgs),
    /// Print a container's or pod's status with verbose info, as JSON.
    Inspect(inspect::InspectArgs),
    /// Stop containers or pods.
    Stop(stop::StopArgs),
    /// Remove containers or pods.
    Rm(rm::RmArgs),
    /// Show containers' CPU, memory and disk use.
    Stats(stats::StatsArgs),
    /// Pull an image through the runtime, showing bytes landing in the image store.
    Pull(images::PullArgs),
    /// List images.
    Images(images::ImagesArgs),
    /// Remove images (by id, tag or digest).
    Rmi(images::RmiArgs),
    /// Benchmark pod sandbox RPCs against one or two CRI endpoints.
    Bench(crate::bench::BenchArgs),
    /// Print the embedded default configuration.
    Config,
    /// List the gatekeeper's decisions (the audit table), newest first.
    Audit(AuditArgs),
    /// Time the gatekeeper's judgement of a pod and a container spec, in process.
    BenchGatekeeper(crate::bench_gatekeeper::BenchGatekeeperArgs),
    /// Install Vordr on a node: binaries, config, systemd unit, crictl.yaml,
    /// kubelet pointed at Vordr's socket.
    Install(crate::install::InstallArgs),
    /// Remove what `install` did and point kubelet back at its old runtime.
    Uninstall(crate::install::UninstallArgs),
    /// Check the node for what Vordr needs: each check ok, warning or missing, with its fix.
    Doctor(crate::doctor::DoctorArgs),
    /// Serve the Model Context Protocol on stdio: the operator verbs as tools.
    Mcp(crate::mcp::McpArgs),
}

#[derive(Args)]
pub struct AuditArgs {
    /// The daemon's TOML configuration (for its root directory).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The daemon's state directory [default: from the config, /var/lib/vordr]
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    /// Rows shown.
    #[arg(long, short = 'n', default_value_t = 50)]
    pub limit: u32,
    /// Only denials (and decisions the policy could not make).
    #[arg(long)]
    pub denied: bool,
    /// Only this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// One JSON object per line.
    #[arg(long, global = true)]
    pub json: bool,
    /// Lifecycle events (every change a CRI call made) as well as decisions.
    #[arg(long)]
    pub all: bool,
    /// Every kind of record (decisions and lifecycle events), oldest first,
    /// with its hash and the previous record's.
    #[arg(long)]
    pub chain: bool,
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit chain from its signed checkpoint and name the
    /// first record that was edited, removed or moved (exit 1 if any).
    Verify,
}

#[derive(Args)]
pub struct ServeArgs {
    /// TOML configuration file; keys it sets override the embedded defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// CRI socket path [default: /run/vordr/vordr.sock]
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Persistent state directory [default: /var/lib/vordr]
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Volatile state and namespace pins [default: /run/vordr]
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// containers-registries.conf v2 file [default: /etc/containers/registries.conf]
    #[arg(long)]
    pub registries_config: Option<PathBuf>,
    /// docker-style auth file for pulls without kubelet credentials
    #[arg(long)]
    pub auth_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDRESS/metrics, e.g. 127.0.0.1:9435 [default: none]
    #[arg(long, value_name = "ADDRESS")]
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Gatekeeper profile of namespaces without an override (privileged, baseline, restricted)
    #[arg(long)]
    pub gatekeeper_profile: Option<vordr_config::GatekeeperProfile>,
    /// Who attaches pods: netavark (Vordr's bridge and IPAM) or cni (the cluster's plugins)
    #[arg(long)]
    pub network_driver: Option<vordr_config::NetworkDriver>,
}

#[derive(Args, Clone, Debug)]
pub struct EndpointArgs {
    /// CRI endpoint (unix:///path or /path)
    #[arg(
        long = "runtime-endpoint",
        visible_alias = "endpoint",
        short = 'r',
        env = "CONTAINER_RUNTIME_ENDPOINT",
        default_value = "unix:///run/vordr/vordr.sock"
    )]
    pub endpoint: String,
}

/// The effective configuration: embedded defaults, then the file, then flags.
pub fn effective_config(a: &ServeArgs) -> Result<Config> {
    let mut c = Config::load(a.config.as_deref())?;
    if let Some(p) = &a.socket {
        c.server.socket = p.clone();
    }
    if let Some(p) = &a.root {
        c.server.root = p.clone();
    }
    if let Some(p) = &a.run_dir {
        c.server.run_dir = p.clone();
    }
    if let Some(p) = &a.registries_config {
        c.server.registries_config = p.clone();
    }
    if let Some(p) = &a.auth_file {
        c.image.auth_file = p.clone();
    }
    if let Some(a) = a.metrics_address {
        c.server.metrics_address = Some(a);
    }
    if let Some(p) = &a.gatekeeper_profile {
        c.gatekeeper.profile = *p;
    }
    if let Some(d) = a.network_driver {
        c.network.driver = d;
    }
    c.validate()?;
    Ok(c)
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

pub async fn serve(a: ServeArgs, notifier: crate::sd_notify::Notifier) -> Result<()> {
    let config = effective_config(&a)?;
    init_tracing(&config.server.log_level);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        gatekeeper_profile = config.gatekeeper.profile.as_str(),
        network_driver = ?config.network.driver,
        registries_config = %config.server.registries_config.display(),
        "starting vordr"
    );
    // Under systemd (Type=notify) READY=1 once the socket listens, so
    // `systemctl restart vordr` returns when kubelet can connect; STOPPING=1
    // when told to stop.
    let ready = || notifier.notify("READY=1");
    let stop = async {
        shutdown_signal().await;
        notifier.notify("STOPPING=1");
    };
    vordr_cri::serve(RuntimeOptions { config }, ready, stop)
        .await
        .context("vordr serve")
}

/// Ends the process after an operator verb: its exit code, or its error
/// as a sentence on stderr and exit code 1.
pub fn exit(r: Result<i32>) -> ! {
    use std::io::Write;
    let code = match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vordr: {e:#}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

async fn connect(a: &EndpointArgs) -> Result<CriClient> {
    CriClient::connect(&a.endpoint)
        .await
        .with_context(|| format!("connecting to {}", a.endpoint))
}

pub async fn version(a: EndpointArgs) -> Result<()> {
    let mut c = connect(&a).await?;
    let v = c
        .runtime
        .version(cri::VersionRequest {
            version: String::new(),
        })
        .await?
        .into_inner();
    println!("Version:  {}", v.version);
    println!("RuntimeName:  {}", v.runtime_name);
    println!("RuntimeVersion:  {}", v.runtime_version);
    println!("RuntimeApiVersion:  {}", v.runtime_api_version);
    Ok(())
}

pub async fn info(a: EndpointArgs) -> Result<()> {
    let mut c = connect(&a).await?;
    let s = c
        .runtime
        .status(cri::StatusRequest { verbose: true })
        .await?
        .into_inner();
    let mut out = serde_json::Map::new();
    out.insert("status".into(), serde_json::to_value(&s.status)?);
    for (k, v) in s.info {
        out.insert(
            k,
            serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v)),
        );
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub fn audit(a: AuditArgs) -> Result<()> {
    let root = audit::root_dir(a.config.as_deref(), a.root)?;
    if let Some(AuditCommand::Verify) = a.command {
        let code = audit_chain::print_verify(&audit_chain::verify(&root)?, a.json)?;
        std::process::exit(code);
    }
    if a.chain {
        return audit_chain::print_chain(&audit_chain::chain(&root, a.limit as usize)?, a.json);
    }
    let rows = audit::audit(
        &root,
        &vordr_store::AuditFilter {
            limit: a.limit,
            denied_only: a.denied,
            decisions_only: !a.all,
            namespace: a.namespace,
        },
    )?;
    if a.json {
        for r in rows {
            println!("{}", serde_json::to_string(&r)?);
        }
        return Ok(());
    }
    println!(
        "{:<20} {:<8} {:<24} {:<30} {:<16} {:<10} RULE",
        "TIME", "VERDICT", "ACTION", "NAMESPACE/POD", "CONTAINER", "PROFILE"
    );
    for r in rows {
        let rule = if r.verdict == "allowed" {
            "-".to_string()
        } else {
            r.reason
        };
        println!(
            "{:<20} {:<8} {:<24} {:<30} {:<16} {:<10} {rule}",
            r.time,
            r.verdict,
            r.action,
            format!("{}/{}", r.namespace, r.pod),
            r.container,
            r.profile
        );
    }
    Ok(())
}
