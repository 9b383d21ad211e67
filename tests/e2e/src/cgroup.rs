//! The machine's cgroup layout as the tests see it (v1, hybrid or unified
//! v2), the cgroup driver the harness's daemons use, and a process's
//! resource limits read from its own cgroup in whichever layout.

use std::path::{Path, PathBuf};

/// How cgroups are mounted at /sys/fs/cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Every controller on v1 (no cgroup2 mount).
    V1,
    /// Controllers on v1, a cgroup2 mount at /sys/fs/cgroup/unified.
    Hybrid,
    /// cgroup2 at /sys/fs/cgroup: every controller unified.
    Unified,
}

fn is_cgroup2(p: &str) -> bool {
    nix::sys::statfs::statfs(p)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// This machine's layout, from the filesystems' magic numbers.
pub fn layout() -> Layout {
    if is_cgroup2("/sys/fs/cgroup") {
        Layout::Unified
    } else if is_cgroup2("/sys/fs/cgroup/unified") {
        Layout::Hybrid
    } else {
        Layout::V1
    }
}

/// The `[cgroup] driver` the harness's daemons run with:
/// `$VORDR_E2E_CGROUP_DRIVER` ("cgroupfs" or "systemd"), else "cgroupfs"
/// (the embedded default).
pub fn driver() -> String {
    match std::env::var("VORDR_E2E_CGROUP_DRIVER") {
        Ok(d) if !d.is_empty() => d,
        _ => "cgroupfs".into(),
    }
}

/// The directory of `pid`'s cgroup holding `v1_controller`'s files (on v2,
/// the unified cgroup, whatever the controller).
pub fn dir_of(pid: u32, v1_controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/cgroup: {e}"));
    let unified = layout() == Layout::Unified;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let rel = path.trim_start_matches('/');
        if unified && controllers.is_empty() {
            return Path::new("/sys/fs/cgroup").join(rel);
        }
        if !unified && controllers.split(',').any(|c| c == v1_controller) {
            return Path::new("/sys/fs/cgroup").join(controllers).join(rel);
        }
    }
    panic!("no {v1_controller} cgroup for pid {pid} in:\n{text}");
}

fn read_trimmed(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The memory limit of `pid`'s cgroup in bytes (`None`: unlimited), from
/// memory.max on v2 or memory.limit_in_bytes on v1.
pub fn memory_limit(pid: u32) -> Option<u64> {
    let dir = dir_of(pid, "memory");
    let v = if layout() == Layout::Unified {
        read_trimmed(&dir.join("memory.max"))
    } else {
        read_trimmed(&dir.join("memory.limit_in_bytes"))
    };
    // v1 writes "unlimited" as a page-rounded i64::MAX.
    match v.as_str() {
        "max" => None,
        _ => v
            .parse::<u64>()
            .ok()
            .filter(|n| *n < (i64::MAX as u64) & !0xfff),
    }
}

/// Whether `pid` is frozen: its cgroup's `cgroup.events` says `frozen 1`
/// on v2; on v1 the freezer leaves the task in uninterruptible sleep
/// (`State: D`) or says so in its state line.
pub fn is_frozen(pid: u32) -> bool {
    if layout() == Layout::Unified {
        let events = dir_of(pid, "freezer").join("cgroup.events");
        return std::fs::read_to_string(events)
            .map(|t| t.lines().any(|l| l == "frozen 1"))
            .unwrap_or(false);
    }
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("State:"))
        .is_some_and(|l| l.contains('D') || l.contains("frozen"))
}

/// A shell command that prints the memory limit a container sees of its own
/// cgroup, in either layout (for ExecSync; v2 prints "max" when unlimited).
pub const MEMORY_LIMIT_IN_CONTAINER: &str =
    "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_cgroup_is_found_and_readable() {
        let dir = dir_of(std::process::id(), "memory");
        assert!(dir.is_dir(), "{}", dir.display());
        // Unlimited or a number: never a parse failure.
        let _ = memory_limit(std::process::id());
    }

    #[test]
    fn driver_defaults_to_cgroupfs() {
        if std::env::var_os("VORDR_E2E_CGROUP_DRIVER").is_none() {
            assert_eq!(driver(), "cgroupfs");
        }
    }
}
