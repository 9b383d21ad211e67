//! Mapping internal failures onto gRPC statuses.

use tonic::Status;

/// InvalidArgument naming the offending field.
pub fn invalid(field: &str, msg: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {msg}"))
}

/// Internal error with context; logged, since kubelet only retries.
pub fn internal(context: &str, err: impl std::fmt::Display) -> Status {
    tracing::error!("{context}: {err}");
    Status::internal(format!("{context}: {err}"))
}

impl From<crate::state::PodLookupError> for Status {
    fn from(e: crate::state::PodLookupError) -> Status {
        use crate::state::PodLookupError::*;
        match e {
            NotFound(id) => Status::not_found(format!("pod sandbox {id:?} not found")),
            Ambiguous(id) => Status::invalid_argument(format!(
                "pod_sandbox_id: {id:?} matches more than one pod sandbox"
            )),
            Store(e) => internal("reading pod sandbox", e),
        }
    }
}
