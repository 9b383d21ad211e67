//! The checks every spec passes on its way in (the gatekeeper's judgement,
//! host paths resolved once) and the audit chain they and every change
//! are recorded in.

pub(crate) mod audit;
pub(crate) mod gatekeeper;
pub(crate) mod hostpath;
