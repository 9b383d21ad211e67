//! The pod-level cgroup: the resolved cgroup parent itself (kubelet's
//! `/kubepods/burstable/pod<uid>` or `kubepods-burstable-pod<uid>.slice`,
//! else one of Vordr's own per pod), made when the pod runs, holding its
//! containers, and removed with what is left in it when the pod goes.

use std::path::Path;

use k8s_cri::v1::LinuxContainerResources;
use vordr_config::CgroupDriver;

use super::mode;
use super::tree::Tree;
use super::CgroupError;

/// Parents that are never one pod's own (older pods ran their containers
/// directly below Vordr's default parent): never made or removed as a pod's.
pub fn is_shared(parent: &str) -> bool {
    matches!(
        parent,
        "" | "/" | super::DEFAULT_CGROUPFS_PARENT | "/vordr.slice"
    )
}

/// FNV-1a, 64 bits: a short stable name, not a secret.
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The pod's own cgroup below Vordr's default parent when kubelet sends no
/// parent (crictl): `/vordr/pod<hash>` or `vordr-pod<hash>.slice`, the hash
/// over this daemon's root and the pod's name, namespace, UID and attempt
/// (unique among live pods; daemons with other roots never share one).
pub fn default_parent(
    driver: CgroupDriver,
    root: &Path,
    namespace: &str,
    name: &str,
    uid: &str,
    attempt: u32,
) -> String {
    let h = fnv(&[
        &root.to_string_lossy(),
        namespace,
        name,
        uid,
        &attempt.to_string(),
    ]);
    match driver {
        CgroupDriver::Cgroupfs => format!("{}/pod{h:016x}", super::DEFAULT_CGROUPFS_PARENT),
        CgroupDriver::Systemd => {
            let stem = super::DEFAULT_SYSTEMD_PARENT.trim_end_matches(".slice");
            format!("/{stem}.slice/{stem}-pod{h:016x}.slice")
        }
    }
}

fn host_tree() -> Tree<'static> {
    Tree {
        root: Path::new(super::ROOT),
        mode: mode::host(),
    }
}

/// Makes the pod's cgroup (the resolved `parent`): the directories with
/// the controllers enabled (cgroupfs), or the slice through systemd.
pub async fn create(driver: CgroupDriver, parent: &str) -> Result<(), CgroupError> {
    if is_shared(parent) {
        return Ok(());
    }
    match driver {
        CgroupDriver::Systemd => super::systemd::start_slice(parent).await,
        CgroupDriver::Cgroupfs => {
            let parent = parent.to_string();
            tokio::task::spawn_blocking(move || host_tree().create(&parent))
                .await
                .map_err(|e| CgroupError::Busy(format!("creating the pod cgroup: {e}")))?
        }
    }
}

/// Removes the pod's cgroup, killing whatever is still in it (containers
/// are removed before, so normally nothing is). Gone already is success.
pub async fn remove(driver: CgroupDriver, parent: &str) -> Result<(), CgroupError> {
    if is_shared(parent) {
        return Ok(());
    }
    if driver == CgroupDriver::Systemd {
        super::systemd::stop_slice(parent).await?;
    }
    let rel = std::path::PathBuf::from(parent);
    tokio::task::spawn_blocking(move || super::remove(&rel))
        .await
        .map_err(|e| CgroupError::Busy(format!("removing the pod cgroup: {e}")))?
        .map(|_| ())
        .map_err(CgroupError::Busy)
}

/// Applies a pod's resources (kubelet's UpdatePodSandboxResources, or the
/// pod's own limits) to its cgroup: v1 or v2 files as the host has them,
/// and with the systemd driver the slice's properties too. Zero fields are
/// left as they are. Refused for a parent shared by several pods.
pub async fn apply_resources(
    driver: CgroupDriver,
    parent: &str,
    res: &LinuxContainerResources,
) -> Result<(), CgroupError> {
    if is_shared(parent) {
        return Err(CgroupError::Invalid(format!(
            "the pod's cgroup parent {parent:?} is shared with other pods"
        )));
    }
    if driver == CgroupDriver::Systemd {
        super::systemd::set_slice_properties(parent, res).await?;
    }
    let (parent, res) = (parent.to_string(), res.clone());
    tokio::task::spawn_blocking(move || host_tree().apply(&parent, &res))
        .await
        .map_err(|e| CgroupError::Busy(format!("writing the pod's resources: {e}")))?
}

