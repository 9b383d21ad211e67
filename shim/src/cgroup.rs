//! The container's cgroup as the shim reads it: its directory below each
//! hierarchy's root from the spec's `cgroupsPath` (the cgroupfs path, or
//! runc's systemd form `<slice>:<prefix>:<name>`, the scope
//! `<prefix>-<name>.scope` under the expanded slice), and the OOM kill count
//! in whichever layout.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

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

/// On cgroup v2, watches the container's `memory.events` (the kernel
/// notifies every change) and sets `seen` once `oom_kill` is above zero, as
/// containerd's shim does: with the systemd driver the scope's cgroup is
/// gone as soon as its last process died, so reading it at exit is too late.
/// The thread ends with the cgroup (or the first OOM kill). Nothing to watch
/// on v1 (the cgroup stays until the runtime deletes it): `Ok(false)`.
pub fn watch_oom(rel: &Path, seen: Arc<AtomicBool>) -> std::io::Result<bool> {
    watch_oom_in(PathBuf::from(ROOT), rel, seen)
}

fn watch_oom_in(root: PathBuf, rel: &Path, seen: Arc<AtomicBool>) -> std::io::Result<bool> {
    let events = root
        .join(rel.strip_prefix("/").unwrap_or(rel))
        .join("memory.events");
    if !events.exists() {
        return Ok(false);
    }
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC)?;
    inotify.add_watch(&events, AddWatchFlags::IN_MODIFY)?;
    let rel = rel.to_path_buf();
    std::thread::Builder::new()
        .name("oom-watch".into())
        .spawn(move || oom_watch_loop(&inotify, &root, &rel, &seen))?;
    Ok(true)
}

/// Whether the init that exited with `code` was OOM-killed: the watcher
/// saw it, or the cgroup's files say so. When the cgroup is already gone
/// (a systemd scope) after a SIGKILL, the watcher gets a moment to catch up.
pub fn oom_at_exit(rel: &Path, seen: &AtomicBool, watched: bool, code: i32) -> bool {
    let gone = || {
        !Path::new(ROOT)
            .join(rel.strip_prefix("/").unwrap_or(rel))
            .join("memory.events")
            .exists()
    };
    if watched && code == 128 + 9 && !seen.load(Ordering::SeqCst) && gone() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
        while !seen.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    seen.load(Ordering::SeqCst) || oom_killed_in(Path::new(ROOT), rel)
}

fn oom_watch_loop(inotify: &Inotify, root: &Path, rel: &Path, seen: &AtomicBool) {
    // A kill before the watch was added.
    if oom_killed_in(root, rel) {
        seen.store(true, Ordering::SeqCst);
        return;
    }
    loop {
        let Ok(events) = inotify.read_events() else {
            return;
        };
        if oom_killed_in(root, rel) {
            seen.store(true, Ordering::SeqCst);
            return;
        }
        // IN_IGNORED: the file (the cgroup) is gone.
        if events
            .iter()
            .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED))
        {
            return;
        }
    }
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

    #[test]
    fn the_watcher_sees_an_oom_kill_as_it_is_written() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("pod/c1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.events"), "oom 0\noom_kill 0\n").unwrap();
        let seen = Arc::new(AtomicBool::new(false));
        let rel = Path::new("/pod/c1");
        assert!(watch_oom_in(d.path().to_path_buf(), rel, seen.clone()).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!seen.load(Ordering::SeqCst));
        std::fs::write(dir.join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !seen.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(seen.load(Ordering::SeqCst));
        // The cgroup gone: the record comes from the watcher.
        std::fs::remove_file(dir.join("memory.events")).unwrap();
        assert!(seen.load(Ordering::SeqCst));
        // No memory.events (v1): nothing is watched.
        let none = Arc::new(AtomicBool::new(false));
        assert!(!watch_oom_in(d.path().to_path_buf(), Path::new("/pod/c2"), none).unwrap());
    }
}
