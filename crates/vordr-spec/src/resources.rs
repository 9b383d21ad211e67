//! cgroup resources, the cgroup path and oom_score_adj.

use std::path::Path;

use k8s_cri::v1::LinuxContainerResources;
use oci_spec::runtime::{
    LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory, LinuxResources,
};

use crate::{invalid, io_error, SpecError, SpecOptions};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The `linux.resources` section: the device rules plus whatever the CRI
/// resources ask for, as containerd's `WithResources`.
pub(crate) fn build(
    res: Option<&LinuxContainerResources>,
    opts: &SpecOptions,
    device_rules: Vec<LinuxDeviceCgroup>,
) -> Result<LinuxResources, SpecError> {
    let mut out = LinuxResources::default();
    out.set_devices(Some(device_rules));
    let Some(res) = res else {
        return Ok(out);
    };

    let mut cpu = LinuxCpu::default();
    let mut cpu_set = false;
    if res.cpu_period != 0 {
        cpu.set_period(Some(non_negative(
            res.cpu_period,
            "linux.resources.cpu_period",
        )?));
        cpu_set = true;
    }
    if res.cpu_quota != 0 {
        cpu.set_quota(Some(res.cpu_quota));
        cpu_set = true;
    }
    if res.cpu_shares != 0 {
        cpu.set_shares(Some(non_negative(
            res.cpu_shares,
            "linux.resources.cpu_shares",
        )?));
        cpu_set = true;
    }
    if !res.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(res.cpuset_cpus.clone()));
        cpu_set = true;
    }
    if !res.cpuset_mems.is_empty() {
        cpu.set_mems(Some(res.cpuset_mems.clone()));
        cpu_set = true;
    }
    if cpu_set {
        out.set_cpu(Some(cpu));
    }

    let mut memory = LinuxMemory::default();
    let mut memory_set = false;
    let swap_available = || opts.swap_controller.unwrap_or_else(swap_controller_present);
    if res.memory_limit_in_bytes != 0 {
        memory.set_limit(Some(res.memory_limit_in_bytes));
        memory_set = true;
        // No swap beyond the memory limit unless asked for.
        if res.memory_swap_limit_in_bytes == 0 && swap_available() {
            memory.set_swap(Some(res.memory_limit_in_bytes));
        }
    }
    if res.memory_swap_limit_in_bytes != 0 && swap_available() {
        memory.set_swap(Some(res.memory_swap_limit_in_bytes));
        memory_set = true;
    }
    if memory_set {
        out.set_memory(Some(memory));
    }

    if !res.hugepage_limits.is_empty()
        && opts
            .hugetlb_controller
            .unwrap_or_else(hugetlb_controller_present)
    {
        let mut limits = Vec::with_capacity(res.hugepage_limits.len());
        for (i, h) in res.hugepage_limits.iter().enumerate() {
            let limit = i64::try_from(h.limit).map_err(|_| {
                invalid(
                    format!("linux.resources.hugepage_limits[{i}].limit"),
                    format!("{} is too large", h.limit),
                )
            })?;
            if !crate::cgroup::hugetlb_page_size_ok(&h.page_size) {
                return Err(invalid(
                    format!("linux.resources.hugepage_limits[{i}].page_size"),
                    format!("{:?} is not a page size like 2MB or 1GB", h.page_size),
                ));
            }
            let mut l = LinuxHugepageLimit::default();
            l.set_page_size(h.page_size.clone());
            l.set_limit(limit);
            limits.push(l);
        }
        out.set_hugepage_limits(Some(limits));
    }

    if !res.unified.is_empty() {
        out.set_unified(Some(res.unified.clone()));
    }
    Ok(out)
}

fn non_negative(v: i64, field: &str) -> Result<u64, SpecError> {
    u64::try_from(v).map_err(|_| invalid(field, format!("{v} must not be negative")))
}

/// oom_score_adj when the CRI sends resources (containerd sets nothing
/// otherwise); with `restrict`, never below this process's own value.
pub(crate) fn oom_score_adj(
    res: Option<&LinuxContainerResources>,
    restrict: bool,
) -> Result<Option<i32>, SpecError> {
    let Some(res) = res else {
        return Ok(None);
    };
    let adj = i32::try_from(res.oom_score_adj)
        .ok()
        .filter(|v| (-1000..=1000).contains(v))
        .ok_or_else(|| {
            invalid(
                "linux.resources.oom_score_adj",
                format!("{} is outside -1000..=1000", res.oom_score_adj),
            )
        })?;
    if !restrict {
        return Ok(Some(adj));
    }
    Ok(Some(restrict_oom_score_adj(adj, current_oom_score_adj()?)))
}

/// The preferred value, raised to `current` if lower.
pub(crate) fn restrict_oom_score_adj(preferred: i32, current: i32) -> i32 {
    preferred.max(current)
}

