//! The streaming protocols over WebSocket (RFC 6455), as kubelet serves
//! them: every message carries one channel, named by its first byte
//! (binary protocols) or by an ASCII digit followed by base64 text
//! (`base64` protocols). Exec and attach use channels 0 stdin, 1 stdout,
//! 2 stderr, 3 error, 4 resize; port-forward uses a data and an error
//! channel per port in the URL's `port` query, each opened with the port
//! number. The handshake (key, version, subprotocol) is checked here; the
//! frames are tokio-tungstenite's.

mod exec;
mod portforward;

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::server::{forbidden, header_values, negotiate, Limits, Refusal, Serve, Switch};
use crate::tokens::{ExecTarget, Target};
use crate::Backend;

pub(crate) const UPGRADE: &str = "websocket";
const PROTOCOL_HEADER: &str = "sec-websocket-protocol";

/// The remotecommand subprotocols served over WebSocket. `v5` lets the
/// client close stdin; `base64` ones carry text; before v4 the error
/// channel carries a plain message.
pub const EXEC_PROTOCOLS: [&str; 5] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

/// The port-forward subprotocols served over WebSocket.
pub const PORT_FORWARD_PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"];

/// v5's close signal: a message on this channel whose payload names the
/// channel the client closes.
pub const CLOSE_SIGNAL: u8 = 255;

/// How long a closing session waits for the client's close frame.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The server side of a WebSocket session.
type Conn = WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// Ends a session whose close frame the writer has sent: reads what the
/// client still sends until its close frame (or [`CLOSE_WAIT`]), so that
/// the connection is not reset under data the client had in flight (the
/// kernel answers unread data with RST, and the client would lose our last
/// messages).
async fn linger(messages: &mut futures::stream::SplitStream<Conn>) {
    use futures::StreamExt;
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = messages.next().await {}
    })
    .await;
}

/// The most ports one port-forward connection carries (two channels
/// each, numbered by one byte); the configured cap may be lower.
const MAX_PORTS: usize = 128;

/// The largest message (and frame) a client may send: kubectl sends what
/// one read gave it (32 KiB, a third more in base64), and every message in
/// flight is held in memory.
pub const MAX_CLIENT_MESSAGE: usize = 1 << 20;

/// A session's buffers, capped. Public for the fuzz targets.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(32 * 1024)
        .max_write_buffer_size(4 << 20)
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE))
}

/// How a protocol puts a channel's bytes into a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    /// Text messages: the channel as an ASCII digit, the data in base64.
    pub base64: bool,
}

impl Codec {
    /// The codec of a negotiated subprotocol.
    pub fn of(protocol: &str) -> Codec {
        Codec {
            base64: protocol.contains("base64"),
        }
    }

    /// A message carrying `data` on `channel`. In base64 the channel byte
    /// is `'0' + channel`, as kubelet writes it; from channel 80 on (a
    /// port-forward of more than 40 ports) that byte is not ASCII, and a
    /// text message cannot carry it alone, so the same bytes go in a binary
    /// message (which `decode` reads the same way).
    pub fn encode(&self, channel: u8, data: &[u8]) -> Message {
        if self.base64 {
            let digit = b'0'.wrapping_add(channel);
            let mut text = String::with_capacity(1 + data.len().div_ceil(3) * 4);
            if digit.is_ascii() {
                text.push(char::from(digit));
            }
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
            if digit.is_ascii() {
                Message::text(text)
            } else {
                let mut b = Vec::with_capacity(1 + text.len());
                b.push(digit);
                b.extend_from_slice(text.as_bytes());
                Message::binary(b)
            }
        } else {
            let mut b = Vec::with_capacity(1 + data.len());
            b.push(channel);
            b.extend_from_slice(data);
            Message::binary(b)
        }
    }

    /// The channel and data a message carries; `None` for control
    /// messages, empty ones and bad base64. The protocol decides the
    /// encoding, not the message type (clients send either).
    pub fn decode(&self, msg: Message) -> Option<(u8, Bytes)> {
        let raw: Bytes = match msg {
            Message::Binary(b) => b,
            Message::Text(t) => Bytes::from(t),
            _ => return None,
        };
        let (&first, rest) = raw.split_first()?;
        if self.base64 {
            let data = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            Some((first.wrapping_sub(b'0'), Bytes::from(data)))
        } else {
            Some((first, raw.slice(1..)))
        }
    }
}

/// Checks the handshake and negotiates the subprotocol (the client's
/// first one that is served; binary with the original status format when
/// it offers none), and readies the session.
pub(crate) fn accept(
    req: &Request<Incoming>,
    target: Target,
    backend: Arc<dyn Backend>,
    limits: Limits,
) -> Result<Switch, Refusal> {
    let bad = |msg: String| (StatusCode::BAD_REQUEST, msg);
    let versions = header_values(req, "sec-websocket-version");
    if !versions.iter().any(|v| v == "13") {
        return Err(bad(format!(
            "unsupported WebSocket version {versions:?}: this server speaks 13\n"
        )));
    }
    let key = req
        .headers()
        .get("sec-websocket-key")
        .ok_or_else(|| bad("a WebSocket upgrade needs Sec-WebSocket-Key\n".into()))?;
    let accept_key = derive_accept_key(key.as_bytes());
    let offered = header_values(req, PROTOCOL_HEADER);
    let (protocol, serve) = match target {
        Target::Exec(t) => exec_session(&offered, t, false, backend)?,
        Target::Attach(t) => exec_session(&offered, t, true, backend)?,
        Target::PortForward(t) => {
            let max_ports = limits.max_port_forward_pairs.min(MAX_PORTS);
            let query = req.uri().query().unwrap_or_default();
            let ports = query_ports(query, max_ports).map_err(bad)?;
            let protocol = negotiate(&offered, &PORT_FORWARD_PROTOCOLS).map_err(forbidden)?;
            let codec = Codec::of(protocol);
            let serve: Serve = Box::new(move |io| {
                Box::pin(async move {
                    let ws =
                        WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())).await;
                    portforward::serve(ws, codec, ports, t, backend).await
                })
            });
            (protocol, serve)
        }
    };
    let mut headers = vec![
        ("upgrade", UPGRADE.to_string()),
        ("sec-websocket-accept", accept_key),
    ];
    if !protocol.is_empty() {
        headers.push((PROTOCOL_HEADER, protocol.to_string()));
    }
    Ok(Switch { headers, serve })
}

