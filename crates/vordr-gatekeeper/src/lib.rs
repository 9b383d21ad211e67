//! Vordr's node security policy. The rules live in Ada/SPARK (`ada/src/
//! policy.ads`), with the security predicate stated as the postcondition of
//! `Validate`; this crate is the safe Rust side: the policy's input, the
//! call through the C ABI, the verdict with the rule's message, and (in
//! [`cri`]) the reduction of CRI pod and container configs to that input.

use std::sync::Once;

pub mod cri;

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

/// One side of a CRI capability list, reduced to what the rules judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapList {
    pub all: bool,
    pub sys_admin: bool,
    pub net_admin: bool,
}

/// The policy's input: a pod or container spec reduced to what the rules
/// judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Input {
    pub profile: Profile,
    /// The namespace may run privileged containers and SYS_ADMIN.
    pub namespace_privileged: bool,
    pub network: NetworkMode,
    pub privileged: bool,
    /// The effective UID (asked for, or the image's default user); `None`
    /// when it cannot be told, which the policy counts as root.
    pub uid: Option<u32>,
    pub userns: UsernsMode,
    /// Added capabilities (ALL expanded by the policy).
    pub cap_add: CapList,
    /// Dropped capabilities.
    pub cap_drop: CapList,
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    pub no_new_privs: bool,
    pub seccomp: SeccompMode,
    pub read_only_rootfs: bool,
    /// A host-path mount of /, /proc, /sys, /dev, /etc, /var/run (/run) or
    /// Vordr's own socket, root or run directory.
    pub sensitive_mount: bool,
    /// A sysctl outside Kubernetes' safe set.
    pub unsafe_sysctl: bool,
}

impl Input {
    /// Nothing asked for: a non-root process with no added capabilities,
    /// no_new_privs, RuntimeDefault seccomp, no host namespaces or paths.
    pub fn harmless(ns: NamespacePolicy) -> Input {
        Input {
            profile: ns.profile,
            namespace_privileged: ns.allow_privileged,
            network: ns.network,
            privileged: false,
            uid: Some(65534),
            userns: UsernsMode::None,
            cap_add: CapList::default(),
            cap_drop: CapList::default(),
            host_network: false,
            host_pid: false,
            host_ipc: false,
            no_new_privs: true,
            seccomp: SeccompMode::RuntimeDefault,
            read_only_rootfs: false,
            sensitive_mount: false,
            unsafe_sysctl: false,
        }
    }
}

/// A rule of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule(pub u8);

impl Rule {
    /// The rule's message, as the denial names it.
    pub fn message(self) -> &'static str {
        match self.0 {
            1 => "privileged mode and SYS_ADMIN need a privileged pod",
            2 => "UID 0 needs a user namespace",
            3 => "NET_ADMIN needs network mode restricted or admin, the host network admin",
            4 => "privilege escalation needs a user namespace",
            5 => "host PID and IPC namespaces are not allowed",
            6 => "sensitive host paths may not be mounted",
            7 => "seccomp may not be Unconfined",
            8 => "unsafe sysctls are not allowed",
            _ => "unknown rule",
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
    pub uid: u32,
    pub profile: u8,
    pub namespace_privileged: u8,
    pub network: u8,
    pub privileged: u8,
    pub uid_known: u8,
    pub userns: u8,
    pub add_all: u8,
    pub add_sys_admin: u8,
    pub add_net_admin: u8,
    pub drop_all: u8,
    pub drop_sys_admin: u8,
    pub drop_net_admin: u8,
    pub host_network: u8,
    pub host_pid: u8,
    pub host_ipc: u8,
    pub no_new_privs: u8,
    pub seccomp: u8,
    pub read_only_rootfs: u8,
    pub sensitive_mount: u8,
    pub unsafe_sysctl: u8,
}

extern "C" {
    fn gatekeeperinit();
    fn vordr_gatekeeper_validate(input: *const CInput) -> i32;
    fn vordr_gatekeeper_version() -> i32;
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

impl From<&Input> for CInput {
    fn from(i: &Input) -> CInput {
        CInput {
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
            privileged: i.privileged.into(),
            uid_known: i.uid.is_some().into(),
            userns: match i.userns {
                UsernsMode::None => 0,
                UsernsMode::Pod => 1,
            },
            add_all: i.cap_add.all.into(),
            add_sys_admin: i.cap_add.sys_admin.into(),
            add_net_admin: i.cap_add.net_admin.into(),
            drop_all: i.cap_drop.all.into(),
            drop_sys_admin: i.cap_drop.sys_admin.into(),
            drop_net_admin: i.cap_drop.net_admin.into(),
            host_network: i.host_network.into(),
            host_pid: i.host_pid.into(),
            host_ipc: i.host_ipc.into(),
            no_new_privs: i.no_new_privs.into(),
            seccomp: match i.seccomp {
                SeccompMode::RuntimeDefault => 0,
                SeccompMode::Localhost => 1,
                SeccompMode::Unconfined => 2,
            },
            read_only_rootfs: i.read_only_rootfs.into(),
            sensitive_mount: i.sensitive_mount.into(),
            unsafe_sysctl: i.unsafe_sysctl.into(),
        }
    }
}

/// Judges `input` with the SPARK policy.
pub fn validate(input: &Input) -> Result<Verdict, GateError> {
    match validate_raw(&CInput::from(input)) {
        0 => Ok(Verdict::Allowed),
        r @ 1..=8 => Ok(Verdict::Denied(Rule(r as u8))),
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
        assert_eq!(version(), 2);
        let mut i = restricted();
        assert_eq!(validate(&i), Ok(Verdict::Allowed));
        i.privileged = true;
        assert_eq!(validate(&i), Ok(Verdict::Denied(Rule(1))));
        let mut i = restricted();
        i.uid = None;
        assert_eq!(validate(&i), Ok(Verdict::Denied(Rule(2))));
        i.uid = Some(u32::MAX);
        assert_eq!(validate(&i), Ok(Verdict::Allowed));
    }

    #[test]
    fn out_of_range_input_is_refused_not_trusted() {
        let ok = CInput::from(&restricted());
        assert_eq!(validate_raw(&ok), 0);
        type Spoil = fn(&mut CInput);
        let cases: [(&str, Spoil); 8] = [
            ("profile", |c| c.profile = 3),
            ("network", |c| c.network = 3),
            ("userns", |c| c.userns = 2),
            ("seccomp", |c| c.seccomp = 3),
            ("namespace_privileged", |c| c.namespace_privileged = 2),
            ("no_new_privs", |c| c.no_new_privs = 7),
            ("drop_all", |c| c.drop_all = 9),
            ("unsafe_sysctl", |c| c.unsafe_sysctl = 255),
        ];
        for (field, spoil) in cases {
            let mut c = ok;
            spoil(&mut c);
            // A boolean of 2 raises inside Ada; the wrapper catches it.
            assert_eq!(validate_raw(&c), -1, "{field}");
        }
    }
}
