//! Leases that keep a pull's blobs and snapshots from garbage collection, and the collection.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::Puller;
use crate::content::{ContentError, Digest};
use crate::snapshots::SnapshotError;

#[derive(Default)]
pub(super) struct LeaseTable {
    next: u64,
    held: HashMap<u64, HashSet<String>>,
}

fn lock(t: &Mutex<LeaseTable>) -> std::sync::MutexGuard<'_, LeaseTable> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps the blobs and snapshots a pull uses (by digest and chain id) from
/// garbage collection until it is dropped. Take it before the pull and drop
/// it after the image is recorded.
pub struct Lease {
    id: u64,
    table: Arc<Mutex<LeaseTable>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        lock(&self.table).held.remove(&self.id);
    }
}

/// What recorded images use, by digest (blobs) and chain id (snapshots).
#[derive(Debug, Default, Clone)]
pub struct InUse {
    pub blobs: HashSet<String>,
    pub snapshots: HashSet<String>,
}

impl InUse {
    /// Marks what one image uses: its config blob, its layer blobs and
    /// their snapshots (by chain id).
    pub fn add_image(&mut self, config: &str, layers: &[String], chain_ids: &[String]) {
        self.blobs.insert(config.to_string());
        self.blobs.extend(layers.iter().cloned());
        self.snapshots.extend(chain_ids.iter().cloned());
    }
}

/// A failed garbage collection.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("listing what images use: {0}")]
    InUse(String),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("garbage collection task: {0}")]
    Task(String),
}

impl Puller {
    /// A new, empty lease.
    pub fn lease(&self) -> Lease {
        let mut t = lock(&self.leases);
        t.next += 1;
        let id = t.next;
        t.held.insert(id, HashSet::new());
        Lease {
            id,
            table: self.leases.clone(),
        }
    }

    /// Adds `items` to `lease`. Done before the pull looks at whether they
    /// are stored: garbage collection then either finished deleting them
    /// before (and the pull fetches them again) or sees the lease.
    pub(super) async fn protect(&self, lease: &Lease, items: impl IntoIterator<Item = String>) {
        let _gc = self.gc.read().await;
        lock(&lease.table)
            .held
            .entry(lease.id)
            .or_default()
            .extend(items);
    }

    /// Deletes the blobs and snapshots that neither `in_use` (what recorded
    /// images use, asked once the leases are read) nor a lease names.
    /// Returns how many blobs and snapshots it removed. It waits only for
    /// pulls adding to their leases, never for a download.
    pub async fn collect_garbage(
        &self,
        in_use: impl FnOnce() -> Result<InUse, String>,
    ) -> Result<(usize, usize), GcError> {
        let gc = self.gc.clone().write_owned().await;
        // Leases first, then the images: a pull drops its lease only after
        // recording its image, so whatever it used is in one or the other.
        let leased: HashSet<String> = lock(&self.leases)
            .held
            .values()
            .flatten()
            .cloned()
            .collect();
        let used = in_use().map_err(GcError::InUse)?;
        let (content, snapshots) = (self.content.clone(), self.snapshots.clone());
        tokio::task::spawn_blocking(move || {
            // Held until the deletions are done, even if the caller goes away.
            let _gc = gc;
            let keep = |d: &Digest, used: &HashSet<String>| {
                let d = d.to_string();
                used.contains(&d) || leased.contains(&d)
            };
            let (mut blobs, mut snaps) = (0, 0);
            for d in content.list()? {
                if !keep(&d, &used.blobs) {
                    content.delete(&d)?;
                    blobs += 1;
                }
            }
            for c in snapshots.list()? {
                if !keep(&c, &used.snapshots) {
                    snapshots.remove(&c)?;
                    snaps += 1;
                }
            }
            Ok((blobs, snaps))
        })
        .await
        .map_err(|e| GcError::Task(e.to_string()))?
    }
}
