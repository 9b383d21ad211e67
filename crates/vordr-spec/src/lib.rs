//! Builds a container's OCI runtime spec (`config.json`) from kubelet's CRI
//! `ContainerConfig`, the image config and the pod's paths, producing what
//! containerd 1.6's CRI plugin produces for the same request.
//!
//! The crate only computes the spec: it never mounts, creates or changes
//! anything on the host. It reads the container's rootfs (`/etc/passwd` and
//! `/etc/group`, resolved so that symlinks cannot leave the rootfs), the
//! host's `/dev`, `/proc/self/{status,mountinfo,oom_score_adj}` and the cgroup
//! filesystem to decide what containerd would decide.

#![warn(missing_docs)]

pub mod cgroup;
mod devices;
mod mounts;
mod namespaces;
mod process;
mod resources;
mod seccomp_default;
mod security;
pub mod signal;
mod user;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_cri::v1::{ContainerConfig, LinuxContainerSecurityContext, PodSandboxConfig};
use oci_spec::runtime::{Capabilities, Linux, LinuxCapabilitiesBuilder, Process, Root, Spec, User};

pub use cgroup::{cgroups_path, spec_cgroups_path, validate_unified};
pub use seccomp_default::{default_seccomp, default_seccomp_for};
pub use security::{
    default_capabilities, requested_adds, APPARMOR_RUNTIME_DEFAULT, MAX_SECCOMP_PROFILE,
};
pub use user::uid_before_rootfs;

/// OCI runtime spec version written into `ociVersion`, the one containerd 1.6 writes.
pub const OCI_VERSION: &str = "1.0.2-dev";

/// Annotation keys containerd's CRI plugin sets on every container spec.
pub mod annotations {
    /// `container` for application containers (`sandbox` for pause containers).
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    /// Value of [`CONTAINER_TYPE`] for application containers.
    pub const CONTAINER_TYPE_CONTAINER: &str = "container";
    /// The pod sandbox's id.
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    /// The pod's Kubernetes namespace.
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    /// The pod's UID.
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    /// The pod's name.
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    /// The container's name from its CRI metadata.
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    /// The image the container runs.
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
}

/// The parts of an OCI image config (`config` object of the image's config
/// blob) that shape the container's process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `User`: "", "uid", "name", "uid:gid", "name:group", "uid:group" or "name:gid".
    pub user: String,
    /// `Env`: "KEY=value" entries; an entry without '=' removes that key.
    pub env: Vec<String>,
    /// `Entrypoint`; `[""]` means "no entrypoint", like docker.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `WorkingDir`; "" means "/".
    pub working_dir: String,
    /// `StopSignal`; "" means SIGTERM.
    pub stop_signal: String,
    /// The image's resolved name (e.g. "docker.io/library/nginx:1.25") for the
    /// `io.kubernetes.cri.image-name` annotation. When empty, the CRI
    /// `image.user_specified_image`, then `image.image`, is used.
    pub name: String,
}

