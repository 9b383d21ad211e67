//! The container's cgroup path in both forms (the runtime's `cgroupsPath`
//! and the filesystem path below a hierarchy's root), the checks on
//! `resources.unified` and the cgroup v1 -> v2 value conversions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::{invalid, SpecError};

/// Prefix of a container's systemd scope: `cri-vordr-<id>.scope`, as
/// containerd (`cri-containerd-`) and CRI-O (`crio-`) name theirs.
pub const SCOPE_PREFIX: &str = "cri-vordr";

/// Whether a resolved cgroup parent is a systemd slice (the systemd driver
/// stores the expanded slice path, which ends in `.slice`).
pub fn is_slice(parent: &str) -> bool {
    parent.ends_with(".slice")
}

/// The container's cgroup below each hierarchy's root:
/// `<parent>/vordr-<id>` for the cgroupfs driver,
/// `<parent>/cri-vordr-<id>.scope` below a slice (the systemd driver).
pub fn cgroups_path(parent: &str, container_id: &str) -> PathBuf {
    let parent = if parent.is_empty() { "/" } else { parent };
    if is_slice(parent) {
        Path::new(parent).join(format!("{SCOPE_PREFIX}-{container_id}.scope"))
    } else {
        Path::new(parent).join(format!("vordr-{container_id}"))
    }
}

/// `linux.cgroupsPath` as the runtime takes it: the cgroupfs path, or
/// runc's systemd form `<slice>:cri-vordr:<id>` below a slice.
pub fn spec_cgroups_path(parent: &str, container_id: &str) -> PathBuf {
    match parent.rsplit('/').next().filter(|s| is_slice(s)) {
        Some(slice) => PathBuf::from(format!("{slice}:{SCOPE_PREFIX}:{container_id}")),
        None => cgroups_path(parent, container_id),
    }
}

/// The cgroup v2 controllers whose files `unified` may set.
const CONTROLLERS: &[&str] = &[
    "cpu", "cpuset", "memory", "io", "pids", "hugetlb", "rdma", "misc",
];

/// Files of those controllers that are read-only (statistics, events).
const READ_ONLY: &[&str] = &[
    "stat",
    "current",
    "events",
    "events.local",
    "peak",
    "pressure",
    "numa_stat",
    "effective",
    "cpus.effective",
    "mems.effective",
    "swap.current",
    "swap.events",
    "swap.peak",
    "zswap.current",
    "capacity",
];

/// Longest value accepted for a `unified` key.
const MAX_VALUE: usize = 1024;

/// Checks `linux.resources.unified`: every key a writable file of a cgroup
/// v2 controller (`memory.high`, `io.max`...), never a path or a
/// `cgroup.*` interface file; every value one short printable line.
pub fn validate_unified(unified: &HashMap<String, String>) -> Result<(), SpecError> {
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    for key in keys {
        let field = || format!("linux.resources.unified[{key:?}]");
        let bad = |why: &str| Err(invalid(field(), why.to_string()));
        if key.len() > 64 || key.contains('/') || key.contains('\0') || key.contains("..") {
            return bad("is not a cgroup file name (no path separators or '..', at most 64 bytes)");
        }
        let Some((controller, file)) = key.split_once('.') else {
            return bad("must be <controller>.<file>, like memory.high");
        };
        if !CONTROLLERS.contains(&controller) {
            return bad(&format!(
                "{controller:?} is not a cgroup v2 controller ({})",
                CONTROLLERS.join(", ")
            ));
        }
        if file.is_empty()
            || !file
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        {
            return bad("has characters no cgroup file name has");
        }
        if READ_ONLY.contains(&file) || file.ends_with(".stat") || file.ends_with(".events") {
            return bad("is a read-only cgroup file");
        }
        let value = &unified[key];
        if value.len() > MAX_VALUE {
            return bad(&format!("value is longer than {MAX_VALUE} bytes"));
        }
        if value.trim().is_empty() {
            return bad("value is empty");
        }
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return bad("value must be one line of printable ASCII");
        }
    }
    Ok(())
}

/// cgroup v1 `cpu.shares` (2..=262144) as v2 `cpu.weight` (1..=10000):
/// the quadratic fit in log2(shares) runc uses since 1.3.2 (and crun, and
/// youki 0.7's libcgroups, which writes the containers' weights here), so
/// the ends map to the ends and the default 1024 to the default 100. 0
/// (unset) stays 0.
pub fn cpu_weight_from_shares(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => 10_000,
        _ => {
            let l = (shares as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            (10f64.powf(exponent).ceil() as u64).clamp(1, 10_000)
        }
    }
}

