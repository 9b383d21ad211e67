//! Pieces of TTRPC replies: errors with a status code, and protobuf timestamps.

use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::ttrpc::{get_status, Code, Error};

pub(super) fn invalid(msg: impl Into<String>) -> Error {
    status(Code::INVALID_ARGUMENT, msg)
}
pub(super) fn not_found(msg: impl Into<String>) -> Error {
    status(Code::NOT_FOUND, msg)
}
pub(super) fn failed(msg: impl Into<String>) -> Error {
    status(Code::FAILED_PRECONDITION, msg)
}
pub(super) fn internal(msg: impl Into<String>) -> Error {
    status(Code::INTERNAL, msg)
}
pub(super) fn status(code: Code, msg: impl Into<String>) -> Error {
    Error::RpcStatus(get_status(code, msg.into()))
}

/// A protobuf timestamp from nanoseconds since the epoch.
pub fn protobuf_timestamp(ns: i64) -> MessageField<Timestamp> {
    let mut t = Timestamp::new();
    t.seconds = ns.div_euclid(1_000_000_000);
    t.nanos = ns.rem_euclid(1_000_000_000) as i32;
    MessageField::some(t)
}
