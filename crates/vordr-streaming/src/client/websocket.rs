//! The client over WebSocket, as kubectl (v5) and the other Kubernetes
//! clients (v4, binary or base64) speak it: every message carries one
//! channel. Before v5 a client cannot close stdin alone, so an exec over
//! v4 ends when the command does.

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::{split_url, ClientError, ExecOutput, Forwarded};
use crate::websocket::{Codec, CLOSE_SIGNAL};

/// A WebSocket connection from the client's side.
pub type Connection = WebSocketStream<tokio::net::TcpStream>;

impl From<tungstenite::Error> for ClientError {
    fn from(e: tungstenite::Error) -> Self {
        match e {
            tungstenite::Error::Http(r) => ClientError::Refused {
                status: r.status().as_u16(),
                body: String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).to_string(),
            },
            e => ClientError::WebSocket(Box::new(e)),
        }
    }
}

/// Connects to `url` (the `http://` URL an RPC returned, with any query)
/// offering `protocols`; returns the connection and the subprotocol the
/// server chose.
pub async fn connect(url: &str, protocols: &[&str]) -> Result<(Connection, String), ClientError> {
    let (host, path) = split_url(url)?;
    let mut req = format!("ws://{host}/{path}").into_client_request()?;
    if !protocols.is_empty() {
        let offered = HeaderValue::from_str(&protocols.join(", "))
            .map_err(|_| ClientError::Url(url.into()))?;
        req.headers_mut().insert("sec-websocket-protocol", offered);
    }
    let tcp = tokio::net::TcpStream::connect(host).await?;
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await?;
    let protocol = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((ws, protocol))
}

/// Runs an exec: `stdin` is sent (and closed, over v5) when given; stdout,
/// stderr and the error channel are read until the server closes.
pub async fn exec(
    url: &str,
    protocols: &[&str],
    stdin: Option<&[u8]>,
) -> Result<ExecOutput, ClientError> {
    run(url, protocols, stdin, None).await
}

/// An exec with a terminal that reports `size` (width, height) first.
pub async fn exec_tty(
    url: &str,
    protocols: &[&str],
    stdin: Option<&[u8]>,
    size: (u16, u16),
) -> Result<ExecOutput, ClientError> {
    run(url, protocols, stdin, Some(size)).await
}

async fn run(
    url: &str,
    protocols: &[&str],
    stdin: Option<&[u8]>,
    size: Option<(u16, u16)>,
) -> Result<ExecOutput, ClientError> {
    let (mut ws, protocol) = connect(url, protocols).await?;
    let codec = Codec::of(&protocol);
    if let Some((w, h)) = size {
        let msg = format!("{{\"Width\":{w},\"Height\":{h}}}");
        ws.send(codec.encode(4, msg.as_bytes())).await?;
    }
    if let Some(data) = stdin {
        for chunk in data.chunks(32 * 1024) {
            ws.send(codec.encode(0, chunk)).await?;
        }
        if protocol.starts_with("v5.") {
            ws.send(Message::binary(vec![CLOSE_SIGNAL, 0])).await?;
        }
    }
    let mut out = ExecOutput {
        protocol,
        ..Default::default()
    };
    while let Some(m) = ws.next().await {
        let m = m?;
        if let Message::Close(_) = m {
            break;
        }
        match codec.decode(m) {
            Some((1, d)) => out.stdout.extend_from_slice(&d),
            Some((2, d)) => out.stderr.extend_from_slice(&d),
            Some((3, d)) => out.error.extend_from_slice(&d),
            _ => {}
        }
    }
    Ok(out)
}

/// Forwards one connection per `(port, payload)` over one WebSocket to a
/// port-forward URL (the ports go in its query): each sends its payload
/// and collects the answer until the pod's side closes.
pub async fn port_forward(
    url: &str,
    protocols: &[&str],
    conns: &[(u16, &[u8])],
) -> Result<Vec<Forwarded>, ClientError> {
    let query: Vec<String> = conns.iter().map(|(p, _)| format!("port={p}")).collect();
    let (mut ws, protocol) = connect(&format!("{url}?{}", query.join("&")), protocols).await?;
    let codec = Codec::of(&protocol);
    for (i, (_, payload)) in conns.iter().enumerate() {
        // In reads' worth, as kubectl sends.
        for chunk in payload.chunks(32 * 1024) {
            ws.send(codec.encode(2 * i as u8, chunk)).await?;
        }
    }
    let mut out = vec![Forwarded::default(); conns.len()];
    // Every channel opens with its port number.
    let mut opened = vec![false; 2 * conns.len()];
    while let Some(m) = ws.next().await {
        let m = m?;
        if let Message::Close(_) = m {
            break;
        }
        let Some((ch, data)) = codec.decode(m) else {
            continue;
        };
        let ch = usize::from(ch);
        let (Some(f), Some(seen)) = (out.get_mut(ch / 2), opened.get_mut(ch)) else {
            return Err(ClientError::Protocol(format!("data on channel {ch}")));
        };
        if !*seen {
            let port = conns[ch / 2].0;
            if data[..] != port.to_le_bytes() {
                return Err(ClientError::Protocol(format!(
                    "channel {ch} opened with {data:?}, not port {port}"
                )));
            }
            *seen = true;
        } else if ch % 2 == 0 {
            f.data.extend_from_slice(&data);
        } else {
            f.error.extend_from_slice(&data);
        }
    }
    Ok(out)
}
