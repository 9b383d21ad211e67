//! The client over SPDY/3.1, as client-go (kubectl, crictl) speaks it: it
//! upgrades a connection to an exec URL, opens the streams the way
//! client-go does (error, stdin, stdout, stderr, each waiting for its
//! reply), sends stdin and collects the output and the outcome; or
//! forwards connections to a port-forward URL.

use std::collections::HashMap;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::Framed;
use vordr_spdy::{Codec, Frame, Headers, FLAG_FIN};

use super::{split_url, ClientError, ExecOutput, Forwarded};

/// Upgrades `url` (http://host:port/path) offering `protocols`, then runs
/// the exec: `stdin` is sent and closed when given; stdout and stderr are
/// opened as asked.
pub async fn exec(
    url: &str,
    protocols: &[&str],
    stdin: Option<&[u8]>,
    stdout: bool,
    stderr: bool,
) -> Result<ExecOutput, ClientError> {
    run(url, protocols, stdin, stdout, stderr, None).await
}

/// An exec with a terminal: stdout only (the terminal merges stderr), and
/// a resize stream that reports `size` (width, height) first.
pub async fn exec_tty(
    url: &str,
    protocols: &[&str],
    stdin: Option<&[u8]>,
    size: (u16, u16),
) -> Result<ExecOutput, ClientError> {
    run(url, protocols, stdin, true, false, Some(size)).await
}

async fn run(
    url: &str,
    protocols: &[&str],
    stdin: Option<&[u8]>,
    stdout: bool,
    stderr: bool,
    size: Option<(u16, u16)>,
) -> Result<ExecOutput, ClientError> {
    let mut kinds = vec!["error"];
    if stdin.is_some() {
        kinds.push("stdin");
    }
    if stdout {
        kinds.push("stdout");
    }
    if stderr {
        kinds.push("stderr");
    }
    if size.is_some() {
        kinds.push("resize");
    }
    let (mut framed, protocol, ids) = open(url, protocols, &kinds).await?;
    if let Some((w, h)) = size {
        let id = *ids.iter().find(|(_, k)| **k == "resize").expect("opened").0;
        let msg = format!("{{\"Width\":{w},\"Height\":{h}}}\n");
        framed.send(Frame::data(id, 0, Bytes::from(msg))).await?;
    }
    if let Some(data) = stdin {
        let id = *ids.iter().find(|(_, k)| **k == "stdin").expect("opened").0;
        for chunk in data.chunks(32 * 1024) {
            framed
                .send(Frame::data(id, 0, Bytes::copy_from_slice(chunk)))
                .await?;
        }
        framed.send(Frame::data(id, FLAG_FIN, Bytes::new())).await?;
    }
    let mut out = ExecOutput {
        protocol,
        ..Default::default()
    };
    let mut open: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| *k != "stdin" && *k != "resize")
        .collect();
    while !open.is_empty() {
        let Some((stream_id, flags, data)) = next_data(&mut framed).await? else {
            break;
        };
        let Some(kind) = ids.get(&stream_id) else {
            continue;
        };
        match *kind {
            "stdout" => out.stdout.extend_from_slice(&data),
            "stderr" => out.stderr.extend_from_slice(&data),
            "error" => out.error.extend_from_slice(&data),
            _ => {}
        }
        if flags & FLAG_FIN != 0 {
            open.retain(|k| k != kind);
        }
    }
    Ok(out)
}

/// The next data frame (stream, flags, data), past any control frame;
/// `None` when the connection ends.
pub async fn next_data<IO: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<IO, Codec>,
) -> Result<Option<(u32, u8, Bytes)>, ClientError> {
    while let Some(f) = framed.next().await {
        if let Frame::Data {
            stream_id,
            flags,
            data,
        } = f?
        {
            return Ok(Some((stream_id, flags, data)));
        }
    }
    Ok(None)
}

/// A SPDY connection from the client's side.
pub type Connection = Framed<tokio::net::TcpStream, Codec>;

/// Sends a SYN_STREAM with `headers` (name, value pairs).
pub async fn syn<IO: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<IO, Codec>,
    stream_id: u32,
    headers: &[(&str, &str)],
) -> Result<(), ClientError> {
    let mut h = Headers::new();
    for (n, v) in headers {
        h.add(n, v);
    }
    framed
        .send(Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers: h,
        })
        .await?;
    Ok(())
}

