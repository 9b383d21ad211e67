//! End-to-end checks of `build_spec` against a temporary rootfs.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use k8s_cri::v1::security_profile::ProfileType;
use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, Device, ImageSpec, Int64Value, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, MountPropagation, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, SecurityProfile,
};
use oci_spec::runtime::{Capability as OciCap, LinuxNamespaceType, LinuxSeccompAction, Spec};
use vordr_spec::{
    annotations, build_spec, default_capabilities, default_seccomp, Built, ImageConfig, PodPaths,
    SpecError, SpecOptions, UserNamespace,
};

struct Fixture {
    _dir: tempfile::TempDir,
    rootfs: PathBuf,
    pod: PodPaths,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = dir.path().join("rootfs");
    fs::create_dir_all(rootfs.join("etc")).expect("etc");
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n",
    )
    .expect("passwd");
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nweb:x:33:web\nlog:x:4:web\nshadow:x:42:\n",
    )
    .expect("group");
    let poddir = dir.path().join("pod");
    fs::create_dir_all(poddir.join("shm")).expect("shm");
    for f in ["hosts", "resolv.conf", "hostname"] {
        fs::write(poddir.join(f), "x\n").expect("pod file");
    }
    let pod = PodPaths {
        sandbox_id: "sandbox-1".into(),
        netns: Some("/var/run/netns/cni-1".into()),
        ipcns: Some("/proc/4242/ns/ipc".into()),
        utsns: Some("/proc/4242/ns/uts".into()),
        pid_ns_path: None,
        hostname: "web-0".into(),
        resolv_conf: Some(poddir.join("resolv.conf")),
        hosts: Some(poddir.join("hosts")),
        hostname_file: Some(poddir.join("hostname")),
        shm: Some(poddir.join("shm")),
        cgroup_parent: "/kubepods/besteffort/pod123".into(),
        userns: None,
    };
    Fixture {
        _dir: dir,
        rootfs,
        pod,
    }
}

fn config(sc: LinuxContainerSecurityContext) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "sha256:abc".into(),
            user_specified_image: "nginx:1.25".into(),
            ..Default::default()
        }),
        envs: vec![KeyValue {
            key: "MODE".into(),
            value: "prod".into(),
        }],
        annotations: HashMap::from([("example.com/a".to_string(), "1".to_string())]),
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                cpu_shares: 2,
                oom_score_adj: 1000,
                ..Default::default()
            }),
            security_context: Some(sc),
        }),
        ..Default::default()
    }
}

