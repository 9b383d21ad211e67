//! The node's Ed25519 key: a 32-byte seed in `audit.key`, 0600, made at
//! first start from the kernel's random source.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::SigningKey;

use crate::AuditError;

/// The key file's name under the daemon's root.
pub const KEY_FILE: &str = "audit.key";

pub fn load_or_create(path: &Path) -> Result<SigningKey, AuditError> {
    let err = |source| AuditError::Key {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read(path) {
        Ok(seed) => {
            let seed: [u8; 32] = seed
                .try_into()
                .map_err(|_| AuditError::BadKey(path.to_path_buf()))?;
            vordr_fsmode::set_mode(path, vordr_fsmode::PRIVATE_FILE).map_err(err)?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed)
                .map_err(|e| err(std::io::Error::other(e.to_string())))?;
            // create_new: two daemons racing cannot overwrite each other's key.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(vordr_fsmode::PRIVATE_FILE)
                .open(path)
                .map_err(err)?;
            f.write_all(&seed)
                .and_then(|()| f.sync_all())
                .map_err(err)?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(err(e)),
    }
}

/// The public half of the key in `path`, if there is one.
pub fn public_key(path: &Path) -> Option<ed25519_dalek::VerifyingKey> {
    let seed: [u8; 32] = std::fs::read(path).ok()?.try_into().ok()?;
    Some(SigningKey::from_bytes(&seed).verifying_key())
}
