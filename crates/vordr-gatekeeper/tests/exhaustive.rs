//! Every combination of the policy's abstract inputs (221 184 of them)
//! judged by the SPARK library and by a specification of the rules written
//! here independently, from the wording and the profile table.

use vordr_gatekeeper::*;

/// Which rules a profile enforces.
fn enforces(profile: Profile, rule: u8) -> bool {
    match profile {
        Profile::Privileged => false,
        Profile::Baseline => matches!(rule, 1 | 3 | 5 | 6 | 8),
        Profile::Restricted => true,
    }
}

/// Whether `i` breaks rule `rule`, ignoring the profile.
fn breaks(i: &Input, rule: u8) -> bool {
    match rule {
        // Privileged or SYS_ADMIN outside a namespace allowed to be privileged.
        1 => (i.privileged || i.cap_sys_admin) && !i.namespace_privileged,
        // Root without a user namespace.
        2 => i.runs_as_root && i.userns != UsernsMode::Pod,
        // NET_ADMIN in the default network mode, or host network short of Admin.
        3 => {
            (i.cap_net_admin && i.network == NetworkMode::Default)
                || (i.host_network && i.network != NetworkMode::Admin)
        }
        // Privilege escalation without a user namespace.
        4 => !i.no_new_privs && i.userns != UsernsMode::Pod,
        5 => i.host_pid || i.host_ipc,
        6 => i.sensitive_mount,
        7 => i.seccomp == SeccompMode::Unconfined,
        8 => i.unsafe_sysctl,
        _ => unreachable!(),
    }
}

fn expected(i: &Input) -> Verdict {
    (1..=8)
        .find(|&r| enforces(i.profile, r) && breaks(i, r))
        .map(|r| Verdict::Denied(Rule(r)))
        .unwrap_or(Verdict::Allowed)
}

fn all_inputs() -> impl Iterator<Item = Input> {
    let profiles = [Profile::Privileged, Profile::Baseline, Profile::Restricted];
    let networks = [
        NetworkMode::Default,
        NetworkMode::Restricted,
        NetworkMode::Admin,
    ];
    let seccomps = [
        SeccompMode::RuntimeDefault,
        SeccompMode::Localhost,
        SeccompMode::Unconfined,
    ];
    let bit = |bits: u32, n: u32| bits & (1 << n) != 0;
    profiles.into_iter().flat_map(move |profile| {
        networks.into_iter().flat_map(move |network| {
            seccomps.into_iter().flat_map(move |seccomp| {
                (0u32..1 << 13).map(move |b| Input {
                    profile,
                    network,
                    seccomp,
                    namespace_privileged: bit(b, 0),
                    privileged: bit(b, 1),
                    runs_as_root: bit(b, 2),
                    userns: if bit(b, 3) {
                        UsernsMode::Pod
                    } else {
                        UsernsMode::None
                    },
                    cap_sys_admin: bit(b, 4),
                    cap_net_admin: bit(b, 5),
                    host_network: bit(b, 6),
                    host_pid: bit(b, 7),
                    host_ipc: bit(b, 8),
                    no_new_privs: bit(b, 9),
                    read_only_rootfs: bit(b, 10),
                    sensitive_mount: bit(b, 11),
                    unsafe_sysctl: bit(b, 12),
                })
            })
        })
    })
}

#[test]
fn every_combination_matches_the_specification() {
    let mut n = 0;
    let mut denied = [0usize; 9];
    for i in all_inputs() {
        let got = validate(&i).unwrap_or_else(|e| panic!("{e} for {i:?}"));
        assert_eq!(got, expected(&i), "for {i:?}");
        if let Verdict::Denied(Rule(r)) = got {
            denied[r as usize] += 1;
        }
        n += 1;
    }
    assert_eq!(n, 3 * 3 * 3 * 8192);
    // Every rule decides some input (none is dead).
    assert!(denied[1..].iter().all(|&d| d > 0), "{denied:?}");
}

#[test]
fn the_privileged_profile_admits_everything() {
    assert!(all_inputs()
        .filter(|i| i.profile == Profile::Privileged)
        .all(|i| validate(&i) == Ok(Verdict::Allowed)));
}
