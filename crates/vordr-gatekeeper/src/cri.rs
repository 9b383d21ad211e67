//! CRI pod and container configs reduced to the policy's [`Input`], and a
//! denial explained in terms of the CRI fields that caused it.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use k8s_cri::v1::{
    ContainerConfig, LinuxContainerSecurityContext, NamespaceMode, PodSandboxConfig,
    SecurityProfile,
};

use crate::{
    validate, CapList, GateError, Input, NamespacePolicy, NetworkMode, Rule, SeccompMode,
    UsernsMode, Verdict,
};

/// Host paths whose mounting gives a container the node: these trees, and
/// `/` itself.
pub const SENSITIVE_TREES: [&str; 6] = ["/proc", "/sys", "/dev", "/etc", "/var/run", "/run"];

/// Sysctls Kubernetes counts as safe (namespaced and isolated); every other
/// one is unsafe.
pub const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// The host paths that may not be mounted, resolved once: [`SENSITIVE_TREES`]
/// and Vordr's own socket, root and run directory (mounting those, or a
/// directory above them, is sensitive too).
#[derive(Debug, Clone)]
pub struct Protected {
    trees: Vec<PathBuf>,
    own: Vec<PathBuf>,
}

impl Protected {
    pub fn new<P: AsRef<Path>>(own: &[P]) -> Protected {
        // Both spellings: as written and with symlinks resolved (/var/run
        // is /run on most systems).
        let both = |p: &Path| [lexical(p), resolve(p)];
        let mut trees: Vec<PathBuf> = SENSITIVE_TREES
            .iter()
            .flat_map(|t| both(Path::new(t)))
            .collect();
        let mut own: Vec<PathBuf> = own.iter().flat_map(|p| both(p.as_ref())).collect();
        for v in [&mut trees, &mut own] {
            v.sort();
            v.dedup();
        }
        Protected { trees, own }
    }
}

/// A judged spec: the policy's input, its verdict, and for a denial the
/// CRI field that broke the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub input: Input,
    pub verdict: Verdict,
    /// For a denial: what the spec asked for, e.g. `adds SYS_ADMIN`.
    pub cause: String,
}

impl Decision {
    /// The denial as the gRPC status message names it, e.g.
    /// `gatekeeper: rule 1 (...): container "c" adds SYS_ADMIN; profile
    /// "restricted" for namespace "team-a"`. `None` when allowed.
    pub fn denial(&self, subject: &str, namespace: &str) -> Option<String> {
        let Verdict::Denied(rule) = self.verdict else {
            return None;
        };
        Some(format!(
            "gatekeeper: rule {} ({}): {subject} {}; profile {:?} for namespace {namespace:?}",
            rule.0,
            rule.message(),
            self.cause,
            self.input.profile.as_str(),
        ))
    }
}

/// What the configs said, kept to explain a denial.
#[derive(Default)]
struct Facts {
    sys_admin: &'static str,
    net_admin: &'static str,
    uid: String,
    seccomp: &'static str,
    mount: String,
    sysctl: String,
}

/// Judges a pod sandbox: its privileged flag, host namespaces, user
/// namespace and sysctls (it runs no process of its own: the rest is
/// judged per container).
pub fn judge_pod(
    cfg: &PodSandboxConfig,
    ns: NamespacePolicy,
    _protected: &Protected,
) -> Result<Decision, GateError> {
    let mut input = Input::harmless(ns);
    let mut facts = Facts::default();
    apply_pod(&mut input, &mut facts, cfg);
    if input.privileged {
        // A privileged sandbox holds every capability.
        facts.sys_admin = "is privileged";
        facts.net_admin = "is privileged";
    }
    decide(input, &facts)
}

