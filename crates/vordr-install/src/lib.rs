//! Installs Vordr onto a node's root filesystem and removes it again: binaries, configuration, systemd unit, crictl.yaml and kubelet's runtime endpoint.
//!
//! Both directions are a [`Plan`] first: every change is computed from what
//! is on disk, printed (`--dry-run` stops there) and then applied in order.
//! A plan with no steps means there is nothing to do, which makes both
//! directions idempotent. Files are replaced atomically with explicit
//! modes; kubelet's files are edited on one line and saved whole under
//! `/etc/vordr/saved/` first, so uninstall restores them byte for byte.

mod edited;
pub mod files;
mod host;
mod hostfs;
mod install;
pub mod kubelet;
pub mod node_label;
mod plan;
mod systemd;
mod texts;
mod uninstall;

use std::path::{Path, PathBuf};

pub use edited::{kubelet_endpoints, KubeletEndpoint};
pub use host::{missing_packages, requirements, systemd_unreachable, Requirement};
pub use install::plan_install;
pub use node_label::NodeLabel;
pub use plan::{Plan, Step};
pub use texts::{crictl_yaml, unit_file};
pub use uninstall::plan_uninstall;

/// Where the binaries go on the host.
pub const BIN_DIR: &str = "/usr/local/bin";
pub const VORDR: &str = "vordr";
pub const SHIM: &str = "containerd-shim-vordr-v1";
pub const CONFIG_DIR: &str = "/etc/vordr";
pub const CONFIG: &str = "/etc/vordr/config.toml";
/// This version's default, written beside a config.toml the admin changed.
pub const CONFIG_NEW: &str = "/etc/vordr/config.toml.new";
/// Files as they were before the installer edited them.
pub const SAVED_DIR: &str = "/etc/vordr/saved";
pub const UNIT: &str = "/etc/systemd/system/vordr.service";
/// What `systemctl enable vordr` would create.
pub const UNIT_WANTS: &str = "/etc/systemd/system/multi-user.target.wants/vordr.service";
pub const CRICTL: &str = "/etc/crictl.yaml";
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
pub const KUBEADM_FLAGS: &str = "/var/lib/kubelet/kubeadm-flags.env";

const ENDPOINT_KEY: &str = "containerRuntimeEndpoint";
const IMAGE_KEY: &str = "imageServiceEndpoint";
const ENDPOINT_FLAG: &str = "--container-runtime-endpoint";
const IMAGE_FLAG: &str = "--image-service-endpoint";
const FLAGS_VAR: &str = "KUBELET_KUBEADM_ARGS";

const FILE_MODE: u32 = 0o644;
const BIN_MODE: u32 = 0o755;
const DIR_MODE: u32 = 0o755;
const SAVED_MODE: u32 = 0o600;
const SAVED_DIR_MODE: u32 = 0o700;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not there: the installer copies vordr and containerd-shim-vordr-v1 from one directory")]
    Source(PathBuf),
    #[error("the existing {path} is not a valid Vordr configuration (fix or remove it): {source}")]
    Config {
        path: &'static str,
        source: Box<vordr_config::ConfigError>,
    },
    #[error("{path} cannot be edited line by line: {source}; set {what} to {value} yourself")]
    Edit {
        path: PathBuf,
        what: &'static str,
        value: String,
        source: kubelet::EditError,
    },
    #[error("missing on the host (--strict):\n  {}", .0.join("\n  "))]
    Missing(Vec<String>),
    #[error("systemctl {args} on the host: {reason}")]
    Systemctl { args: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What to install from and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The host's root directory (`/` on the node itself).
    pub host_root: PathBuf,
    /// The directory holding the `vordr` and `containerd-shim-vordr-v1` to install.
    pub source_dir: PathBuf,
    /// kubelet's configuration file, as a host path.
    pub kubelet_config: PathBuf,
    /// kubeadm's kubelet flags file, as a host path.
    pub kubeadm_flags: PathBuf,
    /// Restart vordr and kubelet through the host's systemd when their
    /// files changed (only possible where PID 1 is the host's systemd).
    pub restart: bool,
    /// Refuse to install when a host package Vordr needs is missing
    /// (otherwise each one is a warning).
    pub strict: bool,
}

impl Options {
    /// Defaults for `host_root`, installing from `source_dir`.
    pub fn new(host_root: &Path, source_dir: &Path) -> Options {
        Options {
            host_root: host_root.to_path_buf(),
            source_dir: source_dir.to_path_buf(),
            kubelet_config: KUBELET_CONFIG.into(),
            kubeadm_flags: KUBEADM_FLAGS.into(),
            restart: true,
            strict: false,
        }
    }
}
