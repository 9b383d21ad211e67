//! `vordr doctor`: what the node has and lacks for Vordr (the judging is
//! vordr-doctor's), one line per check with its fix, or JSON; exit code 1
//! when anything is missing.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use vordr_doctor::{Options, Report, Status};
use vordr_install::{KUBEADM_FLAGS, KUBELET_CONFIG};

#[derive(Args)]
pub struct DoctorArgs {
    /// The host's root directory: / on the node itself, or a tree standing
    /// for one (the running kernel is then not probed)
    #[arg(long, default_value = "/")]
    pub host_root: PathBuf,
    /// Vordr's configuration file (a host path) [default:
    /// /etc/vordr/config.toml when it is there, else the embedded default]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// kubelet's configuration file (a host path)
    #[arg(long, default_value = KUBELET_CONFIG)]
    pub kubelet_config: PathBuf,
    /// kubeadm's kubelet flags file (a host path)
    #[arg(long, default_value = KUBEADM_FLAGS)]
    pub kubeadm_flags: PathBuf,
    /// Print a JSON array of {name, status, detail, fix}
    #[arg(long)]
    pub json: bool,
}

fn options(a: &DoctorArgs) -> Result<Options> {
    let mut o = Options::new(&a.host_root);
    let live = vordr_doctor::is_live_root(&a.host_root);
    if live {
        // The shim is looked for next to the vordr that serves: this one.
        if let Some(dir) = std::env::current_exe()?.parent() {
            o.vordr_dir = dir.to_path_buf();
        }
    }
    o.config = match &a.config {
        Some(p) if live => Some(std::path::absolute(p).context("--config")?),
        other => other.clone(),
    };
    o.kubelet_config = a.kubelet_config.clone();
    o.kubeadm_flags = a.kubeadm_flags.clone();
    Ok(o)
}

/// The report as a table: status, name, what was found, then the fix.
fn print(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    for c in &report.checks {
        writeln!(
            out,
            "{:<8} {:<width$}  {}",
            c.status.as_str(),
            c.name,
            c.detail
        )?;
        if let Some(fix) = &c.fix {
            writeln!(out, "{:<8} {:<width$}  fix: {fix}", "", "")?;
        }
    }
    let count = |s| report.with(s).count();
    writeln!(
        out,
        "{} checks: {} ok, {} warning, {} missing, {} skipped",
        report.checks.len(),
        count(Status::Ok),
        count(Status::Warning),
        count(Status::Missing),
        count(Status::Skipped)
    )
}

/// Runs the checks.
pub fn report(a: &DoctorArgs) -> Result<Report> {
    Ok(vordr_doctor::run(&options(a)?)?)
}

/// Runs the checks and prints them; exit code 1 when anything is missing.
pub fn cmd(a: DoctorArgs) -> Result<i32> {
    let report = report(&a)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print(&report, &mut out)?;
    }
    Ok(if report.has_missing() { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vordr_doctor::Check;

    #[test]
    fn the_table_names_each_check_and_its_fix() {
        let r = Report {
            checks: vec![
                Check::ok("overlayfs", "overlay in /proc/filesystems"),
                Check::missing("shim", "no shim", "vordr install --host-root /"),
            ],
        };
        let mut out = Vec::new();
        print(&r, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "ok       overlayfs  overlay in /proc/filesystems\n\
             missing  shim       no shim\n\
             \x20                   fix: vordr install --host-root /\n\
             2 checks: 1 ok, 0 warning, 1 missing, 0 skipped\n"
        );
    }
}
