//! Frames to bytes and back. Header blocks are compressed with zlib, one
//! context per direction for the whole connection, primed with the SPDY/3
//! dictionary and flushed (Z_SYNC_FLUSH) at the end of every block.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio_util::codec::{Decoder, Encoder};

use crate::dictionary::dictionary;
use crate::frame::{Frame, Headers, Setting, VERSION};

/// The largest frame payload the 24-bit length can say.
pub const MAX_FRAME_LEN: usize = 0xff_ffff;

/// What a decoder accepts from its peer; more is an error (the session
/// is then over: the zlib context is shared by every block that follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame payload, data or control.
    pub max_frame: usize,
    /// Largest header block once decompressed: inflating stops one byte
    /// past it, so a small block that inflates to gigabytes costs no more.
    pub max_header_block: usize,
    /// Most headers (name and value pairs) in one block.
    pub max_headers: usize,
}

impl Default for Limits {
    /// As large as the 24-bit length allows, 256 KiB of headers, 128 of
    /// them.
    fn default() -> Self {
        Limits {
            max_frame: MAX_FRAME_LEN,
            max_header_block: 256 * 1024,
            max_headers: 128,
        }
    }
}

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY version {0} is not supported (only 3)")]
    UnsupportedVersion(u16),
    #[error("malformed {frame} frame: {reason}")]
    Malformed {
        frame: &'static str,
        reason: &'static str,
    },
    #[error("header block: {0}")]
    HeaderBlock(String),
    #[error("frame payload of {0} bytes is too large")]
    TooLarge(usize),
    #[error("a {len}-byte frame is larger than the {limit} bytes accepted")]
    FrameTooLarge { len: usize, limit: usize },
    #[error("header block inflates past the {limit} bytes accepted")]
    HeaderBlockTooLarge { limit: usize },
    #[error("header block has {count} headers, more than the {limit} accepted")]
    TooManyHeaders { count: usize, limit: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn malformed(frame: &'static str, reason: &'static str) -> SpdyError {
    SpdyError::Malformed { frame, reason }
}

/// One side's codec: encodes what it sends, decodes what it receives.
pub struct Codec {
    deflate: Compress,
    inflate: Decompress,
    limits: Limits,
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new()
    }
}

impl Codec {
    /// A codec with the default [`Limits`].
    pub fn new() -> Codec {
        Codec::with_limits(Limits::default())
    }

    /// A codec that refuses frames and header blocks past `limits`.
    pub fn with_limits(limits: Limits) -> Codec {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(dictionary())
            .expect("a fresh zlib stream takes a dictionary");
        Codec {
            deflate,
            inflate: Decompress::new(true),
            limits,
        }
    }

