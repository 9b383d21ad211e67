//! What the Pod Security Standards (v1.35) and Vordr's own rules list:
//! the safe sysctls, kubelet's default masked and read-only paths, the
//! cgroup v2 controllers `resources.unified` may name, SELinux labels, ID
//! mappings, and paths compared component by component.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Sysctls the standard counts as safe (namespaced and isolated); every
/// other one is unsafe. v1.35's list.
pub const SAFE_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// Whether a sysctl is in the safe set (`/` separators allowed, as kubelet
/// takes them).
pub fn safe_sysctl(name: &str) -> bool {
    let name = name.replace('/', ".");
    SAFE_SYSCTLS.contains(&name.as_str())
}

/// The paths kubelet masks for the Default /proc mount type (every kubelet
/// since 1.12; newer ones add more, which is allowed).
pub const DEFAULT_MASKED_PATHS: [&str; 10] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// The paths kubelet makes read-only for the Default /proc mount type.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The first default path a container's lists lack: `/proc` is then
/// Unmasked (kubelet sends empty lists for procMount: Unmasked).
pub fn unmasked_path<'a, S: AsRef<str>>(masked: &[S], readonly: &[S]) -> Option<&'a str> {
    let has = |list: &[S], p: &str| list.iter().any(|m| m.as_ref() == p);
    DEFAULT_MASKED_PATHS
        .iter()
        .find(|p| !has(masked, p))
        .or_else(|| DEFAULT_READONLY_PATHS.iter().find(|p| !has(readonly, p)))
        .copied()
}

/// The cgroup v2 controllers whose interface files `resources.unified`
/// may write.
pub const UNIFIED_CONTROLLERS: [&str; 8] = [
    "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc",
];

/// Whether `key` names a cgroup v2 controller's interface file
/// (`memory.high`, `hugetlb.2MB.max`): one file name, no `cgroup.*` core
/// file, no path.
pub fn unified_key_ok(key: &str) -> bool {
    let Some((controller, rest)) = key.split_once('.') else {
        return false;
    };
    UNIFIED_CONTROLLERS.contains(&controller)
        && !rest.is_empty()
        && key.len() <= 64
        && !key.contains("..")
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// The parts of an SELinux label `user:role:type:level` (the level may
/// hold colons itself).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SelinuxLabel<'a> {
    pub user: &'a str,
    pub role: &'a str,
    pub typ: &'a str,
    pub level: &'a str,
}

pub fn selinux_label(label: &str) -> SelinuxLabel<'_> {
    let mut it = label.splitn(4, ':');
    SelinuxLabel {
        user: it.next().unwrap_or(""),
        role: it.next().unwrap_or(""),
        typ: it.next().unwrap_or(""),
        level: it.next().unwrap_or(""),
    }
}

/// Whether some `(container, host, size)` mapping reaches the host's ID 0.
pub fn maps_host_root(maps: &[(u32, u32, u32)]) -> bool {
    maps.iter().any(|&(_, host, size)| host == 0 && size > 0)
}

/// Whether clean absolute path `p` is `dir` or below it.
pub fn within(p: &Path, dir: &Path) -> bool {
    let (p, t) = (p.as_os_str().as_bytes(), dir.as_os_str().as_bytes());
    p.starts_with(t) && (p.len() == t.len() || p[t.len()] == b'/' || t == b"/")
}

/// `path` made absolute and free of `.` and `..`, lexically.
pub fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Whether `name` is one plain path component (a pod UID used in a path).
pub fn one_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctls_of_v1_35() {
        for s in [
            "net.ipv4.tcp_rmem",
            "net/ipv4/tcp_wmem",
            "kernel.shm_rmid_forced",
            "net.ipv4.tcp_keepalive_probes",
        ] {
            assert!(safe_sysctl(s), "{s}");
        }
        for s in [
            "kernel.msgmax",
            "net.core.somaxconn",
            "net.ipv4.ip_forward",
            "",
        ] {
            assert!(!safe_sysctl(s), "{s}");
        }
    }

    #[test]
    fn unified_keys() {
        for k in [
            "memory.high",
            "memory.swap.max",
            "hugetlb.2MB.max",
            "cpu.weight",
            "io.max",
        ] {
            assert!(unified_key_ok(k), "{k}");
        }
        for k in [
            "cgroup.procs",
            "cgroup.subtree_control",
            "memory",
            "memory.",
            "../memory.max",
            "memory.max/../../x",
            "memory..max",
            "net_cls.classid",
            "cpu.max\n",
        ] {
            assert!(!unified_key_ok(k), "{k:?}");
        }
    }

    #[test]
    fn proc_masks() {
        let none: [&str; 0] = [];
        assert_eq!(unmasked_path(&none, &none), Some("/proc/asound"));
        assert_eq!(
            unmasked_path(&DEFAULT_MASKED_PATHS, &DEFAULT_READONLY_PATHS),
            None
        );
        let mut more = DEFAULT_MASKED_PATHS.to_vec();
        more.push("/sys/devices/virtual/powercap");
        assert_eq!(
            unmasked_path(&more, &DEFAULT_READONLY_PATHS[1..]),
            Some("/proc/bus")
        );
    }

    #[test]
    fn labels_and_maps() {
        let l = selinux_label("system_u:system_r:container_t:s0:c1,c2");
        assert_eq!(
            (l.user, l.role, l.typ, l.level),
            ("system_u", "system_r", "container_t", "s0:c1,c2")
        );
        assert_eq!(selinux_label("").typ, "");
        assert!(maps_host_root(&[(0, 0, 65536)]));
        assert!(maps_host_root(&[(0, 100000, 65536), (65536, 0, 1)]));
        assert!(!maps_host_root(&[(0, 100000, 65536)]));
        assert!(!maps_host_root(&[(0, 0, 0)]));
    }

    #[test]
    fn paths() {
        assert!(within(Path::new("/a/b"), Path::new("/a")));
        assert!(within(Path::new("/a"), Path::new("/a")));
        assert!(!within(Path::new("/ab"), Path::new("/a")));
        assert!(within(Path::new("/x"), Path::new("/")));
        assert_eq!(
            lexical(Path::new("/var/lock/../vordr")),
            PathBuf::from("/var/vordr")
        );
        assert!(one_component("uid-1"));
        for bad in ["", ".", "..", "a/b"] {
            assert!(!one_component(bad));
        }
    }
}
