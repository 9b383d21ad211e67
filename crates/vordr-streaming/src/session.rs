//! What both server sessions share: the SPDY connection split into the
//! client's frames and a queue that one task writes to the connection.

use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;
use vordr_spdy::{Codec, Frame};

/// The client's frames, the sender of ours, and the writer task, which
/// ends (closing the connection) once every sender is dropped.
pub(crate) type Session<IO> = (
    SplitStream<Framed<IO, Codec>>,
    mpsc::Sender<Frame>,
    JoinHandle<()>,
);

pub(crate) fn start<IO>(io: IO) -> Session<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, frames) = Framed::new(io, Codec::new()).split();
    let (out, mut out_rx) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(async move {
        while let Some(f) = out_rx.recv().await {
            if sink.send(f).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    (frames, out, writer)
}
