//! The client's input to a process: stdin and terminal sizes, in order.

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

/// Hands the client's input to a process (exec `exec_id`, or the
/// container's own with ""): stdin to `stdin`'s writer, dropped when the
/// client closes stdin, and terminal sizes to ResizePty, each before any
/// stdin the client sent after it (a shell that reads a line and asks for
/// its size sees the size the client gave first).
pub(crate) async fn feed<W: tokio::io::AsyncWrite + Unpin>(
    mut stdin: Option<(tokio::sync::mpsc::Receiver<Bytes>, W)>,
    mut resize: Option<tokio::sync::mpsc::Receiver<(u16, u16)>>,
    shim: crate::shim::client::Shim,
    exec_id: String,
) {
    async fn next<T>(rx: Option<&mut tokio::sync::mpsc::Receiver<T>>) -> Option<T> {
        match rx {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }
    while stdin.is_some() || resize.is_some() {
        tokio::select! {
            biased;
            size = next(resize.as_mut()) => match size {
                Some((w, h)) => {
                    if let Err(e) = shim.resize_pty(&exec_id, w.into(), h.into()).await {
                        tracing::debug!(exec = %exec_id, "resize: {e}");
                    }
                }
                None => resize = None,
            },
            data = next(stdin.as_mut().map(|(rx, _)| rx)) => match (data, stdin.as_mut()) {
                (Some(b), Some((_, w))) => {
                    if w.write_all(&b).await.is_err() {
                        stdin = None;
                    }
                }
                // Dropping the writer: the process reads EOF.
                _ => stdin = None,
            },
        }
    }
}