/// CRI cpu quota and period as v2 `cpu.max` ("max" without a quota).
pub fn cpu_max(quota: i64, period: u64) -> String {
    let period = if period == 0 { 100_000 } else { period };
    if quota > 0 {
        format!("{quota} {period}")
    } else {
        format!("max {period}")
    }
}

/// A v1 hugetlb page size ("2MB", "1GB") as its v2 file infix ("2MB" is
/// the same in both; kubelet sends the v1 form).
pub fn hugetlb_page_size_ok(size: &str) -> bool {
    let digits = size.trim_end_matches(['K', 'M', 'G', 'B']);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(&size[digits.len()..], "KB" | "MB" | "GB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_forms_per_driver() {
        assert_eq!(
            cgroups_path("/kubepods/besteffort/pod123", "abc"),
            PathBuf::from("/kubepods/besteffort/pod123/vordr-abc")
        );
        assert_eq!(cgroups_path("", "abc"), PathBuf::from("/vordr-abc"));
        let slice = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice";
        assert_eq!(
            cgroups_path(slice, "abc"),
            PathBuf::from(format!("{slice}/cri-vordr-abc.scope"))
        );
        assert_eq!(
            spec_cgroups_path(slice, "abc"),
            PathBuf::from("kubepods-burstable-pod1.slice:cri-vordr:abc")
        );
        assert_eq!(
            spec_cgroups_path("/kubepods/pod1", "abc"),
            PathBuf::from("/kubepods/pod1/vordr-abc")
        );
    }

    fn one(k: &str, v: &str) -> HashMap<String, String> {
        [(k.to_string(), v.to_string())].into()
    }

    #[test]
    fn unified_keys_and_values() {
        for (k, v) in [
            ("memory.high", "1000000"),
            ("memory.max", "max"),
            ("io.max", "8:0 rbps=1048576"),
            ("pids.max", "100"),
            ("cpu.weight", "50"),
            ("memory.oom.group", "1"),
            ("hugetlb.2MB.max", "4194304"),
        ] {
            validate_unified(&one(k, v)).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        for (k, v, why) in [
            ("cgroup.procs", "1", "controller"),
            ("cgroup.subtree_control", "+memory", "controller"),
            ("memory.high/../../x", "1", "path"),
            ("memory", "1", "<controller>.<file>"),
            ("net_cls.classid", "1", "controller"),
            ("memory.stat", "1", "read-only"),
            ("memory.current", "1", "read-only"),
            ("io.stat", "1", "read-only"),
            ("memory.high", "1\n2", "one line"),
            ("memory.high", "", "empty"),
            ("memory.hi gh", "1", "characters"),
        ] {
            let e = validate_unified(&one(k, v)).unwrap_err().to_string();
            assert!(e.contains(&format!("unified[{k:?}]")), "{k}: {e}");
            assert!(e.contains(why), "{k}: {e}");
        }
        let long = "9".repeat(MAX_VALUE + 1);
        assert!(validate_unified(&one("memory.high", &long)).is_err());
    }

    #[test]
    fn shares_to_weight_as_runc() {
        assert_eq!(cpu_weight_from_shares(0), 0);
        assert_eq!(cpu_weight_from_shares(1), 1);
        assert_eq!(cpu_weight_from_shares(2), 1);
        assert_eq!(cpu_weight_from_shares(3), 2);
        assert_eq!(cpu_weight_from_shares(512), 59);
        assert_eq!(cpu_weight_from_shares(1024), 100);
        assert_eq!(cpu_weight_from_shares(2048), 174);
        assert_eq!(cpu_weight_from_shares(100_000), 4340);
        assert_eq!(cpu_weight_from_shares(262_143), 10_000);
        assert_eq!(cpu_weight_from_shares(262_144), 10_000);
        assert_eq!(cpu_weight_from_shares(10_000_000), 10_000);
    }

    #[test]
    fn cpu_max_forms() {
        assert_eq!(cpu_max(50_000, 100_000), "50000 100000");
        assert_eq!(cpu_max(-1, 0), "max 100000");
        assert_eq!(cpu_max(0, 50_000), "max 50000");
    }

    #[test]
    fn hugetlb_sizes() {
        assert!(hugetlb_page_size_ok("2MB"));
        assert!(hugetlb_page_size_ok("1GB"));
        assert!(hugetlb_page_size_ok("64KB"));
        assert!(!hugetlb_page_size_ok("2M"));
        assert!(!hugetlb_page_size_ok("MB"));
        assert!(!hugetlb_page_size_ok("../MB"));
    }
}