/// Where the pod's shared resources live on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodPaths {
    /// The pod sandbox's id, for the `io.kubernetes.cri.sandbox-id` annotation.
    pub sandbox_id: String,
    /// The pod's network namespace (e.g. `/var/run/netns/cni-…`); `None` means
    /// the pod uses the host's network (and the container joins it).
    pub netns: Option<PathBuf>,
    /// The pod's IPC namespace; `None` means the host's IPC namespace, in
    /// which case the host's `/dev/shm` is bind mounted, like containerd.
    pub ipcns: Option<PathBuf>,
    /// The pod's UTS namespace; `None` means the host's.
    pub utsns: Option<PathBuf>,
    /// `/proc/<pid>/ns/pid` of the pod's shared-PID init when the pod shares a
    /// PID namespace (CRI `NamespaceMode::Pod`, or the target container's for
    /// `NamespaceMode::Target`). `None` gives the container a new PID
    /// namespace unless the container asks for the host's (`NODE`).
    pub pid_ns_path: Option<PathBuf>,
    /// The pod's hostname, for `HOSTNAME=`; "" falls back to the sandbox
    /// config's hostname, then to the host's hostname.
    pub hostname: String,
    /// The pod's resolv.conf, bind mounted at `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// The pod's hosts file, bind mounted at `/etc/hosts`.
    pub hosts: Option<PathBuf>,
    /// The pod's hostname file, bind mounted at `/etc/hostname` when it exists.
    pub hostname_file: Option<PathBuf>,
    /// The pod's shm tmpfs, bind mounted at `/dev/shm`; `None` keeps a private
    /// tmpfs (unless the pod uses the host IPC namespace).
    pub shm: Option<PathBuf>,
    /// Already resolved cgroupfs parent, like "/kubepods/besteffort/pod123";
    /// the container's cgroup is `<cgroup_parent>/vordr-<container_id>`.
    pub cgroup_parent: String,
    /// UID/GID mappings when the pod asked for its own user namespace
    /// (CRI `NamespaceMode::Pod` user namespace).
    pub userns: Option<UserNamespace>,
}

/// A user namespace's ID mappings, each `(container_id, host_id, size)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserNamespace {
    /// UID mappings: (first uid in the container, first uid on the host, count).
    pub uid_mappings: Vec<(u32, u32, u32)>,
    /// GID mappings: (first gid in the container, first gid on the host, count).
    pub gid_mappings: Vec<(u32, u32, u32)>,
    /// The pod's pinned user namespace to join; `None` creates a new one.
    pub path: Option<PathBuf>,
}

/// Runtime-wide settings (containerd's CRI plugin config equivalents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecOptions {
    /// containerd's `restrict_oom_score_adj`: never give a container an
    /// oom_score_adj below this process's own.
    pub restrict_oom_score_adj: bool,
    /// Base directory for relative `localhost/` seccomp profiles
    /// (default `/var/lib/kubelet/seccomp`); absolute refs are used as given.
    pub seccomp_profile_root: PathBuf,
    /// Whether the host runs the unified cgroup v2 hierarchy (then
    /// non-privileged containers get a cgroup namespace). `None` detects it.
    pub cgroup_v2: Option<bool>,
    /// Whether the memory controller can limit swap (then swap is set equal
    /// to the memory limit unless the request sets it). `None` detects it.
    pub swap_controller: Option<bool>,
    /// Whether the hugetlb controller is present (hugepage limits are dropped
    /// without it, as with containerd's `tolerate_missing_hugetlb_controller`).
    /// `None` detects it.
    pub hugetlb_controller: Option<bool>,
    /// The CRI mounts' host paths as the caller resolved them, mount by
    /// mount: the objects it holds open and will mount (see vordr-cri's
    /// host path staging), so that the spec names exactly what is judged
    /// and mounted. Empty: each is resolved here with realpath.
    pub host_paths: Vec<PathBuf>,
}

impl Default for SpecOptions {
    fn default() -> Self {
        SpecOptions {
            restrict_oom_score_adj: false,
            seccomp_profile_root: PathBuf::from("/var/lib/kubelet/seccomp"),
            cgroup_v2: None,
            swap_controller: None,
            hugetlb_controller: None,
            host_paths: Vec::new(),
        }
    }
}

/// The result of [`build_spec`].
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    /// The container's OCI runtime spec.
    pub spec: Spec,
    /// Signal that stops the container: the config's `stop_signal`, else the
    /// image's `StopSignal`, else "SIGTERM".
    pub stop_signal: String,
    /// The capabilities the config asked to add, normalised as they were
    /// applied ([`requested_adds`]).
    pub added_capabilities: Vec<String>,
}

/// Why a spec could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The request is wrong; `field` names the CRI field, e.g.
    /// `mounts[0].host_path`, and the message says what is wrong with it.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// CRI field path, like `linux.security_context.seccomp.localhost_ref`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// Reading host state (or the rootfs) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// oci-spec refused a value.
    #[error("building the OCI spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

