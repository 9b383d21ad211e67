//! A container judged on the OCI runtime spec that will run: vordr-spec
//! built it, with every host path already resolved to the object that
//! will be mounted, so the judged and the run spec cannot differ. Only
//! what the spec cannot carry comes from elsewhere: the CRI privileged
//! flag and the capabilities asked for (as the spec builder normalised
//! them), the stored pod config (host ports, the pod's UID), the files
//! Vordr made for the pod, and the resolved log path.

use std::path::{Path, PathBuf};

use k8s_cri::v1::PodSandboxConfig;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use crate::judge::{Decision, Node, Reasons};
use crate::tables::{
    maps_host_root, safe_sysctl, selinux_label, unified_key_ok, unmasked_path, within,
};
use crate::{
    AppArmorMode, CapSet, GateError, Input, NamespacePolicy, SeccompMode, SelinuxType, UsernsMode,
    BASELINE_CAPS,
};

/// The AppArmor profile name vordr-spec writes for RuntimeDefault.
pub const APPARMOR_RUNTIME_DEFAULT: &str = "vordr-default";

const SC: &str = "linux.security_context";

/// What is judged of a container.
#[derive(Debug, Clone, Copy)]
pub struct Container<'a> {
    /// The spec that will run.
    pub spec: &'a Spec,
    /// The CRI privileged flag.
    pub privileged: bool,
    /// The capabilities the config asked to add (ALL: every one).
    pub added: CapSet,
    /// The pod's stored config.
    pub pod: &'a PodSandboxConfig,
    /// Bind sources Vordr made for the pod (hosts, resolv.conf, hostname,
    /// shm), resolved: not host paths.
    pub pod_files: &'a [PathBuf],
    /// The container's log file, resolved; `None` when it has none.
    pub log_path: Option<&'a Path>,
}

/// Judges a container's spec.
pub fn judge_container(
    c: &Container<'_>,
    ns: NamespacePolicy,
    node: &Node,
) -> Result<Decision, GateError> {
    let mut input = Input::harmless(ns);
    input.refuse_unconfined = node.refuse_unconfined;
    let mut why = Reasons::default();
    input.privileged = c.privileged;
    if c.privileged {
        why.note(1, format!("is privileged ({SC}.privileged)"));
    }
    process(&mut input, &mut why, c);
    linux(&mut input, &mut why, c.spec);
    mounts(&mut input, &mut why, c, node);
    if let Some(p) = c.pod.port_mappings.iter().find(|p| p.host_port > 0) {
        input.host_port = true;
        why.note(
            6,
            format!("is in a pod that maps host port {}", p.host_port),
        );
    }
    if let Some(log) = c.log_path {
        if !node.log_inside(log) {
            input.log_outside = true;
            why.note(
                17,
                format!(
                    "logs to {} (log_directory and log_path), outside {}",
                    log.display(),
                    node.log_root.display()
                ),
            );
        }
    }
    Decision::judge(input, &why)
}

fn process(input: &mut Input, why: &mut Reasons, c: &Container<'_>) {
    let Some(p) = c.spec.process() else { return };
    input.uid = Some(p.user().uid());
    input.no_new_privs = p.no_new_privileges().unwrap_or(false);
    why.note(
        12,
        format!("allows privilege escalation ({SC}.no_new_privs is false)"),
    );
    input.added = c.added;
    if let Some(caps) = p.capabilities() {
        for set in [
            caps.bounding(),
            caps.effective(),
            caps.permitted(),
            caps.inheritable(),
            caps.ambient(),
        ]
        .into_iter()
        .flatten()
        {
            for cap in set {
                let name = cap.to_string();
                let name = if name.starts_with("CAP_") {
                    name
                } else {
                    format!("CAP_{name}")
                };
                // A capability this table does not know is held all the same.
                input.held.0 |= CapSet::number(&name).map_or(1 << 63, |n| 1 << n);
            }
        }
    }
    let baseline = CapSet::of(&BASELINE_CAPS).unwrap_or_default();
    let default = baseline.union(CapSet::of(&["CAP_NET_RAW"]).unwrap_or_default());
    let net_admin = if input.network == crate::NetworkMode::Default {
        CapSet::default()
    } else {
        CapSet::of(&["CAP_NET_ADMIN"]).unwrap_or_default()
    };
    let caps_why = |added: CapSet, allowed_add: CapSet, held: CapSet, allowed_held: CapSet| {
        let extra = added.names_not_in(allowed_add.union(net_admin));
        if !extra.is_empty() {
            return format!(
                "adds {} ({SC}.capabilities.add_capabilities)",
                extra.join(", ")
            );
        }
        format!(
            "holds {}",
            held.names_not_in(allowed_held.union(net_admin)).join(", ")
        )
    };
    why.note(2, caps_why(input.added, baseline, input.held, default));
    let nbs = CapSet::of(&["CAP_NET_BIND_SERVICE"]).unwrap_or_default();
    why.note(3, caps_why(input.added, nbs, input.held, nbs));
    input.apparmor = match p.apparmor_profile().as_deref() {
        None | Some("") => AppArmorMode::None,
        Some("unconfined") => AppArmorMode::Unconfined,
        Some(APPARMOR_RUNTIME_DEFAULT) => AppArmorMode::RuntimeDefault,
        Some(_) => AppArmorMode::Localhost,
    };
    why.note(
        7,
        format!("runs AppArmor profile unconfined ({SC}.apparmor)"),
    );
    if let Some(label) = p.selinux_label().as_deref().filter(|l| !l.is_empty()) {
        let l = selinux_label(label);
        input.selinux = SelinuxType::of(l.typ);
        input.selinux_user_role = !l.user.is_empty() || !l.role.is_empty();
        why.note(
            8,
            format!("runs with SELinux label {label:?} ({SC}.selinux_options)"),
        );
    }
}

