//! Vordr's images: image references, the containers-registries.conf v2 file
//! that maps them to registries and mirrors, and (as it grows) pulling,
//! the content store and layer snapshots.

pub mod auth;
pub mod config;
pub mod content;
pub mod pull;
pub mod registries;
pub mod snapshots;
pub mod unpack;