impl SpecError {
    /// True for [`SpecError::InvalidArgument`].
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, SpecError::InvalidArgument { .. })
    }
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::InvalidArgument {
        field: field.into(),
        message: message.into(),
    }
}

pub(crate) fn io_error(context: impl Into<String>, source: std::io::Error) -> SpecError {
    SpecError::Io {
        context: context.into(),
        source,
    }
}

/// Builds the OCI runtime spec of container `container_id` of the pod
/// described by `sandbox` and `pod`, running `image` from `rootfs` (an
/// absolute path), as containerd 1.6's CRI plugin would.
pub fn build_spec(
    container_id: &str,
    config: &ContainerConfig,
    sandbox: &PodSandboxConfig,
    image: &ImageConfig,
    rootfs: &Path,
    pod: &PodPaths,
    opts: &SpecOptions,
) -> Result<Built, SpecError> {
    let metadata = config
        .metadata
        .as_ref()
        .ok_or_else(|| invalid("metadata", "container config must include metadata"))?;
    if container_id.is_empty() || container_id.contains('/') {
        return Err(invalid(
            "container_id",
            format!("{container_id:?} is not a valid container id"),
        ));
    }
    if !rootfs.is_absolute() {
        return Err(invalid(
            "rootfs",
            format!("{} is not an absolute path", rootfs.display()),
        ));
    }

    let default_sc = LinuxContainerSecurityContext::default();
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .unwrap_or(&default_sc);
    let privileged = sc.privileged;
    let sandbox_privileged = sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged);
    if privileged && !sandbox_privileged {
        return Err(invalid(
            "linux.security_context.privileged",
            "no privileged container allowed in a sandbox that is not privileged",
        ));
    }
    let r = Request {
        container_id,
        config,
        sandbox,
        image,
        rootfs,
        pod,
        opts,
        sc,
        privileged,
    };

    let (process, caps, added_capabilities) = build_process(&r)?;
    let (linux, mounts) = build_linux(&r, &caps)?;

    let mut root = Root::default();
    root.set_path(rootfs.to_path_buf());
    root.set_readonly(Some(sc.readonly_rootfs).filter(|ro| *ro));

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());
    spec.set_root(Some(root));
    spec.set_mounts(Some(mounts));
    spec.set_process(Some(process));
    // containerd leaves the hostname to the pod's UTS namespace.
    spec.set_hostname(None);
    spec.set_domainname(None);
    spec.set_hooks(None);
    spec.set_annotations(Some(build_annotations(
        config,
        sandbox,
        image,
        pod,
        &metadata.name,
    )));
    spec.set_linux(Some(linux));
    spec.set_solaris(None);
    spec.set_windows(None);
    spec.set_vm(None);
    spec.set_zos(None);

    // Kubernetes 1.33's container stop signal wins over the image's.
    let stop_signal =
        match signal::requested(config.stop_signal).map_err(|m| invalid("stop_signal", m))? {
            Some(s) => s,
            None if image.stop_signal.is_empty() => "SIGTERM".to_string(),
            None => image.stop_signal.clone(),
        };
    Ok(Built {
        spec,
        stop_signal,
        added_capabilities,
    })
}

/// What [`build_spec`]'s steps read: its arguments, and the container's
/// security context and whether it is privileged.
struct Request<'a> {
    container_id: &'a str,
    config: &'a ContainerConfig,
    sandbox: &'a PodSandboxConfig,
    image: &'a ImageConfig,
    rootfs: &'a Path,
    pod: &'a PodPaths,
    opts: &'a SpecOptions,
    sc: &'a LinuxContainerSecurityContext,
    privileged: bool,
}

