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

/// Largest decompressed header block accepted.
const MAX_HEADER_BLOCK: usize = 1 << 20;

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
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new()
    }
}

impl Codec {
    pub fn new() -> Codec {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(dictionary())
            .expect("a fresh zlib stream takes a dictionary");
        Codec {
            deflate,
            inflate: Decompress::new(true),
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

    fn decompress_headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let err = |e: String| SpdyError::HeaderBlock(e);
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let start = self.inflate.total_in();
        loop {
            let done = (self.inflate.total_in() - start) as usize;
            if out.capacity() - out.len() < 256 {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(err("larger than 1 MiB".into()));
                }
                out.reserve(out.capacity().max(1024));
            }
            match self
                .inflate
                .decompress_vec(&block[done..], &mut out, FlushDecompress::Sync)
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
            let consumed = (self.inflate.total_in() - start) as usize;
            if consumed == block.len() && out.len() < out.capacity() {
                break;
            }
        }
        parse_headers(&out)
    }
}

fn parse_headers(mut b: &[u8]) -> Result<Headers, SpdyError> {
    let bad = |r| SpdyError::HeaderBlock(String::from(r));
    let take_u32 = |b: &mut &[u8]| -> Result<usize, SpdyError> {
        if b.len() < 4 {
            return Err(bad("truncated"));
        }
        Ok(b.get_u32() as usize)
    };
    let n = take_u32(&mut b)?;
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
        if src.len() < 8 + len {
            src.reserve(8 + len - src.len());
            return Ok(None);
        }
        let head = src.split_to(8);
        let mut p = src.split_to(len).freeze();
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
        let need = |p: &Bytes, n: usize, frame| {
            if p.len() < n {
                Err(malformed(frame, "payload too short"))
            } else {
                Ok(())
            }
        };
        let exact = |p: &Bytes, n: usize, frame| {
            if p.len() != n {
                Err(malformed(frame, "wrong payload length"))
            } else {
                Ok(())
            }
        };
        let frame = match kind {
            SYN_STREAM => {
                need(&p, 10, "SYN_STREAM")?;
                let stream_id = stream_id(&mut p);
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let slot = p.get_u8();
                if stream_id == 0 {
                    return Err(malformed("SYN_STREAM", "stream id 0"));
                }
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    slot,
                    flags,
                    headers: self.decompress_headers(&p)?,
                }
            }
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
            SETTINGS => {
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
                Frame::Settings { flags, entries }
            }
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
        Ok(Some(frame))
    }
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
