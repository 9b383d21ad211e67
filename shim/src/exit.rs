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

/// Whether the memory cgroup at `cgroups_path` (cgroupfs form) OOM-killed a
/// process: `oom_kill` in memory.oom_control (v1) or memory.events (v2).
pub fn oom_killed(cgroups_path: &Path) -> bool {
    let rel = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(rel)
        .join("memory.oom_control");
    let v2 = Path::new("/sys/fs/cgroup").join(rel).join("memory.events");
    [v1, v2].iter().any(|p| {
        std::fs::read_to_string(p)
            .map(|s| oom_kill_count(&s) > 0)
            .unwrap_or(false)
    })
}

fn oom_kill_count(s: &str) -> u64 {
    s.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .filter_map(|v| v.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_oom_kill() {
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"),
            0
        );
        assert_eq!(oom_kill_count(""), 0);
    }

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
