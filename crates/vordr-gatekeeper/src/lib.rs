//! Vordr's node security policy. The rules live in Ada/SPARK (`ada/src/
//! policy.ads`), with the security predicate stated as the postcondition of
//! `Validate`; this crate is the safe Rust side: the policy's input, the
//! call through the C ABI, the verdict with the rule's message, and the
//! reduction to that input of a pod's CRI config ([`pod`]) and of the OCI
//! spec a container will run ([`container`]).

use std::sync::Once;

pub mod container;
pub mod judge;
pub mod pod;
pub mod tables;

pub use container::{judge_container, Container};
pub use judge::{Decision, Node, Reasons};
pub use pod::judge_pod;

pub use vordr_config::{GatekeeperProfile as Profile, NamespacePolicy, NetworkMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsernsMode {
    None,
    Pod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeccompMode {
    RuntimeDefault,
    Localhost,
    Unconfined,
}

/// The AppArmor profile a process runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppArmorMode {
    /// Nothing asked for.
    None,
    RuntimeDefault,
    Localhost,
    Unconfined,
}

/// The type of a process's SELinux label, as the standard lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelinuxType {
    None,
    ContainerT,
    ContainerInitT,
    ContainerKvmT,
    ContainerEngineT,
    Other,
}

impl SelinuxType {
    /// The class of an SELinux type name ("" is None).
    pub fn of(name: &str) -> SelinuxType {
        match name {
            "" => SelinuxType::None,
            "container_t" => SelinuxType::ContainerT,
            "container_init_t" => SelinuxType::ContainerInitT,
            "container_kvm_t" => SelinuxType::ContainerKvmT,
            "container_engine_t" => SelinuxType::ContainerEngineT,
            _ => SelinuxType::Other,
        }
    }
}

/// A set of Linux capabilities: bit N is capability N (CAP_CHOWN = 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapSet(pub u64);

/// Capability names by number, as the kernel numbers them.
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

impl CapSet {
    /// Every capability.
    pub const ALL: CapSet = CapSet(u64::MAX);

    /// The number of `CAP_NAME` (exact, upper case, with the prefix).
    pub fn number(name: &str) -> Option<u32> {
        CAPABILITIES
            .iter()
            .position(|c| *c == name)
            .map(|n| n as u32)
    }

    /// The set of these canonical names; `None` names one it does not know.
    pub fn of<S: AsRef<str>>(names: &[S]) -> Result<CapSet, String> {
        let mut set = CapSet::default();
        for n in names {
            let n = n.as_ref();
            let bit = CapSet::number(n).ok_or_else(|| n.to_string())?;
            set.0 |= 1 << bit;
        }
        Ok(set)
    }

    pub fn contains(self, name: &str) -> bool {
        CapSet::number(name).is_some_and(|n| self.0 & (1 << n) != 0)
    }

    pub fn union(self, other: CapSet) -> CapSet {
        CapSet(self.0 | other.0)
    }

    /// The capabilities of `self` not in `other`, by name (numbers past
    /// the last known one as `CAP_<n>`).
    pub fn names_not_in(self, other: CapSet) -> Vec<String> {
        (0..64)
            .filter(|n| self.0 & !other.0 & (1 << n) != 0)
            .map(|n| {
                CAPABILITIES
                    .get(n)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| format!("CAP_{n}"))
            })
            .collect()
    }
}

