//! A live exec or attach session on a streaming URL (what CRI Exec or
//! Attach handed out), over WebSocket with the remotecommand protocol
//! (`v5.channel.k8s.io`, else `v4`): output is written as it arrives,
//! input is sent as it is read, terminal sizes as they change. Built on
//! `vordr_streaming::client::websocket` (the connection) and its codec;
//! the batch clients there collect output instead.

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use vordr_streaming::client::{websocket, ClientError, ExecOutput};
use vordr_streaming::websocket::{Codec, CLOSE_SIGNAL};

/// The subprotocols offered, best first: v5 can close stdin alone.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// How a session ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The subprotocol the server chose.
    pub protocol: String,
    /// The exit code the status reported (exec), if any.
    pub exit_code: Option<i32>,
    /// The status the error channel carried (JSON from v4 on), as text.
    pub status: String,
}

impl Outcome {
    /// The status's message when it reports a failure that is not an exit
    /// code (the process could not start, the container is gone).
    pub fn failure(&self) -> Option<String> {
        if self.exit_code.is_some() || self.status.trim().is_empty() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&self.status).ok()?;
        (v["status"] == "Failure").then(|| v["message"].as_str().unwrap_or_default().to_string())
    }
}

/// Runs a session on `url`: `stdin` (when given) is sent until it ends,
/// then closed (over v5); sizes from `resize` go to the resize channel;
/// stdout and stderr are written and flushed as they arrive. Returns when
/// the server closes the session.
pub async fn session<I, O, E>(
    url: &str,
    mut stdin: Option<I>,
    mut stdout: O,
    mut stderr: E,
    mut resize: Option<mpsc::Receiver<(u16, u16)>>,
) -> Result<Outcome, ClientError>
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let (ws, protocol) = websocket::connect(url, &PROTOCOLS).await?;
    let codec = Codec::of(&protocol);
    let v5 = protocol.starts_with("v5.");
    let (mut tx, mut rx) = ws.split();
    let mut status = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            m = rx.next() => {
                let m = match m {
                    None => break,
                    Some(Ok(m)) => m,
                    // The status came; a connection reset after it is the end.
                    Some(Err(_)) if !status.is_empty() => break,
                    Some(Err(e)) => return Err(e.into()),
                };
                if m.is_close() {
                    break;
                }
                match codec.decode(m) {
                    Some((1, d)) => {
                        stdout.write_all(&d).await?;
                        stdout.flush().await?;
                    }
                    Some((2, d)) => {
                        stderr.write_all(&d).await?;
                        stderr.flush().await?;
                    }
                    Some((3, d)) => status.extend_from_slice(&d),
                    _ => {}
                }
            }
            n = read_some(stdin.as_mut(), &mut buf), if stdin.is_some() => match n {
                Ok(n) if n > 0 => tx.send(codec.encode(0, &buf[..n])).await?,
                _ => {
                    stdin = None;
                    if v5 {
                        tx.send(codec.encode(CLOSE_SIGNAL, &[0])).await?;
                    }
                }
            },
            size = next_size(resize.as_mut()), if resize.is_some() => match size {
                Some((w, h)) => {
                    let msg = format!("{{\"Width\":{w},\"Height\":{h}}}");
                    tx.send(codec.encode(4, msg.as_bytes())).await?;
                }
                None => resize = None,
            },
        }
    }
    let exit_code = ExecOutput {
        error: status.clone(),
        ..Default::default()
    }
    .exit_code();
    Ok(Outcome {
        protocol,
        exit_code,
        status: String::from_utf8_lossy(&status).into_owned(),
    })
}

async fn read_some<I: AsyncRead + Unpin>(
    r: Option<&mut I>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn next_size(rx: Option<&mut mpsc::Receiver<(u16, u16)>>) -> Option<(u16, u16)> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_other_than_exit_codes() {
        let o = |code, status: &str| Outcome {
            exit_code: code,
            status: status.into(),
            ..Default::default()
        };
        assert_eq!(o(Some(0), "{\"status\":\"Success\"}").failure(), None);
        assert_eq!(o(None, "").failure(), None);
        assert_eq!(
            o(
                None,
                "{\"status\":\"Failure\",\"message\":\"no such file\"}"
            )
            .failure(),
            Some("no such file".into())
        );
    }
}