/// The spec's process, with its capabilities and those the config asked
/// to add (see [`Built::added_capabilities`]).
fn build_process(r: &Request<'_>) -> Result<(Process, Vec<String>, Vec<String>), SpecError> {
    let (config, image, sc) = (r.config, r.image, r.sc);
    let resources = config.linux.as_ref().and_then(|l| l.resources.as_ref());
    let args = process::args(config, image)?;
    let hostname = process::hostname(r.pod, r.sandbox)?;
    let env = process::env(config, image, &hostname);
    let cwd = process::cwd(config, image);
    let user = user::resolve(r.rootfs, sc, image)?;
    let caps = security::capabilities(sc, r.privileged)?;
    let added_capabilities = security::requested_adds(sc)?;
    let pod_sc = r
        .sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    let apparmor = security::apparmor(sc)?;
    let selinux = security::selinux_label(sc, pod_sc.and_then(|s| s.selinux_options.as_ref()))?;
    let oom_score_adj = resources::oom_score_adj(resources, r.opts.restrict_oom_score_adj)?;

    let cap_set = security::to_oci_caps(&caps);
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(cap_set.clone())
        .effective(cap_set.clone())
        .permitted(cap_set)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()?;
    let mut oci_user = User::default();
    oci_user.set_uid(user.uid);
    oci_user.set_gid(user.gid);
    oci_user.set_additional_gids(Some(user.additional_gids));

    // oci-spec's defaults (rlimits, "sh", TERM, …) are not containerd's:
    // every field is set explicitly.
    let mut process = Process::default();
    process.set_terminal(Some(config.tty));
    process.set_console_size(None);
    process.set_user(oci_user);
    process.set_args(Some(args));
    process.set_command_line(None);
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    process.set_capabilities(Some(capabilities));
    process.set_rlimits(None);
    process.set_no_new_privileges(Some(sc.no_new_privs));
    process.set_apparmor_profile(apparmor);
    process.set_oom_score_adj(oom_score_adj);
    process.set_selinux_label(selinux);
    process.set_io_priority(None);
    process.set_scheduler(None);
    process.set_exec_cpu_affinity(None);
    Ok((process, caps, added_capabilities))
}

/// The spec's Linux section (namespaces, cgroups, devices, seccomp, masked
/// paths) and its mounts; `caps` are the process's capabilities.
fn build_linux(
    r: &Request<'_>,
    caps: &[String],
) -> Result<(Linux, Vec<oci_spec::runtime::Mount>), SpecError> {
    let (config, sc, pod, opts, privileged) = (r.config, r.sc, r.pod, r.opts, r.privileged);
    let resources = config.linux.as_ref().and_then(|l| l.resources.as_ref());
    // Mounts, devices and the devices cgroup.
    let plan = mounts::plan(config, sc, pod, privileged, &opts.host_paths)?;
    let mut devs = devices::cri_devices(config)?;
    if privileged {
        devs.devices.extend(devices::host_devices()?);
        devs.cgroup_rules = vec![devices::allow_all()];
    } else {
        devs.cgroup_rules.insert(0, devices::deny_all());
    }

    // Namespaces, cgroups and the rest of the Linux section.
    let cgroup_v2 = match opts.cgroup_v2 {
        Some(v) => v,
        None => resources::host_is_cgroup_v2(),
    };
    let ns = namespaces::build(sc, pod, cgroup_v2 && !privileged)?;
    let (uid_mappings, gid_mappings) = match ns.id_mappings {
        Some((uids, gids)) => (Some(uids), Some(gids)),
        None => (None, None),
    };
    let sysctls = r
        .sandbox
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone())
        .filter(|s| !s.is_empty());
    let (masked_paths, readonly_paths) = masked_and_readonly(sc, pod, privileged);

    let mut linux = Linux::default();
    linux.set_net_devices(None);
    linux.set_uid_mappings(uid_mappings);
    linux.set_gid_mappings(gid_mappings);
    linux.set_sysctl(sysctls);
    linux.set_resources(Some(resources::build(resources, opts, devs.cgroup_rules)?));
    linux.set_cgroups_path(Some(cgroup::spec_cgroups_path(
        &pod.cgroup_parent,
        r.container_id,
    )));
    linux.set_namespaces(Some(ns.namespaces));
    linux.set_devices(Some(devs.devices).filter(|d| !d.is_empty()));
    linux.set_seccomp(security::seccomp(sc, privileged, caps, opts)?);
    linux.set_rootfs_propagation(plan.rootfs_propagation);
    linux.set_masked_paths(masked_paths);
    linux.set_readonly_paths(readonly_paths);
    linux.set_mount_label(None);
    linux.set_intel_rdt(None);
    linux.set_memory_policy(None);
    linux.set_personality(None);
    linux.set_time_offsets(None);
    Ok((linux, plan.mounts))
}

