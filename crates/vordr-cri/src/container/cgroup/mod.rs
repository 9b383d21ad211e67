//! Cgroups: the pod's cgroup parent as kubelet names it for each driver
//! (turned into a path under the hierarchies), the host's cgroup mode
//! (`mode`), the pod-level cgroup made and removed with the pod and its
//! resources (`pod`, over the files of `tree` or systemd's D-Bus API in
//! `systemd`), and the removal of a cgroup with what still runs in it.

pub mod mode;
pub mod pod;
pub mod systemd;
pub mod tree;

use vordr_config::CgroupDriver;

/// Where the cgroup hierarchies are mounted.
pub const ROOT: &str = "/sys/fs/cgroup";

/// What can go wrong making, changing or removing a pod's cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The request asks for something no cgroup takes (a field is named).
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// systemd's D-Bus API refused or could not be reached.
    #[error("systemd: {0}")]
    Systemd(String),
    /// The configured driver cannot work on this host.
    #[error("{0}")]
    Unavailable(String),
    /// A cgroup that would not empty or go away in time.
    #[error("{0}")]
    Busy(String),
}

/// Parent used when kubelet (or crictl) sends none.
pub const DEFAULT_CGROUPFS_PARENT: &str = "/vordr";
pub const DEFAULT_SYSTEMD_PARENT: &str = "vordr.slice";

/// Resolves `parent` for `driver` to a path relative to each controller's
/// root, for example `/kubepods/burstable/pod1` (cgroupfs) or
/// `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice`
/// (systemd, from `kubepods-burstable-pod1.slice`).
pub fn resolve_parent(driver: CgroupDriver, parent: &str) -> Result<String, String> {
    match driver {
        CgroupDriver::Cgroupfs => {
            let p = if parent.is_empty() {
                DEFAULT_CGROUPFS_PARENT
            } else {
                parent
            };
            if !p.starts_with('/') {
                return Err(format!(
                    "{p:?} must be an absolute cgroup path with the cgroupfs driver"
                ));
            }
            if p.split('/').any(|c| c == ".." || c == ".") || p.contains('\0') {
                return Err(format!("{p:?} must not contain '.' or '..' components"));
            }
            let trimmed = p.trim_end_matches('/');
            // Containers below a `.slice` are systemd scopes (`is_slice`);
            // with cgroupfs they would be named one way and made another.
            if vordr_spec::cgroup::is_slice(trimmed) {
                return Err(format!(
                    "{p:?} names a systemd slice, which needs [cgroup] driver = \"systemd\""
                ));
            }
            Ok(if trimmed.is_empty() {
                "/".into()
            } else {
                trimmed.to_string()
            })
        }
        CgroupDriver::Systemd => {
            let p = if parent.is_empty() {
                DEFAULT_SYSTEMD_PARENT
            } else {
                parent
            };
            if !p.contains('/') {
                return expand_slice(p);
            }
            // A slice's path, as containerd and CRI-O take it (critest
            // sends "/test.slice"): its last element names the slice, and
            // it must be that slice's own path.
            let path = p.trim_end_matches('/');
            let name = path.rsplit('/').next().unwrap_or_default();
            let expanded = expand_slice(name)?;
            if expanded != path {
                return Err(format!(
                    "{p:?} is not the path of the systemd slice {name:?} (that is {expanded:?})"
                ));
            }
            Ok(expanded)
        }
    }
}

