//! The CRI v1 API of Kubernetes 1.35, generated from the workspace's `proto/api.proto`.
//!
//! The module paths are those of the `k8s-cri` crate (`v1::...`, `v1::runtime_service_client`,
//! `v1::runtime_service_server`, `v1::image_service_client`, `v1::image_service_server`), and the
//! workspace depends on this crate under the name `k8s-cri`, so every `k8s_cri::v1` path in the
//! other crates reads the same and going back to the crates.io crate is one line in Cargo.toml.
//! proto/README.md says where the file comes from and what Kubernetes 1.33 to 1.35 added to it.

#[allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]
pub mod v1 {
    //! API version v1 (package `runtime.v1`) as of Kubernetes 1.35.
    tonic::include_proto!("runtime.v1");
}
