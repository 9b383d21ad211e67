//! Vordr's node security policy. The rules live in Ada/SPARK (`ada/src/
//! policy.ads`), with the security predicate stated as the postcondition of
//! `Validate`; this crate is the safe Rust side: the policy's input, the
//! call through the C ABI, and the verdict with the rule's message.

use std::sync::Once;

/// The gatekeeper profiles, least to most strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Profile {
    /// Everything allowed; every decision still recorded.
    Privileged = 0,
    /// Rules 1, 3, 5, 6 and 8 (root, privilege escalation and Unconfined
    /// seccomp allowed), in the spirit of PodSecurity "baseline".
    Baseline = 1,
    /// Every rule.
    Restricted = 2,
}

/// What the pod's namespace may do with the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NetworkMode {
    Default = 0,
    Restricted = 1,
    Admin = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum UsernsMode {
    None = 0,
    Pod = 1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SeccompMode {
    RuntimeDefault = 0,
    Localhost = 1,
    Unconfined = 2,
}

/// The policy's input: a pod or container spec reduced to what the rules
/// judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Input {
    pub profile: Profile,
    /// The profile lets this namespace run privileged pods.
    pub namespace_privileged: bool,
    pub network: NetworkMode,
    pub privileged: bool,
    /// The effective UID is 0 (asked for, or the image's default user).
    pub runs_as_root: bool,
    pub userns: UsernsMode,
    /// In the effective set: added by name or through ALL, not dropped.
    pub cap_sys_admin: bool,
    pub cap_net_admin: bool,
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    pub no_new_privs: bool,
    pub seccomp: SeccompMode,
    pub read_only_rootfs: bool,
    /// A host-path mount of /, /proc, /sys, /dev, /etc, /var/run or
    /// Vordr's own socket or root.
    pub sensitive_mount: bool,
    pub unsafe_sysctl: bool,
}

/// A rule of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule(pub u8);

impl Rule {
    /// The rule's message, as the denial names it.
    pub fn message(self) -> &'static str {
        match self.0 {
            1 => "privileged mode and SYS_ADMIN need a privileged pod",
            2 => "running as UID 0 needs a user namespace",
            3 => "NET_ADMIN needs network mode Restricted or Admin; host network needs Admin",
            4 => "privilege escalation needs a user namespace",
            5 => "host PID and IPC namespaces are not allowed",
            6 => "host-path mounts of sensitive paths are not allowed",
            7 => "Unconfined seccomp is not allowed",
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

#[repr(C)]
struct CInput {
    profile: u8,
    namespace_privileged: u8,
    network: u8,
    privileged: u8,
    runs_as_root: u8,
    userns: u8,
    cap_sys_admin: u8,
    cap_net_admin: u8,
    host_network: u8,
    host_pid: u8,
    host_ipc: u8,
    no_new_privs: u8,
    seccomp: u8,
    read_only_rootfs: u8,
    sensitive_mount: u8,
    unsafe_sysctl: u8,
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

/// Judges `input` with the SPARK policy.
pub fn validate(input: &Input) -> Result<Verdict, GateError> {
    init();
    let c = CInput {
        profile: input.profile as u8,
        namespace_privileged: input.namespace_privileged.into(),
        network: input.network as u8,
        privileged: input.privileged.into(),
        runs_as_root: input.runs_as_root.into(),
        userns: input.userns as u8,
        cap_sys_admin: input.cap_sys_admin.into(),
        cap_net_admin: input.cap_net_admin.into(),
        host_network: input.host_network.into(),
        host_pid: input.host_pid.into(),
        host_ipc: input.host_ipc.into(),
        no_new_privs: input.no_new_privs.into(),
        seccomp: input.seccomp as u8,
        read_only_rootfs: input.read_only_rootfs.into(),
        sensitive_mount: input.sensitive_mount.into(),
        unsafe_sysctl: input.unsafe_sysctl.into(),
    };
    // SAFETY: `c` is a valid #[repr(C)] struct the call only reads.
    match unsafe { vordr_gatekeeper_validate(&c) } {
        0 => Ok(Verdict::Allowed),
        r @ 1..=8 => Ok(Verdict::Denied(Rule(r as u8))),
        -1 => Err(GateError::BadInput),
        -2 => Err(GateError::PolicyFailure),
        r => Err(GateError::Unknown(r)),
    }
}

/// Calls the policy with raw field bytes, in `CInput` order (for tests of
/// the C boundary: out-of-range values must be refused, never trusted).
#[doc(hidden)]
pub fn validate_raw(b: [u8; 16]) -> i32 {
    init();
    let c = CInput {
        profile: b[0],
        namespace_privileged: b[1],
        network: b[2],
        privileged: b[3],
        runs_as_root: b[4],
        userns: b[5],
        cap_sys_admin: b[6],
        cap_net_admin: b[7],
        host_network: b[8],
        host_pid: b[9],
        host_ipc: b[10],
        no_new_privs: b[11],
        seccomp: b[12],
        read_only_rootfs: b[13],
        sensitive_mount: b[14],
        unsafe_sysctl: b[15],
    };
    // SAFETY: `c` is a valid #[repr(C)] struct the call only reads.
    unsafe { vordr_gatekeeper_validate(&c) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_links_and_answers() {
        assert_eq!(version(), 1);
        let mut i = Input {
            profile: Profile::Restricted,
            namespace_privileged: false,
            network: NetworkMode::Default,
            privileged: false,
            runs_as_root: false,
            userns: UsernsMode::None,
            cap_sys_admin: false,
            cap_net_admin: false,
            host_network: false,
            host_pid: false,
            host_ipc: false,
            no_new_privs: true,
            seccomp: SeccompMode::RuntimeDefault,
            read_only_rootfs: false,
            sensitive_mount: false,
            unsafe_sysctl: false,
        };
        assert_eq!(validate(&i), Ok(Verdict::Allowed));
        i.privileged = true;
        assert_eq!(validate(&i), Ok(Verdict::Denied(Rule(1))));
    }

    #[test]
    fn out_of_range_input_is_refused_not_trusted() {
        let ok = [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(validate_raw(ok), 0);
        for (field, bad) in [(0, 3), (2, 3), (5, 2), (12, 3), (1, 2), (11, 7), (15, 255)] {
            let mut b = ok;
            b[field] = bad;
            // A boolean of 2 raises inside Ada; the wrapper catches it.
            assert_eq!(validate_raw(b), -1, "field {field} = {bad}");
        }
    }
}
