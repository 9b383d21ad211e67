//! The gatekeeper in the RPCs: a pod or container spec is judged by the
//! SPARK policy before anything is created, the decision goes to the audit
//! table, and a denial (or a policy that could not decide) becomes
//! PermissionDenied naming the rule, the field and the profile.

use k8s_cri::v1::PodSandboxConfig;
use tonic::Status;
use vordr_gatekeeper::{judge_container, judge_pod, Container, Decision, GateError, Verdict};
use vordr_store::AuditRecord;

use crate::state::ids::now_ns;
use crate::state::Runtime;

/// What a decision is about, for the audit row and the message.
struct Subject<'a> {
    action: &'static str,
    pod: &'a PodSandboxConfig,
    pod_id: &'a str,
    container: &'a str,
}

/// Judges a pod sandbox before RunPodSandbox creates anything.
pub fn check_pod(rt: &Runtime, cfg: &PodSandboxConfig) -> Result<(), Status> {
    let ns = namespace(cfg);
    let policy = rt.config.gatekeeper.for_namespace(ns);
    let subject = Subject {
        action: "RunPodSandbox",
        pod: cfg,
        pod_id: "",
        container: "",
    };
    enforce(
        rt,
        &subject,
        policy.profile,
        judge_pod(cfg, policy, &rt.gate_node),
    )
}

/// Judges a container of pod `pod_id` on the spec that will run.
pub fn check_container(
    rt: &Runtime,
    action: &'static str,
    name: &str,
    c: &Container<'_>,
    pod_id: &str,
) -> Result<(), Status> {
    let policy = rt.config.gatekeeper.for_namespace(namespace(c.pod));
    let subject = Subject {
        action,
        pod: c.pod,
        pod_id,
        container: name,
    };
    enforce(
        rt,
        &subject,
        policy.profile,
        judge_container(c, policy, &rt.gate_node),
    )
}

fn namespace(pod: &PodSandboxConfig) -> &str {
    pod.metadata.as_ref().map_or("", |m| m.namespace.as_str())
}

fn enforce(
    rt: &Runtime,
    s: &Subject<'_>,
    profile: vordr_gatekeeper::Profile,
    result: Result<Decision, GateError>,
) -> Result<(), Status> {
    let ns = namespace(s.pod);
    let pod_name = s.pod.metadata.as_ref().map_or("", |m| m.name.as_str());
    let who = if s.container.is_empty() {
        format!("pod {pod_name:?}")
    } else {
        format!("container {:?}", s.container)
    };
    let (rule, verdict, reason) = match &result {
        Ok(d) => match (d.verdict, d.denial(&who, ns)) {
            (Verdict::Denied(rule), Some(msg)) => (rule.0, "denied", msg),
            _ => (0, "allowed", String::new()),
        },
        Err(e) => (0, "error", format!("{e} ({who} in namespace {ns:?})")),
    };
    let record = AuditRecord {
        time: now_ns(),
        kind: "decision".into(),
        action: s.action.to_string(),
        namespace: ns.to_string(),
        pod: pod_name.to_string(),
        pod_id: s.pod_id.to_string(),
        container: s.container.to_string(),
        profile: profile.as_str().to_string(),
        rule,
        verdict: verdict.to_string(),
        reason: reason.clone(),
        ..Default::default()
    };
    rt.metrics.gatekeeper_decision(verdict, rule);
    crate::security::audit::append(rt, &record);
    if verdict == "allowed" {
        return Ok(());
    }
    tracing::warn!(action = s.action, namespace = ns, "{reason}");
    Err(Status::permission_denied(reason))
}

/// What a judged spec asks of the node's security modules, checked on this
/// node: an AppArmor profile where AppArmor is off (or not loaded), or an
/// SELinux label where SELinux is off, is refused with FailedPrecondition,
/// never silently dropped. An Unconfined AppArmor profile where there is
/// no AppArmor is what runs anyway: it leaves the spec (runtimes refuse a
/// profile on such nodes).
pub fn node_supports(spec: &mut oci_spec::runtime::Spec) -> Result<(), Status> {
    let Some(process) = spec.process_mut() else {
        return Ok(());
    };
    if let Some(profile) = process.apparmor_profile().clone() {
        let profile: String = profile;
        let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.trim() == "Y");
        if profile == "unconfined" {
            if !enabled {
                process.set_apparmor_profile(None);
            }
        } else if !enabled {
            return Err(Status::failed_precondition(format!(
                "AppArmor is not enabled on this node: the container asks for AppArmor profile \
                 {profile:?} (linux.security_context.apparmor)"
            )));
        } else if !apparmor_loaded(&profile) {
            return Err(Status::failed_precondition(format!(
                "AppArmor profile {profile:?} is not loaded on this node \
                 (linux.security_context.apparmor)"
            )));
        }
    }
    if let Some(label) = process.selinux_label().as_deref() {
        if !std::path::Path::new("/sys/fs/selinux/enforce").exists() {
            return Err(Status::failed_precondition(format!(
                "SELinux is not enabled on this node: the container asks for SELinux label \
                 {label:?} (linux.security_context.selinux_options)"
            )));
        }
    }
    Ok(())
}

/// Whether the kernel has an AppArmor profile of this name loaded.
fn apparmor_loaded(name: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/apparmor/profiles").is_ok_and(|s| {
        s.lines()
            .any(|l| l.rsplit_once(' ').is_some_and(|(n, _)| n == name))
    })
}