    fn compress_headers(&mut self, h: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut raw = Vec::new();
        raw.put_u32(h.0.len() as u32);
        for (name, value) in &h.0 {
            raw.put_u32(name.len() as u32);
            raw.put_slice(name.as_bytes());
            raw.put_u32(value.len() as u32);
            raw.put_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        let start = self.deflate.total_in();
        loop {
            let done = (self.deflate.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            self.deflate
                .compress_vec(&raw[done..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::HeaderBlock(e.to_string()))?;
            // A sync flush is complete when all input is taken and the
            // output buffer was not filled.
            if (self.deflate.total_in() - start) as usize == raw.len() && out.len() < out.capacity()
            {
                return Ok(out);
            }
        }
    }

    /// Inflates one block through a small fixed buffer, never holding
    /// more than the cap plus one byte: the cap is checked while inflating.
    fn decompress_headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let err = |e: String| SpdyError::HeaderBlock(e);
        let cap = self.limits.max_header_block;
        let mut out = Vec::with_capacity((block.len() * 4 + 64).min(cap + 1));
        let mut chunk = [0u8; 4096];
        let start = self.inflate.total_in();
        loop {
            let done = (self.inflate.total_in() - start) as usize;
            // Room for one byte past the cap: producing it proves the
            // block too large.
            let room = (cap + 1 - out.len()).min(chunk.len());
            let before = self.inflate.total_out();
            match self
                .inflate
                .decompress(&block[done..], &mut chunk[..room], FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => return Err(err("the zlib stream ended".into())),
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(_) => {
                        self.inflate
                            .set_dictionary(dictionary())
                            .map_err(|e| err(format!("not the SPDY/3 dictionary: {e}")))?;
                        continue;
                    }
                    None => return Err(err(e.to_string())),
                },
            }
            let produced = (self.inflate.total_out() - before) as usize;
            out.extend_from_slice(&chunk[..produced]);
            if out.len() > cap {
                return Err(SpdyError::HeaderBlockTooLarge { limit: cap });
            }
            let consumed = (self.inflate.total_in() - start) as usize;
            // A sync flush is all out once the input is taken and the
            // output did not fill the room it had.
            if consumed == block.len() && produced < room {
                break;
            }
            if produced == 0 && consumed == done {
                return Err(err("inflating makes no progress".into()));
            }
        }
        parse_headers(&out, self.limits.max_headers)
    }
}

fn parse_headers(mut b: &[u8], max_headers: usize) -> Result<Headers, SpdyError> {
    let bad = |r| SpdyError::HeaderBlock(String::from(r));
    let take_u32 = |b: &mut &[u8]| -> Result<usize, SpdyError> {
        if b.len() < 4 {
            return Err(bad("truncated"));
        }
        Ok(b.get_u32() as usize)
    };
    let n = take_u32(&mut b)?;
    if n > max_headers {
        return Err(SpdyError::TooManyHeaders {
            count: n,
            limit: max_headers,
        });
    }
    let mut h = Headers(Vec::with_capacity(n.min(64)));
    for _ in 0..n {
        let mut s = || -> Result<String, SpdyError> {
            let len = take_u32(&mut b)?;
            if b.len() < len {
                return Err(bad("truncated"));
            }
            let v = String::from_utf8(b[..len].to_vec()).map_err(|_| bad("not UTF-8"))?;
            b.advance(len);
            Ok(v)
        };
        let name = s()?;
        let value = s()?;
        if name.is_empty() {
            return Err(bad("empty header name"));
        }
        if name.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("header names must be lowercase"));
        }
        if h.0.iter().any(|(n, _)| *n == name) {
            return Err(bad("duplicate header name"));
        }
        h.0.push((name, value));
    }
    Ok(h)
}

