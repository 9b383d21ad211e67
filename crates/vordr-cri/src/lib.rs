//! Vordr's CRI v1 gRPC services. Each RPC lives in its own file, as in
//! CRI-O's `server/` and containerd's `pkg/cri/server/`; the wire types are
//! converted at the edge and the work is done over the store and the network.

mod container_attach;
mod container_checkpoint;
mod container_create;
mod container_events;
mod container_exec;
mod container_exec_sync;
mod container_list;
mod container_remove;
mod container_reopen_log;
mod container_start;
mod container_stats;
mod container_status;
mod container_stop;
mod container_update;
mod image_fs_info;
mod image_list;
mod image_pull;
mod image_remove;
mod image_status;
mod runtime_config;
mod runtime_status;
mod sandbox_list;
mod sandbox_metrics;
mod sandbox_port_forward;
mod sandbox_remove;
mod sandbox_run;
mod sandbox_stats;
mod sandbox_status;
mod sandbox_stop;
mod sandbox_update_resources;
mod serve;
mod service;
mod update_runtime_config;
mod version;

// What the RPCs share, by concern.
mod container;
mod image;
mod metrics;
mod net;
mod pod;
mod recovery;
mod security;
mod shim;
mod state;
mod stats;
mod streaming;

pub use security::hostpath::HostPaths;
pub use serve::{serve, ServeError};
pub use state::faults;
pub use state::{Runtime, RuntimeOptions};
