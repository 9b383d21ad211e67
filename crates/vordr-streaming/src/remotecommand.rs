//! The remotecommand protocols over a SPDY/3.1 connection, server side:
//! the client opens one stream per channel (`streamtype` error, stdin,
//! stdout, stderr, resize), the server answers each, runs the command once
//! the streams it asked for are there, copies data both ways, ends stdout
//! and stderr, and writes the outcome on the error stream (a Status JSON
//! from v4 on, a plain message before).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use vordr_spdy::{Frame, Headers, FLAG_FIN};

use crate::tokens::ExecTarget;
use crate::Backend;

/// The remotecommand subprotocols served, newest first.
pub const PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// How long the client has to open its streams.
const STREAM_WAIT: Duration = Duration::from_secs(30);

/// The streams of an exec, as the backend sees them. `stdin` ends when the
/// client closes it; the backend drops `stdout` and `stderr` when the
/// process's output is drained.
pub struct ExecIo {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<mpsc::Sender<Bytes>>,
    pub stderr: Option<mpsc::Sender<Bytes>>,
    /// Terminal sizes (width, height) as the client reports them (tty only).
    pub resize: Option<mpsc::Receiver<(u16, u16)>>,
}

/// The client's side of the session, as frames route it.
struct Inbound {
    ids: HashMap<String, u32>,
    stdin: Option<mpsc::Sender<Bytes>>,
    resize: Option<mpsc::Sender<(u16, u16)>>,
    /// A partial resize message.
    resize_buf: Vec<u8>,
}

/// The sizes in newline-separated `{"Width":w,"Height":h}` messages.
fn parse_sizes(buf: &mut Vec<u8>) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    while let Some(end) = buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buf.drain(..=end).collect();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
            let dim = |k: &str| v[k].as_u64().map(|n| n.min(u16::MAX as u64) as u16);
            if let (Some(w), Some(h)) = (dim("Width"), dim("Height")) {
                out.push((w, h));
            }
        }
    }
    if buf.len() > 4096 {
        buf.clear();
    }
    out
}

/// The error-stream payload for an outcome.
fn outcome_message(protocol: &str, cmd: &[String], r: &Result<i32, String>) -> Option<Vec<u8>> {
    let v4 = protocol == PROTOCOLS[0];
    match r {
        Ok(0) if v4 => Some(br#"{"metadata":{},"status":"Success"}"#.to_vec()),
        Ok(0) => None,
        Ok(code) => {
            let message = format!(
                "command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"
            );
            if v4 {
                let status = serde_json::json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": message,
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
                });
                Some(status.to_string().into_bytes())
            } else {
                Some(message.into_bytes())
            }
        }
        Err(e) if v4 => Some(
            serde_json::json!({"metadata": {}, "status": "Failure", "message": e})
                .to_string()
                .into_bytes(),
        ),
        Err(e) => Some(e.clone().into_bytes()),
    }
}

