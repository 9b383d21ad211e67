//! The daemon's side of the per-container shims: starting and calling them,
//! the events endpoint they publish exits to, and noticing one that dies.

pub(crate) mod client;
pub(crate) mod events;
pub(crate) mod watch;