/// Whether another pod in `pods` has its cgroup at `parent` or below it
/// (then `parent` is not this pod's alone and stays).
pub fn used_by_others<'a>(
    parent: &str,
    pod_id: &str,
    pods: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> bool {
    let below = format!("{}/", parent.trim_end_matches('/'));
    pods.into_iter()
        .any(|(id, p)| id != pod_id && (p == parent || p.starts_with(&below)))
}

/// [`remove`] for a pod about to lose its row, unless another pod still
/// uses the same cgroup (crictl users may give several pods one parent).
pub async fn remove_for(
    rt: &crate::state::Runtime,
    pod: &vordr_store::PodRecord,
) -> Result<(), String> {
    if is_shared(&pod.cgroup_parent) {
        return Ok(());
    }
    let pods = rt.store.list_pods().map_err(|e| e.to_string())?;
    if used_by_others(
        &pod.cgroup_parent,
        &pod.id,
        pods.iter()
            .map(|p| (p.id.as_str(), p.cgroup_parent.as_str())),
    ) {
        return Ok(());
    }
    remove(rt.config.cgroup.driver, &pod.cgroup_parent)
        .await
        .map_err(|e| format!("removing the pod's cgroup {}: {e}", pod.cgroup_parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parents_are_per_pod_and_per_daemon() {
        let d = CgroupDriver::Cgroupfs;
        let a = default_parent(d, Path::new("/var/lib/vordr"), "ns", "p", "u", 0);
        assert!(
            a.starts_with("/vordr/pod") && a.len() == "/vordr/pod".len() + 16,
            "{a}"
        );
        assert_eq!(
            a,
            default_parent(d, Path::new("/var/lib/vordr"), "ns", "p", "u", 0)
        );
        assert_ne!(
            a,
            default_parent(d, Path::new("/var/lib/vordr"), "ns", "p", "u", 1)
        );
        assert_ne!(
            a,
            default_parent(d, Path::new("/tmp/other"), "ns", "p", "u", 0)
        );
        assert_ne!(
            a,
            default_parent(d, Path::new("/var/lib/vordr"), "n", "sp", "u", 0)
        );
        let s = default_parent(CgroupDriver::Systemd, Path::new("/r"), "ns", "p", "u", 0);
        assert!(
            s.starts_with("/vordr.slice/vordr-pod") && s.ends_with(".slice"),
            "{s}"
        );
        // The form the systemd driver's parent resolution gives too.
        let unit = s.rsplit('/').next().unwrap();
        assert_eq!(super::super::expand_slice(unit).unwrap(), s);
        assert!(!is_shared(&a) && !is_shared(&s));
        assert!(is_shared("/vordr") && is_shared("") && is_shared("/vordr.slice"));
    }

    #[test]
    fn a_parent_used_by_another_pod_stays() {
        let pods = [
            ("a", "/kubepods/pod1"),
            ("b", "/kubepods/pod2"),
            ("c", "/shared"),
            ("d", "/shared"),
            ("e", "/outer/inner"),
        ];
        assert!(!used_by_others("/kubepods/pod1", "a", pods));
        assert!(used_by_others("/shared", "c", pods));
        assert!(used_by_others("/outer", "x", pods));
        assert!(!used_by_others("/kubepods/pod", "x", pods));
    }

    #[tokio::test]
    async fn shared_parents_are_never_made_removed_or_changed() {
        for p in ["", "/", "/vordr", "/vordr.slice"] {
            create(CgroupDriver::Cgroupfs, p).await.unwrap();
            remove(CgroupDriver::Cgroupfs, p).await.unwrap();
            let e = apply_resources(CgroupDriver::Cgroupfs, p, &Default::default())
                .await
                .unwrap_err();
            assert!(e.to_string().contains("shared"), "{e}");
        }
    }
}
