//! What the pod sandbox RPCs share: the config checked and planned, the
//! pod's init process, and the teardown every stop, remove and failed run
//! goes through.

pub(crate) mod cleanup;
pub(crate) mod init;
pub(crate) mod validate;
