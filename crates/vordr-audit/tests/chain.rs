//! The chain after a workload and a rotation verifies; each kind of
//! tampering is named at the record where it happened.

use std::path::Path;

use vordr_audit::{verify, AuditLog, HEAD_FILE, KEY_FILE};
use vordr_store::{AuditRecord, Store, DB_FILE};

fn record(i: i64) -> AuditRecord {
    AuditRecord {
        time: 1_000 + i,
        kind: if i % 2 == 0 { "decision" } else { "lifecycle" }.into(),
        action: "CreateContainer".into(),
        namespace: "ns".into(),
        pod: "web".into(),
        pod_id: "p1".into(),
        container: format!("c{i}"),
        profile: "restricted".into(),
        verdict: "allowed".into(),
        ..Default::default()
    }
}

/// A store with `n` records appended, keeping `keep`.
fn workload(root: &Path, n: i64, keep: u64) -> Store {
    let store = Store::open(root).unwrap();
    let log = AuditLog::open(&store, root, keep).unwrap();
    for i in 0..n {
        log.append(&store, &record(i)).unwrap();
    }
    store
}

fn sql(root: &Path, q: &str) {
    let conn = rusqlite::Connection::open(root.join(DB_FILE)).unwrap();
    conn.execute_batch(q).unwrap();
}

fn broken_at(store: &Store, root: &Path) -> Option<(i64, String)> {
    verify(store, root).unwrap().broken.map(|b| (b.id, b.why))
}

#[test]
fn an_untouched_chain_verifies_after_rotation() {
    let d = tempfile::tempdir().unwrap();
    let store = workload(d.path(), 25, 10);
    let v = verify(&store, d.path()).unwrap();
    assert_eq!(v.broken, None, "{v:?}");
    assert_eq!(v.records, 10);
    assert_eq!((v.first_id, v.last_id), (Some(16), Some(25)));
    assert_eq!(v.checkpoint.as_ref().map(|c| c.last_id), Some(15));
    assert!(v.public_key.is_some());
    // Reopening (a daemon restart) continues the same chain.
    let log = AuditLog::open(&store, d.path(), 10).unwrap();
    log.append(&store, &record(99)).unwrap();
    assert_eq!(verify(&store, d.path()).unwrap().broken, None);
    let mode = std::fs::metadata(d.path().join(KEY_FILE)).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn an_edited_record_is_named() {
    let d = tempfile::tempdir().unwrap();
    let store = workload(d.path(), 8, 100);
    sql(d.path(), "UPDATE audit SET verdict = 'denied' WHERE id = 5");
    let (id, why) = broken_at(&store, d.path()).unwrap();
    assert_eq!(id, 5, "{why}");
    assert!(why.contains("edited"), "{why}");
}

#[test]
fn a_deleted_record_is_named_at_the_next() {
    let d = tempfile::tempdir().unwrap();
    let store = workload(d.path(), 8, 100);
    sql(d.path(), "DELETE FROM audit WHERE id = 4");
    let (id, why) = broken_at(&store, d.path()).unwrap();
    assert_eq!(id, 5, "{why}");
    assert!(why.contains("missing"), "{why}");
}

#[test]
fn a_reordered_pair_is_named() {
    let d = tempfile::tempdir().unwrap();
    let store = workload(d.path(), 8, 100);
    // Swap records 3 and 4, hashes and all: ids stay in place.
    sql(
        d.path(),
        "UPDATE audit SET id = -3 WHERE id = 3;
         UPDATE audit SET id = 3 WHERE id = 4;
         UPDATE audit SET id = 4 WHERE id = -3;",
    );
    let (id, why) = broken_at(&store, d.path()).unwrap();
    assert_eq!(id, 3, "{why}");
}

#[test]
fn records_cut_from_the_end_are_named_by_the_head_file() {
    let d = tempfile::tempdir().unwrap();
    let store = workload(d.path(), 8, 100);
    sql(d.path(), "DELETE FROM audit WHERE id >= 7");
    let (id, why) = broken_at(&store, d.path()).unwrap();
    assert_eq!(id, 7, "{why}");
    assert!(why.contains("head file"), "{why}");
}

#[test]
fn a_replaced_head_file_is_named() {
    let d = tempfile::tempdir().unwrap();
    let store = workload(d.path(), 8, 100);
    std::fs::write(d.path().join(HEAD_FILE), format!("3 {}\n", "ab".repeat(32))).unwrap();
    let (id, why) = broken_at(&store, d.path()).unwrap();
    assert_eq!(id, 3, "{why}");
    // A head file that says nothing of the newest record is replaced too.
    std::fs::write(d.path().join(HEAD_FILE), "").unwrap();
    let (id, _) = broken_at(&store, d.path()).unwrap();
    assert_eq!(id, 8);
}

#[test]
fn a_forged_checkpoint_is_named() {
    let d = tempfile::tempdir().unwrap();
    let store = workload(d.path(), 12, 5);
    sql(
        d.path(),
        "UPDATE audit_checkpoint SET last_hash = 'x' || substr(last_hash, 2)",
    );
    let (id, why) = broken_at(&store, d.path()).unwrap();
    assert_eq!(id, 7, "{why}");
    assert!(why.contains("signature"), "{why}");
    // Another node's key does not verify it either.
    let d2 = tempfile::tempdir().unwrap();
    let store2 = workload(d2.path(), 12, 5);
    std::fs::write(d2.path().join(KEY_FILE), [7u8; 32]).unwrap();
    let (_, why) = broken_at(&store2, d2.path()).unwrap();
    assert!(why.contains("signature"), "{why}");
}

#[test]
fn the_head_file_is_compacted_and_still_verifies() {
    let d = tempfile::tempdir().unwrap();
    let store = workload(d.path(), 50, 5);
    let lines = std::fs::read_to_string(d.path().join(HEAD_FILE))
        .unwrap()
        .lines()
        .count();
    assert!(lines <= 10, "{lines} lines");
    assert_eq!(verify(&store, d.path()).unwrap().broken, None);
}
