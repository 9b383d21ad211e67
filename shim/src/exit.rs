//! The durable record of the container's exit and how it was found out.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use vordr_shim_api::{ExitRecord, EXIT_FILE};

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Writes the record into the bundle: temp file, fsync, rename, fsync dir.
pub fn write_record(bundle: &Path, rec: &ExitRecord) -> std::io::Result<()> {
    let tmp = bundle.join(format!("{EXIT_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(rec).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, bundle.join(EXIT_FILE))?;
    std::fs::File::open(bundle)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let rec = ExitRecord {
            pid: 42,
            exit_code: 137,
            exited_at_ns: 5,
            oom_killed: true,
        };
        write_record(dir.path(), &rec).unwrap();
        assert_eq!(ExitRecord::read(dir.path()), Some(rec));
    }
}
