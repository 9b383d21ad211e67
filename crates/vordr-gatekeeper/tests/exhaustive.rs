//! The SPARK library against a specification of the rules written here
//! independently (tests/spec), over every combination of the policy's
//! abstract inputs in two groups (what a process may do; what it may reach
//! of the node), and over a million random inputs from the whole space.

use std::collections::BTreeSet;

use vordr_gatekeeper::*;

mod spec;

/// Capability sets by class, as bare names.
const CAP_CLASSES: [&[&str]; 8] = [
    &[],
    &["NET_BIND_SERVICE"],
    &["CHOWN", "KILL"],
    &["NET_RAW"],
    &["NET_ADMIN"],
    &["SYS_ADMIN"],
    &["SYS_PTRACE", "DAC_READ_SEARCH"],
    &["ALL"],
];

fn set(class: &[&str]) -> CapSet {
    if class == ["ALL"] {
        return CapSet::ALL;
    }
    CapSet::of(&class.iter().map(|c| format!("CAP_{c}")).collect::<Vec<_>>()).unwrap()
}

fn names(s: CapSet) -> BTreeSet<String> {
    (0..64)
        .filter(|n| s.0 & (1u64 << n) != 0)
        .map(|n| {
            CAPABILITIES
                .get(n)
                .map(|c| c.trim_start_matches("CAP_").to_string())
                .unwrap_or_else(|| format!("UNKNOWN_{n}"))
        })
        .collect()
}

fn facts(i: &Input) -> spec::Facts {
    spec::Facts {
        profile: i.profile,
        namespace_privileged: i.namespace_privileged,
        network: i.network,
        refuse_unconfined: i.refuse_unconfined,
        privileged: i.privileged,
        held: names(i.held),
        added: names(i.added),
        root: i.uid.unwrap_or(0) == 0,
        userns: i.userns == UsernsMode::Pod,
        maps_host_root: i.maps_host_root,
        host_network: i.host_network,
        host_pid: i.host_pid,
        host_ipc: i.host_ipc,
        no_new_privs: i.no_new_privs,
        unconfined_seccomp: i.seccomp == SeccompMode::Unconfined,
        unconfined_apparmor: i.apparmor == AppArmorMode::Unconfined,
        custom_selinux: i.selinux == SelinuxType::Other || i.selinux_user_role,
        proc_unmasked: i.proc_unmasked,
        host_path: i.host_path,
        host_port: i.host_port,
        unsafe_sysctl: i.unsafe_sysctl,
        devices: i.devices,
        bad_unified_key: i.bad_unified_key,
        log_outside: i.log_outside,
    }
}

const PROFILES: [Profile; 3] = [Profile::Privileged, Profile::Baseline, Profile::Restricted];
const NETWORKS: [NetworkMode; 3] = [
    NetworkMode::Default,
    NetworkMode::Restricted,
    NetworkMode::Admin,
];
const SECCOMPS: [SeccompMode; 3] = [
    SeccompMode::RuntimeDefault,
    SeccompMode::Localhost,
    SeccompMode::Unconfined,
];
const APPARMORS: [AppArmorMode; 4] = [
    AppArmorMode::None,
    AppArmorMode::RuntimeDefault,
    AppArmorMode::Localhost,
    AppArmorMode::Unconfined,
];
const SELINUX: [SelinuxType; 6] = [
    SelinuxType::None,
    SelinuxType::ContainerT,
    SelinuxType::ContainerInitT,
    SelinuxType::ContainerKvmT,
    SelinuxType::ContainerEngineT,
    SelinuxType::Other,
];
const UIDS: [Option<u32>; 4] = [None, Some(0), Some(1000), Some(u32::MAX)];

fn base(profile: Profile, network: NetworkMode) -> Input {
    Input::harmless(NamespacePolicy {
        profile,
        network,
        allow_privileged: false,
    })
}

fn bit(b: u32, n: u32) -> bool {
    b & (1 << n) != 0
}

/// Checks one input; counts denials per rule.
fn check(i: &Input, denied: &mut [usize; 18]) {
    let got = validate(i).unwrap_or_else(|e| panic!("{e} for {i:?}"));
    assert_eq!(got, spec::expected(&facts(i)), "for {i:?}");
    if let Verdict::Denied(Rule(r)) = got {
        denied[r as usize] += 1;
    }
}