/// Expands a systemd slice name into its path: each dash-separated prefix
/// is a parent slice, as systemd's unit naming defines.
pub fn expand_slice(slice: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("{slice:?} is not a systemd slice name: {why}"));
    let Some(stem) = slice.strip_suffix(".slice") else {
        return bad("it must end in .slice with the systemd driver");
    };
    if slice.contains('/') {
        return bad("it must not contain '/'");
    }
    if stem == "-" {
        return Ok("/".into());
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return bad("empty dash-separated part");
    }
    if !stem
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '\\'))
    {
        return bad("invalid character");
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for (i, part) in stem.split('-').enumerate() {
        if i > 0 {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Ok(path)
}

/// Every cgroup hierarchy mounted on the host (each v1 controller's and the
/// v2 one), from /proc/self/mounts.
pub fn hierarchies() -> Vec<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut out: Vec<std::path::PathBuf> = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
            matches!(fstype, "cgroup" | "cgroup2").then(|| dir.replace("\\040", " ").into())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// How long the processes of a cgroup being removed get to die.
const KILL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Removes the cgroup at `rel` (relative to each hierarchy's root) from
/// every hierarchy, killing whatever still runs in it first. Missing
/// directories are success; returns how many directories were removed.
pub fn remove(rel: &std::path::Path) -> Result<usize, String> {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    if rel.as_os_str().is_empty() {
        return Err("refusing to remove a hierarchy's root".into());
    }
    let mut removed = 0;
    for h in hierarchies() {
        let dir = h.join(rel);
        if !dir.is_dir() {
            continue;
        }
        let deadline = std::time::Instant::now() + KILL_WAIT;
        loop {
            // A runtime's own sub-cgroups first (deepest first).
            let mut subdirs = Vec::new();
            collect_dirs(&dir, &mut subdirs, 0);
            let mut alive = 0;
            for d in subdirs.iter().rev().chain(std::iter::once(&dir)) {
                // A frozen (paused) process takes no signal until thawed.
                let _ = std::fs::write(d.join("freezer.state"), "THAWED");
                let _ = std::fs::write(d.join("cgroup.freeze"), "0");
                // v2 (5.14+) kills the whole subtree in one write.
                let _ = std::fs::write(d.join("cgroup.kill"), "1");
                let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                    alive += 1;
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            if alive == 0 {
                for d in subdirs.iter().rev() {
                    let _ = std::fs::remove_dir(d);
                }
                match std::fs::remove_dir(&dir) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("removing cgroup {}: {e}", dir.display())),
                }
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "cgroup {} still has {alive} processes after SIGKILL",
                    dir.display()
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    Ok(removed)
}

/// Sub-directories of `dir`, parents before children, at most 8 deep.
fn collect_dirs(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>, depth: usize) {
    if depth >= 8 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(e.path());
            collect_dirs(&e.path(), out, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroupfs_paths() {
        let d = CgroupDriver::Cgroupfs;
        assert_eq!(resolve_parent(d, "").unwrap(), "/vordr");
        assert_eq!(
            resolve_parent(d, "/kubepods/burstable/pod1/").unwrap(),
            "/kubepods/burstable/pod1"
        );
        assert!(resolve_parent(d, "kubepods").is_err());
        assert!(resolve_parent(d, "/kubepods/../../etc").is_err());
        assert!(resolve_parent(d, "kubepods-burstable.slice").is_err());
        let e = resolve_parent(d, "/kubepods.slice/pod1.slice/").unwrap_err();
        assert!(e.contains("driver = \"systemd\""), "{e}");
        assert_eq!(
            resolve_parent(d, "/system.slice/kubepods").unwrap(),
            "/system.slice/kubepods"
        );
    }

    #[test]
    fn systemd_slices() {
        let d = CgroupDriver::Systemd;
        assert_eq!(
            resolve_parent(d, "kubepods-burstable-pod1.slice").unwrap(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
        );
        assert_eq!(resolve_parent(d, "").unwrap(), "/vordr.slice");
        assert_eq!(resolve_parent(d, "-.slice").unwrap(), "/");
        assert!(resolve_parent(d, "/kubepods/burstable").is_err());
        assert!(resolve_parent(d, "a--b.slice").is_err());
        assert!(resolve_parent(d, "a/b.slice").is_err());
        // A slice's own path, as critest sends it, is that slice.
        assert_eq!(resolve_parent(d, "/test.slice").unwrap(), "/test.slice");
        assert_eq!(
            resolve_parent(
                d,
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/"
            )
            .unwrap(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
        );
        let e = resolve_parent(d, "/kubepods.slice/pod1.slice").unwrap_err();
        assert!(e.contains("\"/pod1.slice\""), "{e}");
        assert!(resolve_parent(d, "/").is_err());
        assert!(resolve_parent(d, "/-.slice").is_err());
        assert!(resolve_parent(d, "/kubepods").is_err());
    }

    #[test]
    fn removes_a_cgroup_with_a_process_in_every_hierarchy() {
        if !nix::unistd::geteuid().is_root() || hierarchies().is_empty() {
            eprintln!("skipped: needs root and cgroups");
            return;
        }
        let rel = format!("vordr-test-remove-{}", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let mut made = 0;
        for h in hierarchies() {
            let d = h.join(&rel).join("inner");
            // Some v1 hierarchies (named ones without controllers) may refuse.
            if std::fs::create_dir_all(&d).is_ok() {
                made += 1;
                let _ = std::fs::write(d.join("cgroup.procs"), child.id().to_string());
            }
        }
        assert!(made > 0);
        let removed = remove(std::path::Path::new(&format!("/{rel}"))).unwrap();
        assert_eq!(removed, made);
        // The process was killed, and it was ours to reap.
        let st = child.wait().unwrap();
        assert!(!st.success());
        for h in hierarchies() {
            assert!(!h.join(&rel).exists());
        }
        assert!(remove(std::path::Path::new("/")).is_err());
        assert_eq!(remove(std::path::Path::new(&format!("/{rel}"))).unwrap(), 0);
    }
}
