//! The `portforward.k8s.io` protocol over SPDY/3.1, server side: for each
//! connection it forwards, the client opens an error stream and a data
//! stream with the same `requestid` and `port`; the server connects to the
//! port in the pod, copies the data stream both ways, and reports a failure
//! as text on the error stream. Any number of pairs share one connection.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use vordr_spdy::{Frame, Headers, FLAG_FIN};

use crate::tokens::PortForwardTarget;
use crate::Backend;

pub const PROTOCOL: &str = "portforward.k8s.io";

#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: u16,
}

pub(crate) async fn serve_port_forward<IO>(
    io: IO,
    target: PortForwardTarget,
    backend: Arc<dyn Backend>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut frames, out, writer) = crate::session::start(io);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Client data for each forwarded data stream.
    let mut inbound: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut tasks = Vec::new();
    while let Some(Ok(f)) = frames.next().await {
        match f {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                let _ = out
                    .send(Frame::SynReply {
                        stream_id,
                        flags: 0,
                        headers: Headers::new(),
                    })
                    .await;
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

async fn forward(
    backend: Arc<dyn Backend>,
    target: PortForwardTarget,
    port: u16,
    error_id: u32,
    data_id: u32,
    mut inbound: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Frame>,
) {
    let fail = |msg: String| {
        let out = out.clone();
        async move {
            let _ = out.send(Frame::data(error_id, 0, Bytes::from(msg))).await;
            let _ = out
                .send(Frame::data(error_id, FLAG_FIN, Bytes::new()))
                .await;
            let _ = out.send(Frame::data(data_id, FLAG_FIN, Bytes::new())).await;
        }
    };
    if port == 0 {
        return fail("a port-forward stream needs a valid port header".into()).await;
    }
    if !target.ports.is_empty() && !target.ports.contains(&port) {
        return fail(format!(
            "port {port} was not requested for this port-forward (requested: {:?})",
            target.ports
        ))
        .await;
    }
    let tcp = match backend.connect(&target.pod_id, port).await {
        Ok(t) => t,
        Err(e) => {
            return fail(format!(
                "forwarding port {port} to pod {}: {e}",
                target.pod_id
            ))
            .await
        }
    };
    let (mut r, mut w) = tcp.into_split();
    let to_pod = async move {
        while let Some(b) = inbound.recv().await {
            if w.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    let o = out.clone();
    let from_pod = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if o.send(Frame::data(data_id, 0, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = o.send(Frame::data(data_id, FLAG_FIN, Bytes::new())).await;
    };
    // When the pod's side closes, the client is told at once (its copy to
    // the local connection ends, and it reads the error stream to its end);
    // whatever it still sends goes on until it closes too.
    let to_pod = tokio::spawn(to_pod);
    from_pod.await;
    let _ = out
        .send(Frame::data(error_id, FLAG_FIN, Bytes::new()))
        .await;
    let _ = to_pod.await;
}
