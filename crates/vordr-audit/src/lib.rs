//! Vordr's tamper-evident audit chain. Every gatekeeper decision and every
//! lifecycle change is a record whose hash covers its fields and the hash
//! of the record before it, so that an edited, deleted or reordered record
//! breaks the chain from there on. The chain's head is also appended to a
//! file outside the database (`audit.head`), so that rows cut from the end
//! are noticed too. Trimming old records leaves a checkpoint, the hash of
//! the last record removed, signed with the node's Ed25519 key
//! (`audit.key`, 0600, made at first start): verification starts from it.

mod head;
mod key;
mod verify;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use vordr_store::{AuditCheckpoint, AuditRecord, ChainSeal, Store};

pub use head::HEAD_FILE;
pub use key::KEY_FILE;
pub use verify::{verify, Broken, Verification};

/// Errors opening or appending to the chain.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit key {path}: {source}")]
    Key {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit key {0}: not a 32-byte Ed25519 seed")]
    BadKey(PathBuf),
    #[error("audit head file {path}: {source}")]
    Head {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit records: {0}")]
    Store(#[from] vordr_store::StoreError),
}

/// The chain of one node: its key and head file, over the store's table.
pub struct AuditLog {
    key: ed25519_dalek::SigningKey,
    head: head::HeadFile,
    keep: u64,
}

impl AuditLog {
    /// Opens the chain under `root` (the daemon's state directory): the
    /// node key, made if missing; the head file; records from before the
    /// chain existed hashed in. `keep` records are kept, the older trimmed.
    pub fn open(store: &Store, root: &Path, keep: u64) -> Result<AuditLog, AuditError> {
        let key = key::load_or_create(&root.join(KEY_FILE))?;
        let head = head::HeadFile::open(&root.join(HEAD_FILE), keep)?;
        let log = AuditLog { key, head, keep };
        let sealed = store.seal_unhashed_audit(&log.seal())?;
        if sealed > 0 {
            tracing::info!(
                records = sealed,
                "audit records from before the chain hashed in"
            );
            let (_, chain) = store.audit_chain()?;
            if let Some(last) = chain.last() {
                log.head.append(last.id, &last.hash)?;
            }
        }
        Ok(log)
    }

    /// Appends `r` (its id and hashes are set here); returns it as stored.
    pub fn append(&self, store: &Store, r: &AuditRecord) -> Result<AuditRecord, AuditError> {
        let stored = store.append_audit(r, self.keep, &self.seal())?;
        self.head.append(stored.id, &stored.hash)?;
        Ok(stored)
    }

    /// The node's public key, hex: what checkpoints are verified with.
    pub fn public_key(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }

    fn seal(&self) -> Seal<'_> {
        Seal { key: &self.key }
    }
}

struct Seal<'a> {
    key: &'a ed25519_dalek::SigningKey,
}

impl ChainSeal for Seal<'_> {
    fn hash(&self, r: &AuditRecord) -> String {
        record_hash(r)
    }

    fn checkpoint(&self, last: &AuditRecord) -> AuditCheckpoint {
        use ed25519_dalek::Signer;
        let time = now_ns();
        let msg = checkpoint_message(last.id, &last.hash, time);
        AuditCheckpoint {
            last_id: last.id,
            last_hash: last.hash.clone(),
            time,
            signature: hex(&self.key.sign(msg.as_bytes()).to_bytes()),
        }
    }
}

/// SHA-256 over the record's id, fields and previous hash, in a fixed
/// order (a JSON array: no field can run into the next), hex.
pub fn record_hash(r: &AuditRecord) -> String {
    let fields = serde_json::json!([
        r.id,
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
        r.prev_hash,
    ]);
    hex(&Sha256::digest(fields.to_string().as_bytes()))
}

/// What a checkpoint's signature covers.
fn checkpoint_message(last_id: i64, last_hash: &str, time: i64) -> String {
    format!("vordr-audit-checkpoint\n{last_id}\n{last_hash}\n{time}\n")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