/// Judges a container of `pod`. `uid` is the effective UID as far as it
/// can be told before the rootfs exists (`vordr_spec::uid_before_rootfs`).
pub fn judge_container(
    cfg: &ContainerConfig,
    pod: &PodSandboxConfig,
    uid: Option<u32>,
    ns: NamespacePolicy,
    protected: &Protected,
) -> Result<Decision, GateError> {
    let mut input = Input::harmless(ns);
    let mut facts = Facts::default();
    apply_pod(&mut input, &mut facts, pod);
    // A container is not privileged because its pod is: only its own flag.
    input.privileged = false;
    let default_sc = LinuxContainerSecurityContext::default();
    let sc = cfg
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .unwrap_or(&default_sc);
    input.privileged = sc.privileged;
    if let Some(o) = &sc.namespace_options {
        let node = NamespaceMode::Node as i32;
        input.host_network |= o.network == node;
        input.host_pid |= o.pid == node;
        input.host_ipc |= o.ipc == node;
    }
    input.uid = uid;
    facts.uid = match (uid, container_user_field(sc)) {
        (Some(u), Some(field)) => format!("runs as UID {u} ({field})"),
        (Some(u), None) => format!("runs as UID {u} (the image's user)"),
        (None, _) => "runs as a user that cannot be told before the container exists".into(),
    };
    if let Some(c) = &sc.capabilities {
        let (add, add_via) = cap_list(&c.add_capabilities);
        let (drop, _) = cap_list(&c.drop_capabilities);
        input.cap_add = add;
        input.cap_drop = drop;
        facts.sys_admin = if add_via.0 {
            "adds ALL"
        } else {
            "adds SYS_ADMIN"
        };
        facts.net_admin = if add_via.1 {
            "adds ALL"
        } else {
            "adds NET_ADMIN"
        };
    }
    if sc.privileged {
        facts.sys_admin = "is privileged";
        facts.net_admin = "is privileged";
    }
    input.no_new_privs = sc.no_new_privs;
    input.read_only_rootfs = sc.readonly_rootfs;
    let (seccomp, why) = seccomp_mode(sc);
    input.seccomp = seccomp;
    facts.seccomp = why;
    if let Some(m) = cfg
        .mounts
        .iter()
        .find(|m| sensitive_host_path(&m.host_path, protected))
    {
        input.sensitive_mount = true;
        facts.mount = format!(
            "mounts host path {:?} at {:?}",
            m.host_path, m.container_path
        );
    }
    decide(input, &facts)
}

fn decide(input: Input, facts: &Facts) -> Result<Decision, GateError> {
    let verdict = validate(&input)?;
    let cause = match verdict {
        Verdict::Allowed => String::new(),
        Verdict::Denied(rule) => explain(rule, &input, facts),
    };
    Ok(Decision {
        input,
        verdict,
        cause,
    })
}

fn explain(rule: Rule, i: &Input, f: &Facts) -> String {
    let mode = i.network.as_str();
    match rule.0 {
        1 => f.sys_admin.to_string(),
        2 => format!("{} without a user namespace", f.uid),
        3 if i.host_network && i.network != NetworkMode::Admin => {
            format!("uses the host network (network mode {mode})")
        }
        3 => format!("{} (network mode {mode})", f.net_admin),
        4 => "allows privilege escalation (no_new_privs false) without a user namespace".into(),
        5 if i.host_pid => "uses the host PID namespace".into(),
        5 => "uses the host IPC namespace".into(),
        6 => f.mount.clone(),
        7 => f.seccomp.to_string(),
        8 => f.sysctl.clone(),
        _ => "breaks a rule the policy does not name".into(),
    }
}

/// What a container shares with its pod: host namespaces, the user
/// namespace, the sysctls, and the privileged flag kubelet sets on a pod
/// with a privileged container.
fn apply_pod(input: &mut Input, facts: &mut Facts, pod: &PodSandboxConfig) {
    let Some(linux) = &pod.linux else {
        return;
    };
    if let Some(sc) = &linux.security_context {
        input.privileged = sc.privileged;
        if let Some(o) = &sc.namespace_options {
            let node = NamespaceMode::Node as i32;
            input.host_network = o.network == node;
            input.host_pid = o.pid == node;
            input.host_ipc = o.ipc == node;
            if o.userns_options
                .as_ref()
                .is_some_and(|u| u.mode == NamespaceMode::Pod as i32)
            {
                input.userns = UsernsMode::Pod;
            }
        }
    }
    let mut names: Vec<&String> = linux.sysctls.keys().collect();
    names.sort();
    if let Some(name) = names.into_iter().find(|n| !safe_sysctl(n)) {
        input.unsafe_sysctl = true;
        facts.sysctl = format!("sets sysctl {name:?}");
    }
}

/// The CRI field that names the container's user, if one does.
fn container_user_field(sc: &LinuxContainerSecurityContext) -> Option<&'static str> {
    if !sc.run_as_username.is_empty() {
        Some("linux.security_context.run_as_username")
    } else if sc.run_as_user.is_some() {
        Some("linux.security_context.run_as_user")
    } else {
        None
    }
}

