//! Lets gRPC clients that send an invalid HTTP/2 `:authority` reach a
//! hyper/tonic server on a unix socket.
//!
//! grpc-go before Kubernetes 1.26's fix (crictl and critest 1.26, older
//! kubelets) sends the socket path as `:authority`, and newer gRPC C-core
//! clients send it percent-encoded. hyper's `h2` rejects both as malformed
//! and resets the stream. [`AuthorityFix`] wraps the server side of a
//! connection and, on the bytes coming from the client, decodes the first
//! request's header block: when its `:authority` is valid (or absent) the
//! connection is passed through untouched from then on; when it is not, every
//! header block of that connection is decoded and re-encoded with
//! `:authority: localhost`. HPACK state stays consistent on both sides: the
//! decoder here follows the client's encoder, and the encoder here is the one
//! the server's decoder follows. All other frames pass through unchanged.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface every HTTP/2 connection starts with.
pub const PREFACE: &[u8] = b"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n";

const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The smallest SETTINGS_MAX_FRAME_SIZE a peer may advertise, and h2's default.
const MAX_FRAME: usize = 16_384;

/// The authority put in place of an invalid one.
pub const REPLACEMENT: &[u8] = b"localhost";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Waiting for the first header block to decide.
    Undecided,
    /// The client's authorities are fine: bytes pass untouched.
    Passthrough,
    /// Every header block is re-encoded.
    Rewrite,
}

/// A header block being collected from HEADERS and CONTINUATION frames.
struct Pending {
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
    /// The frames as received, for passing them on unchanged.
    original: Vec<u8>,
}

/// The server side of one connection, repairing the client's `:authority`.
pub struct AuthorityFix<S> {
    inner: S,
    mode: Mode,
    preface_left: usize,
    raw: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    pending: Option<Pending>,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
    eof: bool,
}

/// Whether `v` is an authority hyper accepts.
pub fn valid_authority(v: &[u8]) -> bool {
    http::uri::Authority::try_from(v).is_ok()
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            mode: Mode::Undecided,
            preface_left: PREFACE.len(),
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            pending: None,
            decoder: Decoder::new(),
            encoder: Encoder::new(),
            eof: false,
        }
    }

    /// Whether this connection's header blocks are being re-encoded.
    pub fn rewriting(&self) -> bool {
        self.mode == Mode::Rewrite
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Parses what has arrived and moves it, repaired, to `out`.
    fn process(&mut self) {
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.raw.len());
            self.out.extend(self.raw.drain(..n));
            self.preface_left -= n;
            if self.preface_left > 0 {
                return;
            }
        }
        let mut pos = 0;
        while self.mode != Mode::Passthrough && self.raw.len() - pos >= FRAME_HEADER {
            let h = &self.raw[pos..pos + FRAME_HEADER];
            let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
            let end = pos + FRAME_HEADER + len;
            if self.raw.len() < end {
                break;
            }
            let (kind, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let frame = self.raw[pos..end].to_vec();
            pos = end;
            self.frame(kind, flags, stream, frame);
        }
        if self.mode == Mode::Passthrough {
            self.give_up_pending();
            self.out.extend_from_slice(&self.raw[pos..]);
            self.raw.clear();
        } else {
            self.raw.drain(..pos);
        }
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, frame: Vec<u8>) {
        match (kind, self.pending.as_mut()) {
            (HEADERS, None) => {
                let Some((priority, fragment)) =
                    split_headers_payload(flags, &frame[FRAME_HEADER..])
                else {
                    return self.pass_through_from(frame);
                };
                let p = Pending {
                    stream,
                    flags,
                    priority,
                    block: fragment.to_vec(),
                    original: frame,
                };
                if flags & END_HEADERS != 0 {
                    self.finish(p);
                } else {
                    self.pending = Some(p);
                }
            }
            (CONTINUATION, Some(p)) if p.stream == stream => {
                p.block.extend_from_slice(&frame[FRAME_HEADER..]);
                p.original.extend_from_slice(&frame);
                if flags & END_HEADERS != 0 {
                    let p = self.pending.take().expect("pending block");
                    self.finish(p);
                }
            }
            // A frame inside a header block is a protocol error the server
            // will report; do not interfere.
            (_, Some(_)) => self.pass_through_from(frame),
            (_, None) => self.out.extend_from_slice(&frame),
        }
    }

    /// Stops repairing: what is held and everything after goes unchanged.
    fn pass_through_from(&mut self, frame: Vec<u8>) {
        self.give_up_pending();
        self.out.extend_from_slice(&frame);
        self.mode = Mode::Passthrough;
    }

    fn give_up_pending(&mut self) {
        if let Some(p) = self.pending.take() {
            self.out.extend_from_slice(&p.original);
        }
    }

    fn finish(&mut self, p: Pending) {
        let headers = match self.decoder.decode(&p.block) {
            Ok(h) => h,
            Err(_) => {
                // Undecodable: the server will say so; pass it on.
                self.out.extend_from_slice(&p.original);
                self.mode = Mode::Passthrough;
                return;
            }
        };
        if self.mode == Mode::Undecided {
            let bad = headers
                .iter()
                .any(|(n, v)| n.as_slice() == b":authority" && !valid_authority(v));
            if !bad {
                // The server's decoder can follow the client's encoder
                // directly: nothing more to do on this connection.
                self.out.extend_from_slice(&p.original);
                self.mode = Mode::Passthrough;
                return;
            }
            self.mode = Mode::Rewrite;
        }
        let fixed: Vec<(&[u8], &[u8])> = headers
            .iter()
            .map(|(n, v)| {
                if n.as_slice() == b":authority" && !valid_authority(v) {
                    (n.as_slice(), REPLACEMENT)
                } else {
                    (n.as_slice(), v.as_slice())
                }
            })
            .collect();
        let block = self.encoder.encode(fixed);
        write_header_frames(&mut self.out, p.stream, p.flags, p.priority, &block);
    }
}

