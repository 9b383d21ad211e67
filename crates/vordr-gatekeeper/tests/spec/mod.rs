//! The policy's rules written independently of the Ada, from the Pod
//! Security Standards (v1.35) and Vordr's documented rules, over plain
//! facts about what a pod or container does.

#![allow(dead_code)]

use std::collections::BTreeSet;

use vordr_gatekeeper::{NetworkMode, Profile, Rule, Verdict};

/// The standard's Baseline list of capabilities a container may add.
pub const BASELINE_ADD: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// What a pod or container does, as the rules speak of it. Capabilities
/// are bare names (`SYS_ADMIN`).
#[derive(Debug, Clone)]
pub struct Facts {
    pub profile: Profile,
    pub namespace_privileged: bool,
    pub network: NetworkMode,
    pub refuse_unconfined: bool,
    pub privileged: bool,
    pub held: BTreeSet<String>,
    pub added: BTreeSet<String>,
    /// UID 0, or a user that cannot be told.
    pub root: bool,
    /// A user namespace that does not map the host's root.
    pub userns: bool,
    pub maps_host_root: bool,
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    pub no_new_privs: bool,
    pub unconfined_seccomp: bool,
    pub unconfined_apparmor: bool,
    /// An SELinux type off the standard's list, or a user or role.
    pub custom_selinux: bool,
    pub proc_unmasked: bool,
    pub host_path: bool,
    pub host_port: bool,
    pub unsafe_sysctl: bool,
    pub devices: bool,
    pub bad_unified_key: bool,
    pub log_outside: bool,
}

/// The runtime's default set: what a container holds without adding.
pub fn default_set() -> BTreeSet<String> {
    let mut s: BTreeSet<String> = BASELINE_ADD.iter().map(|c| c.to_string()).collect();
    s.insert("NET_RAW".into());
    s
}

/// Which rules a profile enforces: Privileged only the two that guard the
/// node from every pod (cgroup files, log files); Baseline the baseline
/// controls and Vordr's rules; Restricted everything.
pub fn enforces(profile: Profile, rule: u8) -> bool {
    match profile {
        Profile::Privileged => matches!(rule, 15 | 17),
        Profile::Baseline => !matches!(rule, 3 | 12 | 13),
        Profile::Restricted => true,
    }
}

/// Whether `f` breaks rule `rule`, ignoring the profile.
pub fn breaks(f: &Facts, rule: u8) -> bool {
    let mut net_admin = BTreeSet::new();
    if f.network != NetworkMode::Default {
        net_admin.insert("NET_ADMIN".to_string());
    }
    let beyond = |set: &BTreeSet<String>, allowed: &BTreeSet<String>| {
        set.iter()
            .any(|c| !allowed.contains(c) && !net_admin.contains(c))
    };
    let may_be_privileged = f.namespace_privileged;
    match rule {
        1 => f.privileged && !may_be_privileged,
        2 => {
            let baseline: BTreeSet<String> = BASELINE_ADD.iter().map(|c| c.to_string()).collect();
            !may_be_privileged && (beyond(&f.added, &baseline) || beyond(&f.held, &default_set()))
        }
        3 => {
            let nbs: BTreeSet<String> = ["NET_BIND_SERVICE".to_string()].into();
            !may_be_privileged && (beyond(&f.added, &nbs) || beyond(&f.held, &nbs))
        }
        4 => f.host_pid || f.host_ipc || (f.host_network && f.network != NetworkMode::Admin),
        5 => f.host_path,
        6 => f.host_port,
        7 => f.unconfined_apparmor,
        8 => f.custom_selinux,
        9 => f.proc_unmasked && !may_be_privileged,
        10 => {
            f.unconfined_seccomp
                && (f.profile == Profile::Restricted
                    || (f.refuse_unconfined && !(f.privileged && may_be_privileged)))
        }
        11 => f.unsafe_sysctl,
        12 => !f.no_new_privs,
        13 => f.root && !f.userns,
        14 => f.devices && !may_be_privileged,
        15 => f.bad_unified_key,
        16 => f.maps_host_root,
        17 => f.log_outside,
        _ => unreachable!(),
    }
}

/// The order the rules are tried in: the standard's Baseline controls, its
/// Restricted ones, then Vordr's.
pub const ORDER: [u8; 17] = [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 3, 12, 13, 14, 15, 16, 17];

/// The first rule the profile enforces that `f` breaks.
pub fn expected(f: &Facts) -> Verdict {
    ORDER
        .into_iter()
        .find(|&r| enforces(f.profile, r) && breaks(f, r))
        .map(|r| Verdict::Denied(Rule(r)))
        .unwrap_or(Verdict::Allowed)
}
