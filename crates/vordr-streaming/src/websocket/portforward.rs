//! Port-forwarding over WebSocket: one forwarded connection per port in
//! the URL, on channels 2i (data, both ways) and 2i+1 (error), each opened
//! with the port number (two bytes, little-endian). A pair is done when
//! the pod's side closes (a client cannot close one channel); the session
//! closes when every pair is done, or when the client leaves.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::Codec;
use crate::portforward::forward;
use crate::tokens::PortForwardTarget;
use crate::Backend;

pub(crate) async fn serve(
    ws: super::Conn,
    codec: Codec,
    ports: Vec<u16>,
    target: PortForwardTarget,
    backend: Arc<dyn Backend>,
) {
    let (mut messages, out, writer) = crate::session::start(ws);
    let mut inbound = Vec::with_capacity(ports.len());
    let mut pairs = Vec::with_capacity(ports.len());
    for (i, port) in ports.into_iter().enumerate() {
        let data = (2 * i) as u8;
        for ch in [data, data + 1] {
            let _ = out.send(codec.encode(ch, &port.to_le_bytes())).await;
        }
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        inbound.push(tx);
        let (backend, target, out) = (backend.clone(), target.clone(), out.clone());
        pairs.push(async move {
            let wrap = |chunk: Bytes| codec.encode(data, &chunk);
            match forward(&backend, &target, port, rx, &out, wrap).await {
                Ok(to_pod) => to_pod.finish().await,
                Err(msg) => {
                    let _ = out.send(codec.encode(data + 1, msg.as_bytes())).await;
                }
            }
        });
    }
    let client = async {
        while let Some(Ok(m)) = messages.next().await {
            if let Message::Close(_) = m {
                break;
            }
            let Some((ch, data)) = codec.decode(m) else {
                continue;
            };
            // Data for a port; anything on an error channel is ignored.
            if let Some(tx) = inbound.get(usize::from(ch) / 2).filter(|_| ch % 2 == 0) {
                let _ = tx.send(data).await;
            }
        }
    };
    tokio::select! {
        _ = futures::future::join_all(pairs) => {}
        () = client => tracing::debug!(pod = %target.pod_id, "port-forward: the client went away"),
    }
    drop(out);
    let _ = writer.await;
    super::linger(&mut messages).await;
}