/// Splits a HEADERS payload into its priority fields and block fragment,
/// dropping padding. `None` when the payload is malformed.
fn split_headers_payload(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut p = payload;
    if flags & PADDED != 0 {
        let (&pad, rest) = p.split_first()?;
        p = rest.get(..rest.len().checked_sub(pad as usize)?)?;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        priority = Some(p.get(..5)?.try_into().ok()?);
        p = &p[5..];
    }
    Some((priority, p))
}

fn push_frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// Writes `block` as one HEADERS frame plus CONTINUATION frames as needed,
/// keeping END_STREAM and the priority fields, without padding.
fn write_header_frames(
    out: &mut Vec<u8>,
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: &[u8],
) {
    let prio_len = if priority.is_some() { 5 } else { 0 };
    let first = block.len().min(MAX_FRAME - prio_len);
    let mut f = flags & (END_STREAM | PRIORITY);
    if first == block.len() {
        f |= END_HEADERS;
    }
    push_frame_header(out, prio_len + first, HEADERS, f, stream);
    if let Some(p) = priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(&block[..first]);
    let mut rest = &block[first..];
    while !rest.is_empty() {
        let n = rest.len().min(MAX_FRAME);
        let f = if n == rest.len() { END_HEADERS } else { 0 };
        push_frame_header(out, n, CONTINUATION, f, stream);
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::Passthrough && this.raw.is_empty() {
                // Decided and drained: read straight into the caller's buffer.
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut tmp = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut tmp);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.eof = true;
                this.give_up_pending();
                this.out.append(&mut this.raw);
                continue;
            }
            this.raw.extend_from_slice(rb.filled());
            this.process();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<S>
{
    type ConnectInfo = S::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type Header = (Vec<u8>, Vec<u8>);
    /// (kind, flags, stream, payload)
    type Frame = (u8, u8, u32, Vec<u8>);

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        push_frame_header(&mut f, payload.len(), kind, flags, stream);
        f.extend_from_slice(payload);
        f
    }

    /// Parses frames, returning (kind, flags, stream, payload).
    fn frames(mut b: &[u8]) -> Vec<Frame> {
        let mut v = Vec::new();
        while b.len() >= 9 {
            let len = (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize;
            let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
            v.push((b[3], b[4], stream, b[9..9 + len].to_vec()));
            b = &b[9 + len..];
        }
        assert!(b.is_empty(), "trailing bytes");
        v
    }

    /// Runs `input` through the wrapper, fed in pieces of `chunk` bytes.
    async fn run(input: Vec<u8>, chunk: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn(async move {
            for c in input.chunks(chunk) {
                client.write_all(c).await.unwrap();
            }
            client.shutdown().await.unwrap();
        });
        let mut fixed = AuthorityFix::new(server);
        let mut out = Vec::new();
        fixed.read_to_end(&mut out).await.unwrap();
        writer.await.unwrap();
        out
    }

    fn request_headers(authority: &[u8], path: &[u8]) -> Vec<Header> {
        vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (b":path".to_vec(), path.to_vec()),
            (b":authority".to_vec(), authority.to_vec()),
            (b"content-type".to_vec(), b"application/grpc".to_vec()),
            (b"te".to_vec(), b"trailers".to_vec()),
        ]
    }

    fn encode(enc: &mut Encoder<'static>, h: &[Header]) -> Vec<u8> {
        enc.encode(h.iter().map(|(n, v)| (n.as_slice(), v.as_slice())))
    }

    /// Decodes every header block of `out` (after the preface) in order.
    fn decode_blocks(out: &[u8]) -> (Vec<Vec<Header>>, Vec<Frame>) {
        assert_eq!(&out[..PREFACE.len()], PREFACE);
        let fs = frames(&out[PREFACE.len()..]);
        let mut dec = Decoder::new();
        let mut blocks = Vec::new();
        let mut cur: Option<Vec<u8>> = None;
        for (kind, flags, _, payload) in &fs {
            match *kind {
                HEADERS => {
                    let (_, frag) = split_headers_payload(*flags, payload).unwrap();
                    cur = Some(frag.to_vec());
                }
                CONTINUATION => cur.as_mut().unwrap().extend_from_slice(payload),
                _ => continue,
            }
            if flags & END_HEADERS != 0 {
                blocks.push(dec.decode(&cur.take().unwrap()).unwrap());
            }
        }
        (blocks, fs)
    }

    #[tokio::test]
    async fn socket_path_authority_becomes_localhost_in_every_block() {
        let mut enc = Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        let h1 = request_headers(
            b"/run/vordr/vordr.sock",
            b"/runtime.v1.RuntimeService/Version",
        );
        let b1 = encode(&mut enc, &h1);
        // Split over HEADERS + CONTINUATION, with padding and priority.
        let (a, b) = b1.split_at(b1.len() / 2);
        let mut payload = vec![3u8];
        payload.extend_from_slice(&[0, 0, 0, 0, 15]);
        payload.extend_from_slice(a);
        payload.extend_from_slice(&[0, 0, 0]);
        input.extend(frame(HEADERS, PADDED | PRIORITY, 1, &payload));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, b));
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0")); // DATA
                                                                // A second request reuses the client's dynamic table.
        let h2 = request_headers(
            b"/run/vordr/vordr.sock",
            b"/runtime.v1.RuntimeService/Status",
        );
        input.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &encode(&mut enc, &h2),
        ));
        for chunk in [1, 7, 4096] {
            let out = run(input.clone(), chunk).await;
            let (blocks, fs) = decode_blocks(&out);
            assert_eq!(blocks.len(), 2);
            for (got, want) in blocks.iter().zip([&h1, &h2]) {
                let mut expect = want.clone();
                expect[3].1 = b"localhost".to_vec();
                assert_eq!(got, &expect);
            }
            // Priority and END_STREAM kept, padding dropped, other frames intact.
            assert_eq!(fs[0].0, 0x4);
            assert_eq!(fs[1].0, HEADERS);
            assert_eq!(
                fs[1].1 & (PRIORITY | PADDED | END_HEADERS),
                PRIORITY | END_HEADERS
            );
            assert_eq!(&fs[1].3[..5], &[0, 0, 0, 0, 15]);
            assert_eq!(fs[2], (0x0, END_STREAM, 1, b"\0\0\0\0\0".to_vec()));
            assert_eq!(fs[3].1 & END_STREAM, END_STREAM);
        }
    }

    #[tokio::test]
    async fn valid_authority_passes_byte_for_byte() {
        let mut enc = Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[]));
        for (stream, auth) in [(1, &b"localhost"[..]), (3, b"/looks/bad/but/later")] {
            let h = request_headers(auth, b"/x");
            input.extend(frame(HEADERS, END_HEADERS, stream, &encode(&mut enc, &h)));
        }
        let out = run(input.clone(), 5).await;
        assert_eq!(out, input, "a connection decided valid is left alone");
    }

    #[tokio::test]
    async fn percent_encoded_path_is_replaced() {
        assert!(!valid_authority(b"%2Frun%2Fvordr.sock"));
        assert!(!valid_authority(b"/run/vordr.sock"));
        assert!(valid_authority(b"localhost"));
        assert!(valid_authority(b"[::1]:50051"));
        let mut enc = Encoder::new();
        let mut input = PREFACE.to_vec();
        let h = request_headers(b"%2Frun%2Fvordr.sock", b"/x");
        input.extend(frame(HEADERS, END_HEADERS, 1, &encode(&mut enc, &h)));
        let (blocks, _) = decode_blocks(&run(input, 3).await);
        assert_eq!(
            blocks[0][3],
            (b":authority".to_vec(), b"localhost".to_vec())
        );
    }

    #[tokio::test]
    async fn large_blocks_are_split_into_continuations() {
        let mut enc = Encoder::new();
        let mut input = PREFACE.to_vec();
        let mut h = request_headers(b"/s.sock", b"/x");
        h.push((b"x-big".to_vec(), vec![b'a'; 40_000]));
        input.extend(frame(HEADERS, END_HEADERS, 1, &encode(&mut enc, &h)));
        let (blocks, fs) = decode_blocks(&run(input, 16 * 1024).await);
        assert_eq!(blocks[0][6].1.len(), 40_000);
        assert!(fs.iter().filter(|f| f.0 == CONTINUATION).count() >= 2);
        assert!(fs.iter().all(|f| f.3.len() <= MAX_FRAME));
    }

    #[tokio::test]
    async fn malformed_input_is_passed_on_unchanged() {
        let mut input = PREFACE.to_vec();
        // Padding longer than the payload.
        input.extend(frame(HEADERS, END_HEADERS | PADDED, 1, &[200, 1, 2]));
        input.extend(frame(0x0, 0, 1, b"data"));
        assert_eq!(run(input.clone(), 2).await, input);
        // An undecodable block.
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff]));
        assert_eq!(run(input.clone(), 64).await, input);
        // A truncated connection.
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&[0, 0, 50, HEADERS, 0, 0, 0, 0, 1, 1, 2]);
        assert_eq!(run(input.clone(), 4).await, input);
    }
}
