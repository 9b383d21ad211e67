//! Crash points for the fault-injection tests. With `VORDR_CRASH_AT` set to
//! one of [`POINTS`], the daemon kills itself with SIGKILL when it reaches
//! that point, as a kill -9 at that moment would; restart reconciliation
//! and the idempotent teardown must then leave nothing behind. Without the
//! variable (always, in production) a point is one comparison.

use std::sync::OnceLock;

/// The environment variable naming the point to crash at.
pub const ENV: &str = "VORDR_CRASH_AT";

/// Every crash point, in lifecycle order.
pub const POINTS: &[&str] = &[
    "pod.recorded",
    "pod.cgroup-created",
    "pod.pinned",
    "pod.ip-allocated",
    "pod.netavark-setup",
    "pod.files-written",
    "container.recorded",
    "container.rootfs-mounted",
    "container.shim-started",
    "container.shim-created",
    "container.started",
    "container.killed",
    "container.teardown.shim",
    "container.torn-down",
    "pod.containers-stopped",
    "pod.network-detached",
    "pod.namespaces-released",
    "pod.containers-removed",
    "pod.cgroup-removed",
    "pod.files-removed",
    "cni.added",
];

/// Dies here if `VORDR_CRASH_AT` names this point.
pub fn point(name: &'static str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty()));
    if at.as_deref() == Some(name) {
        debug_assert!(POINTS.contains(&name), "unlisted crash point {name}");
        tracing::warn!("{ENV}={name}: killing the daemon here");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_point_is_used_once_in_the_sources() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut text = String::new();
        let mut dirs = vec![src];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = e.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|x| x == "rs")
                    && e.file_name() != "faults.rs"
                {
                    text.push_str(&std::fs::read_to_string(path).unwrap());
                }
            }
        }
        for p in super::POINTS {
            let call = format!("faults::point(\"{p}\")");
            assert_eq!(text.matches(&call).count(), 1, "{call}");
        }
        assert_eq!(
            text.matches("faults::point(").count(),
            super::POINTS.len(),
            "a crash point is missing from POINTS"
        );
    }
}
