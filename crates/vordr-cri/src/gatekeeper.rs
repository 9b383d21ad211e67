//! The gatekeeper in the RPCs: a pod or container spec is judged by the
//! SPARK policy before anything is created, the decision goes to the audit
//! table, and a denial (or a policy that could not decide) becomes
//! PermissionDenied naming the rule, the field and the profile.

use k8s_cri::v1::{ContainerConfig, PodSandboxConfig};
use tonic::Status;
use vordr_gatekeeper::cri::{judge_container, judge_pod, Decision, Protected};
use vordr_gatekeeper::{GateError, Verdict};
use vordr_store::AuditRecord;

use crate::runtime::Runtime;
use crate::sandbox_run::now_ns;

/// The host paths no container may mount, for this daemon's config.
pub fn protected(config: &vordr_config::Config) -> Protected {
    let s = &config.server;
    Protected::new(&[&s.socket, &s.root, &s.run_dir])
}

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
        judge_pod(cfg, policy, &rt.protected),
    )
}

/// Judges a container of pod `pod_id`; `uid` as `vordr_spec::uid_before_rootfs`
/// tells it.
pub fn check_container(
    rt: &Runtime,
    action: &'static str,
    cfg: &ContainerConfig,
    pod: &PodSandboxConfig,
    pod_id: &str,
    uid: Option<u32>,
) -> Result<(), Status> {
    let policy = rt.config.gatekeeper.for_namespace(namespace(pod));
    let name = cfg.metadata.as_ref().map_or("", |m| m.name.as_str());
    let subject = Subject {
        action,
        pod,
        pod_id,
        container: name,
    };
    enforce(
        rt,
        &subject,
        policy.profile,
        judge_container(cfg, pod, uid, policy, &rt.protected),
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
        action: s.action.to_string(),
        namespace: ns.to_string(),
        pod: pod_name.to_string(),
        pod_id: s.pod_id.to_string(),
        container: s.container.to_string(),
        profile: profile.as_str().to_string(),
        rule,
        verdict: verdict.to_string(),
        reason: reason.clone(),
    };
    if let Err(e) = rt
        .store
        .record_audit(&record, rt.config.gatekeeper.audit_max_rows)
    {
        tracing::error!("recording a gatekeeper decision: {e}");
    }
    if verdict == "allowed" {
        return Ok(());
    }
    tracing::warn!(action = s.action, namespace = ns, "{reason}");
    Err(Status::permission_denied(reason))
}