/// A CRI capability list (names with or without `CAP_`, any case) reduced
/// to the classes the rules judge, and whether ALL granted SYS_ADMIN and
/// NET_ADMIN (rather than their names).
fn cap_list(names: &[String]) -> (CapList, (bool, bool)) {
    let mut l = CapList::default();
    for n in names {
        let n = n.to_ascii_uppercase();
        match n.strip_prefix("CAP_").unwrap_or(&n) {
            "ALL" => l.all = true,
            "SYS_ADMIN" => l.sys_admin = true,
            "NET_ADMIN" => l.net_admin = true,
            _ => {}
        }
    }
    (l, (l.all && !l.sys_admin, l.all && !l.net_admin))
}

/// The seccomp mode the container will run with and how it was asked for:
/// as vordr-spec (and containerd 1.6) choose it, no profile at all is
/// Unconfined. A privileged container runs unconfined whatever it asks.
fn seccomp_mode(sc: &LinuxContainerSecurityContext) -> (SeccompMode, &'static str) {
    if sc.privileged {
        return (SeccompMode::Unconfined, "is privileged (no seccomp filter)");
    }
    #[allow(deprecated)]
    let path = sc.seccomp_profile_path.as_str();
    match &sc.seccomp {
        Some(SecurityProfile { profile_type, .. }) => match profile_type {
            0 => (SeccompMode::RuntimeDefault, ""),
            2 => (SeccompMode::Localhost, ""),
            _ => (SeccompMode::Unconfined, "has seccomp profile Unconfined"),
        },
        None => match path {
            "runtime/default" | "docker/default" => (SeccompMode::RuntimeDefault, ""),
            p if p.starts_with("localhost/") => (SeccompMode::Localhost, ""),
            "" => (
                SeccompMode::Unconfined,
                "asks for no seccomp profile (Unconfined)",
            ),
            _ => (SeccompMode::Unconfined, "has seccomp profile unconfined"),
        },
    }
}

/// Whether a sysctl is in Kubernetes' safe set (`/` separators allowed).
pub fn safe_sysctl(name: &str) -> bool {
    let name = name.replace('/', ".");
    SAFE_SYSCTLS.contains(&name.as_str())
}

/// Whether mounting `host_path` exposes the node: `/`, anything in or under
/// a sensitive tree, and anything in, under or above a protected path.
/// Symlinks are resolved as far as the path exists, and `..` lexically.
pub fn sensitive_host_path(host_path: &str, protected: &Protected) -> bool {
    let p = resolve(Path::new(host_path));
    let p = p.as_os_str().as_bytes();
    p == b"/"
        || protected.trees.iter().any(|t| within(p, bytes(t)))
        || protected
            .own
            .iter()
            .any(|o| within(p, bytes(o)) || within(bytes(o), p))
}

fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// Whether clean absolute path `p` is `t` or below it, comparing bytes.
fn within(p: &[u8], t: &[u8]) -> bool {
    p.starts_with(t) && (p.len() == t.len() || p[t.len()] == b'/' || t == b"/")
}

/// `path` made absolute and free of `.` and `..`, lexically.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Where the lexically clean absolute `path` leads: itself when no
/// component is a symlink (one openat2 with RESOLVE_NO_SYMLINKS tells, the
/// common case), else realpath's answer; `None` when it does not exist.
fn real_path(path: &Path) -> Option<PathBuf> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use std::os::fd::{FromRawFd, OwnedFd};
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    match openat2(libc::AT_FDCWD, path, how) {
        Ok(fd) => {
            // SAFETY: a descriptor just returned to us, closed once here.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            Some(path.to_path_buf())
        }
        Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => None,
        // A symlink on the way (ELOOP), or no openat2 here.
        Err(_) => std::fs::canonicalize(path).ok(),
    }
}

