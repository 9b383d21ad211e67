//! Vordr's CRI v1 gRPC services. Each RPC lives in its own file, as in
//! CRI-O's `server/` and containerd's `pkg/cri/server/`; the wire types are
//! converted at the edge and the work is done over the store and the network.

mod cgroup;
mod cni_network;
mod container_attach;
mod container_create;
mod container_exec;
mod container_exec_sync;
mod container_exit;
mod container_list;
mod container_remove;
mod container_reopen_log;
mod container_start;
mod container_stats;
mod container_status;
mod container_stop;
mod container_update;
mod containers;
mod errors;
mod events;
pub mod faults;
mod gatekeeper;
mod hostpath;
mod image_fs_info;
mod image_list;
mod image_pull;
mod image_remove;
mod image_status;
mod images;
mod inflight;
mod netns_pool;
mod orphans;
mod pod_init;
mod reconcile;
mod rootfs;
mod runtime;
mod runtime_config;
mod sandbox_cleanup;
mod sandbox_list;
mod sandbox_port_forward;
mod sandbox_remove;
mod sandbox_run;
mod sandbox_status;
mod sandbox_stop;
mod sandbox_validate;
mod serve;
mod service;
mod shim_client;
mod shim_watch;
mod status;
mod update_runtime_config;
mod version;

pub use hostpath::HostPaths;
pub use runtime::{Runtime, RuntimeOptions};
pub use serve::{serve, ServeError};