/// What a process may do: privilege, capabilities, user, user namespace,
/// escalation, seccomp, AppArmor, SELinux.
#[test]
fn every_privilege_combination_matches_the_specification() {
    let mut n = 0;
    let mut denied = [0usize; 18];
    for profile in PROFILES {
        for network in NETWORKS {
            for held in CAP_CLASSES {
                for added in CAP_CLASSES {
                    for uid in UIDS {
                        for seccomp in SECCOMPS {
                            for b in 0u32..1 << 7 {
                                let mut i = base(profile, network);
                                i.held = set(held);
                                i.added = set(added);
                                i.uid = uid;
                                i.seccomp = seccomp;
                                i.namespace_privileged = bit(b, 0);
                                i.privileged = bit(b, 1);
                                i.userns = if bit(b, 2) {
                                    UsernsMode::Pod
                                } else {
                                    UsernsMode::None
                                };
                                i.no_new_privs = bit(b, 3);
                                i.refuse_unconfined = bit(b, 4);
                                i.selinux_user_role = bit(b, 5);
                                i.apparmor = APPARMORS[(b as usize >> 6) * 3 % 4];
                                i.selinux = SELINUX[(n / 7) % 6];
                                check(&i, &mut denied);
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(n, 3 * 3 * 8 * 8 * 4 * 3 * 128);
    for r in [1, 2, 3, 7, 8, 10, 12, 13] {
        assert!(denied[r] > 0, "rule {r} decided nothing: {denied:?}");
    }
}

/// What a container may reach of the node: host namespaces, paths, ports,
/// devices, sysctls, /proc, cgroup files, logs, the host's root IDs.
#[test]
fn every_node_access_combination_matches_the_specification() {
    let mut n = 0;
    let mut denied = [0usize; 18];
    for profile in PROFILES {
        for network in NETWORKS {
            for b in 0u32..1 << 14 {
                let mut i = base(profile, network);
                i.namespace_privileged = bit(b, 0);
                i.privileged = bit(b, 1);
                i.host_network = bit(b, 2);
                i.host_pid = bit(b, 3);
                i.host_ipc = bit(b, 4);
                i.host_path = bit(b, 5);
                i.host_port = bit(b, 6);
                i.unsafe_sysctl = bit(b, 7);
                i.devices = bit(b, 8);
                i.bad_unified_key = bit(b, 9);
                i.log_outside = bit(b, 10);
                i.proc_unmasked = bit(b, 11);
                i.maps_host_root = bit(b, 12);
                if bit(b, 13) {
                    // A user namespace, where it is one.
                    if i.maps_host_root {
                        continue;
                    }
                    i.userns = UsernsMode::Pod;
                }
                check(&i, &mut denied);
                n += 1;
            }
        }
    }
    assert_eq!(n, 3 * 3 * (1 << 14) * 3 / 4);
    for r in [1, 4, 5, 6, 9, 11, 14, 15, 16, 17] {
        assert!(denied[r] > 0, "rule {r} decided nothing: {denied:?}");
    }
}

/// A million random inputs from the whole space (a fixed seed).
#[test]
fn random_inputs_match_the_specification() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut denied = [0usize; 18];
    for _ in 0..1_000_000 {
        let r = next();
        let pick = |n: u64, k: u32| ((r >> k) % n) as usize;
        let mut i = base(PROFILES[pick(3, 0)], NETWORKS[pick(3, 2)]);
        let caps = next();
        // Sparse sets: mostly a few capabilities, sometimes every one.
        i.held = CapSet(caps & next() & next());
        i.added = CapSet((caps >> 7) & next() & next() & next());
        i.uid = UIDS[pick(4, 4)];
        i.seccomp = SECCOMPS[pick(3, 6)];
        i.apparmor = APPARMORS[pick(4, 8)];
        i.selinux = SELINUX[pick(6, 10)];
        let b = next();
        let on = |n: u32| b & (1 << n) != 0;
        i.namespace_privileged = on(0);
        i.refuse_unconfined = on(1);
        i.privileged = on(2);
        i.maps_host_root = on(3) && on(4);
        i.userns = if !i.maps_host_root && on(5) {
            UsernsMode::Pod
        } else {
            UsernsMode::None
        };
        i.host_network = on(6) && on(7);
        i.host_pid = on(8) && on(9);
        i.host_ipc = on(10) && on(11);
        i.no_new_privs = on(12);
        i.selinux_user_role = on(13) && on(14);
        i.proc_unmasked = on(15) && on(16);
        i.host_path = on(17) && on(18);
        i.host_port = on(19) && on(20);
        i.unsafe_sysctl = on(21) && on(22);
        i.devices = on(23) && on(24);
        i.bad_unified_key = on(25) && on(26);
        i.log_outside = on(27) && on(28);
        if on(29) {
            // Often within the default set, where rules past 2 decide.
            i.held.0 &= set(&spec::BASELINE_ADD).0 | set(&["NET_RAW"]).0;
            i.added.0 &= i.held.0;
        }
        check(&i, &mut denied);
    }
    let decided = denied[1..].iter().filter(|&&d| d > 0).count();
    assert!(decided >= 15, "{denied:?}");
}

#[test]
fn the_privileged_profile_admits_all_but_the_node_guards() {
    let mut i = base(Profile::Privileged, NetworkMode::Default);
    i.privileged = true;
    i.held = CapSet::ALL;
    i.added = CapSet::ALL;
    i.uid = Some(0);
    i.host_network = true;
    i.host_pid = true;
    i.host_path = true;
    i.devices = true;
    i.seccomp = SeccompMode::Unconfined;
    i.apparmor = AppArmorMode::Unconfined;
    i.proc_unmasked = true;
    i.maps_host_root = true;
    assert_eq!(validate(&i), Ok(Verdict::Allowed));
    i.bad_unified_key = true;
    assert_eq!(validate(&i), Ok(Verdict::Denied(Rule(15))));
    i.bad_unified_key = false;
    i.log_outside = true;
    assert_eq!(validate(&i), Ok(Verdict::Denied(Rule(17))));
}
