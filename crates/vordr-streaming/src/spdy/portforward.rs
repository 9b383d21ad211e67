//! Port-forwarding over SPDY/3.1 (`portforward.k8s.io`), server side: for each
//! connection it forwards, the client opens an error stream and a data
//! stream with the same `requestid` and `port`; the server connects to the
//! port in the pod, copies the data stream both ways, and reports a failure
//! as text on the error stream. Any number of pairs share one connection.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use vordr_spdy::{Frame, FLAG_FIN};

use crate::server::Limits;
use crate::tokens::PortForwardTarget;
use crate::Backend;

/// The longest `requestid` kept while a pair waits for its other stream
/// (client-go numbers them from 0).
const MAX_REQUEST_ID: usize = 64;

/// Client data queued for one forwarded connection, in frames.
const INBOUND_QUEUE: usize = 16;

/// A pair waiting for its other stream.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: u16,
}

impl Pair {
    fn streams(&self) -> usize {
        usize::from(self.error.is_some()) + usize::from(self.data.is_some())
    }
}

/// How a session ended.
enum End {
    /// The client left, or said GOAWAY.
    Client,
    /// No forwarded connection and no frame for the idle timeout.
    Idle,
    /// The client broke the protocol or a limit.
    Broke(String),
}

pub(crate) async fn serve(
    io: TokioIo<Upgraded>,
    target: PortForwardTarget,
    backend: Arc<dyn Backend>,
    limits: Limits,
) {
    let (mut frames, out, writer) = crate::session::start(Framed::new(io, super::codec()));
    let mut fw = Forwards {
        pending: HashMap::new(),
        inbound: HashMap::new(),
        pairs: JoinSet::new(),
        data_ids: HashMap::new(),
        out,
        backend,
        target,
        limits,
    };
    let mut last = 0;
    let mut deadline = Instant::now() + limits.idle_timeout;
    let end = loop {
        let f = tokio::select! {
            f = frames.next() => f,
            Some(done) = fw.pairs.join_next_with_id(), if !fw.pairs.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                if let Some(d) = fw.data_ids.remove(&id) {
                    fw.inbound.remove(&d);
                }
                deadline = Instant::now() + limits.idle_timeout;
                continue;
            }
            () = tokio::time::sleep_until(deadline), if fw.pairs.is_empty() => break End::Idle,
        };
        deadline = Instant::now() + limits.idle_timeout;
        let f = match f {
            None => break End::Client,
            Some(Err(e)) => break End::Broke(e.to_string()),
            Some(Ok(f)) => f,
        };
        match f {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                if let Err(reason) = fw.open(stream_id, &headers, &mut last).await {
                    break End::Broke(reason);
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if let Some(tx) = fw.inbound.get(&stream_id) {
                    if !data.is_empty() {
                        let _ = tx.send(data).await;
                    }
                    if flags & FLAG_FIN != 0 {
                        fw.inbound.remove(&stream_id);
                    }
                }
            }
            Frame::RstStream { stream_id, .. } => {
                fw.inbound.remove(&stream_id);
            }
            Frame::Ping { id } => super::pong(&fw.out, id),
            Frame::GoAway { .. } => break End::Client,
            _ => {}
        }
    };
    // Every forwarded connection ends with the session.
    fw.pairs.shutdown().await;
    finish(end, fw, writer, last).await;
}

/// A session's forwarded connections: pairs waiting for their other
/// stream, the running ones, and where the client's data for each goes.
struct Forwards {
    pending: HashMap<String, Pair>,
    /// Client data for each forwarded data stream.
    inbound: HashMap<u32, mpsc::Sender<Bytes>>,
    /// The forwarded connections, and each one's data stream.
    pairs: JoinSet<()>,
    data_ids: HashMap<tokio::task::Id, u32>,
    out: mpsc::Sender<Frame>,
    backend: Arc<dyn Backend>,
    target: PortForwardTarget,
    limits: Limits,
}