fn linux(input: &mut Input, why: &mut Reasons, spec: &Spec) {
    let Some(l) = spec.linux() else {
        // No Linux section: every host namespace, nothing masked.
        input.host_network = true;
        input.host_pid = true;
        input.host_ipc = true;
        input.seccomp = SeccompMode::Unconfined;
        input.proc_unmasked = true;
        why.note(4, "has no Linux namespaces");
        return;
    };
    let namespaces = l.namespaces().clone().unwrap_or_default();
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    for (t, what) in [
        (LinuxNamespaceType::Pid, "PID"),
        (LinuxNamespaceType::Ipc, "IPC"),
        (LinuxNamespaceType::Network, "network"),
    ] {
        if !has(t) {
            match t {
                LinuxNamespaceType::Pid => input.host_pid = true,
                LinuxNamespaceType::Ipc => input.host_ipc = true,
                _ => input.host_network = true,
            }
            why.note(
                4,
                format!("uses the host {what} namespace ({SC}.namespace_options)"),
            );
        }
    }
    if has(LinuxNamespaceType::User) {
        let maps = |m: &Option<Vec<LinuxIdMapping>>| -> Vec<(u32, u32, u32)> {
            m.iter()
                .flatten()
                .map(|m| (m.container_id(), m.host_id(), m.size()))
                .collect()
        };
        let (uids, gids) = (maps(l.uid_mappings()), maps(l.gid_mappings()));
        if maps_host_root(&uids) || maps_host_root(&gids) {
            input.maps_host_root = true;
            why.note(
                16,
                "maps the host's ID 0 in its user namespace (the pod's userns_options)",
            );
        } else if !uids.is_empty() && !gids.is_empty() {
            input.userns = UsernsMode::Pod;
        }
    }
    if let Some(uid) = input.uid {
        why.note(13, format!("runs as UID {uid} without a user namespace"));
    }
    if l.seccomp().is_none() {
        input.seccomp = SeccompMode::Unconfined;
        why.note(10, format!("runs without a seccomp filter ({SC}.seccomp)"));
    }
    let masked = l.masked_paths().clone().unwrap_or_default();
    let readonly = l.readonly_paths().clone().unwrap_or_default();
    if let Some(p) = unmasked_path(&masked, &readonly) {
        input.proc_unmasked = true;
        why.note(
            9,
            format!("runs with /proc unmasked: {p} is not in {SC}.masked_paths / readonly_paths"),
        );
    }
    if let Some(name) = l
        .sysctl()
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .find(|k| !safe_sysctl(k))
    {
        input.unsafe_sysctl = true;
        why.note(
            11,
            format!("sets sysctl {name:?} (the pod's linux.sysctls)"),
        );
    }
    if let Some(d) = l.devices().iter().flatten().next() {
        input.devices = true;
        why.note(
            14,
            format!("has host device {} (devices)", d.path().display()),
        );
    }
    if let Some(key) = l
        .resources()
        .as_ref()
        .and_then(|r| r.unified().as_ref())
        .and_then(|u| u.keys().find(|k| !unified_key_ok(k)))
    {
        input.bad_unified_key = true;
        why.note(15, format!("sets {key:?} (linux.resources.unified)"));
    }
}

fn mounts(input: &mut Input, why: &mut Reasons, c: &Container<'_>, node: &Node) {
    let pod_uid = c.pod.metadata.as_ref().map_or("", |m| m.uid.as_str());
    let pod_dir = node.pod_dir(pod_uid);
    for m in c.spec.mounts().iter().flatten() {
        let bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        let Some(source) = m.source().as_ref().filter(|_| bind) else {
            continue;
        };
        if c.pod_files.iter().any(|f| f == source)
            || pod_dir.as_ref().is_some_and(|d| within(source, d))
        {
            continue;
        }
        input.host_path = true;
        why.note(
            5,
            format!(
                "mounts host path {} at {} (mounts), outside kubelet's directory for pod {pod_uid:?} ({})",
                source.display(),
                m.destination().display(),
                pod_dir
                    .as_deref()
                    .unwrap_or(&node.kubelet_root.join("pods"))
                    .display()
            ),
        );
    }
}
