//! Calling CNI network plugins, as a kubelet-driven runtime does: the
//! lexically first valid config list in a directory ([`conf`]), ADD, CHECK
//! and DEL through each plugin of the list with the runtime's capability
//! arguments ([`exec`], [`ops`]), and a cache per attachment holding what
//! ADD was given and returned, so that DEL gets the same even after the
//! config changed or the daemon crashed ([`cache`]).

pub mod cache;
pub mod conf;
pub mod exec;
pub mod ops;

pub use conf::ConfList;
pub use ops::{Attachment, Cni, PodResult};

/// Errors from loading configs and calling plugins.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("CNI config {path}: {reason}")]
    Config { path: String, reason: String },
    #[error("CNI plugin {plugin:?} not found in {dirs}")]
    PluginMissing { plugin: String, dirs: String },
    #[error("CNI plugin {plugin} {command} failed: {message}")]
    Plugin {
        plugin: String,
        command: &'static str,
        message: String,
    },
    #[error("CNI plugin {plugin} {command} did not finish within {seconds} s")]
    Timeout {
        plugin: String,
        command: &'static str,
        seconds: u64,
    },
    #[error("CNI cache {path}: {reason}")]
    Cache { path: String, reason: String },
}
