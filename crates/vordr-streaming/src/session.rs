//! What every server session shares, SPDY or WebSocket: the connection
//! split into the client's messages and a queue that one task writes to
//! the connection.

use std::time::Duration;

use futures::stream::SplitStream;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The client's messages, the sender of ours, and the writer task, which
/// ends (closing the connection) once every sender is dropped.
pub(crate) type Session<C, M> = (SplitStream<C>, mpsc::Sender<M>, JoinHandle<()>);

pub(crate) fn start<C, M>(conn: C) -> Session<C, M>
where
    C: Stream + Sink<M> + Send + 'static,
    M: Send + 'static,
{
    let (mut sink, messages) = conn.split();
    let (out, mut out_rx) = mpsc::channel::<M>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    (messages, out, writer)
}

/// How long a session that ends on its client's account (it left, broke
/// the protocol, or sat idle) waits to write what is still queued.
pub(crate) const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Waits up to [`FLUSH_WAIT`] for the writer to send what is queued and
/// close (every sender must be gone); a client that does not read loses
/// the rest, and the connection is dropped.
pub(crate) async fn flush_briefly(writer: JoinHandle<()>) {
    let abort = writer.abort_handle();
    if tokio::time::timeout(FLUSH_WAIT, writer).await.is_err() {
        abort.abort();
    }
}
