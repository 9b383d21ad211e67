//! SPDY/3.1 framing, as Kubernetes' streaming protocols use it (kubelet's
//! and crictl's exec, attach and port-forward connections): the frames, a
//! codec whose header blocks share one zlib context per direction primed
//! with the SPDY/3 dictionary, and flow-control windows.

mod codec;
mod dictionary;
mod frame;
mod window;

pub use codec::{Codec, Limits, SpdyError, MAX_FRAME_LEN};
pub use dictionary::dictionary;
pub use frame::{
    goaway, rst, settings, Frame, Headers, Setting, FLAG_FIN, FLAG_SETTINGS_CLEAR,
    FLAG_UNIDIRECTIONAL, VERSION,
};
pub use window::{FlowError, RecvWindow, SendWindow, DEFAULT_WINDOW, MAX_WINDOW};
