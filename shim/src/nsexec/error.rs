//! Why an exec failed: an [`NsExecError`] before the fork, a [`ChildError`] in the child.

use std::io;
use std::path::PathBuf;

/// Why the exec could not be started. Failures in the child (after the fork) are not errors of
/// this type: the child prints one line to its stderr and exits with 126 or 127.
#[derive(Debug, thiserror::Error)]
pub enum NsExecError {
    #[error("invalid exec spec: {0}")]
    InvalidSpec(String),
    #[error("unsupported exec spec: {0}")]
    Unsupported(String),
    #[error("container init {pid}: {what}: {source}")]
    Init {
        pid: i32,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {}: {reason}", path.display())]
    Cgroup {
        path: PathBuf,
        reason: String,
        #[source]
        source: Option<io::Error>,
    },
    #[error("setns into the {ns} namespace of the container: {source}")]
    Setns {
        ns: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{step}: {source}")]
    Setup {
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("reporting the exec pid: {0}")]
    PidReport(#[source] io::Error),
    #[error("waiting for the exec process: {0}")]
    Wait(#[source] io::Error),
}

pub(super) fn setup_err(step: &str) -> NsExecError {
    NsExecError::Setup {
        step: step.to_string(),
        source: io::Error::last_os_error(),
    }
}

/// Why the child gave up: message for stderr and exit code (126: found but not executable,
/// 127: not found and every other setup failure).
pub(super) struct ChildError {
    pub(super) code: i32,
    pub(super) msg: String,
}

pub(super) fn cerr(step: &str) -> ChildError {
    ChildError {
        code: 127,
        msg: format!("{step}: {}", io::Error::last_os_error()),
    }
}

pub(super) fn check(rc: libc::c_int, step: &str) -> Result<(), ChildError> {
    if rc < 0 {
        Err(cerr(step))
    } else {
        Ok(())
    }
}
