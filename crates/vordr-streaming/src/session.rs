//! What every server session shares, SPDY or WebSocket: the connection
//! split into the client's messages and a queue that one task writes to
//! the connection.

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