fn sandbox(privileged: bool) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web-0".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "sandbox-hostname".into(),
        linux: Some(LinuxPodSandboxConfig {
            sysctls: HashMap::from([("net.ipv4.ip_forward".to_string(), "1".to_string())]),
            security_context: Some(LinuxSandboxSecurityContext {
                privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn image() -> ImageConfig {
    ImageConfig {
        user: "web".into(),
        env: vec!["PATH=/usr/bin:/bin".into(), "MODE=dev".into()],
        entrypoint: vec!["/docker-entrypoint.sh".into()],
        cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
        working_dir: "/var/www".into(),
        stop_signal: "SIGQUIT".into(),
        name: String::new(),
    }
}

fn opts() -> SpecOptions {
    SpecOptions {
        cgroup_v2: Some(false),
        swap_controller: Some(true),
        hugetlb_controller: Some(true),
        ..Default::default()
    }
}

fn build(
    f: &Fixture,
    config: &ContainerConfig,
    sandbox: &PodSandboxConfig,
) -> Result<Built, SpecError> {
    build_spec("c1", config, sandbox, &image(), &f.rootfs, &f.pod, &opts())
}

fn mount_dests(spec: &Spec) -> Vec<String> {
    spec.mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().to_string_lossy().into_owned())
        .collect()
}

fn field_of(err: &SpecError) -> String {
    match err {
        SpecError::InvalidArgument { field, .. } => field.clone(),
        other => panic!("expected InvalidArgument, got {other}"),
    }
}

#[test]
fn typical_container() {
    let f = fixture();
    let built = build(
        &f,
        &config(LinuxContainerSecurityContext::default()),
        &sandbox(false),
    )
    .expect("spec");
    assert_eq!(built.stop_signal, "SIGQUIT");
    let spec = &built.spec;
    assert_eq!(spec.version(), "1.0.2-dev");
    assert_eq!(spec.hostname(), &None);
    let root = spec.root().as_ref().expect("root");
    assert_eq!(root.path(), &f.rootfs);
    assert_eq!(root.readonly(), None);

    let process = spec.process().as_ref().expect("process");
    assert_eq!(
        process.args().as_deref(),
        Some(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"].map(String::from)[..])
    );
    assert_eq!(
        process.env().as_deref(),
        Some(&["PATH=/usr/bin:/bin", "HOSTNAME=web-0", "MODE=prod"].map(String::from)[..])
    );
    assert_eq!(process.cwd(), Path::new("/var/www"));
    assert_eq!(process.terminal(), Some(false));
    assert_eq!(process.user().uid(), 33);
    assert_eq!(process.user().gid(), 33);
    assert_eq!(
        process.user().additional_gids().as_deref(),
        Some(&[4, 33][..])
    );
    assert_eq!(process.rlimits(), &None);
    assert_eq!(process.no_new_privileges(), Some(false));
    assert_eq!(process.oom_score_adj(), Some(1000));
    assert_eq!(process.apparmor_profile(), &None);
    let caps = process.capabilities().as_ref().expect("caps");
    assert_eq!(caps.bounding().as_ref().map(|c| c.len()), Some(14));
    assert!(caps
        .bounding()
        .as_ref()
        .is_some_and(|c| c.contains(&OciCap::NetRaw)));
    assert_eq!(caps.ambient().as_ref().map(|c| c.len()), Some(0));
    assert_eq!(caps.inheritable().as_ref().map(|c| c.len()), Some(0));

    let ann = spec.annotations().as_ref().expect("annotations");
    let get = |k: &str| ann.get(k).map(String::as_str);
    assert_eq!(get(annotations::CONTAINER_TYPE), Some("container"));
    assert_eq!(get(annotations::SANDBOX_ID), Some("sandbox-1"));
    assert_eq!(get(annotations::SANDBOX_NAMESPACE), Some("default"));
    assert_eq!(get(annotations::SANDBOX_UID), Some("uid-1"));
    assert_eq!(get(annotations::SANDBOX_NAME), Some("web-0"));
    assert_eq!(get(annotations::CONTAINER_NAME), Some("app"));
    assert_eq!(get(annotations::IMAGE_NAME), Some("nginx:1.25"));
    assert_eq!(get("example.com/a"), Some("1"));

    assert_eq!(
        mount_dests(spec),
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/dev/shm"
        ]
    );

    let linux = spec.linux().as_ref().expect("linux");
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/kubepods/besteffort/pod123/vordr-c1"))
    );
    let ns: Vec<(LinuxNamespaceType, Option<PathBuf>)> = linux
        .namespaces()
        .iter()
        .flatten()
        .map(|n| (n.typ(), n.path().clone()))
        .collect();
    assert_eq!(
        ns,
        vec![
            (LinuxNamespaceType::Pid, None),
            (LinuxNamespaceType::Ipc, Some("/proc/4242/ns/ipc".into())),
            (LinuxNamespaceType::Uts, Some("/proc/4242/ns/uts".into())),
            (LinuxNamespaceType::Mount, None),
            (
                LinuxNamespaceType::Network,
                Some("/var/run/netns/cni-1".into())
            ),
        ]
    );
    let res = linux.resources().as_ref().expect("resources");
    let devices = res.devices().as_ref().expect("device rules");
    assert_eq!(devices.len(), 1);
    assert!(!devices[0].allow());
    assert_eq!(devices[0].access().as_deref(), Some("rwm"));
    assert_eq!(res.cpu().as_ref().and_then(|c| c.shares()), Some(2));
    assert!(res.pids().is_none());
    assert_eq!(linux.devices(), &None);
    // No lists asked for: kubelet's defaults (CRI-O's choice; containerd
    // 1.6 would leave /proc unmasked).
    let masked = linux.masked_paths().as_ref().expect("masked paths");
    assert_eq!(masked.len(), vordr_spec::DEFAULT_MASKED_PATHS.len());
    assert!(masked.contains(&"/proc/kcore".to_string()));
    let readonly = linux.readonly_paths().as_ref().expect("readonly paths");
    assert!(readonly.contains(&"/proc/sys".to_string()));
    assert_eq!(
        linux.seccomp(),
        &None,
        "no profile asked: unconfined like containerd 1.6"
    );
    assert_eq!(linux.uid_mappings(), &None);
    assert_eq!(
        linux
            .sysctl()
            .as_ref()
            .and_then(|s| s.get("net.ipv4.ip_forward"))
            .map(String::as_str),
        Some("1")
    );
}

#[test]
fn serde_round_trip() {
    let f = fixture();
    let mut sc = LinuxContainerSecurityContext {
        seccomp: Some(SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        }),
        readonly_rootfs: true,
        masked_paths: vec!["/proc/kcore".into()],
        readonly_paths: vec!["/proc/sys".into()],
        ..Default::default()
    };
    sc.capabilities = Some(Capability {
        add_capabilities: vec!["NET_ADMIN".into()],
        ..Default::default()
    });
    let mut cfg = config(sc);
    cfg.devices = vec![Device {
        container_path: "/dev/xnull".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    let mut pod = f.pod.clone();
    pod.userns = Some(UserNamespace {
        uid_mappings: vec![(0, 100_000, 65_536)],
        gid_mappings: vec![(0, 100_000, 65_536)],
        path: None,
    });
    let built = build_spec(
        "c1",
        &cfg,
        &sandbox(false),
        &image(),
        &f.rootfs,
        &pod,
        &opts(),
    )
    .expect("spec");
    let json = serde_json::to_string(&built.spec).expect("serialize");
    let back: Spec = serde_json::from_str(&json).expect("parse back");
    assert_eq!(back, built.spec);

    // A few JSON shapes runtimes rely on.
    let v: serde_json::Value = serde_json::from_str(&json).expect("value");
    assert_eq!(v["ociVersion"], "1.0.2-dev");
    assert_eq!(v["root"]["readonly"], true);
    assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(v["linux"]["maskedPaths"][0], "/proc/kcore");
    assert_eq!(v["linux"]["readonlyPaths"][0], "/proc/sys");
    assert_eq!(v["linux"]["uidMappings"][0]["hostID"], 100_000);
    assert_eq!(v["linux"]["devices"][0]["path"], "/dev/xnull");
    assert_eq!(v["linux"]["resources"]["devices"][1]["access"], "rw");
    assert_eq!(v["process"]["user"]["additionalGids"][0], 4);
    assert!(v["process"].get("rlimits").is_none());
    assert!(v.get("hostname").is_none());
    // Read-only rootfs makes the pod files read-only too, not /dev/shm.
    let opts_of = |dst: &str| {
        v["mounts"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["destination"] == dst))
            .map(|m| m["options"].clone())
    };
    assert_eq!(
        opts_of("/etc/hosts"),
        Some(serde_json::json!(["rbind", "rprivate", "ro"]))
    );
    assert_eq!(
        opts_of("/dev/shm"),
        Some(serde_json::json!(["rbind", "rprivate", "rw"]))
    );
}

#[test]
fn privileged_container() {
    let f = fixture();
    let sc = LinuxContainerSecurityContext {
        privileged: true,
        masked_paths: vec!["/proc/kcore".into()],
        readonly_paths: vec!["/proc/sys".into()],
        seccomp: Some(SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        }),
        capabilities: Some(Capability {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let cfg = config(sc);
    let err = build(&f, &cfg, &sandbox(false)).unwrap_err();
    assert_eq!(field_of(&err), "linux.security_context.privileged");

    let built = build(&f, &cfg, &sandbox(true)).expect("privileged");
    let spec = &built.spec;
    let linux = spec.linux().as_ref().expect("linux");
    assert_eq!(linux.seccomp(), &None);
    assert_eq!(linux.masked_paths(), &None);
    assert_eq!(linux.readonly_paths(), &None);
    let rules = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .expect("rules");
    assert_eq!(rules.len(), 1);
    assert!(rules[0].allow());
    assert!(linux
        .devices()
        .iter()
        .flatten()
        .any(|d| d.path() == Path::new("/dev/null")));
    let caps = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().clone())
        .and_then(|c| c.bounding().clone())
        .expect("caps");
    // Privileged gets every capability this process has (CapEff), like containerd.
    let status = fs::read_to_string("/proc/self/status").expect("status");
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("CapEff");
    assert_eq!(caps.len() as u32, (cap_eff & ((1 << 41) - 1)).count_ones());
    let mount_opts = |dst: &str| {
        spec.mounts()
            .iter()
            .flatten()
            .find(|m| m.destination() == Path::new(dst))
            .and_then(|m| m.options().clone())
            .unwrap_or_default()
    };
    assert!(mount_opts("/sys").contains(&"rw".to_string()));
    assert!(mount_opts("/sys/fs/cgroup").contains(&"rw".to_string()));
}

#[test]
fn runtime_default_seccomp_follows_capabilities() {
    let f = fixture();
    let sc = |add: &[&str]| LinuxContainerSecurityContext {
        seccomp: Some(SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        }),
        capabilities: Some(Capability {
            add_capabilities: add.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let allows = |built: &Built, name: &str| {
        built
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().clone())
            .and_then(|s| s.syscalls().clone())
            .unwrap_or_default()
            .iter()
            .any(|s| {
                s.action() == LinuxSeccompAction::ScmpActAllow
                    && s.args().is_none()
                    && s.names().iter().any(|n| n == name)
            })
    };
    let plain = build(&f, &config(sc(&[])), &sandbox(false)).expect("plain");
    assert!(!allows(&plain, "mount"));
    assert_eq!(
        plain
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().clone()),
        Some(default_seccomp())
    );
    let admin = build(&f, &config(sc(&["CAP_SYS_ADMIN"])), &sandbox(false)).expect("admin");
    assert!(allows(&admin, "mount"));
}

#[test]
fn invalid_arguments_name_their_field() {
    let f = fixture();
    let sc = LinuxContainerSecurityContext::default();

    let mut cfg = config(sc.clone());
    cfg.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: "/nope".into(),
        ..Default::default()
    }];
    let err = build(&f, &cfg, &sandbox(false)).unwrap_err();
    assert_eq!(err.to_string(), "mounts[0].host_path: /nope does not exist");

    let mut cfg = config(sc.clone());
    cfg.devices = vec![Device {
        container_path: "/dev/x".into(),
        host_path: f.rootfs.join("etc/passwd").to_string_lossy().into_owned(),
        permissions: "rwm".into(),
    }];
    assert_eq!(
        field_of(&build(&f, &cfg, &sandbox(false)).unwrap_err()),
        "devices[0].host_path"
    );

    let cfg = config(LinuxContainerSecurityContext {
        seccomp: Some(SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: "/nowhere/profile.json".into(),
        }),
        ..Default::default()
    });
    assert_eq!(
        field_of(&build(&f, &cfg, &sandbox(false)).unwrap_err()),
        "linux.security_context.seccomp.localhost_ref"
    );

    let cfg = config(LinuxContainerSecurityContext {
        run_as_username: "nobody-at-all".into(),
        ..Default::default()
    });
    assert_eq!(
        field_of(&build(&f, &cfg, &sandbox(false)).unwrap_err()),
        "linux.security_context.run_as_username"
    );

    let cfg = config(LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: vec!["WINGS".into()],
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        field_of(&build(&f, &cfg, &sandbox(false)).unwrap_err()),
        "linux.security_context.capabilities.add_capabilities[0]"
    );

    let mut cfg = config(sc.clone());
    cfg.metadata = None;
    assert_eq!(
        field_of(&build(&f, &cfg, &sandbox(false)).unwrap_err()),
        "metadata"
    );

    let cfg = config(sc);
    let empty_image = ImageConfig::default();
    let err = build_spec(
        "c1",
        &cfg,
        &sandbox(false),
        &empty_image,
        &f.rootfs,
        &f.pod,
        &opts(),
    )
    .unwrap_err();
    assert_eq!(field_of(&err), "command");
}

