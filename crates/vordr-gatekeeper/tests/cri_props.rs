//! Property tests on random CRI pod and container configs: the verdict of
//! `cri::judge_container` / `cri::judge_pod` equals the rules applied to
//! facts this test reads off the configs by itself (capabilities simulated
//! as sets in containerd's order, paths and sysctls from fixed tables).

use std::collections::{BTreeSet, HashMap};

use k8s_cri::v1::{
    Capability, ContainerConfig, Int64Value, LinuxContainerConfig, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceOption, PodSandboxConfig,
    SecurityProfile, UserNamespace,
};
use proptest::prelude::*;
use vordr_gatekeeper::cri::{judge_container, judge_pod, Protected};
use vordr_gatekeeper::{NamespacePolicy, NetworkMode, Profile, Verdict};

mod spec;

/// Host paths, and whether mounting each exposes the node.
const PATHS: [(&str, bool); 14] = [
    ("/", true),
    ("/etc/hosts", true),
    ("/proc/sys", true),
    ("/dev/kmsg", true),
    ("/sys/fs/cgroup", true),
    ("/var/run/docker.sock", true),
    ("/run/vordr/vordr.sock", true),
    ("/var/lib/vordr-test-root/images", true),
    ("/var/lib", true),
    ("/tmp/../etc", true),
    ("/tmp/data", false),
    ("/var/lib/kubelet/pods/uid/volumes/x", false),
    ("/etcetera", false),
    ("/home/user/../app", false),
];

/// Sysctls, and whether each is safe.
const SYSCTLS: [(&str, bool); 6] = [
    ("kernel.shm_rmid_forced", true),
    ("net.ipv4.ip_local_port_range", true),
    ("net/ipv4/tcp_syncookies", true),
    ("net.ipv4.ip_forward", false),
    ("kernel.msgmax", false),
    ("net.core.somaxconn", false),
];

const CAPS: [&str; 10] = [
    "ALL",
    "all",
    "SYS_ADMIN",
    "CAP_SYS_ADMIN",
    "sys_admin",
    "NET_ADMIN",
    "cap_net_admin",
    "CHOWN",
    "NET_RAW",
    "CAP_KILL",
];

fn protected() -> Protected {
    Protected::new(&[
        "/run/vordr/vordr.sock",
        "/var/lib/vordr-test-root",
        "/run/vordr",
    ])
}

