//! Property tests end to end: random CRI pod and container configs are
//! built into OCI specs by vordr-spec (as CreateContainer builds them) and
//! judged; the verdict must equal the rules of tests/spec applied to facts
//! this test reads off the CRI configs by itself (capabilities simulated
//! as name sets in containerd's order, paths, sysctls and keys from fixed
//! tables).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, Device, Int64Value, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, Mount, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    PortMapping, SeLinuxOption, SecurityProfile,
};
use proptest::prelude::*;
use vordr_gatekeeper::tables::{DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};
use vordr_gatekeeper::{
    judge_container, CapSet, Container, NamespacePolicy, NetworkMode, Node, Profile,
};

mod spec;

const POD_UID: &str = "pod-uid-1";

/// Sysctls, and whether each is safe.
const SYSCTLS: [(&str, bool); 6] = [
    ("kernel.shm_rmid_forced", true),
    ("net.ipv4.tcp_rmem", true),
    ("net/ipv4/tcp_syncookies", true),
    ("net.ipv4.ip_forward", false),
    ("kernel.msgmax", false),
    ("net.core.somaxconn", false),
];

const CAPS: [&str; 11] = [
    "ALL",
    "all",
    " SYS_ADMIN",
    "CAP_SYS_ADMIN",
    "net_admin",
    "NET_BIND_SERVICE",
    "CHOWN",
    "NET_RAW",
    "CAP_KILL",
    "sys_ptrace ",
    "DAC_READ_SEARCH",
];

const SELINUX_TYPES: [(&str, bool); 4] = [
    ("", true),
    ("container_t", true),
    ("container_engine_t", true),
    ("spc_t", false),
];

const UNIFIED: [(&str, bool); 3] = [
    ("memory.high", true),
    ("cgroup.procs", false),
    ("../memory.max", false),
];

/// The test's fixed host: kubelet's root with the pod's directory, a
/// directory outside it, a log root.
struct Host {
    kubelet: tempfile::TempDir,
    outside: tempfile::TempDir,
    logs: tempfile::TempDir,
    rootfs: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let h = Host {
            kubelet: tempfile::tempdir().unwrap(),
            outside: tempfile::tempdir().unwrap(),
            logs: tempfile::tempdir().unwrap(),
            rootfs: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(h.pod_dir().join("volumes/v")).unwrap();
        std::fs::create_dir_all(h.outside.path().join("data")).unwrap();
        h
    }

    fn pod_dir(&self) -> PathBuf {
        real(self.kubelet.path()).join("pods").join(POD_UID)
    }

    /// Host paths, and whether each is a host path volume to the rules.
    fn paths(&self) -> [(PathBuf, bool); 3] {
        [
            (self.pod_dir().join("volumes/v"), false),
            (real(self.outside.path()).join("data"), true),
            // Up and out of the pod's directory by `..`.
            (
                {
                    let vols = self.pod_dir().join("volumes");
                    let up = "../".repeat(vols.components().count() - 1);
                    vols.join(up)
                        .join(real(self.outside.path()).strip_prefix("/").unwrap())
                        .join("data")
                },
                true,
            ),
        ]
    }
}

fn real(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap()
}

/// Bare capability names this process holds (what ALL and privileged get).
fn own_caps() -> BTreeSet<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    (0..41)
        .filter(|n| mask & (1u64 << n) != 0)
        .map(|n| {
            vordr_gatekeeper::CAPABILITIES[n]
                .trim_start_matches("CAP_")
                .to_string()
        })
        .collect()
}

fn norm(s: &str) -> String {
    let u = s.trim().to_ascii_uppercase();
    u.strip_prefix("CAP_").unwrap_or(&u).to_string()
}

