//! What every judgement shares: the node's facts the rules need (resolved
//! once, at start), the reasons a spec breaks each rule, and the decision.

use std::path::{Path, PathBuf};

use crate::tables::{lexical, one_component, within};
use crate::{validate, GateError, Input, Rule, Verdict};

/// Where kubelet keeps pods and their logs on this node, and how it sends
/// seccomp profiles.
#[derive(Debug, Clone)]
pub struct Node {
    /// kubelet's root directory (`--root-dir`), symlinks resolved.
    pub kubelet_root: PathBuf,
    /// kubelet's pod log directory (`/var/log/pods`), symlinks resolved.
    pub log_root: PathBuf,
    /// kubelet runs with seccompDefault: Unconfined reaches the runtime only
    /// when asked for, and Baseline refuses it.
    pub refuse_unconfined: bool,
}

impl Node {
    /// `kubelet_root` and `log_root` as configured; each is resolved where
    /// it exists (a symlinked /var/lib/kubelet), lexically cleaned where not.
    pub fn new(kubelet_root: &Path, log_root: &Path, refuse_unconfined: bool) -> Node {
        let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| lexical(p));
        Node {
            kubelet_root: real(kubelet_root),
            log_root: real(log_root),
            refuse_unconfined,
        }
    }

    /// kubelet's directory for the pod with this UID: bind mounts from
    /// inside it are the pod's own volumes; `None` for a UID that is not one
    /// path component (then every bind mount is a host path).
    pub fn pod_dir(&self, pod_uid: &str) -> Option<PathBuf> {
        one_component(pod_uid).then(|| self.kubelet_root.join("pods").join(pod_uid))
    }

    /// Whether a resolved log file path is under the log directory.
    pub fn log_inside(&self, path: &Path) -> bool {
        path.is_absolute() && lexical(path) == path && within(path, &self.log_root)
    }
}

/// Why a spec breaks each rule, in its own terms (`adds CAP_SYS_ADMIN
/// (linux.security_context.capabilities.add_capabilities)`); kept while
/// reducing it, to explain a denial.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reasons(Vec<(u8, String)>);

impl Reasons {
    /// Records why rule `rule` may deny (the first reason per rule wins).
    pub fn note(&mut self, rule: u8, why: impl Into<String>) {
        if !self.0.iter().any(|(r, _)| *r == rule) {
            self.0.push((rule, why.into()));
        }
    }

    pub fn of(&self, rule: u8) -> Option<&str> {
        self.0
            .iter()
            .find(|(r, _)| *r == rule)
            .map(|(_, w)| w.as_str())
    }
}

/// A judged spec: the policy's input, its verdict, and for a denial what
/// in the spec broke the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub input: Input,
    pub verdict: Verdict,
    /// For a denial: what the spec asked for, e.g. `adds CAP_SYS_ADMIN`.
    pub cause: String,
}

impl Decision {
    /// Judges `input` with the SPARK policy; `reasons` explain a denial.
    pub fn judge(input: Input, reasons: &Reasons) -> Result<Decision, GateError> {
        let verdict = validate(&input)?;
        let cause = match verdict {
            Verdict::Allowed => String::new(),
            Verdict::Denied(Rule(r)) => reasons
                .of(r)
                .map(str::to_string)
                .unwrap_or_else(|| "breaks it".to_string()),
        };
        Ok(Decision {
            input,
            verdict,
            cause,
        })
    }

    /// The denial as the gRPC status message names it, e.g.
    /// `gatekeeper: rule 2 (...): container "c" adds CAP_SYS_ADMIN
    /// (...); profile "baseline" for namespace "team-a"`. `None` when
    /// allowed.
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
