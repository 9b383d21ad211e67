//! `vordr audit`: the gatekeeper's decisions, newest first, read from
//! the daemon's database in its root directory (not over CRI).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use vordr_config::Config;
use vordr_store::AuditFilter;

/// One row of the audit table as `vordr audit --json` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// RFC 3339 (seconds).
    pub time: String,
    /// "decision" (the gatekeeper's) or "lifecycle" (a change a call made).
    pub kind: String,
    /// The RPC judged (RunPodSandbox, CreateContainer, ...).
    pub action: String,
    pub namespace: String,
    pub pod: String,
    #[serde(rename = "podId")]
    pub pod_id: String,
    /// Empty for a pod.
    pub container: String,
    pub profile: String,
    /// "allowed", "denied" or "error".
    pub verdict: String,
    /// The denying rule; 0 when allowed.
    pub rule: u8,
    /// The denial message; empty when allowed.
    pub reason: String,
}

/// The daemon's root directory: `root` if given, else the one `config`
/// (or the embedded default configuration) names.
pub fn root_dir(config: Option<&Path>, root: Option<PathBuf>) -> Result<PathBuf> {
    match root {
        Some(r) => Ok(r),
        None => Ok(Config::load(config)?.server.root),
    }
}

/// The rows `filter` selects from the database under `root`, newest first.
pub fn audit(root: &Path, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
    let db = root.join(vordr_store::DB_FILE);
    anyhow::ensure!(
        db.exists(),
        "no Vordr database at {} (is --root right?)",
        db.display()
    );
    let store = vordr_store::Store::open(root).context("opening the state database")?;
    Ok(store
        .audit(filter)?
        .into_iter()
        .map(|r| AuditEntry {
            time: super::common::rfc3339(r.time),
            kind: r.kind,
            action: r.action,
            namespace: r.namespace,
            pod: r.pod,
            pod_id: r.pod_id,
            container: r.container,
            profile: r.profile,
            verdict: r.verdict,
            rule: r.rule,
            reason: r.reason,
        })
        .collect())
}
