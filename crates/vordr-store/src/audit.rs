//! The gatekeeper's audit table: one row per decision, newest kept.

use rusqlite::{params, Row};

use crate::{Result, Store};

/// One gatekeeper decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Nanoseconds since the epoch.
    pub time: i64,
    /// The RPC: RunPodSandbox, CreateContainer or UpdateContainerResources.
    pub action: String,
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// Empty for a pod that was never created.
    pub pod_id: String,
    /// The container's name; empty for a pod.
    pub container: String,
    pub profile: String,
    /// The denying rule; 0 when allowed.
    pub rule: u8,
    /// "allowed", "denied" or "error" (the policy could not decide).
    pub verdict: String,
    /// The denial message; empty when allowed.
    pub reason: String,
}

/// Which rows `audit` returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub limit: u32,
    /// Only denials and errors.
    pub denied_only: bool,
    pub namespace: Option<String>,
}

impl Store {
    /// Records a decision and drops rows beyond the newest `keep`.
    pub fn record_audit(&self, r: &AuditRecord, keep: u64) -> Result<()> {
        let conn = self.lock();
        conn.prepare_cached(
            "INSERT INTO audit (time, action, namespace, pod, pod_id, container, profile,
                                rule, verdict, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            r.time,
            r.action,
            r.namespace,
            r.pod,
            r.pod_id,
            r.container,
            r.profile,
            r.rule,
            r.verdict,
            r.reason
        ])?;
        let newest = conn.last_insert_rowid();
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        conn.prepare_cached("DELETE FROM audit WHERE id <= ?1")?
            .execute([newest.saturating_sub(keep)])?;
        Ok(())
    }

    /// Decisions, newest first.
    pub fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT time, action, namespace, pod, pod_id, container, profile, rule, verdict,
                    reason
             FROM audit
             WHERE (?1 = 0 OR verdict != 'allowed') AND (?2 IS NULL OR namespace = ?2)
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![f.denied_only, f.namespace, f.limit.max(1)],
            row_to_record,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn row_to_record(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        time: r.get(0)?,
        action: r.get(1)?,
        namespace: r.get(2)?,
        pod: r.get(3)?,
        pod_id: r.get(4)?,
        container: r.get(5)?,
        profile: r.get(6)?,
        rule: r.get(7)?,
        verdict: r.get(8)?,
        reason: r.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: i64, verdict: &str, ns: &str) -> AuditRecord {
        AuditRecord {
            time: i,
            action: "CreateContainer".into(),
            namespace: ns.into(),
            pod: "p".into(),
            pod_id: "abc".into(),
            container: format!("c{i}"),
            profile: "restricted".into(),
            rule: if verdict == "denied" { 2 } else { 0 },
            verdict: verdict.into(),
            reason: String::new(),
        }
    }

    #[test]
    fn keeps_the_newest_rows_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..10 {
            let v = if i % 3 == 0 { "denied" } else { "allowed" };
            let ns = if i % 2 == 0 { "a" } else { "b" };
            store.record_audit(&rec(i, v, ns), 6).unwrap();
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
        assert_eq!(all[0], rec(9, "denied", "b"));
        let denied = store
            .audit(&AuditFilter {
                limit: 100,
                denied_only: true,
                namespace: Some("a".into()),
            })
            .unwrap();
        assert_eq!(denied.iter().map(|r| r.time).collect::<Vec<_>>(), vec![6]);
        let two = store
            .audit(&AuditFilter {
                limit: 2,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(two.len(), 2);
    }
}
