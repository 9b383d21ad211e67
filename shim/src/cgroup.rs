//! The container's cgroup as the shim reads it: its directory below each
//! hierarchy's root from the spec's `cgroupsPath` (the cgroupfs path, or
//! runc's systemd form `<slice>:<prefix>:<name>`, the scope
//! `<prefix>-<name>.scope` under the expanded slice), and the OOM kill count
//! in whichever layout.

use std::path::{Path, PathBuf};

/// Where the cgroup hierarchies are mounted.
pub const ROOT: &str = "/sys/fs/cgroup";

/// Whether `cgroups_path` is runc's systemd form, `slice:prefix:name`.
pub fn is_systemd(cgroups_path: &Path) -> bool {
    let s = cgroups_path.to_string_lossy();
    !s.starts_with('/') && s.split(':').count() == 3
}

/// A systemd slice name expanded into its path: each dash-separated prefix
/// is a parent slice (`a-b.slice` -> `/a.slice/a-b.slice`); `-.slice` is
/// the root. `None` for what is no slice name.
fn expand_slice(slice: &str) -> Option<String> {
    let stem = slice.strip_suffix(".slice")?;
    if stem == "-" || stem.is_empty() {
        return Some(String::new());
    }
    if slice.contains('/') || stem.split('-').any(str::is_empty) {
        return None;
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Some(path)
}

/// The container's cgroup directory relative to a hierarchy's root, from
/// the spec's `cgroupsPath` in either form.
pub fn fs_path(cgroups_path: &Path) -> PathBuf {
    if !is_systemd(cgroups_path) {
        return cgroups_path.to_path_buf();
    }
    let s = cgroups_path.to_string_lossy();
    let mut parts = s.splitn(3, ':');
    let (slice, prefix, name) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let scope = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    PathBuf::from(format!(
        "{}/{scope}",
        expand_slice(slice).unwrap_or_default()
    ))
}

/// Whether the memory cgroup `rel` (a directory below the root) OOM-killed
/// a process: `oom_kill` in v1's `memory/<rel>/memory.oom_control` or v2's
/// `<rel>/memory.events`.
pub fn oom_killed_in(root: &Path, rel: &Path) -> bool {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    let v1 = root.join("memory").join(rel).join("memory.oom_control");
    let v2 = root.join(rel).join("memory.events");
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
    fn both_path_forms() {
        let p = Path::new("kubepods-burstable-pod1.slice:cri-vordr:abc");
        assert!(is_systemd(p));
        assert_eq!(
            fs_path(p),
            PathBuf::from(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-vordr-abc.scope"
            )
        );
        let p = Path::new("/kubepods/burstable/pod1/vordr-abc");
        assert!(!is_systemd(p));
        assert_eq!(fs_path(p), p);
        assert_eq!(
            fs_path(Path::new("-.slice:cri-vordr:abc")),
            PathBuf::from("/cri-vordr-abc.scope")
        );
        assert_eq!(
            fs_path(Path::new(":cri-vordr:abc")),
            PathBuf::from("/system.slice/cri-vordr-abc.scope")
        );
    }

    #[test]
    fn oom_kills_in_v1_and_v2_files() {
        let d = tempfile::tempdir().unwrap();
        let v2 = d.path().join("pod/c1");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(
            v2.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n",
        )
        .unwrap();
        assert!(!oom_killed_in(d.path(), Path::new("/pod/c1")));
        std::fs::write(
            v2.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        assert!(oom_killed_in(d.path(), Path::new("/pod/c1")));
        let v1 = d.path().join("memory/pod/c2");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(
            v1.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert!(oom_killed_in(d.path(), Path::new("/pod/c2")));
        assert!(!oom_killed_in(d.path(), Path::new("/pod/none")));
    }
}