/// (held, added), simulated on names in containerd's order.
fn caps(add: &[&str], drop: &[&str], privileged: bool) -> (BTreeSet<String>, BTreeSet<String>) {
    let every = own_caps();
    let add: Vec<String> = add.iter().map(|s| norm(s)).collect();
    let drop: Vec<String> = drop.iter().map(|s| norm(s)).collect();
    let mut added: BTreeSet<String> = add.iter().filter(|c| *c != "ALL").cloned().collect();
    if add.iter().any(|c| c == "ALL") {
        added.extend(every.iter().cloned());
    }
    if privileged {
        return (every, added);
    }
    let mut held = spec::default_set();
    if add.iter().any(|c| c == "ALL") {
        held = every.clone();
    }
    if drop.iter().any(|c| c == "ALL") {
        held.clear();
    }
    held.extend(add.iter().filter(|c| *c != "ALL").cloned());
    for c in &drop {
        held.remove(c);
    }
    (held, added)
}

#[derive(Debug, Clone)]
struct Case {
    policy: NamespacePolicy,
    refuse_unconfined: bool,
    privileged: bool,
    host: [bool; 3],
    uid: Option<u32>,
    add: Vec<usize>,
    drop: Vec<usize>,
    no_new_privs: bool,
    /// 0: nothing; 1..=3: RuntimeDefault, Unconfined, Localhost-less.
    seccomp: usize,
    /// 0: nothing; 1: RuntimeDefault; 2: Unconfined.
    apparmor: usize,
    selinux: Option<(usize, bool)>,
    /// 0: no lists (kubelet's defaults apply); 1: kubelet's lists; 2: only
    /// /proc/kcore masked.
    masked: usize,
    mounts: Vec<usize>,
    host_port: bool,
    sysctls: Vec<usize>,
    device: bool,
    unified: Option<usize>,
    log_outside: bool,
}

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
        (0u32..0x7fff_ffff).prop_map(Some)
    ];
    (
        (profile, network, any::<bool>(), any::<bool>()),
        (any::<bool>(), any::<[bool; 3]>(), uid, any::<bool>()),
        (
            proptest::collection::vec(0..CAPS.len(), 0..3),
            proptest::collection::vec(0..CAPS.len(), 0..3),
        ),
        (
            0..3usize,
            0..3usize,
            proptest::option::of((0..SELINUX_TYPES.len(), any::<bool>())),
            0..3usize,
        ),
        (
            proptest::collection::vec(0..3usize, 0..3),
            any::<bool>(),
            proptest::collection::vec(0..SYSCTLS.len(), 0..3),
        ),
        (
            any::<bool>(),
            proptest::option::of(0..UNIFIED.len()),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (profile, network, allow_privileged, refuse_unconfined),
                (privileged, host, uid, no_new_privs),
                (add, drop),
                (seccomp, apparmor, selinux, masked),
                (mounts, host_port, sysctls),
                (device, unified, log_outside),
            )| Case {
                policy: NamespacePolicy {
                    profile,
                    network,
                    allow_privileged,
                },
                refuse_unconfined,
                privileged,
                host,
                uid,
                add,
                drop,
                no_new_privs,
                seccomp,
                apparmor,
                selinux,
                masked,
                mounts,
                host_port,
                sysctls,
                device,
                unified,
                log_outside,
            },
        )
}

