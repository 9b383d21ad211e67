//! What the remotecommand protocols mean, whatever carries them: the
//! channels of an exec (stdin, stdout, stderr, the error channel, terminal
//! sizes), running the command while the client's input flows in and the
//! output flows out, and the outcome on the error channel (a Status JSON
//! from v4 on, a plain message before). SPDY streams and WebSocket channels
//! are the transports' business ([`crate::spdy`], [`crate::websocket`]).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::tokens::ExecTarget;
use crate::Backend;

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

/// The channels the server writes to, numbered as on a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    Stdout = 1,
    Stderr = 2,
    Error = 3,
}

/// How a transport writes an exec's channels.
pub(crate) trait Wire: Send + Sync + 'static {
    type Msg: Send + 'static;
    /// A message carrying `data` on `ch`; `None` when the client has no
    /// such channel.
    fn data(&self, ch: Channel, data: Bytes) -> Option<Self::Msg>;
    /// The message that ends `ch`, if the transport has one.
    fn end(&self, ch: Channel) -> Option<Self::Msg>;
}

/// The client's side of an exec: its stdin and terminal sizes, handed on
/// to the backend as the transport reads them.
pub(crate) struct Input {
    stdin: Option<mpsc::Sender<Bytes>>,
    resize: Option<mpsc::Sender<(u16, u16)>>,
    /// A partial resize message.
    resize_buf: Vec<u8>,
}

impl Input {
    /// Hands stdin data on (waiting while the process is slow to read it).
    pub(crate) async fn stdin(&mut self, data: Bytes) {
        if let (Some(tx), false) = (self.stdin.as_ref(), data.is_empty()) {
            if tx.send(data).await.is_err() {
                self.stdin = None;
            }
        }
    }

    /// The client closed stdin.
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Bytes of the resize channel: JSON `{"Width":w,"Height":h}` values,
    /// one after another, possibly split anywhere.
    pub(crate) fn resize(&mut self, data: &[u8]) {
        if self.resize.is_none() {
            return;
        }
        self.resize_buf.extend_from_slice(data);
        for size in parse_sizes(&mut self.resize_buf) {
            if let Some(tx) = self.resize.as_ref() {
                let _ = tx.try_send(size);
            }
        }
    }
}

/// An exec's streams before it runs: the backend's ends and the receivers
/// of its output.
pub(crate) struct Pending {
    io: ExecIo,
    stdout: mpsc::Receiver<Bytes>,
    stderr: mpsc::Receiver<Bytes>,
}

/// The streams `target` asked for: stderr only without a terminal (the
/// terminal merges it into stdout), terminal sizes only with one.
pub(crate) fn streams(target: &ExecTarget) -> (Input, Pending) {
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(64);
    let (resize_tx, resize_rx) = mpsc::channel::<(u16, u16)>(8);
    let (stdout_tx, stdout) = mpsc::channel::<Bytes>(16);
    let (stderr_tx, stderr) = mpsc::channel::<Bytes>(16);
    let stderr_wanted = target.stderr && !target.tty;
    let input = Input {
        stdin: target.stdin.then_some(stdin_tx),
        resize: target.tty.then_some(resize_tx),
        resize_buf: Vec::new(),
    };
    let io = ExecIo {
        stdin: target.stdin.then_some(stdin_rx),
        stdout: target.stdout.then_some(stdout_tx),
        stderr: stderr_wanted.then_some(stderr_tx),
        resize: target.tty.then_some(resize_rx),
    };
    (input, Pending { io, stdout, stderr })
}

/// How an exec ended for its client.
pub(crate) enum Ended {
    /// It ran to its end; the outcome went out on the error channel.
    Done,
    /// The client went away first: the process was killed.
    ClientGone,
}

