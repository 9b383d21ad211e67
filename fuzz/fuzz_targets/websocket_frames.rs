//! WebSocket frames as the streaming server reads them: the input (after
//! its first byte) is the byte stream of one connection, read by
//! tungstenite with the configuration the server uses, as a
//! server (masked client frames; first byte's bit 0 clear) or as a client
//! (bit 0 set). Each message goes through the channel codec of a binary
//! (bit 1 clear) or base64 (bit 1 set) subprotocol, and resize-channel
//! data through the terminal-size parser, as an exec session does.
//!
//! Invariants beyond "no panic":
//! - a message the codec decodes to (channel, data) is encoded again to a
//!   message that decodes to the same (channel, data);
//! - any (channel, data) the server encodes decodes back to itself;
//! - the resize parser keeps at most 4 KiB of a partial value.
#![no_main]

use std::io::{self, Cursor, Read, Write};

use libfuzzer_sys::fuzz_target;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};
use tokio_tungstenite::tungstenite::Message;
use vordr_streaming::websocket::Codec;

/// The connection: reads the input, swallows what tungstenite writes
/// (pongs, close replies).
struct Conn<'a> {
    input: Cursor<&'a [u8]>,
}

impl Read for Conn<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Conn<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const RESIZE: u8 = 4;

fn check_codec(codec: Codec, msg: Message, resize: &mut Vec<u8>) {
    let Some((ch, data)) = codec.decode(msg.clone()) else {
        return;
    };
    let again = codec.encode(ch, &data);
    assert_eq!(
        codec.decode(again.clone()),
        Some((ch, data.clone())),
        "{msg:?} decoded to channel {ch}, encoded again as {again:?}"
    );
    if ch == RESIZE {
        // As Input::resize does.
        resize.extend_from_slice(&data);
        let _ = vordr_streaming::parse_sizes(resize);
        assert!(resize.len() <= 4096, "{} bytes kept", resize.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, wire)) = data.split_first() else {
        return;
    };
    let role = if mode & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let codec = Codec {
        base64: mode & 2 != 0,
    };

    // What the server sends: the input itself as one channel's data.
    if let Some((&ch, payload)) = wire.split_first() {
        let msg = codec.encode(ch, payload);
        assert_eq!(
            codec.decode(msg.clone()),
            Some((ch, bytes::Bytes::copy_from_slice(payload))),
            "channel {ch} encoded as {msg:?}"
        );
    }

    let mut ws = WebSocket::from_raw_socket(
        Conn {
            input: Cursor::new(wire),
        },
        role,
        Some(vordr_streaming::websocket::ws_config()),
    );
    let mut resize = Vec::new();
    // Every message takes at least two bytes of input; the bound only
    // guards against a reader that stops consuming.
    for _ in 0..=wire.len() {
        match ws.read() {
            Ok(msg) => check_codec(codec, msg, &mut resize),
            Err(_) => break,
        }
    }
});