fn exec_session(
    offered: &[String],
    target: ExecTarget,
    attach: bool,
    backend: Arc<dyn Backend>,
) -> Result<(&'static str, Serve), Refusal> {
    let protocol = negotiate(offered, &EXEC_PROTOCOLS).map_err(forbidden)?;
    let session = exec::Session {
        codec: Codec::of(protocol),
        close_signal: protocol.starts_with("v5."),
        status_json: protocol.starts_with("v4.") || protocol.starts_with("v5."),
    };
    let serve: Serve = Box::new(move |io| {
        Box::pin(async move {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config())).await;
            session.serve(ws, target, backend, attach).await
        })
    });
    Ok((protocol, serve))
}

/// The ports of a WebSocket port-forward: `port=` parameters, each one
/// port or a comma-separated list, at least one.
fn query_ports(query: &str, max_ports: usize) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        if k != "port" {
            continue;
        }
        if v.is_empty() {
            return Err("query parameter \"port\" cannot be empty\n".into());
        }
        for p in v.split(',') {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => {
                    return Err(format!(
                        "query parameter \"port\": {p:?} is not a port (1-65535)\n"
                    ))
                }
                Ok(n) => ports.push(n),
            }
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required for a WebSocket port-forward\n".into());
    }
    if ports.len() > max_ports {
        return Err(format!(
            "query parameter \"port\": {} ports, at most {max_ports} per connection\n",
            ports.len()
        ));
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_in_binary_and_base64() {
        let bin = Codec { base64: false };
        let msg = bin.encode(2, b"err");
        assert_eq!(msg, Message::binary(b"\x02err".to_vec()));
        assert_eq!(bin.decode(msg), Some((2, Bytes::from_static(b"err"))));
        // A text message on a binary protocol is read the same way.
        assert_eq!(
            bin.decode(Message::text("\u{0}ls\n")),
            Some((0, Bytes::from_static(b"ls\n")))
        );
        assert_eq!(bin.decode(Message::binary(Vec::new())), None);
        assert_eq!(bin.decode(Message::Ping(Bytes::new())), None);

        let b64 = Codec::of("v4.base64.channel.k8s.io");
        assert!(b64.base64);
        let msg = b64.encode(1, b"hello\xff");
        assert_eq!(msg, Message::text("1aGVsbG//"));
        assert_eq!(b64.decode(msg), Some((1, Bytes::from_static(b"hello\xff"))));
        assert_eq!(b64.encode(3, b""), Message::text("3"));
        assert_eq!(b64.decode(Message::text("0")), Some((0, Bytes::new())));
        assert_eq!(b64.decode(Message::text("0not base64!")), None);
        assert!(!Codec::of("v5.channel.k8s.io").base64);
    }

    /// Found by the websocket_frames fuzz target: in base64, channels 80 and
    /// up were written as a two-byte UTF-8 character, which reads back as
    /// another channel with undecodable data.
    #[test]
    fn every_base64_channel_reads_back() {
        let b64 = Codec { base64: true };
        let data = b"\t0bHMgLWwK\x81%4e";
        for ch in 0..=u8::MAX {
            let msg = b64.encode(ch, data);
            assert_eq!(
                b64.decode(msg.clone()),
                Some((ch, Bytes::from_static(data))),
                "channel {ch}: {msg:?}"
            );
        }
        // Channel 129 (port 65 of a port-forward): kubelet's byte, '0' + 129.
        assert_eq!(b64.encode(129, b"x"), Message::binary(b"\xb1eA==".to_vec()));
        assert_eq!(b64.encode(79, b"x"), Message::text("\u{7f}eA=="));
    }

    fn query_ports_all(query: &str) -> Result<Vec<u16>, String> {
        query_ports(query, MAX_PORTS)
    }

    #[test]
    fn ports_come_from_the_query() {
        assert_eq!(query_ports_all("port=80"), Ok(vec![80]));
        assert_eq!(
            query_ports_all("port=80&x=1&port=8080,9090"),
            Ok(vec![80, 8080, 9090])
        );
        assert!(query_ports_all("").unwrap_err().contains("required"));
        assert!(query_ports_all("port=").unwrap_err().contains("empty"));
        assert!(query_ports_all("port=0").unwrap_err().contains("\"0\""));
        assert!(query_ports_all("port=70000").unwrap_err().contains("70000"));
        let many = vec!["port=1"; MAX_PORTS + 1].join("&");
        assert!(query_ports_all(&many).unwrap_err().contains("at most 128"));
        assert!(query_ports("port=1&port=2&port=3", 2)
            .unwrap_err()
            .contains("3 ports, at most 2"));
    }
}
