//! SPDY/3.1 frames as a client sends them: the input (after its first
//! byte) is the byte stream one connection reads, decoded with the
//! streaming server's codec (its limits; one zlib context for every header
//! block, as on a real connection).
//!
//! Invariants beyond "no panic":
//! - fed in small pieces (size from the first byte), the stream decodes to
//!   the same frames and the same error as fed whole;
//! - no frame is larger than the server's cap, no header block has more
//!   headers or inflates to more bytes than the codec's limits;
//! - every decoded frame encodes, and the encoding decodes to the same
//!   frames (with a fresh pair of codecs).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};
use vordr_spdy::{Codec, Frame, Headers, Limits};
use vordr_streaming::spdy::{codec, MAX_CLIENT_FRAME};

/// The frames `wire` decodes to, fed `chunk` bytes at a time (all at once
/// for `None`), and the error that stopped decoding, if any.
fn decode(wire: &[u8], chunk: Option<usize>) -> (Vec<Frame>, Option<String>) {
    let mut rx = codec();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let step = chunk.unwrap_or(wire.len().max(1));
    for piece in wire.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match rx.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e.to_string())),
            }
        }
    }
    (frames, None)
}

/// The header block of a frame that has one.
fn headers(f: &Frame) -> Option<&Headers> {
    match f {
        Frame::SynStream { headers, .. }
        | Frame::SynReply { headers, .. }
        | Frame::Headers { headers, .. } => Some(headers),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, wire)) = data.split_first() else {
        return;
    };
    let (frames, err) = decode(wire, None);
    let (pieces, pieces_err) = decode(wire, Some(usize::from(first % 16) + 1));
    assert_eq!(frames, pieces, "the same stream fed in pieces");
    assert_eq!(err, pieces_err, "the same stream fed in pieces");

    let limits = Limits::default();
    for f in &frames {
        let len = match f {
            Frame::Data { data, .. } => data.len(),
            Frame::Unknown { payload, .. } => payload.len(),
            _ => 0,
        };
        assert!(len <= MAX_CLIENT_FRAME, "{len}-byte frame accepted");
        if let Some(h) = headers(f) {
            assert!(h.0.len() <= limits.max_headers, "{} headers", h.0.len());
            let inflated: usize = 4 + h
                .0
                .iter()
                .map(|(n, v)| 8 + n.len() + v.len())
                .sum::<usize>();
            assert!(
                inflated <= limits.max_header_block,
                "{inflated}-byte header block accepted"
            );
        }
    }

    let mut tx = Codec::new();
    let mut out = BytesMut::new();
    for f in &frames {
        tx.encode(f.clone(), &mut out)
            .unwrap_or_else(|e| panic!("decoded frame {f:?} does not encode: {e}"));
    }
    let (again, again_err) = decode(&out, None);
    assert_eq!(again_err, None, "re-encoded frames fail to decode");
    assert_eq!(again, frames, "decode -> encode -> decode");
});
