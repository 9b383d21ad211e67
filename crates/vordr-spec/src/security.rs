//! Capabilities and the choice of seccomp profile.

use std::path::Path;

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

/// The capabilities the container asked to add, normalised
/// (`CAP_SYS_ADMIN`); ALL is every capability this process holds.
/// `capabilities` applies exactly these; the gatekeeper judges them.
pub fn requested_adds(sc: &LinuxContainerSecurityContext) -> Result<Vec<String>, SpecError> {
    let Some(requested) = &sc.capabilities else {
        return Ok(Vec::new());
    };
    let mut adds = Vec::new();
    if requested.add_capabilities.iter().any(is_all) {
        adds = current_capabilities()?;
    }
    for cap in named(&requested.add_capabilities, "add_capabilities")? {
        if !adds.contains(&cap) {
            adds.push(cap);
        }
    }
    Ok(adds)
}

fn is_all<S: AsRef<str>>(c: S) -> bool {
    c.as_ref().trim().eq_ignore_ascii_case("ALL")
}

/// The named (not ALL) capabilities of a CRI list, normalised; an unknown
/// one is InvalidArgument naming its index.
fn named(list: &[String], field: &str) -> Result<Vec<String>, SpecError> {
    list.iter()
        .enumerate()
        .filter(|(_, n)| !is_all(n))
        .map(|(i, name)| {
            normalize_cap(name).ok_or_else(|| {
                invalid(
                    format!("linux.security_context.capabilities.{field}[{i}]"),
                    format!("unknown capability {name:?}"),
                )
            })
        })
        .collect()
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
    // "ALL" applies first so that individual adds/drops still work on top.
    if requested.add_capabilities.iter().any(is_all) {
        caps = current_capabilities()?;
    }
    if requested.drop_capabilities.iter().any(is_all) {
        caps.clear();
    }
    for cap in named(&requested.add_capabilities, "add_capabilities")? {
        if !caps.contains(&cap) {
            caps.push(cap);
        }
    }
    for cap in named(&requested.drop_capabilities, "drop_capabilities")? {
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

/// The largest Localhost seccomp profile read.
pub const MAX_SECCOMP_PROFILE: u64 = 1 << 20;

/// Reads a seccomp profile (OCI `linux.seccomp` JSON) from under `root`:
/// relative references are relative to it, absolute ones must lie in it;
/// the file is opened beneath it without following symlinks out of it,
/// and at most [`MAX_SECCOMP_PROFILE`] bytes are read.
fn load_profile(root: &Path, reference: &str, field: &str) -> Result<LinuxSeccomp, SpecError> {
    if reference.is_empty() {
        return Err(invalid(field, "no seccomp profile named"));
    }
    let rel = if Path::new(reference).is_absolute() {
        Path::new(reference).strip_prefix(root).map_err(|_| {
            invalid(
                field,
                format!(
                    "seccomp profile {reference} is outside the profile root {}",
                    root.display()
                ),
            )
        })?
    } else {
        Path::new(reference)
    };
    let text = read_beneath(root, rel, MAX_SECCOMP_PROFILE).map_err(|e| {
        invalid(
            field,
            format!(
                "cannot load seccomp profile {} under {}: {e}",
                rel.display(),
                root.display()
            ),
        )
    })?;
    serde_json::from_slice(&text).map_err(|e| {
        invalid(
            field,
            format!(
                "decoding seccomp profile {} failed: {e}",
                root.join(rel).display()
            ),
        )
    })
}

/// Reads regular file `rel` beneath directory `root` (no `..` or symlink
/// leaves it), refusing one larger than `max` bytes.
fn read_beneath(root: &Path, rel: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let dir = std::fs::File::open(root)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(dir.as_raw_fd(), rel, how)?;
    // SAFETY: a descriptor openat2 just returned, owned here.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    let mut out = Vec::new();
    file.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(out)
}

/// The AppArmor profile name written for RuntimeDefault.
pub const APPARMOR_RUNTIME_DEFAULT: &str = "vordr-default";

/// The AppArmor profile the container asked for (its own field, then the
/// deprecated string): `None` for nothing asked, else the name the spec
/// carries (`unconfined`, [`APPARMOR_RUNTIME_DEFAULT`] or a Localhost
/// profile's name).
pub(crate) fn apparmor(sc: &LinuxContainerSecurityContext) -> Result<Option<String>, SpecError> {
    const FIELD: &str = "linux.security_context.apparmor";
    if let Some(p) = &sc.apparmor {
        let kind = ProfileType::try_from(p.profile_type).map_err(|_| {
            invalid(
                format!("{FIELD}.profile_type"),
                format!("unknown profile type {}", p.profile_type),
            )
        })?;
        return match kind {
            ProfileType::Unconfined => Ok(Some("unconfined".into())),
            ProfileType::RuntimeDefault => Ok(Some(APPARMOR_RUNTIME_DEFAULT.into())),
            ProfileType::Localhost => localhost_apparmor(
                p.localhost_ref
                    .strip_prefix(LOCALHOST_PREFIX)
                    .unwrap_or(&p.localhost_ref),
                &format!("{FIELD}.localhost_ref"),
            ),
        };
    }
    #[allow(deprecated)]
    let old = sc.apparmor_profile.as_str();
    match old {
        "" => Ok(None),
        "runtime/default" => Ok(Some(APPARMOR_RUNTIME_DEFAULT.into())),
        "unconfined" => Ok(Some("unconfined".into())),
        other => match other.strip_prefix(LOCALHOST_PREFIX) {
            Some(name) => localhost_apparmor(name, "linux.security_context.apparmor_profile"),
            None => Err(invalid(
                "linux.security_context.apparmor_profile",
                format!("invalid AppArmor profile {other:?}"),
            )),
        },
    }
}

fn localhost_apparmor(name: &str, field: &str) -> Result<Option<String>, SpecError> {
    let reserved = name == "unconfined" || name == APPARMOR_RUNTIME_DEFAULT;
    if name.is_empty() || reserved || name.len() > 255 || name.chars().any(|c| c.is_control()) {
        return Err(invalid(
            field,
            format!("invalid AppArmor profile name {name:?}"),
        ));
    }
    Ok(Some(name.to_string()))
}

/// The SELinux label `user:role:type:level` of the container's options
/// (the pod's where the container sets none); `None` when nothing is set.
pub(crate) fn selinux_label(
    sc: &LinuxContainerSecurityContext,
    pod: Option<&k8s_cri::v1::SeLinuxOption>,
) -> Result<Option<String>, SpecError> {
    let o = match (&sc.selinux_options, pod) {
        (Some(o), _) => o,
        (None, Some(o)) => o,
        (None, None) => return Ok(None),
    };
    let parts = [&o.user, &o.role, &o.r#type, &o.level];
    if parts.iter().all(|p| p.is_empty()) {
        return Ok(None);
    }
    if parts[..3].iter().any(|p| p.contains(':')) || parts.iter().any(|p| p.contains('\0')) {
        return Err(invalid(
            "linux.security_context.selinux_options",
            "user, role and type may not contain ':'",
        ));
    }
    Ok(Some(format!(
        "{}:{}:{}:{}",
        o.user, o.role, o.r#type, o.level
    )))
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

    #[test]
    fn localhost_profiles_stay_in_their_root_and_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let caps = default_capabilities();
        let o = opts(dir.path());
        let refused = |reference: &str, what: &str| {
            let err = seccomp(
                &profile(ProfileType::Localhost, reference),
                false,
                &caps,
                &o,
            )
            .unwrap_err();
            assert!(err.is_invalid_argument(), "{reference}");
            assert!(err.to_string().contains(what), "{reference}: {err}");
        };
        refused("/etc/passwd", "outside the profile root");
        refused("../../../../etc/passwd", "cannot load");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link.json")).expect("link");
        refused("link.json", "cannot load");
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.json")).expect("link");
        refused("zero.json", "cannot load");
        let big = vec![b' '; MAX_SECCOMP_PROFILE as usize + 1];
        std::fs::write(dir.path().join("big.json"), big).expect("write");
        refused("big.json", "larger than");
    }

    #[test]
    fn apparmor_and_selinux_as_the_spec_carries_them() {
        let sc = |p: Option<(i32, &str)>, old: &str| {
            #[allow(deprecated)]
            LinuxContainerSecurityContext {
                apparmor: p.map(|(t, r)| SecurityProfile {
                    profile_type: t,
                    localhost_ref: r.into(),
                }),
                apparmor_profile: old.into(),
                ..Default::default()
            }
        };
        assert_eq!(apparmor(&sc(None, "")).unwrap(), None);
        assert_eq!(
            apparmor(&sc(Some((1, "")), "")).unwrap().as_deref(),
            Some("unconfined")
        );
        assert_eq!(
            apparmor(&sc(Some((0, "")), "")).unwrap().as_deref(),
            Some(APPARMOR_RUNTIME_DEFAULT)
        );
        assert_eq!(
            apparmor(&sc(Some((2, "localhost/my-prof")), ""))
                .unwrap()
                .as_deref(),
            Some("my-prof")
        );
        assert_eq!(
            apparmor(&sc(None, "unconfined")).unwrap().as_deref(),
            Some("unconfined")
        );
        assert_eq!(
            apparmor(&sc(None, "localhost/p")).unwrap().as_deref(),
            Some("p")
        );
        assert!(apparmor(&sc(None, "bogus")).is_err());
        // A Localhost profile may not pass for another kind.
        assert!(apparmor(&sc(Some((2, "unconfined")), "")).is_err());
        assert!(apparmor(&sc(Some((2, APPARMOR_RUNTIME_DEFAULT)), "")).is_err());

        let opt = |user: &str, typ: &str| k8s_cri::v1::SeLinuxOption {
            user: user.into(),
            r#type: typ.into(),
            level: "s0:c1,c2".into(),
            ..Default::default()
        };
        let none = LinuxContainerSecurityContext::default();
        assert_eq!(selinux_label(&none, None).unwrap(), None);
        let pod = opt("", "container_t");
        assert_eq!(
            selinux_label(&none, Some(&pod)).unwrap().as_deref(),
            Some("::container_t:s0:c1,c2")
        );
        let own = LinuxContainerSecurityContext {
            selinux_options: Some(opt("system_u", "spc_t")),
            ..Default::default()
        };
        assert_eq!(
            selinux_label(&own, Some(&pod)).unwrap().as_deref(),
            Some("system_u::spc_t:s0:c1,c2")
        );
        let colon = LinuxContainerSecurityContext {
            selinux_options: Some(opt("a:b", "t")),
            ..Default::default()
        };
        assert!(selinux_label(&colon, None).is_err());
    }

    #[test]
    fn requested_adds_are_normalised_once() {
        let adds = requested_adds(&sc_with_caps(
            &[" sys_admin", "CAP_NET_RAW", "SYS_ADMIN"],
            &[],
        ))
        .expect("adds");
        assert_eq!(adds, ["CAP_SYS_ADMIN", "CAP_NET_RAW"]);
        let all = requested_adds(&sc_with_caps(&["ALL"], &["ALL"])).expect("adds");
        assert_eq!(all, current_capabilities().expect("caps"));
        assert!(requested_adds(&sc_with_caps(&["NOPE"], &[])).is_err());
    }
}
