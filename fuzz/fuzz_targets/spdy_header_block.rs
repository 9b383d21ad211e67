//! SPDY/3.1 header blocks: zlib with the SPDY/3 dictionary, one context
//! for the whole connection.
//!
//! First byte even: the rest is a series of compressed blocks (each after
//! a big-endian u16 length; the last one takes what is left), carried in
//! SYN_STREAM, SYN_REPLY and HEADERS frames through one decoder (the
//! streaming server's), as a client sends them. Every block that decodes must hold lowercase, unique,
//! non-empty names, `get` must agree with the block, and it must survive
//! an encode/decode round trip.
//!
//! First byte odd: the rest is text, blocks split by an empty line, one
//! `name:value` per line, added with `Headers::add`; each block is encoded
//! and decoded by one pair of codecs and must come back unchanged.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};
use vordr_spdy::{Codec, Frame, Headers};

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const HEADERS: u16 = 8;

/// A control frame of `kind` for stream 1 carrying `block`.
fn frame(kind: u16, block: &[u8]) -> BytesMut {
    let mut p = Vec::new();
    p.put_u32(1);
    if kind == SYN_STREAM {
        p.put_u32(0);
        p.put_u8(0);
        p.put_u8(0);
    }
    p.extend_from_slice(block);
    let mut b = BytesMut::new();
    b.put_u16(0x8000 | vordr_spdy::VERSION);
    b.put_u16(kind);
    b.put_u32(p.len() as u32 & 0xff_ffff);
    b.extend_from_slice(&p);
    b
}

fn headers_of(f: Frame) -> Headers {
    match f {
        Frame::SynStream { headers, .. }
        | Frame::SynReply { headers, .. }
        | Frame::Headers { headers, .. } => headers,
        other => panic!("a header frame decoded as {other:?}"),
    }
}

/// Encodes `h` with `tx` and decodes it with `rx`.
fn round_trip(tx: &mut Codec, rx: &mut Codec, h: &Headers) -> Headers {
    let mut b = BytesMut::new();
    tx.encode(
        Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: h.clone(),
        },
        &mut b,
    )
    .expect("a header block encodes");
    let f = rx
        .decode(&mut b)
        .unwrap_or_else(|e| panic!("{h:?} does not decode after encoding: {e}"))
        .expect("a whole frame");
    assert!(b.is_empty());
    headers_of(f)
}

fn inflate(mut rest: &[u8]) {
    let mut rx = vordr_streaming::spdy::codec();
    let (mut tx2, mut rx2) = (Codec::new(), Codec::new());
    let kinds = [SYN_STREAM, SYN_REPLY, HEADERS];
    let mut i = 0;
    while !rest.is_empty() {
        let (block, tail) = if rest.len() >= 2 {
            let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let body = &rest[2..];
            body.split_at(n.min(body.len()))
        } else {
            (rest, &[][..])
        };
        rest = tail;
        let mut b = frame(kinds[i % 3], block);
        i += 1;
        let h = match rx.decode(&mut b) {
            Ok(Some(f)) => headers_of(f),
            Ok(None) => panic!("a whole frame is not decoded"),
            // A bad block ends the connection.
            Err(_) => return,
        };
        for (k, (name, value)) in h.0.iter().enumerate() {
            assert!(!name.is_empty(), "empty name in {h:?}");
            assert!(
                !name.bytes().any(|c| c.is_ascii_uppercase()),
                "uppercase name in {h:?}"
            );
            assert!(
                h.0[..k].iter().all(|(n, _)| n != name),
                "duplicate name in {h:?}"
            );
            assert_eq!(h.get(name), value.split('\0').next());
        }
        assert_eq!(round_trip(&mut tx2, &mut rx2, &h), h);
    }
}

fn deflate(rest: &[u8]) {
    let text = String::from_utf8_lossy(rest);
    let (mut tx, mut rx) = (Codec::new(), Codec::new());
    for block in text.split("\n\n") {
        let mut h = Headers::new();
        let mut added: Vec<(String, &str)> = Vec::new();
        for line in block.lines() {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            if name.is_empty() {
                continue;
            }
            h.add(name, value);
            added.push((name.to_ascii_lowercase(), value));
        }
        assert_eq!(round_trip(&mut tx, &mut rx, &h), h);
        for (name, _) in &added {
            if added.iter().any(|(n, v)| n == name && v.contains('\0')) {
                continue;
            }
            let want: Vec<&str> = added
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(h.values(name).collect::<Vec<_>>(), want, "{name:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        inflate(rest);
    } else {
        deflate(rest);
    }
});
