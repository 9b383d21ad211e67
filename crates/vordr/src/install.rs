//! `vordr install` and `vordr uninstall`: put Vordr on a node or take it
//! off (the work is vordr-install's), print every change, label the node
//! when in a cluster, and with `--wait` stay until SIGTERM as the
//! installer DaemonSet's container.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use vordr_install::node_label::{NodeLabel, LABEL, READY, SERVICE_ACCOUNT_DIR};
use vordr_install::{Options, Plan, KUBEADM_FLAGS, KUBELET_CONFIG};

#[derive(Args)]
pub struct HostArgs {
    /// The host's root directory: / on the node itself, where the host's
    /// root is mounted in the installer's pod (/host)
    #[arg(long)]
    pub host_root: PathBuf,
    /// Print every change without making any
    #[arg(long)]
    pub dry_run: bool,
    /// Change nothing; exit 0 when nothing is left to do (install: and
    /// Vordr answers Version on its socket), else name what is pending and
    /// exit 1. The DaemonSets' readiness probe
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
    /// Never restart vordr and kubelet. By default they are restarted
    /// through the host's systemd when their files changed and PID 1 is the
    /// host's systemd with --host-root as its root (on the node with
    /// --host-root /, or in a pod with hostPID); otherwise the commands to
    /// run are printed
    #[arg(long)]
    pub no_restart: bool,
    /// kubelet's configuration file (a host path); its
    /// containerRuntimeEndpoint is switched
    #[arg(long, default_value = KUBELET_CONFIG)]
    pub kubelet_config: PathBuf,
    /// kubeadm's kubelet flags file (a host path); its
    /// --container-runtime-endpoint is switched where set
    #[arg(long, default_value = KUBEADM_FLAGS)]
    pub kubeadm_flags: PathBuf,
    /// Then stay until SIGTERM or SIGINT, so the DaemonSet's pod stays up
    #[arg(long, conflicts_with_all = ["dry_run", "check"])]
    pub wait: bool,
}

#[derive(Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub host: HostArgs,
    /// Directory holding the vordr and containerd-shim-vordr-v1 to install
    /// [default: this binary's directory]
    #[arg(long)]
    pub source_dir: Option<PathBuf>,
    /// Fail, changing nothing, when a host package Vordr needs (netavark,
    /// runc, libseccomp) is missing; without it each is a warning
    #[arg(long)]
    pub strict: bool,
    /// With --wait: uninstall on SIGTERM (when the pod is deleted, e.g. its
    /// node lost the vordr.io/install label). Off by default: a restarted or
    /// upgraded DaemonSet pod must not take the runtime away
    #[arg(long, requires = "wait")]
    pub uninstall_on_stop: bool,
}

#[derive(Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub host: HostArgs,
}

fn options(h: &HostArgs, source_dir: PathBuf) -> Options {
    Options {
        host_root: h.host_root.clone(),
        source_dir,
        kubelet_config: h.kubelet_config.clone(),
        kubeadm_flags: h.kubeadm_flags.clone(),
        restart: !h.no_restart && !h.check,
        strict: false,
    }
}

/// Prints the plan's warnings and notes, then its changes (made unless
/// `dry_run`). Whether anything changed.
fn run(plan: &Plan, dry_run: bool, done: &str, nothing: &str) -> Result<bool> {
    for w in &plan.warnings {
        println!("warning: {w}");
    }
    for n in &plan.notes {
        println!("note: {n}");
    }
    if plan.steps.is_empty() {
        println!("{nothing}: nothing to change");
        return Ok(false);
    }
    if dry_run {
        println!("dry run: {} changes, none made:", plan.steps.len());
        for s in &plan.steps {
            println!("  would {}", s.what);
        }
        return Ok(false);
    }
    plan.apply(|s| println!("  {}", s.what))?;
    println!("{done} ({} changes)", plan.steps.len());
    Ok(true)
}

/// Exits non-zero naming what `plan` would still do.
fn check(plan: &Plan, what: &str) -> Result<()> {
    if plan.steps.is_empty() {
        return Ok(());
    }
    let pending: Vec<&str> = plan.steps.iter().map(|s| s.what.as_str()).collect();
    bail!(
        "{what}: {} changes pending:\n  {}",
        pending.len(),
        pending.join("\n  ")
    )
}

