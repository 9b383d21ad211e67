//! Vordr's durable state: one SQLite database with versioned migrations and
//! typed queries. This is the only crate that writes SQL.

mod audit;
mod containers;
mod images;
mod migrations;
mod pods;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

pub use audit::{AuditCheckpoint, AuditFilter, AuditRecord, ChainSeal};
pub use containers::{ContainerExit, ContainerRecord, ContainerState, NewContainer};
pub use images::ImageRecord;
pub use pods::{Lookup, NewPod, PodRecord, PodState};

/// File name of the database under the daemon's root directory.
pub const DB_FILE: &str = "vordr.db";

/// statfs magic of NFS file systems.
const NFS_SUPER_MAGIC: i64 = 0x6969;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("creating state directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database schema version {found} is newer than this vordr knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("database file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a pod named {0} already exists")]
    PodExists(String),
    #[error("a container named {0} already exists in the pod")]
    ContainerExists(String),
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The journal mode chosen for the database file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalMode {
    /// Write-ahead log: the default on local file systems.
    Wal,
    /// Rollback journal: used on NFS, where WAL's shared memory does not work.
    Delete,
}

/// A handle to the database. Cheap to share behind an `Arc`; calls are
/// serialised on one connection, each short.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    journal: JournalMode,
}

/// Whether `dir` lives on NFS.
pub fn is_nfs(dir: &Path) -> bool {
    match nix::sys::statfs::statfs(dir) {
        Ok(s) => fs_type(&s) == NFS_SUPER_MAGIC,
        Err(_) => false,
    }
}

impl Store {
    /// Opens (creating if needed) the database under `root` and migrates it
    /// to the newest schema.
    pub fn open(root: &Path) -> Result<Store> {
        std::fs::create_dir_all(root).map_err(|source| StoreError::Dir {
            path: root.to_path_buf(),
            source,
        })?;
        let journal = if is_nfs(root) {
            JournalMode::Delete
        } else {
            JournalMode::Wal
        };
        Store::open_with(&root.join(DB_FILE), journal)
    }

    /// Opens the database at `path` with an explicit journal mode. The
    /// database and its -wal / -shm / -journal files are 0600 whatever the
    /// umask (SQLite gives those the database file's mode when it creates
    /// them; ones left by an older version are fixed here).
    pub fn open_with(path: &Path, journal: JournalMode) -> Result<Store> {
        let file_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::File { path, source }
        };
        vordr_fsmode::ensure_file(path, vordr_fsmode::PRIVATE_FILE).map_err(file_err(path))?;
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mode = match journal {
            JournalMode::Wal => "WAL",
            JournalMode::Delete => "DELETE",
        };
        let _: String = conn.query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| r.get(0))?;
        // NORMAL is crash-safe against process death (kill -9) in WAL mode;
        // FULL on the rollback journal, which NORMAL does not protect.
        let sync = match journal {
            JournalMode::Wal => "NORMAL",
            JournalMode::Delete => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;"
        ))?;
        migrations::migrate(&mut conn)?;
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            let side = PathBuf::from(side);
            vordr_fsmode::set_mode_if_exists(&side, vordr_fsmode::PRIVATE_FILE)
                .map_err(file_err(&side))?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            journal,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal mode in use.
    pub fn journal_mode(&self) -> JournalMode {
        self.journal
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent:
        // an unfinished transaction is rolled back when dropped.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads a value from the key-value settings table.
    pub fn get_setting(&self, key: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .lock()
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Writes a value to the key-value settings table.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.lock().execute(
            "INSERT INTO settings(key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }
}

/// The statfs type, whose C type differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn fs_type(s: &nix::sys::statfs::Statfs) -> i64 {
    s.filesystem_type().0 as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_wal_database_at_latest_schema() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.journal_mode(), JournalMode::Wal);
        assert_eq!(s.schema_version().unwrap(), migrations::LATEST);
        let mode: String = s
            .lock()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(s);
        // Reopening an up-to-date database is a no-op migration.
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), migrations::LATEST);
    }

    #[test]
    fn database_files_are_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        // The umask is per process: the other tests of this binary do not
        // care which one they get.
        nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DB_FILE);
        let side = |suffix: &str| dir.path().join(format!("{DB_FILE}{suffix}"));
        let s = Store::open(dir.path()).unwrap();
        s.set_setting("k", "v").unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&side("-wal")), 0o600);
        assert_eq!(mode(&side("-shm")), 0o600);
        drop(s);
        // A database an older version left readable is fixed on open.
        for p in [db.clone(), side("-wal"), side("-shm")] {
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.get_setting("k").unwrap().as_deref(), Some("v"));
        for p in [db, side("-wal"), side("-shm")] {
            if p.exists() {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
            }
        }
    }

    #[test]
    fn delete_journal_mode_is_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_with(&dir.path().join("x.db"), JournalMode::Delete).unwrap();
        let mode: String = s
            .lock()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.db");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch("PRAGMA user_version = 999").unwrap();
        }
        match Store::open_with(&p, JournalMode::Wal) {
            Err(StoreError::SchemaTooNew { found: 999, .. }) => {}
            other => panic!("expected SchemaTooNew, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn settings_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.get_setting("pod_cidr").unwrap(), None);
        s.set_setting("pod_cidr", "10.1.0.0/24").unwrap();
        s.set_setting("pod_cidr", "10.2.0.0/24").unwrap();
        assert_eq!(
            s.get_setting("pod_cidr").unwrap().as_deref(),
            Some("10.2.0.0/24")
        );
    }

    #[test]
    fn nfs_detection_is_false_on_tmp() {
        assert!(!is_nfs(Path::new("/tmp")));
    }
}
