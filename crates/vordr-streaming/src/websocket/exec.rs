//! Exec and attach over WebSocket: all five channels exist from the
//! start; an empty message on the first channel the server writes tells
//! the client the session is up; the outcome goes on the error channel and
//! a close frame ends the session. Only v5 lets the client close stdin.

use std::sync::Arc;

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use super::{Codec, CLOSE_SIGNAL};
use crate::remotecommand::{self, Channel, Wire};
use crate::tokens::ExecTarget;
use crate::Backend;

const STDIN: u8 = 0;
const RESIZE: u8 = 4;

/// What the negotiated subprotocol decides.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Session {
    pub codec: Codec,
    /// v5: the client may close stdin.
    pub close_signal: bool,
    /// v4 and v5: the outcome is a Status JSON.
    pub status_json: bool,
}

impl Wire for Codec {
    type Msg = Message;

    fn data(&self, ch: Channel, data: bytes::Bytes) -> Option<Message> {
        Some(self.encode(ch as u8, &data))
    }

    fn end(&self, _ch: Channel) -> Option<Message> {
        None
    }
}

impl Session {
    pub(crate) async fn serve(
        self,
        ws: super::Conn,
        target: ExecTarget,
        backend: Arc<dyn Backend>,
        attach: bool,
    ) {
        let (mut messages, out, writer) = crate::session::start(ws);
        let (mut input, pending) = remotecommand::streams(&target);
        let first = if target.stdout {
            Channel::Stdout
        } else if target.stderr && !target.tty {
            Channel::Stderr
        } else {
            Channel::Error
        };
        let codec = self.codec;
        let _ = out.send(codec.encode(first as u8, &[])).await;
        let close_signal = self.close_signal;
        let client = async {
            while let Some(Ok(m)) = messages.next().await {
                if let Message::Close(_) = m {
                    break;
                }
                match codec.decode(m) {
                    Some((STDIN, data)) => input.stdin(data).await,
                    Some((RESIZE, data)) => input.resize(&data),
                    Some((CLOSE_SIGNAL, data)) if close_signal && data.first() == Some(&STDIN) => {
                        input.close_stdin()
                    }
                    _ => {}
                }
            }
        };
        let wire = Arc::new(codec);
        remotecommand::run(
            wire,
            &out,
            &target,
            backend,
            attach,
            pending,
            self.status_json,
            client,
        )
        .await;
        drop(out);
        let _ = writer.await;
        super::linger(&mut messages).await;
    }
}
