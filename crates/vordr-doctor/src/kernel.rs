//! Kernel features: overlayfs, namespaces, user namespaces, seccomp,
//! cgroups and their controllers, idmapped mounts.

use std::path::Path;

use vordr_install::files::Root;
use vordr_mountinfo::MountInfo;

use crate::{Check, Probe, Probes};

pub fn checks(root: &Root, probes: &dyn Probes) -> Vec<Check> {
    vec![
        overlayfs(root),
        namespaces(root),
        user_namespaces(root),
        seccomp(root, probes),
        cgroups(root),
        idmapped_mounts(root, probes),
    ]
}

fn read(root: &Root, p: &str) -> Option<String> {
    std::fs::read_to_string(root.resolve(Path::new(p))).ok()
}

/// The kernel release (`6.1.0-18-amd64`) and its major and minor numbers.
fn release(root: &Root) -> Option<(String, (u32, u32))> {
    let r = read(root, "/proc/sys/kernel/osrelease")?.trim().to_string();
    let mut nums = r
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    let major = nums.next()??;
    let minor = nums.next()??;
    Some((r, (major, minor)))
}

fn overlayfs(root: &Root) -> Check {
    const NAME: &str = "overlayfs";
    let fix = "modprobe overlay && echo overlay > /etc/modules-load.d/vordr.conf";
    let Some(fs) = read(root, "/proc/filesystems") else {
        return Check::missing(
            NAME,
            "cannot read /proc/filesystems (is /proc mounted?)",
            "mount -t proc proc /proc",
        );
    };
    if fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        return Check::ok(NAME, "overlay in /proc/filesystems");
    }
    let module = release(root).is_some_and(|(r, _)| {
        let dir = format!("/lib/modules/{r}/kernel/fs/overlayfs");
        std::fs::read_dir(root.resolve(Path::new(&dir))).is_ok_and(|mut d| {
            d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("overlay.ko")))
        })
    });
    if module {
        Check::warning(
            NAME,
            "overlay is not in /proc/filesystems but its module is installed (the first mount \
             loads it)",
            fix,
        )
    } else {
        Check::missing(
            NAME,
            "overlay is not in /proc/filesystems and no overlay module is installed: image \
             layers are mounted with it",
            format!("{fix} (a kernel built with CONFIG_OVERLAY_FS)"),
        )
    }
}

fn namespaces(root: &Root) -> Check {
    const NAME: &str = "namespaces";
    let has = |n: &str| {
        let p = root.resolve_parent(Path::new(&format!("/proc/self/ns/{n}")));
        std::fs::symlink_metadata(p).is_ok()
    };
    let needed = ["mnt", "uts", "ipc", "pid", "net"];
    let absent: Vec<&str> = needed.iter().copied().filter(|n| !has(n)).collect();
    if !absent.is_empty() {
        return Check::missing(
            NAME,
            format!(
                "no {} namespace in /proc/self/ns: every pod needs them",
                absent.join(", ")
            ),
            "boot a kernel built with CONFIG_NAMESPACES, CONFIG_UTS_NS, CONFIG_IPC_NS, \
             CONFIG_PID_NS and CONFIG_NET_NS",
        );
    }
    if !has("cgroup") {
        return Check::warning(
            NAME,
            format!("{} present; no cgroup namespace", needed.join(", ")),
            "boot a kernel built with CONFIG_CGROUPS and CONFIG_CGROUP_NS (containers then see \
             the host's cgroup paths)",
        );
    }
    Check::ok(NAME, format!("{}, cgroup", needed.join(", ")))
}

fn user_namespaces(root: &Root) -> Check {
    const NAME: &str = "user-namespaces";
    let ns =
        std::fs::symlink_metadata(root.resolve_parent(Path::new("/proc/self/ns/user"))).is_ok();
    let max =
        read(root, "/proc/sys/user/max_user_namespaces").and_then(|s| s.trim().parse::<u64>().ok());
    let unpriv =
        read(root, "/proc/sys/kernel/unprivileged_userns_clone").map(|s| s.trim().to_string());
    let mut detail = vec![];
    if let Some(m) = max {
        detail.push(format!("user.max_user_namespaces = {m}"));
    }
    if let Some(u) = &unpriv {
        // Only unprivileged callers are held back by it; Vordr runs as root.
        detail.push(format!(
            "kernel.unprivileged_userns_clone = {u} (it limits unprivileged users only; Vordr \
             runs as root)"
        ));
    }
    let detail = detail.join(", ");
    let affected = "pods with hostUsers: false cannot run";
    if !ns {
        return Check::warning(
            NAME,
            format!("no /proc/self/ns/user: {affected}"),
            "boot a kernel built with CONFIG_USER_NS",
        );
    }
    if max == Some(0) {
        return Check::warning(
            NAME,
            format!("{detail}: {affected}"),
            "sysctl -w user.max_user_namespaces=15000 && echo user.max_user_namespaces=15000 > \
             /etc/sysctl.d/90-vordr-userns.conf",
        );
    }
    if detail.is_empty() {
        Check::ok(NAME, "available")
    } else {
        Check::ok(NAME, format!("available; {detail}"))
    }
}

