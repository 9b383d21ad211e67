//! What port-forwarding means, whatever carries it: each forwarded
//! connection goes to one port on the pod's loopback (one the request
//! named, if it named any) and is copied both ways.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::tokens::PortForwardTarget;
use crate::Backend;

/// The client's direction of a forwarded connection, still copying after
/// the pod's side has closed.
pub(crate) struct ToPod {
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

impl ToPod {
    /// Waits until the client closes its side.
    pub(crate) async fn wait(self) {
        let ToPod { task, stop } = self;
        let _ = task.await;
        drop(stop);
    }

    /// Writes what the client has sent so far, then closes the pod's side
    /// (for transports where the client cannot close its side alone).
    pub(crate) async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Connects to `port` in the pod and sends what the pod writes to `out`
/// (each chunk wrapped by `wrap`) until the pod's side closes; the
/// client's bytes from `inbound` go on to the pod in the returned
/// [`ToPod`]. An error is a message for the client's error channel.
pub(crate) async fn forward<M: Send + 'static>(
    backend: &Arc<dyn Backend>,
    target: &PortForwardTarget,
    port: u16,
    mut inbound: mpsc::Receiver<Bytes>,
    out: &mpsc::Sender<M>,
    wrap: impl Fn(Bytes) -> M,
) -> Result<ToPod, String> {
    if port == 0 {
        return Err("a port-forward stream needs a valid port".into());
    }
    if !target.ports.is_empty() && !target.ports.contains(&port) {
        return Err(format!(
            "port {port} was not requested for this port-forward (requested: {:?})",
            target.ports
        ));
    }
    let tcp = backend
        .connect(&target.pod_id, port)
        .await
        .map_err(|e| format!("forwarding port {port} to pod {}: {e}", target.pod_id))?;
    let (mut r, mut w) = tcp.into_split();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            let b = tokio::select! {
                biased;
                _ = &mut stopped => {
                    while let Ok(b) = inbound.try_recv() {
                        if w.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    break;
                }
                b = inbound.recv() => b,
            };
            let Some(b) = b else { break };
            if w.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out
                    .send(wrap(Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    Ok(ToPod { task, stop })
}
