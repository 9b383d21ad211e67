//! The policy's rules written independently of the Ada, from the issue's
//! wording and the profile table, over plain facts about a spec.

use vordr_gatekeeper::{NetworkMode, Profile, Rule, Verdict};

/// What a spec does, as the rules speak of it.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    pub profile: Profile,
    pub namespace_privileged: bool,
    pub network: NetworkMode,
    pub privileged: bool,
    /// UID 0, or a user that cannot be told.
    pub root: bool,
    pub userns: bool,
    pub sys_admin: bool,
    pub net_admin: bool,
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    pub no_new_privs: bool,
    pub unconfined: bool,
    pub sensitive_mount: bool,
    pub unsafe_sysctl: bool,
}

/// Which rules a profile enforces.
pub fn enforces(profile: Profile, rule: u8) -> bool {
    match profile {
        Profile::Privileged => false,
        Profile::Baseline => matches!(rule, 1 | 3 | 5 | 6 | 8),
        Profile::Restricted => true,
    }
}

/// Whether `f` breaks rule `rule`, ignoring the profile.
pub fn breaks(f: &Facts, rule: u8) -> bool {
    match rule {
        // Privileged or SYS_ADMIN outside a namespace allowed to be privileged.
        1 => (f.privileged || f.sys_admin) && !f.namespace_privileged,
        // Root without a user namespace.
        2 => f.root && !f.userns,
        // NET_ADMIN in the default network mode, or host network short of Admin.
        3 => {
            (f.net_admin && f.network == NetworkMode::Default)
                || (f.host_network && f.network != NetworkMode::Admin)
        }
        // Privilege escalation without a user namespace.
        4 => !f.no_new_privs && !f.userns,
        5 => f.host_pid || f.host_ipc,
        6 => f.sensitive_mount,
        7 => f.unconfined,
        8 => f.unsafe_sysctl,
        _ => unreachable!(),
    }
}

/// The first rule the profile enforces that `f` breaks.
pub fn expected(f: &Facts) -> Verdict {
    (1..=8)
        .find(|&r| enforces(f.profile, r) && breaks(f, r))
        .map(|r| Verdict::Denied(Rule(r)))
        .unwrap_or(Verdict::Allowed)
}
