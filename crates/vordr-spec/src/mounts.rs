//! The container's mounts: containerd's defaults, the pod's files
//! (/etc/hostname, /etc/hosts, /etc/resolv.conf, /dev/shm) and the CRI
//! mounts, merged and ordered as containerd's `WithMounts` does.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use k8s_cri::v1::{ContainerConfig, LinuxContainerSecurityContext, MountPropagation};
use oci_spec::runtime::Mount;
use vordr_mountinfo::MountInfo;

use crate::{invalid, io_error, PodPaths, SpecError};

const DEV_SHM: &str = "/dev/shm";
const ETC_HOSTNAME: &str = "/etc/hostname";
const ETC_HOSTS: &str = "/etc/hosts";
const ETC_RESOLV_CONF: &str = "/etc/resolv.conf";

/// What [`plan`] decided.
#[derive(Debug)]
pub(crate) struct MountPlan {
    pub mounts: Vec<Mount>,
    /// "rshared" or "rslave" when a CRI mount needs propagation from the host.
    pub rootfs_propagation: Option<String>,
}

/// A bind mount to add, from the CRI or from the pod.
#[derive(Debug, Clone)]
struct BindRequest {
    container_path: String,
    /// Host path with symlinks resolved.
    source: PathBuf,
    readonly: bool,
    /// Read-only all the way down: submounts of the source too (`rro`).
    recursive_readonly: bool,
    propagation: i32,
    /// Index in the CRI `mounts` list; `None` for the pod's own files.
    cri_index: Option<usize>,
}

/// containerd's default mounts (without /run), plus the cgroup filesystem.
pub(crate) fn default_mounts() -> Vec<Mount> {
    [
        ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"][..]),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        (
            DEV_SHM,
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        (
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        (
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        (
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
    .into_iter()
    .map(|(dst, typ, src, options)| mount(dst, typ, src, options))
    .collect()
}

fn mount(dst: &str, typ: &str, src: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dst));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(src)));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// Builds the mount list of a container.
pub(crate) fn plan(
    config: &ContainerConfig,
    sc: &LinuxContainerSecurityContext,
    pod: &PodPaths,
    privileged: bool,
    host_paths: &[PathBuf],
) -> Result<MountPlan, SpecError> {
    let mountinfo = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| io_error("reading /proc/self/mountinfo", e))
    };
    plan_with(config, sc, pod, privileged, host_paths, mountinfo)
}

fn plan_with(
    config: &ContainerConfig,
    sc: &LinuxContainerSecurityContext,
    pod: &PodPaths,
    privileged: bool,
    host_paths: &[PathBuf],
    mountinfo: impl Fn() -> Result<String, SpecError>,
) -> Result<MountPlan, SpecError> {
    let mut binds = cri_binds(config, host_paths)?;
    let cri_dests: HashSet<String> = binds
        .iter()
        .map(|b| clean_path(&b.container_path))
        .collect();
    for extra in pod_binds(sc, pod)? {
        if !cri_dests.contains(&clean_path(&extra.container_path)) {
            binds.push(extra);
        }
    }
    // Parents before children; stable, so equal depths keep their order.
    binds.sort_by_key(|b| depth(&b.container_path));

    let dests: HashSet<String> = binds
        .iter()
        .map(|b| clean_path(&b.container_path))
        .collect();
    let dev_replaced = dests.contains("/dev");
    let mut mounts: Vec<Mount> = default_mounts()
        .into_iter()
        .filter(|m| {
            let dst = clean_path(&m.destination().to_string_lossy());
            let under_replaced_dev = dev_replaced && dst.starts_with("/dev/");
            !dests.contains(&dst) && !under_replaced_dev
        })
        .map(|m| if privileged { writable_kernel_fs(m) } else { m })
        .collect();

    let mut rootfs_propagation: Option<String> = None;
    let mut table: Option<Vec<MountInfo>> = None;
    for b in binds {
        let propagation = match MountPropagation::try_from(b.propagation) {
            Ok(MountPropagation::PropagationBidirectional) => {
                let info = lookup_cached(&mut table, &mountinfo, &b.source)?;
                if !info.is_shared() {
                    return Err(propagation_error(&b, &info.mount_point, "a shared"));
                }
                rootfs_propagation = Some("rshared".to_string());
                "rshared"
            }
            Ok(MountPropagation::PropagationHostToContainer) => {
                let info = lookup_cached(&mut table, &mountinfo, &b.source)?;
                if !info.is_shared() && !info.is_slave() {
                    return Err(propagation_error(
                        &b,
                        &info.mount_point,
                        "a shared or slave",
                    ));
                }
                if rootfs_propagation.as_deref() != Some("rshared") {
                    rootfs_propagation = Some("rslave".to_string());
                }
                "rslave"
            }
            // PRIVATE, and (like containerd) anything unknown.
            _ => "rprivate",
        };
        let access = if b.readonly { "ro" } else { "rw" };
        let mut options = vec![
            "rbind".to_string(),
            propagation.to_string(),
            access.to_string(),
        ];
        if b.recursive_readonly {
            // mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY) by the runtime.
            options.push("rro".to_string());
        }
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(&b.container_path));
        m.set_typ(Some("bind".to_string()));
        m.set_source(Some(b.source));
        m.set_options(Some(options));
        mounts.push(m);
    }
    Ok(MountPlan {
        mounts,
        rootfs_propagation,
    })
}

