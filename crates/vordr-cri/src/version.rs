//! Version: who we are and which CRI we speak.

use k8s_cri::v1::{VersionRequest, VersionResponse};

/// The version of the kubelet runtime API this implements.
pub const KUBE_API_VERSION: &str = "0.1.0";
pub const RUNTIME_NAME: &str = "vordr";
pub const RUNTIME_API_VERSION: &str = "v1";

pub fn version(_req: VersionRequest) -> VersionResponse {
    VersionResponse {
        version: KUBE_API_VERSION.into(),
        runtime_name: RUNTIME_NAME.into(),
        runtime_version: env!("CARGO_PKG_VERSION").into(),
        runtime_api_version: RUNTIME_API_VERSION.into(),
    }
}