pub(crate) async fn serve_exec<IO>(
    io: IO,
    protocol: &'static str,
    target: ExecTarget,
    backend: Arc<dyn Backend>,
    attach: bool,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut frames, out, writer) = crate::session::start(io);

    // The streams the request asked for, opened by the client.
    let mut wanted = vec!["error"];
    if target.stdin {
        wanted.push("stdin");
    }
    if target.stdout {
        wanted.push("stdout");
    }
    if target.stderr && !target.tty {
        wanted.push("stderr");
    }
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(64);
    let (resize_tx, resize_rx) = mpsc::channel::<(u16, u16)>(8);
    let mut inb = Inbound {
        ids: HashMap::new(),
        stdin: Some(stdin_tx),
        resize: target.tty.then_some(resize_tx),
        resize_buf: Vec::new(),
    };
    let deadline = tokio::time::sleep(STREAM_WAIT);
    tokio::pin!(deadline);
    while !wanted.iter().all(|w| inb.ids.contains_key(*w)) {
        let frame = tokio::select! {
            f = frames.next() => f,
            _ = &mut deadline => {
                tracing::warn!(container = %target.container_id, "exec: the client did not open its streams in time");
                drop(out);
                let _ = writer.await;
                return;
            }
        };
        match frame {
            Some(Ok(f)) => {
                handle_frame(f, &out, &mut inb).await;
            }
            _ => {
                tracing::debug!("exec: the client left before opening its streams");
                drop(out);
                let _ = writer.await;
                return;
            }
        }
    }

    // Run the process; copy its output as it comes.
    let (stdout_tx, stdout_rx) = mpsc::channel::<Bytes>(16);
    let (stderr_tx, stderr_rx) = mpsc::channel::<Bytes>(16);
    let pump = |rx: mpsc::Receiver<Bytes>, id: Option<u32>| {
        let out = out.clone();
        tokio::spawn(async move {
            let mut rx = rx;
            while let Some(chunk) = rx.recv().await {
                if let Some(id) = id {
                    if out.send(Frame::data(id, 0, chunk)).await.is_err() {
                        break;
                    }
                }
            }
            if let Some(id) = id {
                let _ = out.send(Frame::data(id, FLAG_FIN, Bytes::new())).await;
            }
        })
    };
    let out_pump = pump(stdout_rx, inb.ids.get("stdout").copied());
    let err_pump = pump(stderr_rx, inb.ids.get("stderr").copied());
    let exec_io = ExecIo {
        stdin: target.stdin.then_some(stdin_rx),
        stdout: target.stdout.then_some(stdout_tx),
        stderr: (target.stderr && !target.tty).then_some(stderr_tx),
        resize: target.tty.then_some(resize_rx),
    };
    // Its own task: stdin backpressure on this loop must never hold up the
    // process's start or its output.
    let t = target.clone();
    let mut exec = tokio::spawn(async move {
        if attach {
            backend.attach(&t, exec_io).await.map(|()| 0)
        } else {
            backend.exec(&t, exec_io).await
        }
    });
    let result = loop {
        tokio::select! {
            r = &mut exec => break Some(r.unwrap_or_else(|e| Err(format!("exec failed: {e}")))),
            f = frames.next() => match f {
                Some(Ok(Frame::GoAway { .. })) | None | Some(Err(_)) => break None,
                Some(Ok(f)) => handle_frame(f, &out, &mut inb).await,
            },
        }
    };
    let Some(result) = result else {
        // The client vanished: aborting the exec kills the process.
        tracing::info!(container = %target.container_id, "exec: the client went away; the process is killed");
        exec.abort();
        out_pump.abort();
        err_pump.abort();
        drop(out);
        let _ = writer.await;
        return;
    };
    let _ = out_pump.await;
    let _ = err_pump.await;
    let error_id = inb.ids["error"];
    if let Some(msg) = outcome_message(protocol, &target.cmd, &result) {
        let _ = out.send(Frame::data(error_id, 0, Bytes::from(msg))).await;
    }
    let _ = out
        .send(Frame::data(error_id, FLAG_FIN, Bytes::new()))
        .await;
    let _ = out
        .send(Frame::GoAway {
            last_good_stream_id: inb.ids.values().copied().max().unwrap_or(0),
            status: vordr_spdy::goaway::OK,
        })
        .await;
    drop(out);
    let _ = writer.await;
}

/// One frame from the client: new streams are answered and recorded,
/// stdin data is handed on (its FIN closes stdin), terminal sizes are
/// parsed, pings are echoed.
async fn handle_frame(f: Frame, out: &mpsc::Sender<Frame>, inb: &mut Inbound) {
    match f {
        Frame::SynStream {
            stream_id, headers, ..
        } => {
            let kind = headers.get("streamtype").unwrap_or_default().to_string();
            let _ = out
                .send(Frame::SynReply {
                    stream_id,
                    flags: 0,
                    headers: Headers::new(),
                })
                .await;
            inb.ids.insert(kind, stream_id);
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } if inb.ids.get("stdin") == Some(&stream_id) => {
            if !data.is_empty() {
                if let Some(tx) = inb.stdin.as_ref() {
                    let _ = tx.send(data).await;
                }
            }
            if flags & FLAG_FIN != 0 {
                inb.stdin = None;
            }
        }
        Frame::Data {
            stream_id, data, ..
        } if inb.ids.get("resize") == Some(&stream_id) => {
            inb.resize_buf.extend_from_slice(&data);
            for size in parse_sizes(&mut inb.resize_buf) {
                if let Some(tx) = inb.resize.as_ref() {
                    let _ = tx.try_send(size);
                }
            }
        }
        Frame::RstStream { stream_id, .. } if inb.ids.get("stdin") == Some(&stream_id) => {
            inb.stdin = None;
        }
        Frame::Ping { id } => {
            let _ = out.send(Frame::Ping { id }).await;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sizes_are_read_across_frames() {
        let mut buf = br#"{"Width":80,"Height":24}"#.to_vec();
        assert!(parse_sizes(&mut buf).is_empty());
        buf.extend_from_slice(b"\n{\"Width\":120,");
        assert_eq!(parse_sizes(&mut buf), vec![(80, 24)]);
        buf.extend_from_slice(b"\"Height\":40}\nnot json\n{\"Width\":99999999,\"Height\":1}\n");
        assert_eq!(parse_sizes(&mut buf), vec![(120, 40), (u16::MAX, 1)]);
        assert!(buf.is_empty());
    }

    #[test]
    fn outcomes_per_protocol() {
        let cmd = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        let v4 = |r| String::from_utf8(outcome_message(PROTOCOLS[0], &cmd, &r).unwrap()).unwrap();
        assert_eq!(v4(Ok(0)), r#"{"metadata":{},"status":"Success"}"#);
        let failed: serde_json::Value = serde_json::from_str(&v4(Ok(3))).unwrap();
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        assert_eq!(outcome_message(PROTOCOLS[2], &cmd, &Ok(0)), None);
        let v2 = outcome_message(PROTOCOLS[2], &cmd, &Ok(3)).unwrap();
        assert!(String::from_utf8(v2).unwrap().contains("exit code 3"));
    }
}
