//! Capabilities and the choice of seccomp profile.

use std::path::{Path, PathBuf};

use k8s_cri::v1::security_profile::ProfileType;
use k8s_cri::v1::{LinuxContainerSecurityContext, SecurityProfile};
use oci_spec::runtime::{Capabilities, Capability, LinuxSeccomp};

use crate::{invalid, io_error, seccomp_default, SpecError, SpecOptions};

/// Linux capabilities by number (CAP_CHOWN = 0 … CAP_CHECKPOINT_RESTORE = 40).
const KNOWN_CAPS: [(&str, Capability); 41] = [
    ("CAP_CHOWN", Capability::Chown),
    ("CAP_DAC_OVERRIDE", Capability::DacOverride),
    ("CAP_DAC_READ_SEARCH", Capability::DacReadSearch),
    ("CAP_FOWNER", Capability::Fowner),
    ("CAP_FSETID", Capability::Fsetid),
    ("CAP_KILL", Capability::Kill),
    ("CAP_SETGID", Capability::Setgid),
    ("CAP_SETUID", Capability::Setuid),
    ("CAP_SETPCAP", Capability::Setpcap),
    ("CAP_LINUX_IMMUTABLE", Capability::LinuxImmutable),
    ("CAP_NET_BIND_SERVICE", Capability::NetBindService),
    ("CAP_NET_BROADCAST", Capability::NetBroadcast),
    ("CAP_NET_ADMIN", Capability::NetAdmin),
    ("CAP_NET_RAW", Capability::NetRaw),
    ("CAP_IPC_LOCK", Capability::IpcLock),
    ("CAP_IPC_OWNER", Capability::IpcOwner),
    ("CAP_SYS_MODULE", Capability::SysModule),
    ("CAP_SYS_RAWIO", Capability::SysRawio),
    ("CAP_SYS_CHROOT", Capability::SysChroot),
    ("CAP_SYS_PTRACE", Capability::SysPtrace),
    ("CAP_SYS_PACCT", Capability::SysPacct),
    ("CAP_SYS_ADMIN", Capability::SysAdmin),
    ("CAP_SYS_BOOT", Capability::SysBoot),
    ("CAP_SYS_NICE", Capability::SysNice),
    ("CAP_SYS_RESOURCE", Capability::SysResource),
    ("CAP_SYS_TIME", Capability::SysTime),
    ("CAP_SYS_TTY_CONFIG", Capability::SysTtyConfig),
    ("CAP_MKNOD", Capability::Mknod),
    ("CAP_LEASE", Capability::Lease),
    ("CAP_AUDIT_WRITE", Capability::AuditWrite),
    ("CAP_AUDIT_CONTROL", Capability::AuditControl),
    ("CAP_SETFCAP", Capability::Setfcap),
    ("CAP_MAC_OVERRIDE", Capability::MacOverride),
    ("CAP_MAC_ADMIN", Capability::MacAdmin),
    ("CAP_SYSLOG", Capability::Syslog),
    ("CAP_WAKE_ALARM", Capability::WakeAlarm),
    ("CAP_BLOCK_SUSPEND", Capability::BlockSuspend),
    ("CAP_AUDIT_READ", Capability::AuditRead),
    ("CAP_PERFMON", Capability::Perfmon),
    ("CAP_BPF", Capability::Bpf),
    ("CAP_CHECKPOINT_RESTORE", Capability::CheckpointRestore),
];

/// containerd's 14 default capabilities, in its order.
pub fn default_capabilities() -> Vec<String> {
    [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect()
}

/// "sys_admin", "SYS_ADMIN" or "CAP_SYS_ADMIN" → "CAP_SYS_ADMIN"; `None` if unknown.
pub(crate) fn normalize_cap(name: &str) -> Option<String> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    let full = format!("CAP_{bare}");
    KNOWN_CAPS.iter().any(|(n, _)| *n == full).then_some(full)
}

/// Capability names set in a /proc/<pid>/status hex mask.
pub(crate) fn caps_from_mask(mask: u64) -> Vec<String> {
    KNOWN_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, (name, _))| name.to_string())
        .collect()
}