/// This process's /proc/self/oom_score_adj.
pub(crate) fn current_oom_score_adj() -> Result<i32, SpecError> {
    let text = std::fs::read_to_string("/proc/self/oom_score_adj")
        .map_err(|e| io_error("reading /proc/self/oom_score_adj", e))?;
    text.trim().parse().map_err(|_| {
        io_error(
            "reading /proc/self/oom_score_adj",
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a number: {text:?}"),
            ),
        )
    })
}

/// Whether /sys/fs/cgroup is the unified (v2) hierarchy.
pub(crate) fn host_is_cgroup_v2() -> bool {
    nix::sys::statfs::statfs(CGROUP_ROOT)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// Whether memory+swap can be limited (v1 memsw, or v2 memory.swap.max in
/// this process's cgroup).
fn swap_controller_present() -> bool {
    if host_is_cgroup_v2() {
        let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else {
            return false;
        };
        let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
            return false;
        };
        Path::new(CGROUP_ROOT)
            .join(path.trim_start_matches('/'))
            .join("memory.swap.max")
            .exists()
    } else {
        Path::new(CGROUP_ROOT)
            .join("memory/memory.memsw.limit_in_bytes")
            .exists()
    }
}

/// Whether the hugetlb controller is available.
fn hugetlb_controller_present() -> bool {
    if host_is_cgroup_v2() {
        std::fs::read_to_string(Path::new(CGROUP_ROOT).join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|w| w == "hugetlb"))
    } else {
        std::fs::read_dir(Path::new(CGROUP_ROOT).join("hugetlb")).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::HugepageLimit;

    fn opts(swap: bool, hugetlb: bool) -> SpecOptions {
        SpecOptions {
            swap_controller: Some(swap),
            hugetlb_controller: Some(hugetlb),
            ..Default::default()
        }
    }

    #[test]
    fn no_resources_only_devices() {
        let r = build(None, &opts(true, true), vec![]).expect("build");
        assert_eq!(r.devices().as_deref(), Some(&[][..]));
        assert!(r.cpu().is_none() && r.memory().is_none());
    }

    #[test]
    fn cpu_memory_hugepages_unified() {
        let res = LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            memory_limit_in_bytes: 64 << 20,
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            unified: [("memory.high".to_string(), "1000000".to_string())].into(),
            ..Default::default()
        };
        let r = build(Some(&res), &opts(true, true), vec![]).expect("build");
        let cpu = r.cpu().as_ref().expect("cpu");
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
        assert_eq!(cpu.mems().as_deref(), Some("0"));
        let mem = r.memory().as_ref().expect("memory");
        assert_eq!(mem.limit(), Some(64 << 20));
        // Swap follows the limit so the container cannot swap.
        assert_eq!(mem.swap(), Some(64 << 20));
        let huge = r.hugepage_limits().as_ref().expect("hugepages");
        assert_eq!(huge[0].page_size(), "2MB");
        assert_eq!(huge[0].limit(), 4 << 20);
        assert_eq!(
            r.unified()
                .as_ref()
                .and_then(|u| u.get("memory.high"))
                .map(String::as_str),
            Some("1000000")
        );
        assert!(r.pids().is_none());

        // Without the controllers: no swap, no hugepages.
        let r = build(Some(&res), &opts(false, false), vec![]).expect("build");
        assert_eq!(r.memory().as_ref().and_then(|m| m.swap()), None);
        assert!(r.hugepage_limits().is_none());

        // An explicit swap limit wins.
        let res = LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 128 << 20,
            ..Default::default()
        };
        let r = build(Some(&res), &opts(true, false), vec![]).expect("build");
        assert_eq!(r.memory().as_ref().and_then(|m| m.swap()), Some(128 << 20));
        assert!(r.cpu().is_none());
    }

    #[test]
    fn negative_values_are_invalid() {
        let res = LinuxContainerResources {
            cpu_shares: -2,
            ..Default::default()
        };
        let err = build(Some(&res), &opts(true, true), vec![]).unwrap_err();
        assert!(err.to_string().starts_with("linux.resources.cpu_shares:"));
    }

    #[test]
    fn oom_score_adj_clamping() {
        assert_eq!(oom_score_adj(None, true).expect("none"), None);
        let res = |v| LinuxContainerResources {
            oom_score_adj: v,
            ..Default::default()
        };
        assert_eq!(
            oom_score_adj(Some(&res(-999)), false).expect("raw"),
            Some(-999)
        );
        assert_eq!(restrict_oom_score_adj(-999, -500), -500);
        assert_eq!(restrict_oom_score_adj(300, -500), 300);
        assert_eq!(restrict_oom_score_adj(-500, -500), -500);
        let current = current_oom_score_adj().expect("current");
        assert_eq!(
            oom_score_adj(Some(&res(-1000)), true).expect("restricted"),
            Some(current.max(-1000))
        );
        assert_eq!(
            oom_score_adj(Some(&res(1000)), true).expect("restricted"),
            Some(1000)
        );
        let err = oom_score_adj(Some(&res(5000)), false).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("linux.resources.oom_score_adj:"));
    }

    #[test]
    fn detection_does_not_panic() {
        let _ = host_is_cgroup_v2();
        let _ = swap_controller_present();
        let _ = hugetlb_controller_present();
    }
}
