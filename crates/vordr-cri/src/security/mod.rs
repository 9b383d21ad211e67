//! The checks every spec passes on its way in: the gatekeeper's judgement
//! and host paths resolved once.

pub(crate) mod gatekeeper;
pub(crate) mod hostpath;