/// Upgrades `url` and opens one stream per `streamtype` in `kinds`, each
/// waiting for its reply as client-go does; returns the connection, the
/// chosen subprotocol and the stream ids with their kinds.
pub async fn open<'a>(
    url: &str,
    protocols: &[&str],
    kinds: &[&'a str],
) -> Result<(Connection, String, HashMap<u32, &'a str>), ClientError> {
    let (mut framed, protocol) = upgrade(url, protocols).await?;
    let ids = open_streams(&mut framed, kinds).await?;
    Ok((framed, protocol, ids))
}

/// Opens one stream per `streamtype` in `kinds` on an upgraded
/// connection, each waiting for its reply; the stream ids with their kinds.
pub async fn open_streams<'a, IO: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<IO, Codec>,
    kinds: &[&'a str],
) -> Result<HashMap<u32, &'a str>, ClientError> {
    let mut ids = HashMap::new();
    for (i, kind) in kinds.iter().enumerate() {
        let stream_id = 2 * i as u32 + 1;
        syn(framed, stream_id, &[("streamtype", kind)]).await?;
        loop {
            match framed.next().await {
                Some(Ok(Frame::SynReply { stream_id: s, .. })) if s == stream_id => break,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => return Err(ClientError::Protocol("closed during setup".into())),
            }
        }
        ids.insert(stream_id, *kind);
    }
    Ok(ids)
}

/// Opens the connection and upgrades it; returns the framed SPDY side and
/// the chosen subprotocol.
pub async fn upgrade(url: &str, protocols: &[&str]) -> Result<(Connection, String), ClientError> {
    let (host, _) = split_url(url)?;
    let tcp = tokio::net::TcpStream::connect(host).await?;
    upgrade_on(tcp, url, protocols).await
}

/// Upgrades `url` on a connection the caller opened (a TLS one for an
/// https:// URL); returns the framed SPDY side and the chosen subprotocol.
pub async fn upgrade_on<IO: AsyncRead + AsyncWrite + Unpin>(
    mut tcp: IO,
    url: &str,
    protocols: &[&str],
) -> Result<(Framed<IO, Codec>, String), ClientError> {
    let (host, path) = split_url(url)?;
    let mut req = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n"
    );
    for p in protocols {
        req.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await?;
    // The response head, byte by byte so nothing of the SPDY side is eaten.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if tcp.read(&mut b).await? == 0 {
            return Err(ClientError::Protocol("closed before the response".into()));
        }
        head.push(b[0]);
        if head.len() > 16 * 1024 {
            return Err(ClientError::Protocol("response head too long".into()));
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("bad response {head:?}")))?;
    if status != 101 {
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len.min(64 * 1024)];
        tcp.read_exact(&mut body).await?;
        return Err(ClientError::Refused {
            status,
            body: String::from_utf8_lossy(&body).to_string(),
        });
    }
    let protocol = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-stream-protocol-version")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((Framed::new(tcp, Codec::new()), protocol))
}

/// Forwards one connection per `(port, payload)` over a single upgraded
/// connection to a port-forward URL: each sends its payload, closes its
/// side, and collects the answer until the pod's side closes.
pub async fn port_forward(
    url: &str,
    conns: &[(u16, &[u8])],
) -> Result<Vec<Forwarded>, ClientError> {
    let (mut framed, _) = upgrade(url, &["portforward.k8s.io"]).await?;
    // stream id -> (connection index, is data)
    let mut ids: HashMap<u32, (usize, bool)> = HashMap::new();
    let mut next = 1u32;
    for (i, (port, _)) in conns.iter().enumerate() {
        for kind in ["error", "data"] {
            let (port, request) = (port.to_string(), i.to_string());
            let headers = [
                ("streamtype", kind),
                ("port", &port),
                ("requestid", &request),
            ];
            syn(&mut framed, next, &headers).await?;
            ids.insert(next, (i, kind == "data"));
            next += 2;
        }
    }
    for (id, (i, is_data)) in &ids {
        if *is_data {
            // In reads' worth, as client-go sends.
            for chunk in conns[*i].1.chunks(32 * 1024) {
                framed
                    .send(Frame::data(*id, 0, Bytes::copy_from_slice(chunk)))
                    .await?;
            }
            framed
                .send(Frame::data(*id, FLAG_FIN, Bytes::new()))
                .await?;
        }
    }
    let mut out = vec![Forwarded::default(); conns.len()];
    let mut open = ids.len();
    while open > 0 {
        let Some((stream_id, flags, data)) = next_data(&mut framed).await? else {
            break;
        };
        let Some((i, is_data)) = ids.get(&stream_id) else {
            continue;
        };
        let buf = if *is_data {
            &mut out[*i].data
        } else {
            &mut out[*i].error
        };
        buf.extend_from_slice(&data);
        if flags & FLAG_FIN != 0 {
            open -= 1;
        }
    }
    Ok(out)
}
