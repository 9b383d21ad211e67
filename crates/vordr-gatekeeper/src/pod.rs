//! A pod sandbox judged before RunPodSandbox creates anything. A pod runs
//! no workload of its own (its init is a pause-like process with nothing
//! of the host): what it decides for its containers is judged here, from
//! the config that will be stored and applied: privileged mode, host
//! namespaces and ports, its user namespace's mappings, sysctls and its
//! SELinux options.

use k8s_cri::v1::{NamespaceMode, PodSandboxConfig, SeLinuxOption};

use crate::judge::{Decision, Node, Reasons};
use crate::tables::{maps_host_root, safe_sysctl};
use crate::{CapSet, GateError, Input, NamespacePolicy, SelinuxType, UsernsMode};

const SC: &str = "linux.security_context";

/// Judges a pod sandbox config.
pub fn judge_pod(
    cfg: &PodSandboxConfig,
    ns: NamespacePolicy,
    node: &Node,
) -> Result<Decision, GateError> {
    let mut input = Input::harmless(ns);
    input.refuse_unconfined = node.refuse_unconfined;
    let mut why = Reasons::default();
    let linux = cfg.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    if sc.privileged {
        input.privileged = true;
        input.held = CapSet::ALL;
        why.note(1, format!("is privileged ({SC}.privileged)"));
        why.note(
            2,
            format!("is privileged and holds every capability ({SC}.privileged)"),
        );
        why.note(
            3,
            format!("is privileged and holds every capability ({SC}.privileged)"),
        );
    }
    if let Some(o) = &sc.namespace_options {
        let node_mode = NamespaceMode::Node as i32;
        let field = format!("{SC}.namespace_options");
        if o.pid == node_mode {
            input.host_pid = true;
            why.note(4, format!("uses the host PID namespace ({field}.pid)"));
        }
        if o.ipc == node_mode {
            input.host_ipc = true;
            why.note(4, format!("uses the host IPC namespace ({field}.ipc)"));
        }
        if o.network == node_mode {
            input.host_network = true;
            why.note(
                4,
                format!(
                    "uses the host network ({field}.network; network mode {})",
                    ns.network.as_str()
                ),
            );
        }
        if let Some(u) = o
            .userns_options
            .as_ref()
            .filter(|u| u.mode == NamespaceMode::Pod as i32)
        {
            let maps = |m: &[k8s_cri::v1::IdMapping]| -> Vec<(u32, u32, u32)> {
                m.iter()
                    .map(|m| (m.container_id, m.host_id, m.length))
                    .collect()
            };
            if maps_host_root(&maps(&u.uids)) || maps_host_root(&maps(&u.gids)) {
                input.maps_host_root = true;
                why.note(16, format!("maps the host's ID 0 ({field}.userns_options)"));
            } else {
                input.userns = UsernsMode::Pod;
            }
        }
    }
    if let Some(p) = cfg.port_mappings.iter().find(|p| p.host_port > 0) {
        input.host_port = true;
        why.note(6, format!("maps host port {} (port_mappings)", p.host_port));
    }
    if let Some(name) = linux.sysctls.keys().find(|k| !safe_sysctl(k)) {
        input.unsafe_sysctl = true;
        why.note(11, format!("sets sysctl {name:?} (linux.sysctls)"));
    }
    selinux_options(&mut input, &mut why, sc.selinux_options.as_ref(), SC);
    Decision::judge(input, &why)
}

/// SELinux options of a pod or container, as the label they give.
pub(crate) fn selinux_options(
    input: &mut Input,
    why: &mut Reasons,
    o: Option<&SeLinuxOption>,
    sc_field: &str,
) {
    let Some(o) = o else { return };
    input.selinux = SelinuxType::of(&o.r#type);
    input.selinux_user_role = !o.user.is_empty() || !o.role.is_empty();
    why.note(
        8,
        format!(
            "sets SELinux user {:?}, role {:?}, type {:?} ({sc_field}.selinux_options)",
            o.user, o.role, o.r#type
        ),
    );
}
