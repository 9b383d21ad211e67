//! The chain's head outside the database: `audit.head`, one line per
//! record appended (`<id> <hash>`), opened append-only, 0600. Appends are
//! written at once and made durable by a flusher thread that fsyncs at
//! most every [`FLUSH_EVERY`] (one fsync for a burst of records, so that
//! the chain costs a lifecycle almost nothing). When it holds twice the
//! records the chain keeps, it is rewritten (atomically) with the newest
//! half: verification only reads entries the chain still holds.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::AuditError;

/// The head file's name under the daemon's root.
pub const HEAD_FILE: &str = "audit.head";

/// The longest an appended head waits for its fsync.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

pub struct HeadFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
    dirty: Arc<AtomicBool>,
    /// Entries in the file now, and how many a compaction keeps.
    lines: AtomicU64,
    keep: u64,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(vordr_fsmode::PRIVATE_FILE)
        .open(path)
}

impl HeadFile {
    /// Opens (or makes) the head file; compactions keep `keep` entries.
    pub fn open(path: &Path, keep: u64) -> Result<HeadFile, AuditError> {
        let err = |source| AuditError::Head {
            path: path.to_path_buf(),
            source,
        };
        let file = open_append(path).map_err(err)?;
        vordr_fsmode::set_mode(path, vordr_fsmode::PRIVATE_FILE).map_err(err)?;
        let lines = std::fs::read(path)
            .map(|b| b.iter().filter(|c| **c == b'\n').count() as u64)
            .map_err(err)?;
        let file = Arc::new(Mutex::new(file));
        let dirty = Arc::new(AtomicBool::new(false));
        let (f, d) = (Arc::downgrade(&file), dirty.clone());
        std::thread::Builder::new()
            .name("audit-head-fsync".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                let Some(file) = f.upgrade() else {
                    return;
                };
                if d.swap(false, Ordering::AcqRel) {
                    let file = file.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = file.sync_data() {
                        tracing::error!("fsync of the audit head file: {e}");
                    }
                }
            })
            .map_err(|source| AuditError::Head {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(HeadFile {
            path: path.to_path_buf(),
            file,
            dirty,
            lines: AtomicU64::new(lines),
            keep: keep.max(1),
        })
    }

    pub fn append(&self, id: i64, hash: &str) -> Result<(), AuditError> {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(format!("{id} {hash}\n").as_bytes())
            .map_err(|source| AuditError::Head {
                path: self.path.clone(),
                source,
            })?;
        self.dirty.store(true, Ordering::Release);
        if self.lines.fetch_add(1, Ordering::AcqRel) + 1 > 2 * self.keep {
            self.compact(&mut f).map_err(|source| AuditError::Head {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Rewrites the file with its newest `keep` entries: a new file beside
    /// it, fsynced, renamed over it; appends go on in the new one.
    fn compact(&self, f: &mut File) -> std::io::Result<()> {
        let text = std::fs::read_to_string(&self.path)?;
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(self.keep as usize);
        let mut kept = lines[from..].join("\n");
        kept.push('\n');
        let tmp = self.path.with_extension("head.new");
        let _ = std::fs::remove_file(&tmp);
        let mut new = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(vordr_fsmode::PRIVATE_FILE)
            .open(&tmp)?;
        new.write_all(kept.as_bytes())?;
        new.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        *f = open_append(&self.path)?;
        self.lines
            .store((lines.len() - from) as u64, Ordering::Release);
        Ok(())
    }
}

impl Drop for HeadFile {
    fn drop(&mut self) {
        let f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.sync_data();
    }
}

/// The head file's entries, in file order (malformed lines are errors).
pub fn read(path: &Path) -> std::io::Result<Vec<(i64, String)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    text.lines()
        .enumerate()
        .map(|(n, l)| {
            let (id, hash) = l.split_once(' ').unwrap_or((l, ""));
            match id.parse() {
                Ok(id) if hash.len() == 64 => Ok((id, hash.to_string())),
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("line {}: {l:?} is not `<id> <sha256>`", n + 1),
                )),
            }
        })
        .collect()
}
