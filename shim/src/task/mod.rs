//! The containerd task API for one container: the init process and its execs, stdio and exits.
//!
//! `service` answers the TTRPC calls from the `state`; `init` creates the container, `exec`
//! starts and tracks execs, `io` and `console` plumb their stdio and terminals, and `reaper`
//! records and publishes exits.

mod console;
mod exec;
mod init;
mod io;
mod reaper;
mod reply;
mod service;
mod state;

pub use init::force_delete;
pub use reply::protobuf_timestamp;
pub use state::TaskService;