#[test]
fn cri_user_and_host_namespaces() {
    let f = fixture();
    let sc = LinuxContainerSecurityContext {
        run_as_user: Some(Int64Value { value: 0 }),
        run_as_group: Some(Int64Value { value: 42 }),
        supplemental_groups: vec![1000],
        no_new_privs: true,
        namespace_options: Some(NamespaceOption {
            network: NamespaceMode::Node as i32,
            pid: NamespaceMode::Node as i32,
            ipc: NamespaceMode::Node as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut pod = f.pod.clone();
    pod.netns = None;
    pod.ipcns = None;
    pod.utsns = None;
    let mut cfg = config(sc);
    cfg.tty = true;
    cfg.command = vec!["/bin/sh".into()];
    let built = build_spec(
        "c1",
        &cfg,
        &sandbox(false),
        &image(),
        &f.rootfs,
        &pod,
        &opts(),
    )
    .expect("spec");
    let process = built.spec.process().as_ref().expect("process");
    assert_eq!(
        process.args().as_deref(),
        Some(&["/bin/sh".to_string()][..])
    );
    assert_eq!((process.user().uid(), process.user().gid()), (0, 42));
    assert_eq!(
        process.user().additional_gids().as_deref(),
        Some(&[42, 1000][..])
    );
    assert_eq!(process.no_new_privileges(), Some(true));
    assert_eq!(process.terminal(), Some(true));
    assert!(process.env().iter().flatten().any(|e| e == "TERM=xterm"));
    let types: Vec<_> = built
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|n| n.typ())
        .collect();
    assert_eq!(types, vec![LinuxNamespaceType::Mount]);
    let shm = built
        .spec
        .mounts()
        .iter()
        .flatten()
        .find(|m| m.destination() == Path::new("/dev/shm"))
        .and_then(|m| m.source().clone());
    assert_eq!(shm, Some(PathBuf::from("/dev/shm")));
}

#[test]
fn cgroup_v2_adds_a_cgroup_namespace_unless_privileged() {
    let f = fixture();
    let v2 = SpecOptions {
        cgroup_v2: Some(true),
        ..opts()
    };
    let has_cgroup_ns = |b: &Built| {
        b.spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default()
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Cgroup)
    };
    let cfg = config(LinuxContainerSecurityContext::default());
    let b = build_spec(
        "c1",
        &cfg,
        &sandbox(false),
        &image(),
        &f.rootfs,
        &f.pod,
        &v2,
    )
    .expect("v2");
    assert!(has_cgroup_ns(&b));
    let b = build_spec(
        "c1",
        &cfg,
        &sandbox(false),
        &image(),
        &f.rootfs,
        &f.pod,
        &opts(),
    )
    .expect("v1");
    assert!(!has_cgroup_ns(&b));
    let cfg = config(LinuxContainerSecurityContext {
        privileged: true,
        ..Default::default()
    });
    let b = build_spec("c1", &cfg, &sandbox(true), &image(), &f.rootfs, &f.pod, &v2).expect("priv");
    assert!(!has_cgroup_ns(&b));
}

#[test]
fn oom_score_adj_is_restricted_to_ours() {
    let f = fixture();
    let mut cfg = config(LinuxContainerSecurityContext::default());
    if let Some(r) = cfg.linux.as_mut().and_then(|l| l.resources.as_mut()) {
        r.oom_score_adj = -1000;
    }
    let ours: i32 = fs::read_to_string("/proc/self/oom_score_adj")
        .expect("read")
        .trim()
        .parse()
        .expect("number");
    let restricted = SpecOptions {
        restrict_oom_score_adj: true,
        ..opts()
    };
    let b = build_spec(
        "c1",
        &cfg,
        &sandbox(false),
        &image(),
        &f.rootfs,
        &f.pod,
        &restricted,
    )
    .expect("spec");
    assert_eq!(
        b.spec.process().as_ref().and_then(|p| p.oom_score_adj()),
        Some(ours.max(-1000))
    );
    let b = build(&f, &cfg, &sandbox(false)).expect("spec");
    assert_eq!(
        b.spec.process().as_ref().and_then(|p| p.oom_score_adj()),
        Some(-1000)
    );
}

#[test]
fn bidirectional_mount_needs_a_shared_source() {
    let f = fixture();
    let mut cfg = config(LinuxContainerSecurityContext::default());
    cfg.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: f.rootfs.to_string_lossy().into_owned(),
        propagation: MountPropagation::PropagationBidirectional as i32,
        ..Default::default()
    }];
    // Whether the temp dir's mount is shared depends on this machine: work it
    // out the same way and check build_spec agrees.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let source = f.rootfs.canonicalize().expect("canonical");
    let shared = mountinfo
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let sep = fields.iter().position(|x| *x == "-")?;
            Some((fields.get(4)?.to_string(), fields.get(6..sep)?.join(" ")))
        })
        .filter(|(mp, _)| source.starts_with(mp))
        .max_by_key(|(mp, _)| mp.len())
        .is_some_and(|(_, opt)| opt.contains("shared:"));
    match build(&f, &cfg, &sandbox(false)) {
        Ok(b) => {
            assert!(shared, "accepted a non-shared source");
            let linux = b.spec.linux().as_ref().expect("linux");
            assert_eq!(linux.rootfs_propagation().as_deref(), Some("rshared"));
        }
        Err(e) => {
            assert!(!shared, "refused a shared source: {e}");
            assert_eq!(field_of(&e), "mounts[0].propagation");
        }
    }
}

#[test]
fn defaults_exported() {
    assert_eq!(default_capabilities().len(), 14);
    assert_eq!(
        default_seccomp().default_action(),
        LinuxSeccompAction::ScmpActErrno
    );
    let o = SpecOptions::default();
    assert_eq!(
        o.seccomp_profile_root,
        PathBuf::from("/var/lib/kubelet/seccomp")
    );
    assert!(!o.restrict_oom_score_adj);
}