fn propagation_error(b: &BindRequest, mount_point: &Path, kind: &str) -> SpecError {
    let field = match b.cri_index {
        Some(i) => format!("mounts[{i}].propagation"),
        None => format!("pod mount {}", b.container_path),
    };
    invalid(
        field,
        format!(
            "path {} is mounted on {} but it is not {kind} mount",
            b.source.display(),
            mount_point.display()
        ),
    )
}

/// Privileged containers get sysfs and the cgroup filesystem read-write.
fn writable_kernel_fs(mut m: Mount) -> Mount {
    if matches!(m.typ().as_deref(), Some("sysfs") | Some("cgroup")) {
        if let Some(options) = m.options().clone() {
            let options = options
                .into_iter()
                .map(|o| if o == "ro" { "rw".to_string() } else { o })
                .collect();
            m.set_options(Some(options));
        }
    }
    m
}

/// Validates the CRI mounts and resolves their host paths: `host_paths[i]`
/// is mount i's host path as the caller resolved it (the object it holds
/// open and will mount); without it, realpath's answer.
fn cri_binds(
    config: &ContainerConfig,
    host_paths: &[PathBuf],
) -> Result<Vec<BindRequest>, SpecError> {
    if !host_paths.is_empty() && host_paths.len() != config.mounts.len() {
        return Err(invalid(
            "mounts",
            format!(
                "{} host paths resolved for {} mounts",
                host_paths.len(),
                config.mounts.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(config.mounts.len());
    for (i, m) in config.mounts.iter().enumerate() {
        if m.image.as_ref().is_some_and(|img| !img.image.is_empty()) {
            return Err(invalid(
                format!("mounts[{i}].image"),
                "must be staged by the runtime first (as a read-only host path)",
            ));
        }
        if !m.container_path.starts_with('/') {
            return Err(invalid(
                format!("mounts[{i}].container_path"),
                format!("{:?} is not an absolute path", m.container_path),
            ));
        }
        if m.recursive_read_only {
            let rro = format!("mounts[{i}].recursive_read_only");
            if !m.readonly {
                return Err(invalid(rro, "needs readonly: true"));
            }
            if m.propagation != MountPropagation::PropagationPrivate as i32 {
                return Err(invalid(
                    rro,
                    "needs propagation PROPAGATION_PRIVATE (mounts arriving later would not be read-only)",
                ));
            }
        }
        let field = format!("mounts[{i}].host_path");
        if m.host_path.is_empty() {
            return Err(invalid(field, "must not be empty"));
        }
        let resolved = match host_paths.get(i) {
            Some(p) => Ok(p.clone()),
            None => std::fs::canonicalize(&m.host_path),
        };
        let source = match resolved {
            Ok(p) => p,
            Err(e)
                if matches!(e.kind(), io::ErrorKind::NotFound)
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                return Err(invalid(field, format!("{} does not exist", m.host_path)));
            }
            Err(e) => return Err(io_error(format!("resolving {field} {}", m.host_path), e)),
        };
        out.push(BindRequest {
            container_path: m.container_path.clone(),
            source,
            readonly: m.readonly,
            recursive_readonly: m.recursive_read_only,
            propagation: m.propagation,
            cri_index: Some(i),
        });
    }
    Ok(out)
}

/// The pod's hostname, hosts, resolv.conf and shm binds, in containerd's order.
fn pod_binds(
    sc: &LinuxContainerSecurityContext,
    pod: &PodPaths,
) -> Result<Vec<BindRequest>, SpecError> {
    let host_ipc = pod.ipcns.is_none()
        || sc
            .namespace_options
            .as_ref()
            .is_some_and(|n| n.ipc == k8s_cri::v1::NamespaceMode::Node as i32);
    let shm = if host_ipc {
        Some(PathBuf::from(DEV_SHM))
    } else {
        pod.shm.clone()
    };
    let ro = sc.readonly_rootfs;
    let mut out = Vec::new();
    // The hostname file is only mounted when it exists, like containerd.
    if let Some(path) = &pod.hostname_file {
        if path.exists() {
            out.push(pod_bind(ETC_HOSTNAME, path, ro)?);
        }
    }
    if let Some(path) = &pod.hosts {
        out.push(pod_bind(ETC_HOSTS, path, ro)?);
    }
    if let Some(path) = &pod.resolv_conf {
        out.push(pod_bind(ETC_RESOLV_CONF, path, ro)?);
    }
    if let Some(path) = &shm {
        out.push(pod_bind(DEV_SHM, path, false)?);
    }
    Ok(out)
}

fn pod_bind(dst: &str, path: &Path, readonly: bool) -> Result<BindRequest, SpecError> {
    let source = std::fs::canonicalize(path).map_err(|e| {
        io_error(
            format!("resolving the pod's {dst} source {}", path.display()),
            e,
        )
    })?;
    Ok(BindRequest {
        container_path: dst.to_string(),
        source,
        readonly,
        recursive_readonly: false,
        propagation: MountPropagation::PropagationPrivate as i32,
        cri_index: None,
    })
}

/// Lexically cleans an absolute or relative path like Go's `filepath.Clean`.
pub(crate) fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Number of separators in the cleaned path: containerd's sort key.
fn depth(p: &str) -> usize {
    clean_path(p).matches('/').count()
}

/// The mount `path` lives on: the deepest mount point above it (the last
/// one listed when several are stacked on the same point).
pub(crate) fn lookup_mount<'a>(table: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    let mut best: Option<&MountInfo> = None;
    for m in table {
        if path.starts_with(&m.mount_point)
            && best
                .is_none_or(|b| m.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len())
        {
            best = Some(m);
        }
    }
    best
}

fn lookup_cached(
    table: &mut Option<Vec<MountInfo>>,
    read: &impl Fn() -> Result<String, SpecError>,
    path: &Path,
) -> Result<MountInfo, SpecError> {
    if table.is_none() {
        *table = Some(vordr_mountinfo::parse(&read()?));
    }
    table
        .as_deref()
        .and_then(|t| lookup_mount(t, path))
        .cloned()
        .ok_or_else(|| {
            io_error(
                format!("finding the mount of {}", path.display()),
                io::Error::new(io::ErrorKind::NotFound, "no mount point above it"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{Mount as CriMount, NamespaceMode, NamespaceOption};

    const MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 0:50 / /shared rw,relatime shared:5 - ext4 /dev/vdb rw
41 40 0:51 / /shared/private rw - tmpfs tmpfs rw
42 27 0:52 / /slave rw master:7 - tmpfs tmpfs rw
43 27 0:53 / /both rw shared:9 master:3 - tmpfs tmpfs rw
44 27 0:54 / /with\\040space rw shared:11 - tmpfs tmpfs rw
45 27 0:55 / /shared rw - tmpfs tmpfs rw
";

    fn cri_mount(container: &str, host: &Path, prop: MountPropagation) -> CriMount {
        CriMount {
            container_path: container.into(),
            host_path: host.to_string_lossy().into_owned(),
            propagation: prop as i32,
            ..Default::default()
        }
    }

    fn fake_mountinfo(text: &'static str) -> impl Fn() -> Result<String, SpecError> {
        move || Ok(text.to_string())
    }

    fn dests(plan: &MountPlan) -> Vec<String> {
        plan.mounts
            .iter()
            .map(|m| m.destination().to_string_lossy().into_owned())
            .collect()
    }

    fn options(plan: &MountPlan, dst: &str) -> Vec<String> {
        plan.mounts
            .iter()
            .find(|m| m.destination() == Path::new(dst))
            .and_then(|m| m.options().clone())
            .unwrap_or_default()
    }

    fn sc() -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext::default()
    }

    #[test]
    fn clean_path_like_go() {
        for (input, want) in [
            ("/", "/"),
            ("", "."),
            ("/a/b/", "/a/b"),
            ("//a//b", "/a/b"),
            ("/a/./b/../c", "/a/c"),
            ("/../a", "/a"),
            ("a/../../b", "../b"),
            ("./", "."),
        ] {
            assert_eq!(clean_path(input), want, "{input}");
        }
        assert_eq!(depth("/"), 1);
        assert_eq!(depth("/a/b/"), 2);
    }

    #[test]
    fn mountinfo_parsing_and_lookup() {
        let t = vordr_mountinfo::parse(MOUNTINFO);
        assert_eq!(t.len(), 7);
        assert_eq!(t[1].optional, vec!["shared:5".to_string()]);
        assert_eq!(t[5].mount_point, PathBuf::from("/with space"));
        let at = |p: &str| lookup_mount(&t, Path::new(p)).map(|m| m.mount_point.clone());
        assert_eq!(at("/usr/lib"), Some(PathBuf::from("/")));
        assert_eq!(
            at("/shared/private/x"),
            Some(PathBuf::from("/shared/private"))
        );
        assert_eq!(at("/sharedx"), Some(PathBuf::from("/")));
        // Stacked mounts: the last one is the visible one.
        let shared = lookup_mount(&t, Path::new("/shared/a")).expect("mount");
        assert!(!shared.is_shared());
        assert!(lookup_mount(&t, Path::new("/slave/a"))
            .expect("m")
            .is_slave());
        let both = lookup_mount(&t, Path::new("/both")).expect("m");
        assert!(both.is_shared() && both.is_slave());
    }

    #[test]
    fn defaults_are_containerds() {
        let plan = plan_with(
            &ContainerConfig::default(),
            &sc(),
            &PodPaths::default(),
            false,
            &[],
            fake_mountinfo(""),
        )
        .expect("plan");
        // No pod ipc namespace: the host's /dev/shm is bound.
        assert_eq!(
            dests(&plan),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/shm"
            ]
        );
        assert_eq!(options(&plan, "/sys"), ["nosuid", "noexec", "nodev", "ro"]);
        assert_eq!(
            options(&plan, "/sys/fs/cgroup"),
            ["nosuid", "noexec", "nodev", "relatime", "ro"]
        );
        assert_eq!(options(&plan, "/dev/shm"), ["rbind", "rprivate", "rw"]);
        assert_eq!(plan.rootfs_propagation, None);
        let privileged = plan_with(
            &ContainerConfig::default(),
            &sc(),
            &PodPaths::default(),
            true,
            &[],
            fake_mountinfo(""),
        )
        .expect("plan");
        assert_eq!(
            options(&privileged, "/sys"),
            ["nosuid", "noexec", "nodev", "rw"]
        );
        assert_eq!(
            options(&privileged, "/sys/fs/cgroup"),
            ["nosuid", "noexec", "nodev", "relatime", "rw"]
        );
    }

    #[test]
    fn pod_files_and_readonly_rootfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = |n: &str| {
            let p = dir.path().join(n);
            std::fs::write(&p, "x").expect("write");
            p
        };
        let shm = dir.path().join("shm");
        std::fs::create_dir(&shm).expect("shm");
        let pod = PodPaths {
            ipcns: Some("/proc/1/ns/ipc".into()),
            hosts: Some(file("hosts")),
            resolv_conf: Some(file("resolv.conf")),
            hostname_file: Some(file("hostname")),
            shm: Some(shm.clone()),
            ..Default::default()
        };
        let mut s = sc();
        s.readonly_rootfs = true;
        let plan = plan_with(
            &ContainerConfig::default(),
            &s,
            &pod,
            false,
            &[],
            fake_mountinfo(""),
        )
        .expect("plan");
        let tail: Vec<String> = dests(&plan).into_iter().skip(5).collect();
        assert_eq!(
            tail,
            [
                "/sys/fs/cgroup",
                "/etc/hostname",
                "/etc/hosts",
                "/etc/resolv.conf",
                "/dev/shm"
            ]
        );
        assert_eq!(options(&plan, "/etc/hosts"), ["rbind", "rprivate", "ro"]);
        assert_eq!(options(&plan, "/dev/shm"), ["rbind", "rprivate", "rw"]);
        let shm_mount = plan
            .mounts
            .iter()
            .find(|m| m.destination() == Path::new("/dev/shm"))
            .expect("shm");
        assert_eq!(
            shm_mount.source().as_deref(),
            Some(shm.canonicalize().expect("c").as_path())
        );

        // A missing hostname file is skipped; host IPC binds the host /dev/shm.
        let pod = PodPaths {
            ipcns: Some("/proc/1/ns/ipc".into()),
            hostname_file: Some(dir.path().join("absent")),
            shm: Some(shm),
            ..Default::default()
        };
        let mut s = sc();
        s.namespace_options = Some(NamespaceOption {
            ipc: NamespaceMode::Node as i32,
            ..Default::default()
        });
        let plan = plan_with(
            &ContainerConfig::default(),
            &s,
            &pod,
            false,
            &[],
            fake_mountinfo(""),
        )
        .expect("plan");
        assert!(!dests(&plan).contains(&"/etc/hostname".to_string()));
        let shm_mount = plan
            .mounts
            .iter()
            .find(|m| m.destination() == Path::new("/dev/shm"))
            .expect("shm");
        assert_eq!(shm_mount.typ().as_deref(), Some("bind"));
        assert_eq!(shm_mount.source().as_deref(), Some(Path::new("/dev/shm")));
    }

    #[test]
    fn cri_mounts_sorted_and_override_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = dir.path();
        let hosts_file = host.join("h");
        std::fs::write(&hosts_file, "x").expect("write");
        let config = ContainerConfig {
            mounts: vec![
                cri_mount("/data/a/b", host, MountPropagation::PropagationPrivate),
                cri_mount("/data", host, MountPropagation::PropagationPrivate),
                cri_mount("/sys/", host, MountPropagation::PropagationPrivate),
                cri_mount(
                    "/etc/hosts",
                    &hosts_file,
                    MountPropagation::PropagationPrivate,
                ),
                cri_mount("/data/a", host, MountPropagation::PropagationPrivate),
            ],
            ..Default::default()
        };
        let pod = PodPaths {
            ipcns: Some("/x".into()),
            hosts: Some(dir.path().join("h")),
            ..Default::default()
        };
        let plan = plan_with(&config, &sc(), &pod, false, &[], fake_mountinfo("")).expect("plan");
        assert_eq!(
            dests(&plan),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys/fs/cgroup",
                "/data",
                "/sys/",
                "/etc/hosts",
                "/data/a",
                "/data/a/b"
            ]
        );
        // The CRI /etc/hosts replaced the pod's: only one, with CRI options.
        assert_eq!(options(&plan, "/etc/hosts"), ["rbind", "rprivate", "rw"]);
    }

    #[test]
    fn dev_mount_replaces_everything_under_dev() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ContainerConfig {
            mounts: vec![cri_mount(
                "/dev",
                dir.path(),
                MountPropagation::PropagationPrivate,
            )],
            ..Default::default()
        };
        let pod = PodPaths {
            ipcns: Some("/x".into()),
            ..Default::default()
        };
        let plan = plan_with(&config, &sc(), &pod, false, &[], fake_mountinfo("")).expect("plan");
        assert_eq!(dests(&plan), ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]);
    }

    #[test]
    fn missing_host_path_names_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ContainerConfig {
            mounts: vec![
                cri_mount("/ok", dir.path(), MountPropagation::PropagationPrivate),
                cri_mount(
                    "/bad",
                    Path::new("/nope/not/here"),
                    MountPropagation::PropagationPrivate,
                ),
            ],
            ..Default::default()
        };
        let err = plan_with(
            &config,
            &sc(),
            &PodPaths::default(),
            false,
            &[],
            fake_mountinfo(""),
        )
        .unwrap_err();
        assert!(err.is_invalid_argument());
        assert_eq!(
            err.to_string(),
            "mounts[1].host_path: /nope/not/here does not exist"
        );

        let config = ContainerConfig {
            mounts: vec![cri_mount(
                "relative",
                dir.path(),
                MountPropagation::PropagationPrivate,
            )],
            ..Default::default()
        };
        let err = plan_with(
            &config,
            &sc(),
            &PodPaths::default(),
            false,
            &[],
            fake_mountinfo(""),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("mounts[0].container_path:"),
            "{err}"
        );
    }

    #[test]
    fn recursive_read_only_needs_readonly_and_private() {
        let pod = PodPaths {
            ipcns: Some("/x".into()),
            ..Default::default()
        };
        let run = |readonly: bool, prop: MountPropagation| {
            let mut m = cri_mount("/data", Path::new("/"), prop);
            m.readonly = readonly;
            m.recursive_read_only = true;
            let config = ContainerConfig {
                mounts: vec![
                    cri_mount("/a", Path::new("/"), MountPropagation::PropagationPrivate),
                    m,
                ],
                ..Default::default()
            };
            const SHARED: &str = "1 0 0:1 / / rw shared:1 - ext4 /dev/vda rw\n";
            plan_with(&config, &sc(), &pod, false, &[], fake_mountinfo(SHARED))
        };
        let plan = run(true, MountPropagation::PropagationPrivate).expect("rro");
        assert_eq!(options(&plan, "/data"), ["rbind", "rprivate", "ro", "rro"]);
        assert_eq!(options(&plan, "/a"), ["rbind", "rprivate", "rw"]);
        for (readonly, prop, why) in [
            (
                false,
                MountPropagation::PropagationPrivate,
                "needs readonly",
            ),
            (
                true,
                MountPropagation::PropagationHostToContainer,
                "PROPAGATION_PRIVATE",
            ),
            (
                true,
                MountPropagation::PropagationBidirectional,
                "PROPAGATION_PRIVATE",
            ),
        ] {
            let err = run(readonly, prop).unwrap_err();
            assert!(err.is_invalid_argument(), "{err}");
            assert!(
                err.to_string()
                    .starts_with("mounts[1].recursive_read_only:")
                    && err.to_string().contains(why),
                "{err}"
            );
        }
    }

    #[test]
    fn propagation_modes() {
        let pod = PodPaths {
            ipcns: Some("/x".into()),
            ..Default::default()
        };
        // Real directories are needed for canonicalize; "/" is on the root
        // mount of the fake table (private), "/proc" is under no listed mount
        // other than "/", so use fake tables that list "/" as needed.
        let run = |prop: MountPropagation, table: &'static str| {
            let config = ContainerConfig {
                mounts: vec![
                    cri_mount("/a", Path::new("/"), MountPropagation::PropagationPrivate),
                    cri_mount("/b", Path::new("/"), prop),
                ],
                ..Default::default()
            };
            plan_with(&config, &sc(), &pod, false, &[], fake_mountinfo(table))
        };
        const PRIVATE: &str = "1 0 0:1 / / rw - ext4 /dev/vda rw\n";
        const SHARED: &str = "1 0 0:1 / / rw shared:1 - ext4 /dev/vda rw\n";
        const SLAVE: &str = "1 0 0:1 / / rw master:1 - ext4 /dev/vda rw\n";

        let plan = run(MountPropagation::PropagationPrivate, PRIVATE).expect("private");
        assert_eq!(options(&plan, "/b"), ["rbind", "rprivate", "rw"]);
        assert_eq!(plan.rootfs_propagation, None);

        let plan = run(MountPropagation::PropagationBidirectional, SHARED).expect("shared");
        assert_eq!(options(&plan, "/b"), ["rbind", "rshared", "rw"]);
        assert_eq!(plan.rootfs_propagation.as_deref(), Some("rshared"));

        let plan = run(MountPropagation::PropagationHostToContainer, SLAVE).expect("slave");
        assert_eq!(options(&plan, "/b"), ["rbind", "rslave", "rw"]);
        assert_eq!(plan.rootfs_propagation.as_deref(), Some("rslave"));
        let plan = run(MountPropagation::PropagationHostToContainer, SHARED).expect("shared");
        assert_eq!(plan.rootfs_propagation.as_deref(), Some("rslave"));

        let err = run(MountPropagation::PropagationBidirectional, SLAVE).unwrap_err();
        assert!(err.is_invalid_argument());
        assert!(
            err.to_string().starts_with("mounts[1].propagation:"),
            "{err}"
        );
        let err = run(MountPropagation::PropagationHostToContainer, PRIVATE).unwrap_err();
        assert!(
            err.to_string().contains("not a shared or slave mount"),
            "{err}"
        );

        // Unknown values fall back to rprivate, like containerd.
        let config = ContainerConfig {
            mounts: vec![CriMount {
                container_path: "/c".into(),
                host_path: "/".into(),
                propagation: 42,
                ..Default::default()
            }],
            ..Default::default()
        };
        let plan = plan_with(&config, &sc(), &pod, false, &[], fake_mountinfo("")).expect("plan");
        assert_eq!(options(&plan, "/c"), ["rbind", "rprivate", "rw"]);
    }

    #[test]
    fn rshared_wins_over_rslave() {
        let pod = PodPaths {
            ipcns: Some("/x".into()),
            ..Default::default()
        };
        const SHARED: &str = "1 0 0:1 / / rw shared:1 - ext4 /dev/vda rw\n";
        let config = ContainerConfig {
            mounts: vec![
                cri_mount(
                    "/b",
                    Path::new("/"),
                    MountPropagation::PropagationBidirectional,
                ),
                cri_mount(
                    "/c",
                    Path::new("/"),
                    MountPropagation::PropagationHostToContainer,
                ),
            ],
            ..Default::default()
        };
        let plan =
            plan_with(&config, &sc(), &pod, false, &[], fake_mountinfo(SHARED)).expect("plan");
        assert_eq!(plan.rootfs_propagation.as_deref(), Some("rshared"));
    }

    #[test]
    fn readonly_cri_mount() {
        let mut m = cri_mount("/ro", Path::new("/"), MountPropagation::PropagationPrivate);
        m.readonly = true;
        m.selinux_relabel = true;
        let config = ContainerConfig {
            mounts: vec![m],
            ..Default::default()
        };
        let plan = plan_with(
            &config,
            &sc(),
            &PodPaths::default(),
            false,
            &[],
            fake_mountinfo(""),
        )
        .expect("plan");
        assert_eq!(options(&plan, "/ro"), ["rbind", "rprivate", "ro"]);
    }
}