/// The 13 capabilities the Baseline standard lets a container add.
pub const BASELINE_CAPS: [&str; 13] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// The policy's input: a pod or container reduced to what the rules
/// judge (see `ada/src/policy.ads` for each field's meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Input {
    pub profile: Profile,
    /// The namespace may run privileged containers.
    pub namespace_privileged: bool,
    pub network: NetworkMode,
    /// Baseline refuses an Unconfined seccomp profile (kubelet runs with
    /// seccompDefault, so Unconfined was asked for).
    pub refuse_unconfined: bool,
    pub privileged: bool,
    /// Every capability held, in any set.
    pub held: CapSet,
    /// The capabilities the spec asked to add.
    pub added: CapSet,
    /// The effective UID; `None` when it cannot be told (counts as root).
    pub uid: Option<u32>,
    pub userns: UsernsMode,
    /// An ID mapping gives the container the host's UID or GID 0.
    pub maps_host_root: bool,
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    pub no_new_privs: bool,
    pub seccomp: SeccompMode,
    pub apparmor: AppArmorMode,
    pub selinux: SelinuxType,
    pub selinux_user_role: bool,
    pub proc_unmasked: bool,
    /// A bind mount from outside kubelet's directory for the pod.
    pub host_path: bool,
    pub host_port: bool,
    /// A sysctl outside the standard's safe set.
    pub unsafe_sysctl: bool,
    pub devices: bool,
    pub bad_unified_key: bool,
    /// The log file outside kubelet's log directory.
    pub log_outside: bool,
}

impl Input {
    /// Nothing asked for: a non-root process holding no capability, with
    /// no_new_privs, RuntimeDefault seccomp, no host namespaces or paths.
    pub fn harmless(ns: NamespacePolicy) -> Input {
        Input {
            profile: ns.profile,
            namespace_privileged: ns.allow_privileged,
            network: ns.network,
            refuse_unconfined: false,
            privileged: false,
            held: CapSet::default(),
            added: CapSet::default(),
            uid: Some(65534),
            userns: UsernsMode::None,
            maps_host_root: false,
            host_network: false,
            host_pid: false,
            host_ipc: false,
            no_new_privs: true,
            seccomp: SeccompMode::RuntimeDefault,
            apparmor: AppArmorMode::None,
            selinux: SelinuxType::None,
            selinux_user_role: false,
            proc_unmasked: false,
            host_path: false,
            host_port: false,
            unsafe_sysctl: false,
            devices: false,
            bad_unified_key: false,
            log_outside: false,
        }
    }
}

/// The highest rule number.
pub const LAST_RULE: u8 = 17;

/// A rule of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule(pub u8);

impl Rule {
    /// The rule's message, as the denial names it.
    pub fn message(self) -> &'static str {
        match self.0 {
            1 => "privileged containers need a namespace allowed to run them",
            2 => "capabilities beyond the baseline set may not be added",
            3 => "restricted containers drop ALL capabilities and add at most NET_BIND_SERVICE",
            4 => "host namespaces are not allowed (the host network needs network mode admin)",
            5 => "host path volumes are not allowed",
            6 => "host ports are not allowed",
            7 => "AppArmor may not be Unconfined",
            8 => "SELinux options may set only an allowed type",
            9 => "/proc must keep its default masked and read-only paths",
            10 => "seccomp may not be Unconfined",
            11 => "unsafe sysctls are not allowed",
            12 => "privilege escalation is not allowed",
            13 => "containers must run as a non-root user or in a user namespace",
            14 => "host devices need a namespace allowed to run privileged containers",
            15 => "resources.unified may only name cgroup v2 controller files",
            16 => "a user namespace may not map the host's root",
            17 => "container logs must stay under kubelet's log directory",
            _ => "unknown rule",
        }
    }

    /// The control of the Pod Security Standards the rule enforces, or
    /// "vordr" for Vordr's own rules.
    pub fn standard(self) -> &'static str {
        match self.0 {
            3 | 12 | 13 => "restricted",
            1..=11 => "baseline",
            _ => "vordr",
        }
    }
}

/// The policy's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied(Rule),
}

/// The policy could not decide: the request is refused (fail closed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GateError {
    #[error("gatekeeper: the policy rejected its input as out of range")]
    BadInput,
    #[error("gatekeeper: the policy failed (a contract or an Ada exception); refusing")]
    PolicyFailure,
    #[error("gatekeeper: the policy returned {0}, which no rule has")]
    Unknown(i32),
}

