//! `vordr audit verify` and `vordr audit --chain`: the audit chain's
//! records with their hashes, and its verification (see vordr-audit),
//! read from the daemon's root directory.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// One record of the chain, with its hashes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainEntry {
    pub id: i64,
    pub time: String,
    /// "decision" or "lifecycle".
    pub kind: String,
    pub action: String,
    pub namespace: String,
    pub pod: String,
    pub pod_id: String,
    pub container: String,
    pub verdict: String,
    pub reason: String,
    pub prev_hash: String,
    pub hash: String,
}

/// What `vordr audit verify` found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub intact: bool,
    pub records: usize,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    /// The last record trimmed away (the chain starts from its hash).
    pub checkpoint_id: Option<i64>,
    pub public_key: Option<String>,
    /// The first record that breaks the chain, and why.
    pub broken_id: Option<i64>,
    pub broken_why: Option<String>,
}

fn open(root: &Path) -> Result<vordr_store::Store> {
    let db = root.join(vordr_store::DB_FILE);
    anyhow::ensure!(
        db.exists(),
        "no Vordr database at {} (is --root right?)",
        db.display()
    );
    vordr_store::Store::open(root).context("opening the state database")
}

/// The newest `limit` records of the chain, oldest first.
pub fn chain(root: &Path, limit: usize) -> Result<Vec<ChainEntry>> {
    let (_, records) = open(root)?.audit_chain()?;
    let from = records.len().saturating_sub(limit);
    Ok(records[from..]
        .iter()
        .map(|r| ChainEntry {
            id: r.id,
            time: super::common::rfc3339(r.time),
            kind: r.kind.clone(),
            action: r.action.clone(),
            namespace: r.namespace.clone(),
            pod: r.pod.clone(),
            pod_id: r.pod_id.clone(),
            container: r.container.clone(),
            verdict: r.verdict.clone(),
            reason: r.reason.clone(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
        })
        .collect())
}

/// Recomputes the chain under `root`.
pub fn verify(root: &Path) -> Result<VerifyReport> {
    let v = vordr_audit::verify(&open(root)?, root)?;
    Ok(VerifyReport {
        intact: v.broken.is_none(),
        records: v.records,
        first_id: v.first_id,
        last_id: v.last_id,
        checkpoint_id: v.checkpoint.map(|c| c.last_id),
        public_key: v.public_key,
        broken_id: v.broken.as_ref().map(|b| b.id),
        broken_why: v.broken.map(|b| b.why),
    })
}

/// Prints the chain, one record per line with its hash and the previous one's.
pub fn print_chain(entries: &[ChainEntry], json: bool) -> Result<()> {
    if json {
        for e in entries {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(());
    }
    println!(
        "{:>6} {:<20} {:<9} {:<24} {:<9} {:<16} PREV",
        "ID", "TIME", "KIND", "ACTION", "VERDICT", "HASH"
    );
    for e in entries {
        println!(
            "{:>6} {:<20} {:<9} {:<24} {:<9} {:<16} {}",
            e.id,
            e.time,
            e.kind,
            e.action,
            e.verdict,
            &e.hash[..e.hash.len().min(16)],
            &e.prev_hash[..e.prev_hash.len().min(16)],
        );
    }
    Ok(())
}

/// Prints a verification; the exit code: 0 intact, 1 broken.
pub fn print_verify(r: &VerifyReport, json: bool) -> Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else if let (Some(id), Some(why)) = (r.broken_id, &r.broken_why) {
        println!("audit chain BROKEN at record {id}: {why}");
    } else {
        let range = match (r.first_id, r.last_id) {
            (Some(a), Some(b)) => format!("records {a} to {b}"),
            _ => "no records".to_string(),
        };
        let from = r
            .checkpoint_id
            .map(|c| format!(", from the signed checkpoint of record {c}"))
            .unwrap_or_default();
        println!("audit chain intact: {range}{from}");
        if let Some(k) = &r.public_key {
            println!("node key: {k}");
        }
    }
    Ok(if r.intact { 0 } else { 1 })
}