fn pod_config(c: &Case) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "p".into(),
            uid: POD_UID.into(),
            namespace: "ns".into(),
            attempt: 0,
        }),
        port_mappings: if c.host_port {
            vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                ..Default::default()
            }]
        } else {
            vec![]
        },
        linux: Some(LinuxPodSandboxConfig {
            sysctls: c
                .sysctls
                .iter()
                .map(|&i| (SYSCTLS[i].0.to_string(), "1".to_string()))
                .collect(),
            security_context: Some(LinuxSandboxSecurityContext {
                privileged: c.privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(c: &Case, h: &Host) -> ContainerConfig {
    let profile = |t: i32| SecurityProfile {
        profile_type: t,
        localhost_ref: String::new(),
    };
    let node = |b: bool| if b { 2 } else { 0 };
    let paths = h.paths();
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        command: vec!["sh".into()],
        mounts: c
            .mounts
            .iter()
            .enumerate()
            .map(|(n, &i)| Mount {
                host_path: paths[i].0.display().to_string(),
                container_path: format!("/m{n}"),
                ..Default::default()
            })
            .collect(),
        devices: if c.device {
            vec![Device {
                host_path: "/dev/null".into(),
                container_path: "/dev/x".into(),
                permissions: "rw".into(),
            }]
        } else {
            vec![]
        },
        linux: Some(LinuxContainerConfig {
            resources: c.unified.map(|i| LinuxContainerResources {
                unified: [(UNIFIED[i].0.to_string(), "1".to_string())].into(),
                ..Default::default()
            }),
            security_context: Some(LinuxContainerSecurityContext {
                privileged: c.privileged,
                namespace_options: Some(NamespaceOption {
                    network: node(c.host[0]),
                    pid: node(c.host[1]),
                    ipc: node(c.host[2]),
                    ..Default::default()
                }),
                run_as_user: c.uid.map(|u| Int64Value { value: u as i64 }),
                capabilities: Some(Capability {
                    add_capabilities: c.add.iter().map(|&i| CAPS[i].to_string()).collect(),
                    drop_capabilities: c.drop.iter().map(|&i| CAPS[i].to_string()).collect(),
                    ..Default::default()
                }),
                no_new_privs: c.no_new_privs,
                seccomp: match c.seccomp {
                    1 => Some(profile(0)),
                    2 => Some(profile(1)),
                    _ => None,
                },
                apparmor: match c.apparmor {
                    1 => Some(profile(0)),
                    2 => Some(profile(1)),
                    _ => None,
                },
                selinux_options: c.selinux.map(|(t, user)| SeLinuxOption {
                    user: if user {
                        "system_u".into()
                    } else {
                        String::new()
                    },
                    r#type: SELINUX_TYPES[t].0.into(),
                    level: "s0".into(),
                    ..Default::default()
                }),
                masked_paths: match c.masked {
                    1 => DEFAULT_MASKED_PATHS.map(String::from).to_vec(),
                    2 => vec!["/proc/kcore".into()],
                    _ => vec![],
                },
                readonly_paths: match c.masked {
                    1 => DEFAULT_READONLY_PATHS.map(String::from).to_vec(),
                    _ => vec![],
                },
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// The facts, read off the CRI configs alone.
fn facts(c: &Case, h: &Host) -> spec::Facts {
    let add: Vec<&str> = c.add.iter().map(|&i| CAPS[i]).collect();
    let drop: Vec<&str> = c.drop.iter().map(|&i| CAPS[i]).collect();
    let (held, added) = caps(&add, &drop, c.privileged);
    let paths = h.paths();
    spec::Facts {
        profile: c.policy.profile,
        namespace_privileged: c.policy.allow_privileged,
        network: c.policy.network,
        refuse_unconfined: c.refuse_unconfined,
        privileged: c.privileged,
        held,
        added,
        root: c.uid.unwrap_or(0) == 0,
        userns: false,
        maps_host_root: false,
        host_network: c.host[0],
        host_pid: c.host[1],
        host_ipc: c.host[2],
        no_new_privs: c.no_new_privs,
        unconfined_seccomp: c.privileged || c.seccomp != 1,
        unconfined_apparmor: c.apparmor == 2,
        custom_selinux: c
            .selinux
            .is_some_and(|(t, user)| user || !SELINUX_TYPES[t].1),
        // A privileged container gets no masked paths at all; no lists
        // get kubelet's (these pods have no user namespace).
        proc_unmasked: c.privileged || c.masked == 2,
        host_path: c.mounts.iter().any(|&i| paths[i].1),
        host_port: c.host_port,
        unsafe_sysctl: c.sysctls.iter().any(|&i| !SYSCTLS[i].1),
        // A privileged container gets the host's devices.
        devices: c.device || c.privileged,
        bad_unified_key: c.unified.is_some_and(|i| !UNIFIED[i].1),
        log_outside: c.log_outside,
    }
}

fn judge(c: &Case, h: &Host) -> vordr_gatekeeper::Verdict {
    let pod = pod_config(c);
    let cfg = container_config(c, h);
    let held: Vec<PathBuf> = cfg
        .mounts
        .iter()
        .map(|m| real(Path::new(&m.host_path)))
        .collect();
    let paths = vordr_spec::PodPaths {
        sandbox_id: "s".into(),
        netns: (!c.host[0]).then(|| PathBuf::from("/proc/self/ns/net")),
        ipcns: (!c.host[2]).then(|| PathBuf::from("/proc/self/ns/ipc")),
        utsns: Some(PathBuf::from("/proc/self/ns/uts")),
        ..Default::default()
    };
    let opts = vordr_spec::SpecOptions {
        host_paths: held,
        cgroup_v2: Some(false),
        ..Default::default()
    };
    let built = vordr_spec::build_spec(
        "0123456789ab",
        &cfg,
        &pod,
        &vordr_spec::ImageConfig::default(),
        h.rootfs.path(),
        &paths,
        &opts,
    )
    .unwrap_or_else(|e| panic!("building {c:?}: {e}"));
    let log = if c.log_outside {
        PathBuf::from("/etc/c.log")
    } else {
        real(h.logs.path()).join("c.log")
    };
    let node = Node::new(h.kubelet.path(), h.logs.path(), c.refuse_unconfined);
    let d = judge_container(
        &Container {
            spec: &built.spec,
            privileged: c.privileged,
            added: CapSet::of(&built.added_capabilities).unwrap(),
            pod: &pod,
            pod_files: &[],
            log_path: Some(&log),
        },
        c.policy,
        &node,
    )
    .unwrap();
    d.verdict
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn built_specs_are_judged_as_their_configs_say(c in case()) {
        let h = Host::new();
        let mut f = facts(&c, &h);
        f.refuse_unconfined = c.refuse_unconfined;
        prop_assert_eq!(judge(&c, &h), spec::expected(&f), "{:?}", c);
    }
}

#[test]
fn the_readme_bypasses_are_each_refused_under_baseline() {
    let h = Host::new();
    let base = Case {
        policy: NamespacePolicy {
            profile: Profile::Baseline,
            network: NetworkMode::Default,
            allow_privileged: false,
        },
        refuse_unconfined: false,
        privileged: false,
        host: [false; 3],
        uid: Some(0),
        add: vec![],
        drop: vec![],
        no_new_privs: false,
        seccomp: 1,
        apparmor: 0,
        selinux: None,
        masked: 0,
        mounts: vec![],
        host_port: false,
        sysctls: vec![],
        device: false,
        unified: None,
        log_outside: false,
    };
    assert_eq!(judge(&base, &h), vordr_gatekeeper::Verdict::Allowed);
    let rule = |c: Case| match judge(&c, &h) {
        vordr_gatekeeper::Verdict::Denied(r) => r.0,
        v => panic!("{v:?} for {c:?}"),
    };
    // " SYS_ADMIN" (index 2), SYS_PTRACE, DAC_READ_SEARCH, NET_RAW added.
    for i in [2, 9, 10, 7] {
        assert_eq!(
            rule(Case {
                add: vec![i],
                ..base.clone()
            }),
            2,
            "{}",
            CAPS[i]
        );
    }
    assert_eq!(
        rule(Case {
            mounts: vec![1],
            ..base.clone()
        }),
        5
    );
    assert_eq!(
        rule(Case {
            mounts: vec![2],
            ..base.clone()
        }),
        5
    );
    assert_eq!(
        rule(Case {
            masked: 2,
            ..base.clone()
        }),
        9
    );
    assert_eq!(
        rule(Case {
            device: true,
            ..base.clone()
        }),
        14
    );
    assert_eq!(
        rule(Case {
            apparmor: 2,
            ..base.clone()
        }),
        7
    );
    assert_eq!(
        rule(Case {
            unified: Some(1),
            ..base.clone()
        }),
        15
    );
}