/// Mirrors `Gatekeeper_C.C_Input`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CInput {
    pub held: u64,
    pub added: u64,
    pub uid: u32,
    pub profile: u8,
    pub namespace_privileged: u8,
    pub network: u8,
    pub refuse_unconfined: u8,
    pub privileged: u8,
    pub uid_known: u8,
    pub userns: u8,
    pub maps_host_root: u8,
    pub host_network: u8,
    pub host_pid: u8,
    pub host_ipc: u8,
    pub no_new_privs: u8,
    pub seccomp: u8,
    pub apparmor: u8,
    pub selinux: u8,
    pub selinux_user_role: u8,
    pub proc_unmasked: u8,
    pub host_path: u8,
    pub host_port: u8,
    pub unsafe_sysctl: u8,
    pub devices: u8,
    pub bad_unified_key: u8,
    pub log_outside: u8,
}

extern "C" {
    fn gatekeeperinit();
    fn vordr_gatekeeper_validate(input: *const CInput) -> i32;
    fn vordr_gatekeeper_version() -> i32;
    fn vordr_gatekeeper_rule_count() -> i32;
}

static INIT: Once = Once::new();

fn init() {
    // SAFETY: the library's elaboration, run exactly once before any call.
    INIT.call_once(|| unsafe { gatekeeperinit() });
}

/// The policy library's version.
pub fn version() -> i32 {
    init();
    // SAFETY: a plain call into the initialised library.
    unsafe { vordr_gatekeeper_version() }
}

/// The highest rule number the library knows.
pub fn rule_count() -> i32 {
    init();
    // SAFETY: a plain call into the initialised library.
    unsafe { vordr_gatekeeper_rule_count() }
}

impl From<&Input> for CInput {
    fn from(i: &Input) -> CInput {
        CInput {
            held: i.held.0,
            added: i.added.0,
            uid: i.uid.unwrap_or(0),
            profile: match i.profile {
                Profile::Privileged => 0,
                Profile::Baseline => 1,
                Profile::Restricted => 2,
            },
            namespace_privileged: i.namespace_privileged.into(),
            network: match i.network {
                NetworkMode::Default => 0,
                NetworkMode::Restricted => 1,
                NetworkMode::Admin => 2,
            },
            refuse_unconfined: i.refuse_unconfined.into(),
            privileged: i.privileged.into(),
            uid_known: i.uid.is_some().into(),
            userns: match i.userns {
                UsernsMode::None => 0,
                UsernsMode::Pod => 1,
            },
            maps_host_root: i.maps_host_root.into(),
            host_network: i.host_network.into(),
            host_pid: i.host_pid.into(),
            host_ipc: i.host_ipc.into(),
            no_new_privs: i.no_new_privs.into(),
            seccomp: match i.seccomp {
                SeccompMode::RuntimeDefault => 0,
                SeccompMode::Localhost => 1,
                SeccompMode::Unconfined => 2,
            },
            apparmor: match i.apparmor {
                AppArmorMode::None => 0,
                AppArmorMode::RuntimeDefault => 1,
                AppArmorMode::Localhost => 2,
                AppArmorMode::Unconfined => 3,
            },
            selinux: match i.selinux {
                SelinuxType::None => 0,
                SelinuxType::ContainerT => 1,
                SelinuxType::ContainerInitT => 2,
                SelinuxType::ContainerKvmT => 3,
                SelinuxType::ContainerEngineT => 4,
                SelinuxType::Other => 5,
            },
            selinux_user_role: i.selinux_user_role.into(),
            proc_unmasked: i.proc_unmasked.into(),
            host_path: i.host_path.into(),
            host_port: i.host_port.into(),
            unsafe_sysctl: i.unsafe_sysctl.into(),
            devices: i.devices.into(),
            bad_unified_key: i.bad_unified_key.into(),
            log_outside: i.log_outside.into(),
        }
    }
}

