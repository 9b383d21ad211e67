//! The host's cgroup mode (v1, hybrid, unified), detected once.

use std::path::Path;
use std::sync::OnceLock;

/// How cgroups are mounted on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every controller on a v1 hierarchy, no cgroup2 mount.
    V1,
    /// Controllers on v1, a cgroup2 mount (usually at `unified/`) beside them.
    Hybrid,
    /// cgroup2 at the root: every controller on the unified hierarchy.
    Unified,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::V1 => "v1",
            Mode::Hybrid => "hybrid",
            Mode::Unified => "unified",
        }
    }
}

fn is_cgroup2(p: &Path) -> bool {
    nix::sys::statfs::statfs(p)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// The mode of the cgroup tree mounted at `root` (normally /sys/fs/cgroup).
pub fn detect(root: &Path) -> Mode {
    if is_cgroup2(root) {
        Mode::Unified
    } else if is_cgroup2(&root.join("unified")) {
        Mode::Hybrid
    } else {
        Mode::V1
    }
}

/// The host's mode, detected at the first call (at start, from recovery).
pub fn host() -> Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    *MODE.get_or_init(|| detect(Path::new(super::ROOT)))
}

/// Whether the host's cgroups have `controller`: listed in the v2 root's
/// `cgroup.controllers`, or mounted as a v1 hierarchy.
pub fn has_controller(root: &Path, mode: Mode, controller: &str) -> bool {
    match mode {
        Mode::Unified => std::fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|w| w == controller)),
        Mode::V1 | Mode::Hybrid => root.join(controller).is_dir(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_directory_is_v1_and_the_host_is_detected() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(detect(d.path()), Mode::V1);
        // Whatever this machine runs, detection agrees with itself.
        assert_eq!(host(), detect(Path::new("/sys/fs/cgroup")));
        assert!(["v1", "hybrid", "unified"].contains(&host().as_str()));
    }

    #[test]
    fn controllers_in_either_layout() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        assert!(has_controller(d.path(), Mode::Unified, "memory"));
        assert!(!has_controller(d.path(), Mode::Unified, "hugetlb"));
        std::fs::create_dir(d.path().join("hugetlb")).unwrap();
        assert!(has_controller(d.path(), Mode::Hybrid, "hugetlb"));
        assert!(!has_controller(d.path(), Mode::V1, "memory"));
    }
}