impl Forwards {
    /// A stream the client opened: answered and recorded in its pair;
    /// once the pair has both streams, its connection starts. `last` is
    /// the newest stream id. An error (a limit crossed) ends the session.
    async fn open(
        &mut self,
        stream_id: u32,
        headers: &vordr_spdy::Headers,
        last: &mut u32,
    ) -> Result<(), String> {
        let limits = &self.limits;
        let open = self.pending.values().map(Pair::streams).sum::<usize>() + 2 * self.pairs.len();
        if open >= limits.max_streams_per_session {
            return Err(format!(
                "the client opened more than {} streams at once",
                limits.max_streams_per_session
            ));
        }
        *last = (*last).max(stream_id);
        let _ = self.out.send(Frame::accept(stream_id)).await;
        let request = headers.get("requestid").unwrap_or_default();
        if request.len() > MAX_REQUEST_ID {
            return Err(format!(
                "a requestid of {} bytes (at most {MAX_REQUEST_ID})",
                request.len()
            ));
        }
        let kind = headers.get("streamtype");
        if !matches!(kind, Some("error" | "data")) {
            let _ = self
                .out
                .send(Frame::RstStream {
                    stream_id,
                    status: vordr_spdy::rst::PROTOCOL_ERROR,
                })
                .await;
            return Ok(());
        }
        let port = headers.get("port").and_then(|p| p.parse::<u16>().ok());
        let pair = self.pending.entry(request.to_string()).or_default();
        if kind == Some("error") {
            pair.error = Some(stream_id);
        } else {
            pair.data = Some(stream_id);
        }
        pair.port = port.unwrap_or(0);
        let (Some(e), Some(d)) = (pair.error, pair.data) else {
            return Ok(());
        };
        let port = pair.port;
        self.pending.remove(request);
        if self.pairs.len() >= limits.max_port_forward_pairs {
            let msg = format!(
                "too many forwarded connections at once in one port-forward session (at most {})",
                limits.max_port_forward_pairs
            );
            let _ = self
                .out
                .try_send(Frame::data(e, FLAG_FIN, Bytes::from(msg.clone())));
            return Err(msg);
        }
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        self.inbound.insert(d, tx);
        let task = self.pairs.spawn(forward(
            self.backend.clone(),
            self.target.clone(),
            port,
            e,
            d,
            rx,
            self.out.clone(),
        ));
        self.data_ids.insert(task.id(), d);
        Ok(())
    }
}

/// Ends the session as `end` says: waits for the writer when the client
/// left, else says GOAWAY (`last` the newest stream) and flushes briefly.
async fn finish(end: End, fw: Forwards, writer: tokio::task::JoinHandle<()>, last: u32) {
    let Forwards {
        out,
        target,
        limits,
        ..
    } = fw;
    let pod = &target.pod_id;
    match end {
        End::Client => {
            drop(out);
            let _ = writer.await;
            return;
        }
        End::Idle => {
            tracing::debug!(%pod, "port-forward: closing a session idle for {:?}", limits.idle_timeout);
            let _ = out.try_send(Frame::GoAway {
                last_good_stream_id: last,
                status: vordr_spdy::goaway::OK,
            });
        }
        End::Broke(reason) => {
            tracing::warn!(%pod, "port-forward: closing the session: {reason}");
            super::goaway_protocol_error(&out, last);
        }
    }
    drop(out);
    crate::session::flush_briefly(writer).await;
}

/// One forwarded connection: the pod's bytes on the data stream, which
/// ends when the pod's side closes (and the error stream with it, empty);
/// a failure is written on the error stream.
async fn forward(
    backend: Arc<dyn Backend>,
    target: PortForwardTarget,
    port: u16,
    error_id: u32,
    data_id: u32,
    inbound: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Frame>,
) {
    let wrap = |chunk| Frame::data(data_id, 0, chunk);
    match crate::portforward::forward(&backend, &target, port, inbound, &out, wrap).await {
        Ok(to_pod) => {
            // The client is told at once (its copy to the local connection
            // ends, and it reads the error stream to its end); whatever it
            // still sends goes on until it closes too.
            let _ = out.send(Frame::data(data_id, FLAG_FIN, Bytes::new())).await;
            let _ = out
                .send(Frame::data(error_id, FLAG_FIN, Bytes::new()))
                .await;
            to_pod.wait().await;
        }
        Err(msg) => {
            let _ = out.send(Frame::data(error_id, 0, Bytes::from(msg))).await;
            let _ = out
                .send(Frame::data(error_id, FLAG_FIN, Bytes::new()))
                .await;
            let _ = out.send(Frame::data(data_id, FLAG_FIN, Bytes::new())).await;
        }
    }
}
