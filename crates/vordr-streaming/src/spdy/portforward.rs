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
use tokio_util::codec::Framed;
use vordr_spdy::{Codec, Frame, FLAG_FIN};

use crate::tokens::PortForwardTarget;
use crate::Backend;

#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: u16,
}

pub(crate) async fn serve(
    io: TokioIo<Upgraded>,
    target: PortForwardTarget,
    backend: Arc<dyn Backend>,
) {
    let (mut frames, out, writer) = crate::session::start(Framed::new(io, Codec::new()));
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Client data for each forwarded data stream.
    let mut inbound: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut tasks = Vec::new();
    while let Some(Ok(f)) = frames.next().await {
        match f {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                let _ = out.send(Frame::accept(stream_id)).await;
                let request = headers.get("requestid").unwrap_or_default().to_string();
                let port = headers.get("port").and_then(|p| p.parse::<u16>().ok());
                let pair = pairs.entry(request.clone()).or_default();
                match headers.get("streamtype") {
                    Some("error") => pair.error = Some(stream_id),
                    Some("data") => pair.data = Some(stream_id),
                    _ => {
                        let _ = out
                            .send(Frame::RstStream {
                                stream_id,
                                status: vordr_spdy::rst::PROTOCOL_ERROR,
                            })
                            .await;
                        continue;
                    }
                }
                pair.port = port.unwrap_or(0);
                if let (Some(e), Some(d)) = (pair.error, pair.data) {
                    let port = pair.port;
                    pairs.remove(&request);
                    let (tx, rx) = mpsc::channel(64);
                    inbound.insert(d, tx);
                    tasks.push(tokio::spawn(forward(
                        backend.clone(),
                        target.clone(),
                        port,
                        e,
                        d,
                        rx,
                        out.clone(),
                    )));
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if let Some(tx) = inbound.get(&stream_id) {
                    if !data.is_empty() {
                        let _ = tx.send(data).await;
                    }
                    if flags & FLAG_FIN != 0 {
                        inbound.remove(&stream_id);
                    }
                }
            }
            Frame::RstStream { stream_id, .. } => {
                inbound.remove(&stream_id);
            }
            Frame::Ping { id } => {
                let _ = out.send(Frame::Ping { id }).await;
            }
            Frame::GoAway { .. } => break,
            _ => {}
        }
    }
    // The client is gone: every forwarded connection ends with it.
    for t in tasks {
        t.abort();
    }
    drop(out);
    let _ = writer.await;
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
