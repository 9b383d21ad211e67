//! The audit chain in the RPCs: every call that changes the node (pods,
//! containers, execs, images) is appended as a lifecycle record when it
//! ends, with its outcome, beside the gatekeeper's decisions (see
//! `gatekeeper`). Appending runs where the call's work runs, so a call cut
//! short by kubelet's deadline is still recorded when its work finishes.

use tonic::Status;
use vordr_store::AuditRecord;

use crate::state::ids::now_ns;
use crate::state::Runtime;

/// What a lifecycle record says the call was about.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub action: &'static str,
    pub namespace: String,
    /// The pod's name, when the request names it.
    pub pod: String,
    pub pod_id: String,
    /// The container's id (or its name, before it has one).
    pub container: String,
    /// What else identifies the change: the image, the command.
    pub detail: String,
}

impl Event {
    pub fn new(action: &'static str) -> Event {
        Event {
            action,
            ..Default::default()
        }
    }

    pub fn pod_id(mut self, id: &str) -> Event {
        self.pod_id = id.to_string();
        self
    }

    pub fn container(mut self, id: &str) -> Event {
        self.container = id.to_string();
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Event {
        self.detail = detail.into();
        self
    }
}

/// Appends the record of a finished call; a failure to record is logged,
/// never the call's failure.
pub fn lifecycle<T>(rt: &Runtime, ev: Event, outcome: &Result<T, Status>) {
    let (verdict, reason) = match outcome {
        Ok(_) => ("ok".to_string(), ev.detail),
        Err(s) if ev.detail.is_empty() => (format!("{:?}", s.code()), s.message().to_string()),
        Err(s) => (
            format!("{:?}", s.code()),
            format!("{} ({})", s.message(), ev.detail),
        ),
    };
    let record = AuditRecord {
        time: now_ns(),
        kind: "lifecycle".into(),
        action: ev.action.into(),
        namespace: ev.namespace,
        pod: ev.pod,
        pod_id: ev.pod_id,
        container: ev.container,
        verdict,
        reason,
        ..Default::default()
    };
    append(rt, &record);
}

/// Appends `record` to the chain.
pub fn append(rt: &Runtime, record: &AuditRecord) {
    if let Err(e) = rt.audit.append(&rt.store, record) {
        tracing::error!(action = %record.action, "recording to the audit chain: {e}");
    }
}
