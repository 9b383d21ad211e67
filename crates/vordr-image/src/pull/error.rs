//! Why a pull failed: the public error, and fetch errors classified into it.

use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::content::ContentError;
use crate::snapshots::SnapshotError;
use crate::unpack::UnpackError;

/// Why a pull failed, coarsely, for the gRPC status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    NotFound,
    Unauthorized,
    /// Connection refused or timed out, or a read timed out.
    Unreachable,
    BadContent,
    /// No data for the progress timeout: the pull was cancelled.
    Timeout,
    /// A manifest, config or layer over its cap.
    TooLarge,
    Other,
}

/// A failed pull, naming the image, the registry and the cause.
#[derive(Debug, thiserror::Error)]
#[error("pulling {image} from {registry}: {cause}")]
pub struct PullError {
    pub image: String,
    pub registry: String,
    pub kind: FailureKind,
    pub cause: String,
}

/// A failed step of a pull from one source, before it is told as a
/// [`PullError`].
pub(super) enum Fetch {
    Oci(OciDistributionError),
    Content(ContentError),
    Snapshot(SnapshotError),
    /// Over a size cap.
    TooLarge(String),
    /// Not what a registry may serve.
    Bad(String),
    Task(String),
}

/// Turns failures of a pull of `image` from `registry` into [`PullError`]s.
pub(super) struct Blame {
    pub(super) image: String,
    pub(super) registry: String,
}

impl Blame {
    pub(super) fn fail(&self, kind: FailureKind, cause: String) -> PullError {
        PullError {
            image: self.image.clone(),
            registry: self.registry.clone(),
            kind,
            cause,
        }
    }

    pub(super) fn content(&self, e: ContentError) -> PullError {
        let kind = match e {
            ContentError::DigestMismatch { .. } | ContentError::SizeMismatch { .. } => {
                FailureKind::BadContent
            }
            _ => FailureKind::Other,
        };
        self.fail(kind, e.to_string())
    }

    /// `e`, a failure while fetching `what`.
    pub(super) fn fetch(&self, e: Fetch, what: &str) -> PullError {
        match e {
            Fetch::Oci(e) => self.fail(classify(&e), format!("{what}: {}", describe(&e))),
            Fetch::Content(e) => self.content(e),
            Fetch::Snapshot(SnapshotError::Io { path, source }) => self.fail(
                FailureKind::Other,
                format!("{what}: snapshot I/O at {}: {source}", path.display()),
            ),
            Fetch::Snapshot(
                e @ SnapshotError::Unpack(
                    UnpackError::TooLarge { .. }
                    | UnpackError::TooManyEntries { .. }
                    | UnpackError::MetadataTooLarge { .. },
                ),
            ) => self.fail(FailureKind::TooLarge, format!("{what}: {e}")),
            Fetch::Snapshot(e) => self.fail(FailureKind::BadContent, format!("{what}: {e}")),
            Fetch::TooLarge(e) => self.fail(FailureKind::TooLarge, format!("{what}: {e}")),
            Fetch::Bad(e) => self.fail(FailureKind::BadContent, format!("{what}: {e}")),
            Fetch::Task(e) => self.fail(FailureKind::Other, format!("{what}: {e}")),
        }
    }
}

/// An error with its causes ("error decoding response body: operation
/// timed out"), each said once.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// A request's timeout or refused connection, wherever it surfaced.
fn timed_out_or_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            if r.is_timeout() || r.is_connect() {
                return true;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

fn classify(e: &OciDistributionError) -> FailureKind {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => FailureKind::NotFound,
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => FailureKind::Unauthorized,
        OciDistributionError::ServerError { code, .. } if *code == 404 => FailureKind::NotFound,
        OciDistributionError::ServerError { code, .. } if *code == 401 || *code == 403 => {
            FailureKind::Unauthorized
        }
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .map(|e| match e.code {
                OciErrorCode::ManifestUnknown
                | OciErrorCode::NameUnknown
                | OciErrorCode::BlobUnknown
                | OciErrorCode::NotFound => FailureKind::NotFound,
                OciErrorCode::Unauthorized | OciErrorCode::Denied => FailureKind::Unauthorized,
                OciErrorCode::DigestInvalid | OciErrorCode::SizeInvalid => FailureKind::BadContent,
                _ => FailureKind::Other,
            })
            .next()
            .unwrap_or(FailureKind::Other),
        OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() => {
            FailureKind::Unreachable
        }
        OciDistributionError::IoError(io) if timed_out_or_refused(io) => FailureKind::Unreachable,
        OciDistributionError::DigestError(_) => FailureKind::BadContent,
        _ => FailureKind::Other,
    }
}

/// A failed blob stream: oci-client's own digest check, or the transfer.
pub(super) fn stream_error(e: std::io::Error) -> Fetch {
    use oci_client::errors::DigestError;
    if e.get_ref().is_some_and(|i| i.is::<DigestError>()) {
        if let Some(Ok(d)) = e.into_inner().map(|i| i.downcast::<DigestError>()) {
            return Fetch::Oci(OciDistributionError::DigestError(*d));
        }
        return Fetch::Task("unreachable: a digest error that is not one".into());
    }
    Fetch::Oci(OciDistributionError::IoError(e))
}
