//! Every combination of the policy's abstract inputs (7 077 888 of them:
//! profiles, network and seccomp modes, four classes of UID, every
//! boolean, both capability lists over ALL, SYS_ADMIN and NET_ADMIN) judged
//! by the SPARK library and by a specification of the rules written here
//! independently, from the wording and the profile table.

use vordr_gatekeeper::*;

mod spec;

/// Whether the process ends up holding a capability, applying the lists in
/// containerd's order: add ALL, drop ALL, add named, drop named. Neither
/// SYS_ADMIN nor NET_ADMIN is in the default set; privileged holds all.
fn holds(i: &Input, add_named: bool, drop_named: bool) -> bool {
    if i.privileged {
        return true;
    }
    let mut held = false;
    if i.cap_add.all {
        held = true;
    }
    if i.cap_drop.all {
        held = false;
    }
    if add_named {
        held = true;
    }
    if drop_named {
        held = false;
    }
    held
}

fn expected(i: &Input) -> Verdict {
    spec::expected(&spec::Facts {
        profile: i.profile,
        namespace_privileged: i.namespace_privileged,
        network: i.network,
        privileged: i.privileged,
        root: i.uid != Some(1000) && i.uid != Some(u32::MAX),
        userns: i.userns == UsernsMode::Pod,
        sys_admin: holds(i, i.cap_add.sys_admin, i.cap_drop.sys_admin),
        net_admin: holds(i, i.cap_add.net_admin, i.cap_drop.net_admin),
        host_network: i.host_network,
        host_pid: i.host_pid,
        host_ipc: i.host_ipc,
        no_new_privs: i.no_new_privs,
        unconfined: i.seccomp == SeccompMode::Unconfined,
        sensitive_mount: i.sensitive_mount,
        unsafe_sysctl: i.unsafe_sysctl,
    })
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
    let uids = [None, Some(0), Some(1000), Some(u32::MAX)];
    let bit = |bits: u32, n: u32| bits & (1 << n) != 0;
    let caps = move |b: u32, n: u32| CapList {
        all: bit(b, n),
        sys_admin: bit(b, n + 1),
        net_admin: bit(b, n + 2),
    };
    profiles.into_iter().flat_map(move |profile| {
        networks.into_iter().flat_map(move |network| {
            seccomps.into_iter().flat_map(move |seccomp| {
                uids.into_iter().flat_map(move |uid| {
                    (0u32..1 << 16).map(move |b| Input {
                        profile,
                        network,
                        seccomp,
                        uid,
                        namespace_privileged: bit(b, 0),
                        privileged: bit(b, 1),
                        userns: if bit(b, 2) {
                            UsernsMode::Pod
                        } else {
                            UsernsMode::None
                        },
                        cap_add: caps(b, 3),
                        cap_drop: caps(b, 6),
                        host_network: bit(b, 9),
                        host_pid: bit(b, 10),
                        host_ipc: bit(b, 11),
                        no_new_privs: bit(b, 12),
                        read_only_rootfs: bit(b, 13),
                        sensitive_mount: bit(b, 14),
                        unsafe_sysctl: bit(b, 15),
                    })
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
    assert_eq!(n, 3 * 3 * 3 * 4 * 65536);
    // Every rule decides some input (none is dead).
    assert!(denied[1..].iter().all(|&d| d > 0), "{denied:?}");
}

#[test]
fn the_privileged_profile_admits_everything() {
    assert!(all_inputs()
        .filter(|i| i.profile == Profile::Privileged)
        .all(|i| validate(&i) == Ok(Verdict::Allowed)));
}
