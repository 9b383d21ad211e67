//! The audit table: gatekeeper decisions and lifecycle events as a hash
//! chain (each row holds the hash of the one before it), the newest kept,
//! with a checkpoint standing for the rows trimmed away. What the hashes
//! and the checkpoint's signature are is the caller's (vordr-audit); this
//! module keeps the chain's order and its rows consistent.

use rusqlite::{params, OptionalExtension, Row};

use crate::{Result, Store};

/// One record of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditRecord {
    /// The record's place in the chain (assigned when appended).
    pub id: i64,
    /// Nanoseconds since the epoch.
    pub time: i64,
    /// "decision" (the gatekeeper's) or "lifecycle" (a change the daemon made).
    pub kind: String,
    /// The RPC: RunPodSandbox, CreateContainer, StopContainer, PullImage, ...
    pub action: String,
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// Empty for a pod that was never created.
    pub pod_id: String,
    /// The container's name (or id, for lifecycle events); empty for a pod.
    pub container: String,
    /// The gatekeeper's profile; for lifecycle events the image, if any.
    pub profile: String,
    /// The denying rule; 0 when allowed.
    pub rule: u8,
    /// Decisions: "allowed", "denied" or "error" (the policy could not
    /// decide). Lifecycle events: "ok" or the gRPC code of the failure.
    pub verdict: String,
    /// The denial or failure message; empty otherwise.
    pub reason: String,
    /// The hash of the record before this one (or of the checkpoint).
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// The last record trimmed from the chain, signed by the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub last_id: i64,
    pub last_hash: String,
    pub time: i64,
    pub signature: String,
}

/// Which rows `audit` returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub limit: u32,
    /// Only denials and errors.
    pub denied_only: bool,
    pub namespace: Option<String>,
    /// Only the gatekeeper's decisions (no lifecycle events).
    pub decisions_only: bool,
}

/// How the chain's caller hashes a record and signs a checkpoint.
pub trait ChainSeal {
    /// The hash of `r` (whose `id` and `prev_hash` are set).
    fn hash(&self, r: &AuditRecord) -> String;
    /// The checkpoint for `last`, the newest record being trimmed.
    fn checkpoint(&self, last: &AuditRecord) -> AuditCheckpoint;
}

const COLUMNS: &str = "id, time, kind, action, namespace, pod, pod_id, container, profile, rule,
                       verdict, reason, prev_hash, hash";

impl Store {
    /// Appends `r` to the chain (its id, prev_hash and hash set here, in one
    /// transaction with the read of the chain's end) and drops records
    /// beyond the newest `keep`, leaving a checkpoint for the last dropped.
    /// Returns the record as stored.
    pub fn append_audit(
        &self,
        r: &AuditRecord,
        keep: u64,
        seal: &dyn ChainSeal,
    ) -> Result<AuditRecord> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let prev: Option<String> = tx
            .query_row("SELECT hash FROM audit ORDER BY id DESC LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        let prev = match prev {
            Some(h) => h,
            None => checkpoint(&tx)?.map(|c| c.last_hash).unwrap_or_default(),
        };
        tx.execute(
            "INSERT INTO audit (time, kind, action, namespace, pod, pod_id, container, profile,
                                rule, verdict, reason, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, '')",
            params![
                r.time,
                r.kind,
                r.action,
                r.namespace,
                r.pod,
                r.pod_id,
                r.container,
                r.profile,
                r.rule,
                r.verdict,
                r.reason,
                prev
            ],
        )?;
        let mut stored = r.clone();
        stored.id = tx.last_insert_rowid();
        stored.prev_hash = prev;
        stored.hash = seal.hash(&stored);
        tx.execute(
            "UPDATE audit SET hash = ?1 WHERE id = ?2",
            params![stored.hash, stored.id],
        )?;
        let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
        let cut = stored.id.saturating_sub(keep);
        let last_dropped = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM audit WHERE id <= ?1 ORDER BY id DESC LIMIT 1"),
                [cut],
                row_to_record,
            )
            .optional()?;
        if let Some(last) = last_dropped {
            let c = seal.checkpoint(&last);
            tx.execute(
                "INSERT OR REPLACE INTO audit_checkpoint (id, last_id, last_hash, time, signature)
                 VALUES (1, ?1, ?2, ?3, ?4)",
                params![c.last_id, c.last_hash, c.time, c.signature],
            )?;
            tx.execute("DELETE FROM audit WHERE id <= ?1", [last.id])?;
        }
        tx.commit()?;
        Ok(stored)
    }

    /// Hashes records written before the chain existed (schema 6), in
    /// order, so that the chain covers them from now on. Returns how many.
    pub fn seal_unhashed_audit(&self, seal: &dyn ChainSeal) -> Result<usize> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let rows: Vec<AuditRecord> = {
            let mut stmt = tx.prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY id"))?;
            let rows = stmt.query_map([], row_to_record)?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut prev = checkpoint(&tx)?.map(|c| c.last_hash).unwrap_or_default();
        let mut sealed = 0;
        for mut r in rows {
            if r.hash.is_empty() {
                r.prev_hash = prev.clone();
                r.hash = seal.hash(&r);
                tx.execute(
                    "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE id = ?3",
                    params![r.prev_hash, r.hash, r.id],
                )?;
                sealed += 1;
            }
            prev = r.hash;
        }
        tx.commit()?;
        Ok(sealed)
    }

    /// Records, newest first.
    pub fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit
             WHERE (?1 = 0 OR verdict IN ('denied', 'error')) AND (?2 IS NULL OR namespace = ?2)
                   AND (?4 = 0 OR kind = 'decision')
             ORDER BY id DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![f.denied_only, f.namespace, f.limit.max(1), f.decisions_only],
            row_to_record,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The whole chain, oldest first, with the checkpoint it starts from.
    pub fn audit_chain(&self) -> Result<(Option<AuditCheckpoint>, Vec<AuditRecord>)> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY id"))?;
        let rows = stmt.query_map([], row_to_record)?;
        let rows = rows.collect::<rusqlite::Result<_>>()?;
        Ok((checkpoint(&conn)?, rows))
    }
}