/// Judges `input` with the SPARK policy.
pub fn validate(input: &Input) -> Result<Verdict, GateError> {
    match validate_raw(&CInput::from(input)) {
        0 => Ok(Verdict::Allowed),
        r @ 1..=17 => Ok(Verdict::Denied(Rule(r as u8))),
        -1 => Err(GateError::BadInput),
        -2 => Err(GateError::PolicyFailure),
        r => Err(GateError::Unknown(r)),
    }
}

/// Calls the policy with a raw C input (for tests of the C boundary:
/// out-of-range values must be refused, never trusted).
#[doc(hidden)]
pub fn validate_raw(c: &CInput) -> i32 {
    init();
    // SAFETY: `c` is a valid #[repr(C)] struct the call only reads.
    unsafe { vordr_gatekeeper_validate(c) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restricted() -> Input {
        Input::harmless(NamespacePolicy {
            profile: Profile::Restricted,
            network: NetworkMode::Default,
            allow_privileged: false,
        })
    }

    #[test]
    fn the_library_links_and_answers() {
        assert_eq!(version(), 3);
        assert_eq!(rule_count(), LAST_RULE as i32);
        let mut i = restricted();
        assert_eq!(validate(&i), Ok(Verdict::Allowed));
        i.privileged = true;
        assert_eq!(validate(&i), Ok(Verdict::Denied(Rule(1))));
        let mut i = restricted();
        i.uid = Some(0);
        assert_eq!(validate(&i), Ok(Verdict::Denied(Rule(13))));
        i.uid = Some(u32::MAX);
        assert_eq!(validate(&i), Ok(Verdict::Allowed));
        i.held = CapSet::of(&["CAP_NET_BIND_SERVICE"]).unwrap();
        assert_eq!(validate(&i), Ok(Verdict::Allowed));
        i.held = CapSet(1 << 63);
        assert_eq!(validate(&i), Ok(Verdict::Denied(Rule(2))));
    }

    #[test]
    fn out_of_range_or_ill_formed_input_is_refused_not_trusted() {
        let ok = CInput::from(&restricted());
        assert_eq!(validate_raw(&ok), 0);
        type Spoil = fn(&mut CInput);
        let cases: [(&str, Spoil); 12] = [
            ("profile", |c| c.profile = 3),
            ("network", |c| c.network = 3),
            ("userns", |c| c.userns = 2),
            ("seccomp", |c| c.seccomp = 3),
            ("apparmor", |c| c.apparmor = 4),
            ("selinux", |c| c.selinux = 6),
            ("namespace_privileged", |c| c.namespace_privileged = 2),
            ("no_new_privs", |c| c.no_new_privs = 7),
            ("log_outside", |c| c.log_outside = 9),
            ("unsafe_sysctl", |c| c.unsafe_sysctl = 255),
            // Validate's precondition: an unknown UID travels as 0 ...
            ("uid", |c| {
                c.uid_known = 0;
                c.uid = 5
            }),
            // ... and a mapping of host root is no user namespace.
            ("maps_host_root", |c| {
                c.maps_host_root = 1;
                c.userns = 1
            }),
        ];
        for (field, spoil) in cases {
            let mut c = ok;
            spoil(&mut c);
            assert_eq!(validate_raw(&c), -1, "{field}");
        }
    }

    #[test]
    fn capability_sets() {
        let s = CapSet::of(&["CAP_CHOWN", "CAP_CHECKPOINT_RESTORE"]).unwrap();
        assert_eq!(s.0, 1 | 1 << 40);
        assert!(s.contains("CAP_CHOWN") && !s.contains("CAP_KILL"));
        assert_eq!(CapSet::of(&["SYS_ADMIN"]), Err("SYS_ADMIN".to_string()));
        assert_eq!(
            CapSet(1 << 21 | 1 << 63).names_not_in(CapSet::default()),
            ["CAP_SYS_ADMIN", "CAP_63"]
        );
        assert_eq!(CAPABILITIES[21], "CAP_SYS_ADMIN");
        assert_eq!(CAPABILITIES[40], "CAP_CHECKPOINT_RESTORE");
    }
}