fn stream_id(b: &mut Bytes) -> u32 {
    b.get_u32() & 0x7fff_ffff
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = SpdyError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if src.len() < 8 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([0, src[5], src[6], src[7]]) as usize;
        if len > self.limits.max_frame {
            return Err(SpdyError::FrameTooLarge {
                len,
                limit: self.limits.max_frame,
            });
        }
        if src.len() < 8 + len {
            src.reserve(8 + len - src.len());
            return Ok(None);
        }
        let head = src.split_to(8);
        let p = src.split_to(len).freeze();
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
            return Ok(Some(Frame::Data {
                stream_id,
                flags,
                data: p,
            }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(SpdyError::UnsupportedVersion(version));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        self.control_frame(kind, flags, p).map(Some)
    }
}

/// Fails unless the payload of `frame` holds at least `n` bytes.
fn need(p: &Bytes, n: usize, frame: &'static str) -> Result<(), SpdyError> {
    if p.len() < n {
        Err(malformed(frame, "payload too short"))
    } else {
        Ok(())
    }
}

/// Fails unless the payload of `frame` is exactly `n` bytes.
fn exact(p: &Bytes, n: usize, frame: &'static str) -> Result<(), SpdyError> {
    if p.len() != n {
        Err(malformed(frame, "wrong payload length"))
    } else {
        Ok(())
    }
}

impl Codec {
    /// A control frame of type `kind` from its payload `p`.
    fn control_frame(&mut self, kind: u16, flags: u8, mut p: Bytes) -> Result<Frame, SpdyError> {
        let frame = match kind {
            SYN_STREAM => self.syn_stream(flags, p)?,
            SYN_REPLY | HEADERS => {
                need(&p, 4, "SYN_REPLY")?;
                let stream_id = stream_id(&mut p);
                let headers = self.decompress_headers(&p)?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                exact(&p, 8, "RST_STREAM")?;
                Frame::RstStream {
                    stream_id: stream_id(&mut p),
                    status: p.get_u32(),
                }
            }
            SETTINGS => settings(flags, p)?,
            PING => {
                exact(&p, 4, "PING")?;
                Frame::Ping { id: p.get_u32() }
            }
            GOAWAY => {
                exact(&p, 8, "GOAWAY")?;
                Frame::GoAway {
                    last_good_stream_id: stream_id(&mut p),
                    status: p.get_u32(),
                }
            }
            WINDOW_UPDATE => {
                exact(&p, 8, "WINDOW_UPDATE")?;
                Frame::WindowUpdate {
                    stream_id: stream_id(&mut p),
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            kind => Frame::Unknown {
                kind,
                flags,
                payload: p,
            },
        };
        Ok(frame)
    }

    /// A SYN_STREAM frame: a new stream and its headers.
    fn syn_stream(&mut self, flags: u8, mut p: Bytes) -> Result<Frame, SpdyError> {
        need(&p, 10, "SYN_STREAM")?;
        let stream_id = stream_id(&mut p);
        let associated_to = p.get_u32() & 0x7fff_ffff;
        let priority = p.get_u8() >> 5;
        let slot = p.get_u8();
        if stream_id == 0 {
            return Err(malformed("SYN_STREAM", "stream id 0"));
        }
        Ok(Frame::SynStream {
            stream_id,
            associated_to,
            priority,
            slot,
            flags,
            headers: self.decompress_headers(&p)?,
        })
    }
}

/// A SETTINGS frame: its entries, eight bytes each.
fn settings(flags: u8, mut p: Bytes) -> Result<Frame, SpdyError> {
    need(&p, 4, "SETTINGS")?;
    let n = p.get_u32() as usize;
    if p.len() != n.saturating_mul(8) {
        return Err(malformed("SETTINGS", "entry count and length disagree"));
    }
    let entries = (0..n)
        .map(|_| {
            let word = p.get_u32();
            Setting {
                flags: (word >> 24) as u8,
                id: word & 0xff_ffff,
                value: p.get_u32(),
            }
        })
        .collect();
    Ok(Frame::Settings { flags, entries })
}

fn control(dst: &mut BytesMut, kind: u16, flags: u8, payload: &[u8]) -> Result<(), SpdyError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(SpdyError::TooLarge(payload.len()));
    }
    dst.reserve(8 + payload.len());
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(kind);
    dst.put_u32(((flags as u32) << 24) | payload.len() as u32);
    dst.put_slice(payload);
    Ok(())
}

impl Encoder<Frame> for Codec {
    type Error = SpdyError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), SpdyError> {
        let mut p = Vec::new();
        match frame {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(associated_to & 0x7fff_ffff);
                p.put_u8((priority & 0x7) << 5);
                p.put_u8(slot);
                p.extend(self.compress_headers(&headers)?);
                control(dst, SYN_STREAM, flags, &p)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.extend(self.compress_headers(&headers)?);
                control(dst, SYN_REPLY, flags, &p)
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.extend(self.compress_headers(&headers)?);
                control(dst, HEADERS, flags, &p)
            }
            Frame::RstStream { stream_id, status } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(status);
                control(dst, RST_STREAM, 0, &p)
            }
            Frame::Settings { flags, entries } => {
                p.put_u32(entries.len() as u32);
                for e in entries {
                    p.put_u32(((e.flags as u32) << 24) | (e.id & 0xff_ffff));
                    p.put_u32(e.value);
                }
                control(dst, SETTINGS, flags, &p)
            }
            Frame::Ping { id } => control(dst, PING, 0, &id.to_be_bytes()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                p.put_u32(last_good_stream_id & 0x7fff_ffff);
                p.put_u32(status);
                control(dst, GOAWAY, 0, &p)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(delta & 0x7fff_ffff);
                control(dst, WINDOW_UPDATE, 0, &p)
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_FRAME_LEN {
                    return Err(SpdyError::TooLarge(data.len()));
                }
                dst.reserve(8 + data.len());
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(((flags as u32) << 24) | data.len() as u32);
                dst.put_slice(&data);
                Ok(())
            }
            Frame::Unknown {
                kind,
                flags,
                payload,
            } => control(dst, kind, flags, &payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FLAG_FIN, FLAG_UNIDIRECTIONAL};

    fn encode(c: &mut Codec, f: Frame) -> BytesMut {
        let mut b = BytesMut::new();
        c.encode(f, &mut b).unwrap();
        b
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.add(n, v);
        }
        h
    }

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 7,
                slot: 0,
                flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
                headers: headers(&[("streamtype", "error"), ("port", "8080")]),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: headers(&[("x-a", "1"), ("x-a", "2")]),
            },
            Frame::RstStream {
                stream_id: 3,
                status: crate::rst::CANCEL,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![Setting {
                    flags: 1,
                    id: crate::settings::INITIAL_WINDOW_SIZE,
                    value: 1 << 20,
                }],
            },
            Frame::Ping { id: 0xdead_beef },
            Frame::GoAway {
                last_good_stream_id: 5,
                status: crate::goaway::OK,
            },
            Frame::Headers {
                stream_id: 5,
                flags: FLAG_FIN,
                headers: headers(&[("trailer", "yes")]),
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 1 << 16,
            },
            Frame::Data {
                stream_id: 7,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 9,
                flags: 0,
                data: Bytes::new(),
            },
        ]
    }

    #[test]
    fn every_frame_round_trips_through_one_context_per_direction() {
        let (mut tx, mut rx) = (Codec::new(), Codec::new());
        let mut wire = BytesMut::new();
        for f in all_frames() {
            tx.encode(f, &mut wire).unwrap();
        }
        // Fed one byte at a time: nothing is decoded before it is whole.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire {
            buf.put_u8(b);
            while let Some(f) = rx.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, all_frames());
        assert!(buf.is_empty());
    }

    #[test]
    fn control_frames_have_the_specified_layout() {
        let mut c = Codec::new();
        assert_eq!(
            &encode(&mut c, Frame::Ping { id: 0x0102_0304 })[..],
            &[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 1, 2, 3, 4]
        );
        assert_eq!(
            &encode(
                &mut c,
                Frame::RstStream {
                    stream_id: 0x8000_0003,
                    status: 5
                }
            )[..],
            // The reserved bit of the stream id is cleared.
            &[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 5]
        );
        assert_eq!(
            &encode(
                &mut c,
                Frame::WindowUpdate {
                    stream_id: 1,
                    delta: 0x1_0000
                }
            )[..],
            &[0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 0, 1, 0, 0]
        );
        assert_eq!(
            &encode(
                &mut c,
                Frame::GoAway {
                    last_good_stream_id: 7,
                    status: 2
                }
            )[..],
            &[0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 2]
        );
        assert_eq!(
            &encode(
                &mut c,
                Frame::Settings {
                    flags: 1,
                    entries: vec![Setting {
                        flags: 1,
                        id: 7,
                        value: 0x10
                    }]
                }
            )[..],
            &[0x80, 3, 0, 4, 1, 0, 0, 12, 0, 0, 0, 1, 1, 0, 0, 7, 0, 0, 0, 0x10]
        );
        // Data frame: control bit clear, stream id, flags, 24-bit length.
        assert_eq!(
            &encode(
                &mut c,
                Frame::Data {
                    stream_id: 3,
                    flags: FLAG_FIN,
                    data: Bytes::from_static(b"ab")
                }
            )[..],
            &[0, 0, 0, 3, 1, 0, 0, 2, b'a', b'b']
        );
    }

    #[test]
    fn header_blocks_are_zlib_streams_naming_the_spdy_dictionary() {
        let mut c = Codec::new();
        let b = encode(
            &mut c,
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: headers(&[("streamtype", "stdout")]),
            },
        );
        let block = &b[12..];
        // CMF 0x78 (deflate, 32K window); FLG has FDICT set, and the header
        // passes zlib's check; then the dictionary's Adler-32.
        assert_eq!(block[0], 0x78);
        assert_ne!(block[1] & 0x20, 0);
        assert_eq!((u16::from(block[0]) << 8 | u16::from(block[1])) % 31, 0);
        assert_eq!(&block[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
        // A sync flush ends every block: 00 00 ff ff.
        assert_eq!(&block[block.len() - 4..], &[0, 0, 0xff, 0xff]);

        // The second block depends on the first: only the same context can
        // read it.
        let second = encode(
            &mut c,
            Frame::Headers {
                stream_id: 1,
                flags: 0,
                headers: headers(&[("streamtype", "stdout")]),
            },
        );
        assert!(
            second.len() < b.len(),
            "the context remembers the first block"
        );
        let mut fresh = Codec::new();
        assert!(fresh.decode(&mut BytesMut::from(&second[..])).is_err());
        let mut same = Codec::new();
        same.decode(&mut BytesMut::from(&b[..])).unwrap().unwrap();
        let f = same
            .decode(&mut BytesMut::from(&second[..]))
            .unwrap()
            .unwrap();
        assert!(matches!(f, Frame::Headers { .. }));
    }

    #[test]
    fn bad_input_is_refused() {
        let mut c = Codec::new();
        let mut v2 = BytesMut::from(&[0x80, 0x02, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(matches!(
            c.decode(&mut v2),
            Err(SpdyError::UnsupportedVersion(2))
        ));
        let mut short_rst = BytesMut::from(&[0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(matches!(
            c.decode(&mut short_rst),
            Err(SpdyError::Malformed {
                frame: "RST_STREAM",
                ..
            })
        ));
        // An unknown control type (10, CREDENTIAL in SPDY/3.0) is ignored, not an error.
        let mut unknown = BytesMut::from(&[0x80, 3, 0, 10, 0, 0, 0, 1, 9][..]);
        assert!(matches!(
            c.decode(&mut unknown).unwrap(),
            Some(Frame::Unknown { kind: 10, .. })
        ));
        // Uppercase header names are a protocol error.
        let mut enc = Codec::new();
        let mut h = Headers::new();
        h.0.push(("Bad".into(), "x".into()));
        let b = encode(
            &mut enc,
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: h,
            },
        );
        assert!(matches!(
            Codec::new().decode(&mut BytesMut::from(&b[..])),
            Err(SpdyError::HeaderBlock(_))
        ));
        // A header block that is not zlib at all.
        let mut junk = BytesMut::from(&[0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4][..]);
        assert!(Codec::new().decode(&mut junk).is_err());
    }

    /// A SYN_STREAM whose header block holds `headers`, compressed as a
    /// peer would (the encoder has no limits).
    fn syn_with(headers: Headers) -> BytesMut {
        encode(
            &mut Codec::new(),
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                slot: 0,
                flags: 0,
                headers,
            },
        )
    }

    #[test]
    fn header_blocks_are_capped_while_inflating() {
        let limits = Limits {
            max_header_block: 4096,
            ..Limits::default()
        };
        // The raw block: count, name length, "x", value length, value.
        let block_of = |len: usize| {
            let mut h = Headers::new();
            h.add("x", &"a".repeat(len - 13));
            syn_with(h)
        };
        let mut exact = block_of(4096);
        let f = Codec::with_limits(limits).decode(&mut exact).unwrap();
        assert!(matches!(f, Some(Frame::SynStream { .. })));
        let mut over = block_of(4097);
        assert!(matches!(
            Codec::with_limits(limits).decode(&mut over),
            Err(SpdyError::HeaderBlockTooLarge { limit: 4096 })
        ));
        // A bomb: 8 MiB of headers in a few KiB on the wire, refused at
        // the default cap.
        let mut h = Headers::new();
        h.add("x", &"\0".repeat(8 << 20));
        let mut bomb = syn_with(h);
        assert!(bomb.len() < 16 * 1024, "{} bytes", bomb.len());
        assert!(matches!(
            Codec::new().decode(&mut bomb),
            Err(SpdyError::HeaderBlockTooLarge { limit }) if limit == 256 * 1024
        ));
    }

    #[test]
    fn header_counts_and_frame_lengths_are_capped() {
        let many = |n: usize| {
            let mut h = Headers::new();
            for i in 0..n {
                h.add(&format!("h{i}"), "v");
            }
            syn_with(h)
        };
        assert!(Codec::new().decode(&mut many(128)).unwrap().is_some());
        assert!(matches!(
            Codec::new().decode(&mut many(129)),
            Err(SpdyError::TooManyHeaders {
                count: 129,
                limit: 128
            })
        ));
        // A frame longer than the cap is refused from its 8-byte head,
        // before any of it is buffered.
        let mut c = Codec::with_limits(Limits {
            max_frame: 1024,
            ..Limits::default()
        });
        let mut head = BytesMut::from(&[0, 0, 0, 1, 0, 0, 4, 1][..]);
        assert!(matches!(
            c.decode(&mut head),
            Err(SpdyError::FrameTooLarge {
                len: 1025,
                limit: 1024
            })
        ));
        let mut fits = BytesMut::from(&[0, 0, 0, 1, 0, 0, 4, 0][..]);
        fits.extend_from_slice(&[7; 1024]);
        assert!(matches!(
            c.decode(&mut fits).unwrap(),
            Some(Frame::Data { data, .. }) if data.len() == 1024
        ));
    }

    #[test]
    fn headers_join_repeated_values_with_nul() {
        let mut h = Headers::new();
        h.add("X-Stream-Protocol-Version", "v4.channel.k8s.io")
            .add("x-stream-protocol-version", "v3.channel.k8s.io");
        assert_eq!(
            h.values("X-Stream-Protocol-Version").collect::<Vec<_>>(),
            vec!["v4.channel.k8s.io", "v3.channel.k8s.io"]
        );
        assert_eq!(
            h.get("x-stream-protocol-version"),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(h.0.len(), 1);
    }
}