fn checkpoint(conn: &rusqlite::Connection) -> Result<Option<AuditCheckpoint>> {
    Ok(conn
        .query_row(
            "SELECT last_id, last_hash, time, signature FROM audit_checkpoint WHERE id = 1",
            [],
            |r| {
                Ok(AuditCheckpoint {
                    last_id: r.get(0)?,
                    last_hash: r.get(1)?,
                    time: r.get(2)?,
                    signature: r.get(3)?,
                })
            },
        )
        .optional()?)
}

fn row_to_record(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: r.get(0)?,
        time: r.get(1)?,
        kind: r.get(2)?,
        action: r.get(3)?,
        namespace: r.get(4)?,
        pod: r.get(5)?,
        pod_id: r.get(6)?,
        container: r.get(7)?,
        profile: r.get(8)?,
        rule: r.get(9)?,
        verdict: r.get(10)?,
        reason: r.get(11)?,
        prev_hash: r.get(12)?,
        hash: r.get(13)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seal that is easy to follow: the hash names the id and the previous hash.
    struct Plain;

    impl ChainSeal for Plain {
        fn hash(&self, r: &AuditRecord) -> String {
            format!("{}<{}", r.id, r.prev_hash.len())
        }
        fn checkpoint(&self, last: &AuditRecord) -> AuditCheckpoint {
            AuditCheckpoint {
                last_id: last.id,
                last_hash: last.hash.clone(),
                time: last.time,
                signature: "signed".into(),
            }
        }
    }

    fn rec(i: i64, verdict: &str, ns: &str) -> AuditRecord {
        AuditRecord {
            time: i,
            kind: "decision".into(),
            action: "CreateContainer".into(),
            namespace: ns.into(),
            pod: "p".into(),
            pod_id: "abc".into(),
            container: format!("c{i}"),
            profile: "restricted".into(),
            rule: if verdict == "denied" { 2 } else { 0 },
            verdict: verdict.into(),
            ..Default::default()
        }
    }

    #[test]
    fn keeps_the_newest_rows_chained_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..10 {
            let v = if i % 3 == 0 { "denied" } else { "allowed" };
            let ns = if i % 2 == 0 { "a" } else { "b" };
            let stored = store.append_audit(&rec(i, v, ns), 6, &Plain).unwrap();
            assert_eq!(stored.id, i + 1);
        }
        let all = store
            .audit(&AuditFilter {
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            all.iter().map(|r| r.time).collect::<Vec<_>>(),
            vec![9, 8, 7, 6, 5, 4]
        );
        assert_eq!(all[0].verdict, "denied");
        assert_eq!(all[0].namespace, "b");
        let (cp, chain) = store.audit_chain().unwrap();
        let cp = cp.expect("rows were trimmed");
        assert_eq!(cp.last_id, 4);
        assert_eq!(chain[0].prev_hash, cp.last_hash);
        for w in chain.windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
        }
        let denied = store
            .audit(&AuditFilter {
                limit: 100,
                denied_only: true,
                namespace: Some("a".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(denied.iter().map(|r| r.time).collect::<Vec<_>>(), vec![6]);
    }

    #[test]
    fn rows_from_before_the_chain_are_sealed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .append_audit(&rec(1, "allowed", "a"), 10, &Plain)
            .unwrap();
        {
            let conn = store.lock();
            conn.execute(
                "INSERT INTO audit (time, action, namespace, pod, pod_id, container, profile,
                                    rule, verdict, reason)
                 VALUES (2, 'RunPodSandbox', 'a', 'p', '', '', 'baseline', 0, 'allowed', '')",
                [],
            )
            .unwrap();
        }
        assert_eq!(store.seal_unhashed_audit(&Plain).unwrap(), 1);
        let (_, chain) = store.audit_chain().unwrap();
        assert_eq!(chain[1].prev_hash, chain[0].hash);
        assert_eq!(chain[1].hash, "2<3");
        assert_eq!(store.seal_unhashed_audit(&Plain).unwrap(), 0);
    }
}