fn seccomp(root: &Root, probes: &dyn Probes) -> Check {
    const NAME: &str = "seccomp";
    let fix = "boot a kernel built with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER";
    let status = read(root, "/proc/self/status").unwrap_or_default();
    let field = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(|v| v.trim().to_string());
    let actions = read(root, "/proc/sys/kernel/seccomp/actions_avail")
        .map(|a| format!("; actions: {}", a.trim()))
        .unwrap_or_default();
    match (field, probes.seccomp()) {
        (Some(mode), _) => Check::ok(NAME, format!("/proc/self/status Seccomp: {mode}{actions}")),
        (None, Some(true)) => Check::ok(NAME, format!("prctl(PR_GET_SECCOMP) answers{actions}")),
        (None, Some(false)) => Check::missing(
            NAME,
            "no Seccomp field in /proc/self/status and prctl(PR_GET_SECCOMP) fails: \
             containers' seccomp profiles cannot be applied",
            fix,
        ),
        (None, None) => Check::missing(
            NAME,
            "no Seccomp field in /proc/self/status: containers' seccomp profiles cannot be \
             applied",
            fix,
        ),
    }
}

/// The cgroup layout of a node.
#[derive(Debug, PartialEq, Eq)]
enum Layout {
    /// Only cgroup2, at /sys/fs/cgroup.
    Unified,
    /// cgroup v1 hierarchies, and cgroup2 beside them (`/sys/fs/cgroup/unified`).
    Hybrid(String),
    /// cgroup v1 hierarchies only.
    V1,
    None,
}

fn layout(mounts: &[MountInfo]) -> Layout {
    let v2 = |m: &&MountInfo| m.fstype == "cgroup2";
    if mounts
        .iter()
        .filter(v2)
        .any(|m| m.mount_point == Path::new("/sys/fs/cgroup"))
    {
        return Layout::Unified;
    }
    let v1 = mounts.iter().any(|m| m.fstype == "cgroup");
    let at = |m: &MountInfo| m.mount_point.display().to_string();
    match (v1, mounts.iter().find(v2)) {
        (_, Some(m)) => Layout::Hybrid(at(m)),
        (true, None) => Layout::V1,
        (false, None) => Layout::None,
    }
}

/// Controllers on a v1 hierarchy: `/proc/cgroups` rows with a hierarchy
/// and enabled.
fn v1_controllers(proc_cgroups: &str) -> Vec<String> {
    proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[1] != "0" && f[3] == "1").then(|| f[0].to_string())
        })
        .collect()
}

fn cgroups(root: &Root) -> Check {
    const NAME: &str = "cgroups";
    let mounts = vordr_mountinfo::parse(&read(root, "/proc/self/mountinfo").unwrap_or_default());
    let layout = layout(&mounts);
    let v2_at = match &layout {
        Layout::Unified => Some("/sys/fs/cgroup".to_string()),
        Layout::Hybrid(p) => Some(p.clone()),
        _ => None,
    };
    let v2: Vec<String> = v2_at
        .as_ref()
        .and_then(|p| read(root, &format!("{p}/cgroup.controllers")))
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let v1 = if matches!(layout, Layout::Hybrid(_) | Layout::V1) {
        v1_controllers(&read(root, "/proc/cgroups").unwrap_or_default())
    } else {
        Vec::new()
    };
    let has = |c: &str| v1.iter().chain(&v2).any(|x| x == c);
    let (version, v2_fix) = match &layout {
        Layout::Unified => ("v2 (unified)".to_string(), None),
        Layout::Hybrid(p) => (format!("hybrid (cgroup v1, with cgroup2 at {p})"), Some(())),
        Layout::V1 => ("v1".to_string(), Some(())),
        Layout::None => {
            return Check::missing(
                NAME,
                "no cgroup filesystem mounted (/proc/self/mountinfo): containers' resources \
                 cannot be limited",
                "mount -t cgroup2 none /sys/fs/cgroup (systemd mounts it at boot)",
            )
        }
    };
    let mut listed = Vec::new();
    if !v1.is_empty() {
        listed.push(format!("v1: {}", v1.join(" ")));
    }
    if v2_at.is_some() {
        listed.push(format!("v2: {}", v2.join(" ")));
    }
    let detail = format!("{version}; controllers {}", listed.join("; "));
    let needed: Vec<&str> = ["cpu", "memory", "pids"]
        .into_iter()
        .filter(|c| !has(c))
        .collect();
    if !needed.is_empty() {
        return Check::missing(
            NAME,
            format!("{detail}; no {} controller", needed.join(", ")),
            "boot a kernel with CONFIG_CGROUP_SCHED, CONFIG_MEMCG and CONFIG_CGROUP_PIDS, \
             without cgroup_disable= on its command line",
        );
    }
    let io = if layout == Layout::Unified || has("io") {
        "io"
    } else {
        "blkio"
    };
    let wanted: Vec<&str> = ["cpuset", io, "hugetlb"]
        .into_iter()
        .filter(|c| !has(c))
        .collect();
    if v2_fix.is_some() {
        return Check::warning(
            NAME,
            format!(
                "{detail}: Vordr runs on it, but Kubernetes keeps cgroup v1 in maintenance mode \
                 (newer kubelets refuse it unless failCgroupV1 is false)"
            ),
            "boot with systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all on the kernel command \
             line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub) for cgroup v2",
        );
    }
    if !wanted.is_empty() {
        return Check::warning(
            NAME,
            format!(
                "{detail}; no {} controller (their limits are not applied)",
                wanted.join(", ")
            ),
            "enable them: echo +cpuset +io +hugetlb > /sys/fs/cgroup/cgroup.subtree_control",
        );
    }
    Check::ok(NAME, detail)
}

