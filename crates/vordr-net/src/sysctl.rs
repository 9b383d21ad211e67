//! Namespaced sysctls: which namespace a sysctl belongs to, and whether a
//! pod may set it.

use std::path::PathBuf;

/// The namespace a sysctl lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlNs {
    Net,
    Ipc,
    Uts,
}

/// Why a sysctl was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SysctlError {
    #[error("sysctl {0:?} has an invalid name")]
    BadName(String),
    #[error("sysctl {0:?} has an invalid value {1:?}")]
    BadValue(String, String),
    #[error("sysctl {0:?} is not namespaced and cannot be set for a pod")]
    NotNamespaced(String),
    #[error("sysctl {0:?} is in the {1} namespace, which the pod shares with the host")]
    HostNamespace(String, &'static str),
}

/// Normalises a sysctl name to dotted form (`net/ipv4/x` and `net.ipv4.x`
/// are the same sysctl) and checks its characters.
pub fn normalise(name: &str) -> Result<String, SysctlError> {
    let bad = || SysctlError::BadName(name.to_string());
    if name.is_empty() || name.len() > 255 {
        return Err(bad());
    }
    let dotted = name.replace('/', ".");
    if dotted.split('.').any(|part| {
        part.is_empty()
            || part == ".."
            || !part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*'))
    }) {
        return Err(bad());
    }
    Ok(dotted)
}

/// Which namespace `name` (dotted) belongs to, as the kernel defines it and
/// runc and Kubernetes accept it.
pub fn namespace_of(dotted: &str) -> Option<SysctlNs> {
    const IPC_NAMES: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if dotted.starts_with("net.") {
        Some(SysctlNs::Net)
    } else if IPC_NAMES.contains(&dotted) || dotted.starts_with("fs.mqueue.") {
        Some(SysctlNs::Ipc)
    } else if dotted == "kernel.hostname" || dotted == "kernel.domainname" {
        Some(SysctlNs::Uts)
    } else {
        None
    }
}

/// A sysctl checked for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
    pub ns: SysctlNs,
}

impl Sysctl {
    /// Its file under /proc/sys.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from("/proc/sys").join(self.name.replace('.', "/"))
    }
}

/// Checks one pod sysctl against the pod's namespace modes.
pub fn check(
    name: &str,
    value: &str,
    host_net: bool,
    host_ipc: bool,
) -> Result<Sysctl, SysctlError> {
    let dotted = normalise(name)?;
    if value.chars().any(|c| c == '\n' || c == '\0') {
        return Err(SysctlError::BadValue(name.into(), value.into()));
    }
    let ns = namespace_of(&dotted).ok_or_else(|| SysctlError::NotNamespaced(name.into()))?;
    match ns {
        SysctlNs::Net if host_net => {
            return Err(SysctlError::HostNamespace(name.into(), "network"))
        }
        SysctlNs::Ipc if host_ipc => return Err(SysctlError::HostNamespace(name.into(), "IPC")),
        // Host network implies the host UTS namespace too.
        SysctlNs::Uts if host_net => return Err(SysctlError::HostNamespace(name.into(), "UTS")),
        _ => {}
    }
    Ok(Sysctl {
        name: dotted,
        value: value.to_string(),
        ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_namespaces() {
        assert_eq!(namespace_of("net.ipv4.ip_forward"), Some(SysctlNs::Net));
        assert_eq!(namespace_of("kernel.shm_rmid_forced"), Some(SysctlNs::Ipc));
        assert_eq!(namespace_of("fs.mqueue.msg_max"), Some(SysctlNs::Ipc));
        assert_eq!(namespace_of("kernel.domainname"), Some(SysctlNs::Uts));
        assert_eq!(namespace_of("kernel.pid_max"), None);
        assert_eq!(namespace_of("vm.swappiness"), None);
    }

    #[test]
    fn slashes_and_dots_are_the_same() {
        let a = check("net/ipv4/ip_unprivileged_port_start", "0", false, false).unwrap();
        let b = check("net.ipv4.ip_unprivileged_port_start", "0", false, false).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.proc_path(),
            PathBuf::from("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        );
    }

    #[test]
    fn refuses_bad_and_host_sysctls() {
        assert!(matches!(
            check("", "1", false, false),
            Err(SysctlError::BadName(_))
        ));
        assert!(matches!(
            check("net..x", "1", false, false),
            Err(SysctlError::BadName(_))
        ));
        assert!(matches!(
            check("net/../../etc", "1", false, false),
            Err(SysctlError::BadName(_))
        ));
        assert!(matches!(
            check("net.a b", "1", false, false),
            Err(SysctlError::BadName(_))
        ));
        assert!(matches!(
            check("kernel.pid_max", "1", false, false),
            Err(SysctlError::NotNamespaced(_))
        ));
        assert!(matches!(
            check("net.core.somaxconn", "1\n2", false, false),
            Err(SysctlError::BadValue(..))
        ));
        assert!(matches!(
            check("net.core.somaxconn", "1", true, false),
            Err(SysctlError::HostNamespace(_, "network"))
        ));
        assert!(matches!(
            check("kernel.shmmax", "1", false, true),
            Err(SysctlError::HostNamespace(_, "IPC"))
        ));
        assert!(check("kernel.shmmax", "1", true, false).is_ok());
    }
}