/// The effective capabilities of this process: what "ALL" and privileged
/// containers get, like containerd.
pub(crate) fn current_capabilities() -> Result<Vec<String>, SpecError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| io_error("reading /proc/self/status", e))?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| {
            io_error(
                "reading /proc/self/status",
                std::io::Error::new(std::io::ErrorKind::InvalidData, "no CapEff line"),
            )
        })?;
    Ok(caps_from_mask(mask))
}

/// The container's bounding/effective/permitted capabilities.
pub(crate) fn capabilities(
    sc: &LinuxContainerSecurityContext,
    privileged: bool,
) -> Result<Vec<String>, SpecError> {
    if privileged {
        return current_capabilities();
    }
    let mut caps = default_capabilities();
    let Some(requested) = &sc.capabilities else {
        return Ok(caps);
    };
    let is_all = |c: &String| c.trim().eq_ignore_ascii_case("ALL");
    // "ALL" applies first so that individual adds/drops still work on top.
    if requested.add_capabilities.iter().any(is_all) {
        caps = current_capabilities()?;
    }
    if requested.drop_capabilities.iter().any(is_all) {
        caps.clear();
    }
    for (i, name) in requested.add_capabilities.iter().enumerate() {
        if is_all(name) {
            continue;
        }
        let cap = normalize_cap(name).ok_or_else(|| {
            invalid(
                format!("linux.security_context.capabilities.add_capabilities[{i}]"),
                format!("unknown capability {name:?}"),
            )
        })?;
        if !caps.contains(&cap) {
            caps.push(cap);
        }
    }
    for (i, name) in requested.drop_capabilities.iter().enumerate() {
        if is_all(name) {
            continue;
        }
        let cap = normalize_cap(name).ok_or_else(|| {
            invalid(
                format!("linux.security_context.capabilities.drop_capabilities[{i}]"),
                format!("unknown capability {name:?}"),
            )
        })?;
        caps.retain(|c| *c != cap);
    }
    Ok(caps)
}

/// The oci-spec set for capability names (all known by construction).
pub(crate) fn to_oci_caps(caps: &[String]) -> Capabilities {
    caps.iter()
        .filter_map(|name| KNOWN_CAPS.iter().find(|(n, _)| n == name).map(|(_, c)| *c))
        .collect()
}

/// Which seccomp profile the container asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Profile {
    Unconfined,
    RuntimeDefault,
    /// Profile file and the CRI field that named it.
    Localhost(String, &'static str),
}

const SECCOMP_FIELD: &str = "linux.security_context.seccomp";
const SECCOMP_PATH_FIELD: &str = "linux.security_context.seccomp_profile_path";
const LOCALHOST_PREFIX: &str = "localhost/";

/// The container's seccomp filter: none when privileged or unconfined (also
/// when nothing is asked, like containerd 1.6), containerd's default
/// profile for RuntimeDefault, or the JSON profile of a Localhost ref.
pub(crate) fn seccomp(
    sc: &LinuxContainerSecurityContext,
    privileged: bool,
    caps: &[String],
    opts: &SpecOptions,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    if privileged {
        return Ok(None);
    }
    let profile = match &sc.seccomp {
        Some(sp) => from_security_profile(sp)?,
        None => {
            #[allow(deprecated)]
            let path = &sc.seccomp_profile_path;
            if path.is_empty() {
                return Ok(None);
            }
            from_profile_path(path)?
        }
    };
    match profile {
        Profile::Unconfined => Ok(None),
        Profile::RuntimeDefault => Ok(Some(seccomp_default::default_seccomp_for(caps))),
        Profile::Localhost(reference, field) => {
            load_profile(&opts.seccomp_profile_root, &reference, field).map(Some)
        }
    }
}

fn from_security_profile(sp: &SecurityProfile) -> Result<Profile, SpecError> {
    let kind = ProfileType::try_from(sp.profile_type).map_err(|_| {
        invalid(
            format!("{SECCOMP_FIELD}.profile_type"),
            format!("unknown profile type {}", sp.profile_type),
        )
    })?;
    if kind != ProfileType::Localhost && !sp.localhost_ref.is_empty() {
        return Err(invalid(
            format!("{SECCOMP_FIELD}.localhost_ref"),
            "must only be set when profile_type is Localhost",
        ));
    }
    Ok(match kind {
        ProfileType::Unconfined => Profile::Unconfined,
        ProfileType::RuntimeDefault => Profile::RuntimeDefault,
        ProfileType::Localhost => Profile::Localhost(
            sp.localhost_ref
                .strip_prefix(LOCALHOST_PREFIX)
                .unwrap_or(&sp.localhost_ref)
                .to_string(),
            "linux.security_context.seccomp.localhost_ref",
        ),
    })
}

