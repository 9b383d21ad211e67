//! Verification: the chain recomputed from its checkpoint (whose signature
//! is checked with the node's key), every record's hash and link, and the
//! head file held against the database. The first record that does not
//! hold is named.

use std::collections::HashMap;
use std::path::Path;

use ed25519_dalek::Verifier;
use vordr_store::{AuditCheckpoint, Store};

use crate::{checkpoint_message, head, hex, key, record_hash, AuditError, HEAD_FILE, KEY_FILE};

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Records in the database.
    pub records: usize,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    /// Where the chain starts, when older records were trimmed.
    pub checkpoint: Option<AuditCheckpoint>,
    /// The node's public key (hex), when its key file is there.
    pub public_key: Option<String>,
    /// The first record that does not hold; `None` when the chain is intact.
    pub broken: Option<Broken>,
}

/// A record the chain breaks at, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub id: i64,
    pub why: String,
}

/// Verifies the chain in `store` against the key and head file in `root`.
pub fn verify(store: &Store, root: &Path) -> Result<Verification, AuditError> {
    let (checkpoint, chain) = store.audit_chain()?;
    let public = key::public_key(&root.join(KEY_FILE));
    let mut v = Verification {
        records: chain.len(),
        first_id: chain.first().map(|r| r.id),
        last_id: chain.last().map(|r| r.id),
        checkpoint: checkpoint.clone(),
        public_key: public.map(|k| hex(k.as_bytes())),
        broken: None,
    };
    let broken = |id: i64, why: String| Some(Broken { id, why });

    let (mut prev, mut expected) = (String::new(), 1);
    if let Some(c) = &checkpoint {
        if let Some(why) = bad_signature(c, public.as_ref()) {
            v.broken = broken(c.last_id, why);
            return Ok(v);
        }
        (prev, expected) = (c.last_hash.clone(), c.last_id + 1);
    }
    for r in &chain {
        let why = if r.id > expected {
            Some(format!(
                "records {expected} to {} are missing before it",
                r.id - 1
            ))
        } else if r.id < expected {
            Some(format!(
                "it comes after record {} out of order",
                expected - 1
            ))
        } else if r.prev_hash != prev {
            Some(
                "it does not follow the record before it (that record was changed, \
                  removed or moved)"
                    .to_string(),
            )
        } else if record_hash(r) != r.hash {
            Some("its contents do not match its hash (it was edited)".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            v.broken = broken(r.id, why);
            return Ok(v);
        }
        prev = r.hash.clone();
        expected = r.id + 1;
    }

    // The head file: every entry still in the chain's range matches, and
    // the newest record is there (rows cut from the end are noticed).
    let head_path = root.join(HEAD_FILE);
    let entries = head::read(&head_path).map_err(|source| AuditError::Head {
        path: head_path.clone(),
        source,
    })?;
    let hashes: HashMap<i64, &str> = chain.iter().map(|r| (r.id, r.hash.as_str())).collect();
    let floor = checkpoint.as_ref().map_or(0, |c| c.last_id);
    for (id, hash) in entries.iter().filter(|(id, _)| *id > floor) {
        match hashes.get(id) {
            Some(h) if h == hash => {}
            Some(_) => {
                v.broken = broken(*id, "the head file holds another hash for it".into());
                return Ok(v);
            }
            None => {
                v.broken = broken(
                    *id,
                    "the head file names it but the database does not have it (records \
                     were removed from the end)"
                        .into(),
                );
                return Ok(v);
            }
        }
    }
    if let Some(last) = chain.last() {
        if !entries
            .iter()
            .any(|(id, h)| *id == last.id && *h == last.hash)
        {
            v.broken = broken(
                last.id,
                "the head file does not have it (the head file was replaced or cut)".into(),
            );
        }
    }
    Ok(v)
}

fn bad_signature(
    c: &AuditCheckpoint,
    public: Option<&ed25519_dalek::VerifyingKey>,
) -> Option<String> {
    let Some(public) = public else {
        return Some(format!(
            "no node key ({KEY_FILE}) to check the checkpoint's signature with"
        ));
    };
    let sig: Option<[u8; 64]> = (0..c.signature.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(c.signature.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .and_then(|b| b.try_into().ok());
    let Some(sig) = sig else {
        return Some("the checkpoint's signature is malformed".into());
    };
    let msg = checkpoint_message(c.last_id, &c.last_hash, c.time);
    match public.verify(msg.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig)) {
        Ok(()) => None,
        Err(_) => Some("the checkpoint's signature does not verify with the node key".into()),
    }
}