fn idmapped_mounts(root: &Root, probes: &dyn Probes) -> Check {
    const NAME: &str = "idmapped-mounts";
    let fix = "upgrade to a kernel >= 5.12 (6.3 or later idmaps tmpfs too)";
    let note = "Vordr does not use them yet: user-namespaced pods see image files as nobody";
    let Some((rel, version)) = release(root) else {
        return Check::warning(
            NAME,
            "no /proc/sys/kernel/osrelease: kernel version unknown",
            fix,
        );
    };
    if version < (5, 12) {
        return Check::warning(
            NAME,
            format!("kernel {rel} < 5.12: no idmapped mounts ({note})"),
            fix,
        );
    }
    match probes.idmapped_mount() {
        Probe::Yes(how) => Check::ok(NAME, format!("kernel {rel}; {how}")),
        Probe::No(why) => Check::warning(NAME, format!("kernel {rel}: {why} ({note})"), fix),
        Probe::NotProbed(why) => Check::warning(
            NAME,
            format!("kernel {rel} >= 5.12, by its version only: {why}"),
            "run vordr doctor on the node itself (--host-root /, as root) to probe it",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::Status;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PROC_CGROUPS: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t18\t1
cpu\t1\t18\t1
memory\t4\t115\t1
hugetlb\t0\t7\t1
pids\t8\t18\t1
net_cls\t0\t7\t1
";
    const UNIFIED: &str = "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";

    fn check(root: &Root, f: fn(&Root) -> Check) -> Check {
        f(root)
    }

    #[test]
    fn overlayfs_from_proc_filesystems_or_its_module() {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        let c = check(&r, overlayfs);
        assert_eq!(c.status, Status::Missing, "{c:?}");
        put(t.path(), "/proc/filesystems", "nodev\ttmpfs\n\text4\n");
        assert_eq!(check(&r, overlayfs).status, Status::Missing);
        put(t.path(), "/proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        put(
            t.path(),
            "/lib/modules/6.1.0-18-amd64/kernel/fs/overlayfs/overlay.ko.xz",
            "",
        );
        let c = check(&r, overlayfs);
        assert_eq!(c.status, Status::Warning, "{c:?}");
        assert!(c.fix.unwrap().contains("modprobe overlay"));
        put(
            t.path(),
            "/proc/filesystems",
            "nodev\ttmpfs\nnodev\toverlay\n",
        );
        assert_eq!(check(&r, overlayfs).status, Status::Ok);
    }

    #[test]
    fn namespaces_and_user_namespaces() {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        let c = check(&r, namespaces);
        assert_eq!(c.status, Status::Missing);
        assert!(c.detail.contains("mnt, uts, ipc, pid, net"), "{c:?}");
        for n in ["mnt", "uts", "ipc", "pid", "net"] {
            put(t.path(), &format!("/proc/self/ns/{n}"), "");
        }
        assert_eq!(check(&r, namespaces).status, Status::Warning);
        std::os::unix::fs::symlink("cgroup:[4026531835]", t.path().join("proc/self/ns/cgroup"))
            .unwrap();
        assert_eq!(check(&r, namespaces).status, Status::Ok);

        assert_eq!(check(&r, user_namespaces).status, Status::Warning);
        std::os::unix::fs::symlink("user:[4026531837]", t.path().join("proc/self/ns/user"))
            .unwrap();
        assert_eq!(check(&r, user_namespaces).status, Status::Ok);
        put(t.path(), "/proc/sys/user/max_user_namespaces", "0\n");
        let c = check(&r, user_namespaces);
        assert_eq!(c.status, Status::Warning);
        assert!(c.fix.unwrap().contains("user.max_user_namespaces"));
        put(t.path(), "/proc/sys/user/max_user_namespaces", "63000\n");
        put(
            t.path(),
            "/proc/sys/kernel/unprivileged_userns_clone",
            "0\n",
        );
        let c = check(&r, user_namespaces);
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("unprivileged_userns_clone = 0"), "{c:?}");
        assert!(c.detail.contains("63000"), "{c:?}");
    }

    #[test]
    fn seccomp_from_proc_status_else_prctl() {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        assert_eq!(seccomp(&r, &crate::OfflineProbes).status, Status::Missing);
        put(
            t.path(),
            "/proc/self/status",
            "Name:\tvordr\nSeccomp:\t0\nSeccomp_filters:\t0\n",
        );
        put(
            t.path(),
            "/proc/sys/kernel/seccomp/actions_avail",
            "kill_process kill_thread trap errno\n",
        );
        let c = seccomp(&r, &crate::OfflineProbes);
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("errno"), "{c:?}");
    }

    #[test]
    fn cgroup_layouts_and_controllers() {
        assert_eq!(layout(&vordr_mountinfo::parse(UNIFIED)), Layout::Unified);
        assert_eq!(
            layout(&vordr_mountinfo::parse(HYBRID)),
            Layout::Hybrid("/sys/fs/cgroup/unified".into())
        );
        let v1: String = HYBRID.lines().take(4).map(|l| format!("{l}\n")).collect();
        assert_eq!(layout(&vordr_mountinfo::parse(&v1)), Layout::V1);
        assert_eq!(layout(&vordr_mountinfo::parse("")), Layout::None);
        assert_eq!(
            v1_controllers(PROC_CGROUPS),
            ["cpuset", "cpu", "memory", "pids"]
        );

        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        assert_eq!(check(&r, cgroups).status, Status::Missing);
        put(t.path(), "/proc/self/mountinfo", HYBRID);
        put(t.path(), "/proc/cgroups", PROC_CGROUPS);
        put(
            t.path(),
            "/sys/fs/cgroup/unified/cgroup.controllers",
            "hugetlb\n",
        );
        let c = check(&r, cgroups);
        assert_eq!(c.status, Status::Warning, "{c:?}");
        assert!(c.detail.starts_with("hybrid"), "{c:?}");
        assert!(
            c.detail.contains("v1: cpuset cpu memory pids; v2: hugetlb"),
            "{c:?}"
        );
        // No pids anywhere: missing.
        put(
            t.path(),
            "/proc/cgroups",
            "cpu\t1\t1\t1\nmemory\t2\t1\t1\npids\t0\t1\t1\n",
        );
        let c = check(&r, cgroups);
        assert_eq!(c.status, Status::Missing, "{c:?}");
        assert!(c.detail.contains("no pids controller"), "{c:?}");

        put(t.path(), "/proc/self/mountinfo", UNIFIED);
        put(
            t.path(),
            "/sys/fs/cgroup/cgroup.controllers",
            "cpu memory pids\n",
        );
        let c = check(&r, cgroups);
        assert_eq!(c.status, Status::Warning, "{c:?}");
        assert!(
            c.detail.contains("no cpuset, io, hugetlb controller"),
            "{c:?}"
        );
        put(
            t.path(),
            "/sys/fs/cgroup/cgroup.controllers",
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        );
        let c = check(&r, cgroups);
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.detail.starts_with("v2 (unified)"), "{c:?}");
    }

    #[test]
    fn idmapped_mounts_by_probe_or_version() {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        let fake = Fake::default();
        assert_eq!(idmapped_mounts(&r, &fake).status, Status::Warning);
        put(t.path(), "/proc/sys/kernel/osrelease", "5.10.0-28-amd64\n");
        let c = idmapped_mounts(&r, &fake);
        assert_eq!(c.status, Status::Warning);
        assert!(c.detail.contains("< 5.12"), "{c:?}");
        put(t.path(), "/proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        assert_eq!(idmapped_mounts(&r, &fake).status, Status::Ok);
        let no = Fake {
            idmap: Probe::No("mount_setattr: EINVAL".into()),
            ..Fake::default()
        };
        assert_eq!(idmapped_mounts(&r, &no).status, Status::Warning);
        let c = idmapped_mounts(&r, &crate::OfflineProbes);
        assert_eq!(c.status, Status::Warning);
        assert!(c.detail.contains("by its version only"), "{c:?}");
    }
}
