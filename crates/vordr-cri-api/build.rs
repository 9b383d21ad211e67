//! Generates the CRI v1 bindings from the workspace's proto/api.proto.
//!
//! protox parses the file in Rust (no protoc needed on the build host) into a
//! FileDescriptorSet that tonic-prost-build turns into messages, clients and
//! servers, with the serde derives the k8s-cri crate gives its types.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest.join("../../proto");
    let api = proto_dir.join("api.proto");
    println!("cargo:rerun-if-changed={}", api.display());
    let fds = protox::compile([&api], [&proto_dir])?;
    tonic_prost_build::configure()
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