/// [`lexical`], then the symlinks of its longest existing prefix resolved.
fn resolve(path: &Path) -> PathBuf {
    let lexical = lexical(path);
    let mut existing = lexical.as_path();
    let mut rest = Vec::new();
    loop {
        if let Some(real) = real_path(existing) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return lexical,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Profile;
    use k8s_cri::v1::{
        Capability, Int64Value, LinuxContainerConfig, LinuxPodSandboxConfig,
        LinuxSandboxSecurityContext, Mount, NamespaceOption, UserNamespace,
    };

    fn ns(profile: Profile) -> NamespacePolicy {
        NamespacePolicy {
            profile,
            network: NetworkMode::Default,
            allow_privileged: false,
        }
    }

    fn protected() -> Protected {
        Protected::new(&["/var/lib/vordr", "/run/vordr/vordr.sock", "/run/vordr"])
    }

    fn pod(f: impl FnOnce(&mut LinuxSandboxSecurityContext)) -> PodSandboxConfig {
        let mut sc = LinuxSandboxSecurityContext::default();
        f(&mut sc);
        PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(sc),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A container that passes the restricted profile.
    fn good() -> ContainerConfig {
        ContainerConfig {
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    run_as_user: Some(Int64Value { value: 1000 }),
                    no_new_privs: true,
                    seccomp: Some(SecurityProfile {
                        profile_type: 0,
                        localhost_ref: String::new(),
                    }),
                    capabilities: Some(Capability {
                        drop_capabilities: vec!["ALL".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn with_sc(f: impl FnOnce(&mut LinuxContainerSecurityContext)) -> ContainerConfig {
        let mut c = good();
        f(c.linux.as_mut().unwrap().security_context.as_mut().unwrap());
        c
    }

    fn deny(c: &ContainerConfig, p: &PodSandboxConfig, uid: Option<u32>) -> String {
        let d = judge_container(c, p, uid, ns(Profile::Restricted), &protected()).unwrap();
        d.denial("container \"c\"", "team-a").unwrap_or_default()
    }

    #[test]
    fn a_restricted_container_passes_and_each_field_is_named() {
        let none = PodSandboxConfig::default();
        assert_eq!(deny(&good(), &none, Some(1000)), "");
        let caps = |add: &[&str]| {
            with_sc(|sc| {
                sc.capabilities.as_mut().unwrap().add_capabilities =
                    add.iter().map(|s| s.to_string()).collect()
            })
        };
        assert_eq!(
            deny(&caps(&["CAP_sys_admin"]), &none, Some(1000)),
            "gatekeeper: rule 1 (privileged mode and SYS_ADMIN need a privileged pod): \
             container \"c\" adds SYS_ADMIN; profile \"restricted\" for namespace \"team-a\""
        );
        // add ALL then drop ALL (containerd's order) grants nothing ...
        assert_eq!(deny(&caps(&["ALL"]), &none, Some(1000)), "");
        // ... add ALL alone grants SYS_ADMIN; dropping it by name takes it back.
        let mut all = caps(&["ALL"]);
        let c = all
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap();
        c.capabilities.as_mut().unwrap().drop_capabilities = vec![];
        assert!(deny(&all, &none, Some(1000)).contains("adds ALL;"));
        let c = all
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap();
        c.capabilities.as_mut().unwrap().drop_capabilities = vec!["sys_admin".into()];
        assert!(deny(&all, &none, Some(1000)).contains("rule 3"));
        assert!(deny(&caps(&["NET_ADMIN"]), &none, Some(1000))
            .contains("rule 3 (NET_ADMIN needs network mode restricted or admin, the host network admin): container \"c\" adds NET_ADMIN (network mode default)"));
        let priv_ = with_sc(|sc| sc.privileged = true);
        assert!(deny(&priv_, &none, Some(1000)).contains("rule 1 (privileged mode and SYS_ADMIN need a privileged pod): container \"c\" is privileged"));
        assert!(deny(&good(), &none, Some(0)).contains(
            "rule 2 (UID 0 needs a user namespace): container \"c\" runs as UID 0 (linux.security_context.run_as_user) without a user namespace"
        ));
        let image_user = with_sc(|sc| sc.run_as_user = None);
        assert!(deny(&image_user, &none, None).contains("cannot be told"));
        assert!(deny(&image_user, &none, Some(0)).contains("UID 0 (the image's user)"));
        let escalate = with_sc(|sc| sc.no_new_privs = false);
        assert!(deny(&escalate, &none, Some(1000)).contains("rule 4"));
        let unconfined = with_sc(|sc| sc.seccomp = None);
        assert!(deny(&unconfined, &none, Some(1000))
            .contains("rule 7 (seccomp may not be Unconfined): container \"c\" asks for no seccomp profile (Unconfined)"));
        let mut root_mount = good();
        root_mount.mounts.push(Mount {
            host_path: "/".into(),
            container_path: "/host".into(),
            ..Default::default()
        });
        assert!(deny(&root_mount, &none, Some(1000))
            .contains("rule 6 (sensitive host paths may not be mounted): container \"c\" mounts host path \"/\" at \"/host\""));
        let host_pid = pod(|sc| {
            sc.namespace_options = Some(NamespaceOption {
                pid: NamespaceMode::Node as i32,
                ..Default::default()
            })
        });
        assert!(deny(&good(), &host_pid, Some(1000)).contains("rule 5 (host PID and IPC namespaces are not allowed): container \"c\" uses the host PID namespace"));
    }

    #[test]
    fn a_user_namespace_admits_root_and_escalation_in_restricted() {
        let userns = pod(|sc| {
            sc.namespace_options = Some(NamespaceOption {
                userns_options: Some(UserNamespace {
                    mode: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            })
        });
        let c = with_sc(|sc| sc.no_new_privs = false);
        assert_eq!(deny(&c, &userns, Some(0)), "");
    }

    #[test]
    fn pods_are_judged_on_their_own_fields() {
        let judge = |p: &PodSandboxConfig, profile, network| {
            let policy = NamespacePolicy {
                profile,
                network,
                allow_privileged: false,
            };
            judge_pod(p, policy, &protected())
                .unwrap()
                .denial("pod \"p\"", "ns")
                .unwrap_or_default()
        };
        let host_net = pod(|sc| {
            sc.namespace_options = Some(NamespaceOption {
                network: NamespaceMode::Node as i32,
                ..Default::default()
            })
        });
        assert!(judge(&host_net, Profile::Baseline, NetworkMode::Restricted)
            .contains("pod \"p\" uses the host network (network mode restricted)"));
        assert_eq!(judge(&host_net, Profile::Baseline, NetworkMode::Admin), "");
        assert_eq!(
            judge(&host_net, Profile::Privileged, NetworkMode::Default),
            ""
        );
        let mut sysctl = pod(|_| {});
        fn sysctls(s: &mut PodSandboxConfig) -> &mut std::collections::HashMap<String, String> {
            &mut s.linux.as_mut().unwrap().sysctls
        }
        sysctls(&mut sysctl).insert("net.ipv4.ping_group_range".into(), "0 1".into());
        assert_eq!(
            judge(&sysctl, Profile::Restricted, NetworkMode::Default),
            ""
        );
        sysctls(&mut sysctl).insert("kernel/msgmax".into(), "1".into());
        assert!(
            judge(&sysctl, Profile::Baseline, NetworkMode::Default).contains(
                "rule 8 (unsafe sysctls are not allowed): pod \"p\" sets sysctl \"kernel/msgmax\""
            )
        );
        // A pod runs no process: its own user, seccomp and caps are not judged.
        assert_eq!(
            judge(
                &PodSandboxConfig::default(),
                Profile::Restricted,
                NetworkMode::Default
            ),
            ""
        );
    }

    #[test]
    fn allow_privileged_namespaces_take_privileged_containers_in_baseline() {
        let c = with_sc(|sc| sc.privileged = true);
        let policy = NamespacePolicy {
            profile: Profile::Baseline,
            network: NetworkMode::Admin,
            allow_privileged: true,
        };
        let d = judge_container(
            &c,
            &PodSandboxConfig::default(),
            Some(0),
            policy,
            &protected(),
        );
        assert_eq!(d.unwrap().verdict, Verdict::Allowed);
    }

    #[test]
    fn sensitive_paths() {
        let p = protected();
        for s in [
            "/",
            "/etc",
            "/etc/shadow",
            "/proc/1",
            "/sys",
            "/dev/mem",
            "/var/run",
            "/var/run/docker.sock",
            "/run/containerd",
            "/var/lib/vordr/state.db",
            "/var/lib",
            "/var",
            "/run/vordr/vordr.sock",
            "/tmp/../etc",
            "//etc//",
            "/etc/../..",
        ] {
            assert!(sensitive_host_path(s, &p), "{s}");
        }
        for s in [
            "/tmp",
            "/data",
            "/var/lib/kubelet/pods/x/volumes",
            "/etcx",
            "/home/u",
            "/var/log",
        ] {
            assert!(!sensitive_host_path(s, &p), "{s}");
        }
        // A symlink to a sensitive tree is sensitive.
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("etc-link");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        assert!(sensitive_host_path(link.to_str().unwrap(), &p));
        assert!(sensitive_host_path(
            link.join("not-yet/there").to_str().unwrap(),
            &p
        ));
        assert!(!sensitive_host_path(d.path().to_str().unwrap(), &p));
    }
}