/// Sets or removes the node's `vordr.io/runtime` label, or says why not.
async fn label(value: Option<&str>, dry_run: bool) -> Result<()> {
    let Some(l) = NodeLabel::from_env(Path::new(SERVICE_ACCOUNT_DIR))? else {
        println!(
            "node label: skipped, KUBERNETES_SERVICE_HOST is not set (not running in a cluster)"
        );
        return Ok(());
    };
    let what = match value {
        Some(v) => format!("label node {} {LABEL}={v}", l.node),
        None => format!("remove label {LABEL} from node {}", l.node),
    };
    if dry_run {
        println!("  would {what}");
        return Ok(());
    }
    l.set(value).await.with_context(|| what.clone())?;
    println!("  {what}");
    Ok(())
}

/// Waits for SIGTERM or SIGINT.
async fn stopped() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => println!("SIGTERM"),
        _ = int.recv() => println!("SIGINT"),
    }
    Ok(())
}

/// Whether Vordr answers Version on the socket its installed configuration
/// names, under the host root.
async fn runtime_answers(host_root: &Path) -> Result<()> {
    let config = host_root.join(vordr_install::CONFIG.trim_start_matches('/'));
    let config = vordr_config::Config::load(Some(&config))
        .with_context(|| format!("reading {}", vordr_install::CONFIG))?;
    let socket = vordr_install::files::Root::new(host_root).resolve(&config.server.socket);
    let version = async {
        let mut c = vordr_client::CriClient::connect_path(&socket).await?;
        let v = c
            .runtime
            .version(vordr_client::cri::VersionRequest::default())
            .await?;
        anyhow::Ok(v.into_inner())
    };
    let v = tokio::time::timeout(Duration::from_secs(5), version)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within 5s"))
        .and_then(|r| r)
        .with_context(|| {
            format!(
                "Vordr does not answer Version on {}",
                config.server.socket.display()
            )
        })?;
    println!(
        "installed; {} {} answers on {}",
        v.runtime_name,
        v.runtime_version,
        config.server.socket.display()
    );
    Ok(())
}

pub async fn install(a: InstallArgs) -> Result<()> {
    let source_dir = match a.source_dir {
        Some(d) => d,
        None => std::env::current_exe()
            .context("finding this binary")?
            .parent()
            .map(Path::to_path_buf)
            .context("this binary's directory")?,
    };
    let mut o = options(&a.host, source_dir);
    o.strict = a.strict;
    let version = env!("CARGO_PKG_VERSION");
    if a.host.check {
        check(&vordr_install::plan_install(&o)?, "not installed")?;
        return runtime_answers(&a.host.host_root).await;
    }
    println!(
        "vordr install {version} into {}{}",
        a.host.host_root.display(),
        if a.host.dry_run { " (dry run)" } else { "" }
    );
    let plan = vordr_install::plan_install(&o)?;
    run(
        &plan,
        a.host.dry_run,
        &format!("installed Vordr {version}"),
        &format!("Vordr {version} is installed"),
    )?;
    label(Some(READY), a.host.dry_run).await?;
    if !a.host.wait {
        return Ok(());
    }
    println!("waiting for SIGTERM");
    stopped().await?;
    if a.uninstall_on_stop {
        uninstall_now(&a.host).await?;
    }
    Ok(())
}

async fn uninstall_now(h: &HostArgs) -> Result<()> {
    println!(
        "vordr uninstall from {}{}",
        h.host_root.display(),
        if h.dry_run { " (dry run)" } else { "" }
    );
    // Source binaries are not needed to take Vordr off.
    let plan = vordr_install::plan_uninstall(&options(h, PathBuf::new()))?;
    run(
        &plan,
        h.dry_run,
        "uninstalled Vordr",
        "Vordr is not installed",
    )?;
    label(None, h.dry_run).await
}

pub async fn uninstall(a: UninstallArgs) -> Result<()> {
    if a.host.check {
        let plan = vordr_install::plan_uninstall(&options(&a.host, PathBuf::new()))?;
        check(&plan, "not uninstalled")?;
        println!("uninstalled");
        return Ok(());
    }
    uninstall_now(&a.host).await?;
    if a.host.wait {
        println!("waiting for SIGTERM");
        stopped().await?;
    }
    Ok(())
}
