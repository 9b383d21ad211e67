//! The pod's cgroup parent, as kubelet names it for each cgroup driver,
//! turned into a path under the cgroup hierarchy.

use vordr_config::CgroupDriver;

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
            expand_slice(p)
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
    }
}