/// Runs the exec (or attach) while `client`, the transport's read loop,
/// feeds the [`Input`]; `client` ends when the client goes away, and then
/// so does the process. Output goes to `out` through `wire` as it comes;
/// `status_json` picks the v4 outcome format.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<W: Wire>(
    wire: Arc<W>,
    out: &mpsc::Sender<W::Msg>,
    target: &ExecTarget,
    backend: Arc<dyn Backend>,
    attach: bool,
    pending: Pending,
    status_json: bool,
    client: impl Future<Output = ()>,
) -> Ended {
    let pump = |mut rx: mpsc::Receiver<Bytes>, ch: Channel| {
        let (out, wire) = (out.clone(), wire.clone());
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if let Some(m) = wire.data(ch, chunk) {
                    if out.send(m).await.is_err() {
                        return;
                    }
                }
            }
            if let Some(m) = wire.end(ch) {
                let _ = out.send(m).await;
            }
        })
    };
    let out_pump = pump(pending.stdout, Channel::Stdout);
    let err_pump = pump(pending.stderr, Channel::Stderr);
    // Its own task: stdin backpressure in the client's loop must never
    // hold up the process's start or its output.
    let (t, io) = (target.clone(), pending.io);
    let mut exec = tokio::spawn(async move {
        if attach {
            backend.attach(&t, io).await.map(|()| 0)
        } else {
            backend.exec(&t, io).await
        }
    });
    tokio::pin!(client);
    let result = tokio::select! {
        r = &mut exec => r.unwrap_or_else(|e| Err(format!("exec failed: {e}"))),
        () = &mut client => {
            tracing::info!(container = %target.container_id, "exec: the client went away; the process is killed");
            exec.abort();
            out_pump.abort();
            err_pump.abort();
            return Ended::ClientGone;
        }
    };
    let _ = out_pump.await;
    let _ = err_pump.await;
    let msg = outcome_message(status_json, &target.cmd, &result);
    let last = msg.and_then(|m| wire.data(Channel::Error, Bytes::from(m)));
    for m in last.into_iter().chain(wire.end(Channel::Error)) {
        let _ = out.send(m).await;
    }
    Ended::Done
}

/// The sizes in `{"Width":w,"Height":h}` values (client-go ends each with
/// a newline; other clients need not), leaving a partial value in `buf`.
/// A line that is not JSON is skipped. Public for the fuzz targets.
pub fn parse_sizes(buf: &mut Vec<u8>) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut start = 0;
    'lines: while start < buf.len() {
        let mut values =
            serde_json::Deserializer::from_slice(&buf[start..]).into_iter::<serde_json::Value>();
        loop {
            match values.next() {
                Some(Ok(v)) => {
                    let dim = |k: &str| v[k].as_u64().map(|n| n.min(u16::MAX as u64) as u16);
                    if let (Some(w), Some(h)) = (dim("Width"), dim("Height")) {
                        out.push((w, h));
                    }
                }
                // Incomplete: wait for the rest.
                Some(Err(e)) if e.is_eof() => {
                    start += values.byte_offset();
                    break 'lines;
                }
                Some(Err(_)) => {
                    let bad = start + values.byte_offset();
                    start = buf[bad..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(buf.len(), |p| bad + p + 1);
                    continue 'lines;
                }
                None => {
                    start = buf.len();
                    break 'lines;
                }
            }
        }
    }
    buf.drain(..start);
    if buf.len() > 4096 {
        buf.clear();
    }
    out
}

/// The error-channel payload for an outcome.
fn outcome_message(status_json: bool, cmd: &[String], r: &Result<i32, String>) -> Option<Vec<u8>> {
    match r {
        Ok(0) if status_json => Some(br#"{"metadata":{},"status":"Success"}"#.to_vec()),
        Ok(0) => None,
        Ok(code) => {
            let message = format!(
                "command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"
            );
            if status_json {
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
        Err(e) if status_json => Some(
            serde_json::json!({"metadata": {}, "status": "Failure", "message": e})
                .to_string()
                .into_bytes(),
        ),
        Err(e) => Some(e.clone().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sizes_are_read_across_messages() {
        let mut buf = br#"{"Width":80,"Height":24}"#.to_vec();
        assert_eq!(parse_sizes(&mut buf), vec![(80, 24)]);
        assert!(buf.is_empty());
        buf.extend_from_slice(b"\n{\"Width\":120,");
        assert!(parse_sizes(&mut buf).is_empty());
        buf.extend_from_slice(b"\"Height\":40}\nnot json\n{\"Width\":99999999,\"Height\":1}\n");
        assert_eq!(parse_sizes(&mut buf), vec![(120, 40), (u16::MAX, 1)]);
        assert!(buf.is_empty());
        // Back to back, no newline between (WebSocket clients).
        buf.extend_from_slice(br#"{"Width":1,"Height":2}{"Width":3,"Height":4}"#);
        assert_eq!(parse_sizes(&mut buf), vec![(1, 2), (3, 4)]);
        assert!(buf.is_empty());
    }

    #[test]
    fn outcomes_per_protocol() {
        let cmd = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        let v4 = |r| String::from_utf8(outcome_message(true, &cmd, &r).unwrap()).unwrap();
        assert_eq!(v4(Ok(0)), r#"{"metadata":{},"status":"Success"}"#);
        let failed: serde_json::Value = serde_json::from_str(&v4(Ok(3))).unwrap();
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        assert_eq!(outcome_message(false, &cmd, &Ok(0)), None);
        let v2 = outcome_message(false, &cmd, &Ok(3)).unwrap();
        assert!(String::from_utf8(v2).unwrap().contains("exit code 3"));
        let err = v4(Err("no such container".into()));
        assert!(err.contains("Failure") && err.contains("no such container"));
    }
}
