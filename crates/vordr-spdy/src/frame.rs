//! SPDY/3.1 frames (draft-mbelshe-httpbis-spdy-00 and the 3.1 changes:
//! session-level WINDOW_UPDATE on stream 0, no CREDENTIAL frame).

use bytes::Bytes;

/// The protocol version carried by every control frame.
pub const VERSION: u16 = 3;

/// Last frame of its sender on this stream.
pub const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM: the receiver may not send on this stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// SETTINGS: forget persisted settings.
pub const FLAG_SETTINGS_CLEAR: u8 = 0x01;

/// RST_STREAM status codes.
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const UNSUPPORTED_VERSION: u32 = 4;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    pub const STREAM_IN_USE: u32 = 8;
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
    pub const FRAME_TOO_LARGE: u32 = 11;
}

/// GOAWAY status codes.
pub mod goaway {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INTERNAL_ERROR: u32 = 2;
}

/// SETTINGS ids.
pub mod settings {
    pub const MAX_CONCURRENT_STREAMS: u32 = 4;
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
}

/// A header block: lowercase names, each with a value (several values are
/// joined by NUL bytes, as SPDY sends them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    /// Adds a value (joined to an existing one with NUL).
    pub fn add(&mut self, name: &str, value: &str) -> &mut Headers {
        let name = name.to_ascii_lowercase();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push('\0');
                v.push_str(value);
            }
            None => self.0.push((name, value.to_string())),
        }
        self
    }

    /// The first value of `name` (names compare case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values(name).next()
    }

    /// Every value of `name`.
    pub fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = name.to_ascii_lowercase();
        self.0
            .iter()
            .filter(move |(n, _)| *n == name)
            .flat_map(|(_, v)| v.split('\0'))
    }
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    /// 24 bits.
    pub id: u32,
    pub value: u32,
}

/// A SPDY/3.1 frame. Stream ids are 31 bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        /// 0 (highest) to 7.
        priority: u8,
        slot: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        /// 0 for the session's window.
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame type this version does not know: receivers ignore
    /// it (the specification says so).
    Unknown {
        kind: u16,
        flags: u8,
        payload: Bytes,
    },
}

impl Frame {
    /// A data frame.
    pub fn data(stream_id: u32, flags: u8, data: Bytes) -> Frame {
        Frame::Data {
            stream_id,
            flags,
            data,
        }
    }

    /// A SYN_REPLY accepting a stream, with no headers.
    pub fn accept(stream_id: u32) -> Frame {
        Frame::SynReply {
            stream_id,
            flags: 0,
            headers: Headers::new(),
        }
    }

    /// Whether the frame carries FLAG_FIN.
    pub fn is_fin(&self) -> bool {
        match self {
            Frame::SynStream { flags, .. }
            | Frame::SynReply { flags, .. }
            | Frame::Headers { flags, .. }
            | Frame::Data { flags, .. } => flags & FLAG_FIN != 0,
            _ => false,
        }
    }
}