/// The deprecated string form: "runtime/default", "docker/default",
/// "unconfined" or "localhost/<path>".
fn from_profile_path(path: &str) -> Result<Profile, SpecError> {
    match path {
        "runtime/default" | "docker/default" => Ok(Profile::RuntimeDefault),
        "unconfined" => Ok(Profile::Unconfined),
        other => match other.strip_prefix(LOCALHOST_PREFIX) {
            Some(rest) => Ok(Profile::Localhost(rest.to_string(), SECCOMP_PATH_FIELD)),
            None => Err(invalid(
                SECCOMP_PATH_FIELD,
                format!("invalid seccomp profile {other:?}"),
            )),
        },
    }
}

/// Reads a seccomp profile (OCI `linux.seccomp` JSON); relative references
/// are relative to `root`.
fn load_profile(root: &Path, reference: &str, field: &str) -> Result<LinuxSeccomp, SpecError> {
    if reference.is_empty() {
        return Err(invalid(field, "no seccomp profile named"));
    }
    let path: PathBuf = if Path::new(reference).is_absolute() {
        PathBuf::from(reference)
    } else {
        root.join(reference)
    };
    let text = std::fs::read(&path).map_err(|e| {
        invalid(
            field,
            format!("cannot load seccomp profile {}: {e}", path.display()),
        )
    })?;
    serde_json::from_slice(&text).map_err(|e| {
        invalid(
            field,
            format!("decoding seccomp profile {} failed: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::Capability as CriCaps;
    use oci_spec::runtime::LinuxSeccompAction;

    fn sc_with_caps(add: &[&str], drop: &[&str]) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            capabilities: Some(CriCaps {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                add_ambient_capabilities: vec![],
            }),
            ..Default::default()
        }
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn fourteen_defaults() {
        let caps = default_capabilities();
        assert_eq!(caps.len(), 14);
        assert_eq!(to_oci_caps(&caps).len(), 14);
        assert_eq!(
            capabilities(&LinuxContainerSecurityContext::default(), false).expect("caps"),
            caps
        );
    }

    #[test]
    fn add_and_drop_with_or_without_prefix() {
        let caps = capabilities(
            &sc_with_caps(
                &["SYS_ADMIN", "cap_net_admin", "CHOWN"],
                &["MKNOD", "CAP_KILL"],
            ),
            false,
        )
        .expect("caps");
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_MKNOD".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        assert_eq!(caps.len(), 14);
        assert_eq!(
            caps.iter().filter(|c| *c == "CAP_CHOWN").count(),
            1,
            "no duplicates"
        );
    }

    #[test]
    fn all_add_and_drop() {
        let current = current_capabilities().expect("current");
        let caps = capabilities(&sc_with_caps(&["ALL"], &["CHOWN"]), false).expect("all");
        let mut want = current.clone();
        want.retain(|c| c != "CAP_CHOWN");
        assert_eq!(sorted(caps), sorted(want));

        let caps =
            capabilities(&sc_with_caps(&["NET_BIND_SERVICE"], &["all"]), false).expect("drop all");
        assert_eq!(caps, ["CAP_NET_BIND_SERVICE"]);
        let caps = capabilities(&sc_with_caps(&[], &["ALL"]), false).expect("none");
        assert!(caps.is_empty());
    }

    #[test]
    fn unknown_capability_is_invalid() {
        let err = capabilities(&sc_with_caps(&["CHOWN", "FLY"], &[]), false).unwrap_err();
        assert!(err.is_invalid_argument());
        assert!(err
            .to_string()
            .starts_with("linux.security_context.capabilities.add_capabilities[1]:"));
        let err = capabilities(&sc_with_caps(&[], &["CAP_NOPE"]), false).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("linux.security_context.capabilities.drop_capabilities[0]:"));
    }

    #[test]
    fn privileged_gets_the_current_set() {
        let caps = capabilities(&sc_with_caps(&[], &["ALL"]), true).expect("privileged");
        assert_eq!(caps, current_capabilities().expect("current"));
    }

    #[test]
    fn mask_decoding() {
        assert_eq!(caps_from_mask(0b101), ["CAP_CHOWN", "CAP_DAC_READ_SEARCH"]);
        assert_eq!(caps_from_mask(u64::MAX).len(), 41);
        assert_eq!(caps_from_mask(1 << 21), ["CAP_SYS_ADMIN"]);
        assert_eq!(
            normalize_cap(" sys_time "),
            Some("CAP_SYS_TIME".to_string())
        );
        assert_eq!(normalize_cap("CAP_"), None);
    }

    fn profile(kind: ProfileType, reference: &str) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: kind as i32,
                localhost_ref: reference.into(),
            }),
            ..Default::default()
        }
    }

    #[allow(deprecated)]
    fn profile_path(path: &str) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            seccomp_profile_path: path.into(),
            ..Default::default()
        }
    }

    fn opts(root: &Path) -> SpecOptions {
        SpecOptions {
            seccomp_profile_root: root.to_path_buf(),
            ..Default::default()
        }
    }

    #[test]
    fn seccomp_choice() {
        let caps = default_capabilities();
        let o = SpecOptions::default();
        let pick =
            |sc: &LinuxContainerSecurityContext, privileged| seccomp(sc, privileged, &caps, &o);
        assert_eq!(
            pick(&LinuxContainerSecurityContext::default(), false).expect("none"),
            None
        );
        assert_eq!(
            pick(&profile(ProfileType::Unconfined, ""), false).expect("u"),
            None
        );
        let def = pick(&profile(ProfileType::RuntimeDefault, ""), false)
            .expect("default")
            .expect("some");
        assert_eq!(def.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(
            pick(&profile(ProfileType::RuntimeDefault, ""), true).expect("p"),
            None
        );
        for p in ["runtime/default", "docker/default"] {
            assert!(pick(&profile_path(p), false).expect(p).is_some(), "{p}");
        }
        assert_eq!(pick(&profile_path("unconfined"), false).expect("u"), None);
        let err = pick(&profile_path("bogus"), false).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("linux.security_context.seccomp_profile_path:"));
        let err = pick(&profile(ProfileType::RuntimeDefault, "x.json"), false).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("linux.security_context.seccomp.localhost_ref:"));
        let bad = LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: 9,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        };
        assert!(pick(&bad, false).unwrap_err().is_invalid_argument());
    }

    #[test]
    fn localhost_profiles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let json = r#"{"defaultAction":"SCMP_ACT_LOG","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;
        std::fs::create_dir(dir.path().join("profiles")).expect("dir");
        std::fs::write(dir.path().join("profiles/audit.json"), json).expect("write");
        std::fs::write(dir.path().join("broken.json"), "{not json").expect("write");
        let caps = default_capabilities();
        let o = opts(dir.path());

        let got = seccomp(
            &profile(ProfileType::Localhost, "profiles/audit.json"),
            false,
            &caps,
            &o,
        )
        .expect("relative")
        .expect("some");
        assert_eq!(got.default_action(), LinuxSeccompAction::ScmpActLog);
        let abs = dir.path().join("profiles/audit.json");
        let got = seccomp(
            &profile(ProfileType::Localhost, &abs.to_string_lossy()),
            false,
            &caps,
            &o,
        )
        .expect("absolute");
        assert!(got.is_some());
        let got = seccomp(
            &profile_path("localhost/profiles/audit.json"),
            false,
            &caps,
            &o,
        )
        .expect("deprecated");
        assert!(got.is_some());

        let err = seccomp(
            &profile(ProfileType::Localhost, "missing.json"),
            false,
            &caps,
            &o,
        )
        .unwrap_err();
        assert!(err.is_invalid_argument());
        assert!(
            err.to_string()
                .starts_with("linux.security_context.seccomp.localhost_ref: cannot load"),
            "{err}"
        );
        let err = seccomp(
            &profile(ProfileType::Localhost, "broken.json"),
            false,
            &caps,
            &o,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("decoding seccomp profile"),
            "{err}"
        );
        let err = seccomp(&profile_path("localhost/missing.json"), false, &caps, &o).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("linux.security_context.seccomp_profile_path:"));
        let err = seccomp(&profile(ProfileType::Localhost, ""), false, &caps, &o).unwrap_err();
        assert!(err.is_invalid_argument());
    }
}
