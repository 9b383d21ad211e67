//! kubelet's CreateContainer requests, as the protobuf bytes it sends,
//! built into OCI runtime specs by vordr-spec (as CreateContainer builds
//! them). The rootfs is a small fixed one (/etc/passwd and /etc/group);
//! the pod's paths follow the sandbox config's namespace options; host
//! detection (cgroup v2, swap, hugetlb) is taken from bits of the sandbox
//! id so that both answers are exercised.
//!
//! Invariants beyond "no panic", for every spec built:
//! - it survives config.json: serialised and parsed back, it is equal;
//! - its root is the rootfs, read-only exactly when asked;
//! - process args are not empty, mount destinations are absolute;
//! - a privileged container is only built in a privileged sandbox, and an
//!   unprivileged one's device rules start by denying every device;
//! - the cgroup path and the CRI annotations name this container and pod.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use k8s_cri::v1::{CreateContainerRequest, NamespaceMode};
use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::Spec;
use prost::Message;
use vordr_spec::{annotations, build_spec, ImageConfig, PodPaths, SpecOptions, UserNamespace};

const ID: &str = "0123456789abcdef";

/// A rootfs, a pod directory and a seccomp profile root, made once.
fn fixture() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vordr-fuzz-spec-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
        std::fs::write(
            dir.join("rootfs/etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/sbin/nologin\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("rootfs/etc/group"),
            "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("pod")).unwrap();
        for f in ["resolv.conf", "hosts", "hostname"] {
            std::fs::write(dir.join("pod").join(f), "").unwrap();
        }
        std::fs::create_dir_all(dir.join("seccomp")).unwrap();
        std::fs::write(
            dir.join("seccomp/profile.json"),
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        dir
    })
}

fn check(spec: &Spec, req: &CreateContainerRequest, rootfs: &Path, parent: &str) {
    let config = req.config.as_ref().unwrap();
    let json = serde_json::to_vec(spec).expect("a spec serialises");
    let back: Spec = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "config.json does not parse back: {e}\n{}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(&back, spec, "config.json round trip");

    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    let root = spec.root().as_ref().expect("a root");
    assert_eq!(root.path(), rootfs);
    assert_eq!(root.readonly().unwrap_or(false), sc.readonly_rootfs);

    let process = spec.process().as_ref().expect("a process");
    assert!(!process.args().as_ref().is_none_or(|a| a.is_empty()));
    for m in spec.mounts().as_deref().unwrap_or_default() {
        assert!(
            m.destination().is_absolute(),
            "mount destination {:?}",
            m.destination()
        );
    }

    let linux = spec.linux().as_ref().expect("a linux section");
    let sandbox_privileged = req
        .sandbox_config
        .as_ref()
        .and_then(|s| s.linux.as_ref())
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged);
    assert!(!sc.privileged || sandbox_privileged);
    if !sc.privileged {
        let rules = linux
            .resources()
            .as_ref()
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        let first = rules.first().expect("device rules");
        assert!(!first.allow(), "{first:?}");
        assert_eq!(first.access().as_deref(), Some("rwm"), "{first:?}");
        assert!(
            first.major().is_none() && first.minor().is_none(),
            "{first:?}"
        );
    }
    // A slice parent (the systemd driver) gives runc's systemd form
    // `<slice>:cri-vordr:<id>`; any other parent `<parent>/vordr-<id>`.
    let last = parent.rsplit('/').next().unwrap_or_default();
    let want = if last.ends_with(".slice") {
        PathBuf::from(format!("{last}:cri-vordr:{ID}"))
    } else {
        Path::new(if parent.is_empty() { "/" } else { parent }).join(format!("vordr-{ID}"))
    };
    assert_eq!(linux.cgroups_path().as_deref(), Some(want.as_path()));
    let a = spec.annotations().as_ref().expect("annotations");
    assert_eq!(
        a.get(annotations::CONTAINER_NAME).map(String::as_str),
        Some(config.metadata.as_ref().unwrap().name.as_str())
    );
    assert_eq!(
        a.get(annotations::SANDBOX_ID).map(String::as_str),
        Some(req.pod_sandbox_id.as_str())
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = CreateContainerRequest::decode(data) else {
        return;
    };
    let Some(config) = req.config.as_ref() else {
        return;
    };
    let sandbox = req.sandbox_config.clone().unwrap_or_default();
    let dir = fixture();
    let rootfs = dir.join("rootfs");
    let pod_dir = dir.join("pod");

    let ns = sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    let node = NamespaceMode::Node as i32;
    let container_pid = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .map_or(NamespaceMode::Container as i32, |n| n.pid);
    let userns = ns
        .userns_options
        .as_ref()
        .filter(|u| u.mode == NamespaceMode::Pod as i32)
        .map(|u| UserNamespace {
            uid_mappings: u
                .uids
                .iter()
                .map(|m| (m.container_id, m.host_id, m.length))
                .collect(),
            gid_mappings: u
                .gids
                .iter()
                .map(|m| (m.container_id, m.host_id, m.length))
                .collect(),
            path: None,
        });
    let parent = sandbox
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    let pod = PodPaths {
        sandbox_id: req.pod_sandbox_id.clone(),
        netns: (ns.network != node).then(|| PathBuf::from("/proc/self/ns/net")),
        ipcns: (ns.ipc != node).then(|| PathBuf::from("/proc/self/ns/ipc")),
        utsns: (ns.network != node).then(|| PathBuf::from("/proc/self/ns/uts")),
        pid_ns_path: (container_pid == NamespaceMode::Pod as i32
            || container_pid == NamespaceMode::Target as i32)
            .then(|| PathBuf::from("/proc/self/ns/pid")),
        hostname: String::new(),
        resolv_conf: Some(pod_dir.join("resolv.conf")),
        hosts: Some(pod_dir.join("hosts")),
        hostname_file: Some(pod_dir.join("hostname")),
        shm: None,
        cgroup_parent: parent.clone(),
        userns,
    };
    let bits = req.pod_sandbox_id.len();
    let opts = SpecOptions {
        restrict_oom_score_adj: bits & 8 != 0,
        seccomp_profile_root: dir.join("seccomp"),
        cgroup_v2: Some(bits & 1 == 0),
        swap_controller: Some(bits & 2 == 0),
        hugetlb_controller: Some(bits & 4 == 0),
        host_paths: Vec::new(),
    };
    let image = ImageConfig {
        user: String::new(),
        env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
        entrypoint: vec![],
        cmd: vec!["/bin/sh".into()],
        working_dir: String::new(),
        stop_signal: String::new(),
        name: "docker.io/library/busybox:latest".into(),
    };
    if let Ok(built) = build_spec(ID, config, &sandbox, &image, &rootfs, &pod, &opts) {
        check(&built.spec, &req, &rootfs, &parent);
    }
});
