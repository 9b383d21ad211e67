//! Versioned schema migrations, tracked in SQLite's `user_version`.

use rusqlite::Connection;

use crate::{Result, StoreError};

/// Each entry migrates from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: pods, their IP allocations, and daemon settings.
    "CREATE TABLE pods (
        id              TEXT PRIMARY KEY,
        name            TEXT NOT NULL,
        namespace       TEXT NOT NULL,
        uid             TEXT NOT NULL,
        attempt         INTEGER NOT NULL,
        state           TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        runtime_handler TEXT NOT NULL,
        config          TEXT NOT NULL,
        labels          TEXT NOT NULL,
        annotations     TEXT NOT NULL,
        host_network    INTEGER NOT NULL,
        netns_path      TEXT,
        ipc_path        TEXT,
        uts_path        TEXT,
        network_attached INTEGER NOT NULL DEFAULT 0,
        cgroup_parent   TEXT NOT NULL,
        network         TEXT NOT NULL,
        UNIQUE (name, namespace, uid, attempt)
    );
    CREATE TABLE ip_allocations (
        network TEXT NOT NULL,
        ip      TEXT NOT NULL,
        pod_id  TEXT NOT NULL REFERENCES pods(id) ON DELETE CASCADE,
        PRIMARY KEY (network, ip)
    );
    CREATE INDEX ip_allocations_pod ON ip_allocations(pod_id);
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
    // 2: images: one row per image (id = config digest).
    "CREATE TABLE images (
        id           TEXT PRIMARY KEY,
        repo_tags    TEXT NOT NULL,
        repo_digests TEXT NOT NULL,
        size         INTEGER NOT NULL,
        layers       TEXT NOT NULL,
        chain_ids    TEXT NOT NULL,
        pinned       INTEGER NOT NULL DEFAULT 0,
        pulled_at    INTEGER NOT NULL
    );",
    // 3: the image config's User, kept so that listing images reads no blob.
    "ALTER TABLE images ADD COLUMN user TEXT NOT NULL DEFAULT '';",
    // 4: the image manifest's annotations, as a JSON object.
    "ALTER TABLE images ADD COLUMN annotations TEXT NOT NULL DEFAULT '{}';",
    // 5: containers, each run by its own shim.
    "CREATE TABLE containers (
        id           TEXT PRIMARY KEY,
        pod_id       TEXT NOT NULL,
        name         TEXT NOT NULL,
        attempt      INTEGER NOT NULL,
        state        TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        started_at   INTEGER NOT NULL DEFAULT 0,
        finished_at  INTEGER NOT NULL DEFAULT 0,
        exit_code    INTEGER NOT NULL DEFAULT 0,
        reason       TEXT NOT NULL DEFAULT '',
        message      TEXT NOT NULL DEFAULT '',
        pid          INTEGER NOT NULL DEFAULT 0,
        image_ref    TEXT NOT NULL,
        image_id     TEXT NOT NULL,
        config       TEXT NOT NULL,
        labels       TEXT NOT NULL,
        annotations  TEXT NOT NULL,
        log_path     TEXT NOT NULL,
        runtime      TEXT NOT NULL,
        shim_address TEXT NOT NULL DEFAULT '',
        stop_signal  TEXT NOT NULL DEFAULT 'SIGTERM',
        UNIQUE (pod_id, name, attempt)
    );
    CREATE INDEX containers_pod ON containers (pod_id);",
    // 6: the gatekeeper's decisions, allowed and denied.
    "CREATE TABLE audit (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        time      INTEGER NOT NULL,
        action    TEXT NOT NULL,
        namespace TEXT NOT NULL,
        pod       TEXT NOT NULL,
        pod_id    TEXT NOT NULL,
        container TEXT NOT NULL,
        profile   TEXT NOT NULL,
        rule      INTEGER NOT NULL,
        verdict   TEXT NOT NULL,
        reason    TEXT NOT NULL
    );",
    // 7: the audit table becomes a hash chain of decisions and lifecycle
    // events; the hash of the last record trimmed away is kept, signed.
    "ALTER TABLE audit ADD COLUMN kind TEXT NOT NULL DEFAULT 'decision';
    ALTER TABLE audit ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit ADD COLUMN hash TEXT NOT NULL DEFAULT '';
    CREATE TABLE audit_checkpoint (
        id        INTEGER PRIMARY KEY CHECK (id = 1),
        last_id   INTEGER NOT NULL,
        last_hash TEXT NOT NULL,
        time      INTEGER NOT NULL,
        signature TEXT NOT NULL
    );",
];

/// The newest schema version this build knows.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`LATEST`], one transaction per step.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > LATEST {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: LATEST,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
        tracing::info!(version = i + 1, "migrated database schema");
    }
    Ok(())
}