/// The capability set a container ends with, simulated on names.
fn caps_held(add: &[String], drop: &[String], privileged: bool) -> BTreeSet<String> {
    let norm = |s: &String| {
        let u = s.to_ascii_uppercase();
        u.strip_prefix("CAP_").unwrap_or(&u).to_string()
    };
    let every: BTreeSet<String> = ["SYS_ADMIN", "NET_ADMIN", "CHOWN", "NET_RAW", "KILL"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if privileged {
        return every;
    }
    let mut held: BTreeSet<String> = ["CHOWN", "NET_RAW", "KILL"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let add: Vec<String> = add.iter().map(norm).collect();
    let drop: Vec<String> = drop.iter().map(norm).collect();
    if add.iter().any(|c| c == "ALL") {
        held = every.clone();
    }
    if drop.iter().any(|c| c == "ALL") {
        held.clear();
    }
    held.extend(add.into_iter().filter(|c| c != "ALL"));
    for c in drop {
        held.remove(&c);
    }
    held
}

fn mode(node: bool) -> i32 {
    if node {
        2
    } else {
        0
    }
}

#[derive(Debug, Clone)]
struct Case {
    policy: NamespacePolicy,
    pod_privileged: bool,
    pod_host: [bool; 3],
    userns: bool,
    sysctls: Vec<usize>,
    privileged: bool,
    ctr_host: [bool; 3],
    uid: Option<u32>,
    add: Vec<usize>,
    drop: Vec<usize>,
    no_new_privs: bool,
    readonly: bool,
    /// 0: nothing; 1..=3: SecurityProfile type 0..2; 4..: deprecated paths.
    seccomp: usize,
    mounts: Vec<usize>,
}

const SECCOMP_PATHS: [&str; 4] = [
    "runtime/default",
    "unconfined",
    "localhost/p.json",
    "docker/default",
];

fn case() -> impl Strategy<Value = Case> {
    let profile = prop_oneof![
        Just(Profile::Privileged),
        Just(Profile::Baseline),
        Just(Profile::Restricted)
    ];
    let network = prop_oneof![
        Just(NetworkMode::Default),
        Just(NetworkMode::Restricted),
        Just(NetworkMode::Admin)
    ];
    let uid = prop_oneof![
        Just(None),
        Just(Some(0u32)),
        Just(Some(1000)),
        any::<u32>().prop_map(Some)
    ];
    (
        (profile, network, any::<bool>()),
        (any::<bool>(), any::<[bool; 3]>(), any::<bool>()),
        proptest::collection::vec(0..SYSCTLS.len(), 0..3),
        (any::<bool>(), any::<[bool; 3]>(), uid),
        (
            proptest::collection::vec(0..CAPS.len(), 0..4),
            proptest::collection::vec(0..CAPS.len(), 0..4),
        ),
        (any::<bool>(), any::<bool>(), 0..4 + SECCOMP_PATHS.len()),
        proptest::collection::vec(0..PATHS.len(), 0..3),
    )
        .prop_map(
            |(
                (profile, network, allow_privileged),
                (pod_privileged, pod_host, userns),
                sysctls,
                (privileged, ctr_host, uid),
                (add, drop),
                (no_new_privs, readonly, seccomp),
                mounts,
            )| Case {
                policy: NamespacePolicy {
                    profile,
                    network,
                    allow_privileged,
                },
                pod_privileged,
                pod_host,
                userns,
                sysctls,
                privileged,
                ctr_host,
                uid,
                add,
                drop,
                no_new_privs,
                readonly,
                seccomp,
                mounts,
            },
        )
}

fn pod_config(c: &Case) -> PodSandboxConfig {
    let [net, pid, ipc] = c.pod_host;
    PodSandboxConfig {
        linux: Some(LinuxPodSandboxConfig {
            sysctls: c
                .sysctls
                .iter()
                .map(|&i| (SYSCTLS[i].0.to_string(), "1".to_string()))
                .collect::<HashMap<_, _>>(),
            security_context: Some(LinuxSandboxSecurityContext {
                privileged: c.pod_privileged,
                namespace_options: Some(NamespaceOption {
                    network: mode(net),
                    pid: mode(pid),
                    ipc: mode(ipc),
                    userns_options: Some(UserNamespace {
                        mode: if c.userns { 0 } else { 2 },
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(c: &Case) -> ContainerConfig {
    let [net, pid, ipc] = c.ctr_host;
    let names = |v: &[usize]| v.iter().map(|&i| CAPS[i].to_string()).collect();
    #[allow(deprecated)]
    let mut sc = LinuxContainerSecurityContext {
        privileged: c.privileged,
        run_as_user: c.uid.map(|u| Int64Value { value: u.into() }),
        capabilities: Some(Capability {
            add_capabilities: names(&c.add),
            drop_capabilities: names(&c.drop),
            ..Default::default()
        }),
        no_new_privs: c.no_new_privs,
        readonly_rootfs: c.readonly,
        namespace_options: Some(NamespaceOption {
            network: mode(net),
            pid: mode(pid),
            ipc: mode(ipc),
            ..Default::default()
        }),
        ..Default::default()
    };
    match c.seccomp {
        0 => {}
        t @ 1..=3 => {
            sc.seccomp = Some(SecurityProfile {
                profile_type: t as i32 - 1,
                localhost_ref: String::new(),
            })
        }
        p => {
            #[allow(deprecated)]
            {
                sc.seccomp_profile_path = SECCOMP_PATHS[p - 4].into();
            }
        }
    }
    ContainerConfig {
        linux: Some(LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        }),
        mounts: c
            .mounts
            .iter()
            .map(|&i| Mount {
                host_path: PATHS[i].0.into(),
                container_path: "/mnt".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn pod_facts(c: &Case) -> spec::Facts {
    let [net, pid, ipc] = c.pod_host;
    spec::Facts {
        profile: c.policy.profile,
        namespace_privileged: c.policy.allow_privileged,
        network: c.policy.network,
        privileged: c.pod_privileged,
        root: false,
        userns: c.userns,
        // A privileged sandbox holds every capability.
        sys_admin: c.pod_privileged,
        net_admin: c.pod_privileged,
        host_network: net,
        host_pid: pid,
        host_ipc: ipc,
        no_new_privs: true,
        unconfined: false,
        sensitive_mount: false,
        unsafe_sysctl: c.sysctls.iter().any(|&i| !SYSCTLS[i].1),
    }
}

fn container_facts(c: &Case) -> spec::Facts {
    let cfg = container_config(c);
    let caps = cfg
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.capabilities.clone())
        .unwrap_or_default();
    let held = caps_held(
        &caps.add_capabilities,
        &caps.drop_capabilities,
        c.privileged,
    );
    let unconfined = c.privileged
        || match c.seccomp {
            0 => true,
            t @ 1..=3 => t == 2,
            p => SECCOMP_PATHS[p - 4] == "unconfined",
        };
    let pod = pod_facts(c);
    let [net, pid, ipc] = c.ctr_host;
    spec::Facts {
        privileged: c.privileged,
        root: c.uid.is_none_or(|u| u == 0),
        sys_admin: held.contains("SYS_ADMIN"),
        net_admin: held.contains("NET_ADMIN"),
        host_network: pod.host_network || net,
        host_pid: pod.host_pid || pid,
        host_ipc: pod.host_ipc || ipc,
        no_new_privs: c.no_new_privs,
        unconfined,
        sensitive_mount: c.mounts.iter().any(|&i| PATHS[i].1),
        ..pod
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn container_verdicts_follow_the_rules(c in case()) {
        let d = judge_container(&container_config(&c), &pod_config(&c), c.uid, c.policy, &protected())
            .unwrap();
        prop_assert_eq!(d.verdict, spec::expected(&container_facts(&c)), "{:?}", d.input);
        if d.verdict != Verdict::Allowed {
            prop_assert!(!d.cause.is_empty() && !d.cause.starts_with(' '), "{:?}", d);
        }
        // A denial names a rule, the subject and the profile.
        if let Some(m) = d.denial("container \"x\"", "ns") {
            prop_assert!(m.starts_with("gatekeeper: rule "), "{}", m);
            prop_assert!(m.contains("container \"x\" "), "{}", m);
            let tail = format!("; profile \"{}\" for namespace \"ns\"", c.policy.profile.as_str());
            prop_assert!(m.ends_with(&tail), "{}", m);
        }
    }

    #[test]
    fn pod_verdicts_follow_the_rules(c in case()) {
        let d = judge_pod(&pod_config(&c), c.policy, &protected()).unwrap();
        prop_assert_eq!(d.verdict, spec::expected(&pod_facts(&c)));
        if d.verdict != Verdict::Allowed {
            prop_assert!(!d.cause.is_empty() && !d.cause.starts_with(' '), "{:?}", d);
        }
    }
}