/// kubelet's masked paths for procMount Default (1.31 and later).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// kubelet's read-only paths for procMount Default.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The container's masked and read-only paths: none when privileged; the
/// lists asked for; kubelet's defaults when both are empty (as CRI-O does:
/// crictl and other clients send none), except in a pod with its own user
/// namespace, the only place kubelet sends empty lists for procMount
/// Unmasked.
fn masked_and_readonly(
    sc: &LinuxContainerSecurityContext,
    pod: &PodPaths,
    privileged: bool,
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let list = |l: &[&str]| Some(l.iter().map(|p| p.to_string()).collect());
    if privileged {
        (None, None)
    } else if sc.masked_paths.is_empty() && sc.readonly_paths.is_empty() && pod.userns.is_none() {
        (list(&DEFAULT_MASKED_PATHS), list(&DEFAULT_READONLY_PATHS))
    } else {
        (
            Some(sc.masked_paths.clone()).filter(|p| !p.is_empty()),
            Some(sc.readonly_paths.clone()).filter(|p| !p.is_empty()),
        )
    }
}

/// The CRI annotations of the container, then containerd's own on top.
fn build_annotations(
    config: &ContainerConfig,
    sandbox: &PodSandboxConfig,
    image: &ImageConfig,
    pod: &PodPaths,
    container_name: &str,
) -> HashMap<String, String> {
    let mut out = config.annotations.clone();
    let meta = sandbox.metadata.clone().unwrap_or_default();
    let image_name = if !image.name.is_empty() {
        image.name.clone()
    } else {
        let spec = config.image.clone().unwrap_or_default();
        if spec.user_specified_image.is_empty() {
            spec.image
        } else {
            spec.user_specified_image
        }
    };
    for (key, value) in [
        (
            annotations::CONTAINER_TYPE,
            annotations::CONTAINER_TYPE_CONTAINER.to_string(),
        ),
        (annotations::SANDBOX_ID, pod.sandbox_id.clone()),
        (annotations::SANDBOX_NAMESPACE, meta.namespace),
        (annotations::SANDBOX_UID, meta.uid),
        (annotations::SANDBOX_NAME, meta.name),
        (annotations::CONTAINER_NAME, container_name.to_string()),
        (annotations::IMAGE_NAME, image_name),
    ] {
        out.insert(key.to_string(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lists_get_kubelets_defaults_outside_a_user_namespace() {
        let sc = LinuxContainerSecurityContext::default();
        let plain = PodPaths::default();
        let (m, r) = masked_and_readonly(&sc, &plain, false);
        assert_eq!(m.map(|v| v.len()), Some(DEFAULT_MASKED_PATHS.len()));
        assert_eq!(r.map(|v| v.len()), Some(DEFAULT_READONLY_PATHS.len()));
        assert_eq!(masked_and_readonly(&sc, &plain, true), (None, None));
        // procMount Unmasked, which kubelet only sends with hostUsers: false.
        let userns = PodPaths {
            userns: Some(UserNamespace::default()),
            ..Default::default()
        };
        assert_eq!(masked_and_readonly(&sc, &userns, false), (None, None));
        let partial = LinuxContainerSecurityContext {
            masked_paths: vec!["/proc/kcore".into()],
            ..Default::default()
        };
        let (m, r) = masked_and_readonly(&partial, &plain, false);
        assert_eq!(m, Some(vec!["/proc/kcore".to_string()]));
        assert_eq!(r, None);
    }
}
