//! Exec and attach over SPDY/3.1: the client opens one stream per channel
//! (`streamtype` error, stdin, stdout, stderr, resize), the server answers
//! each, runs the command once the streams it asked for are there, ends
//! stdout and stderr with FIN, and says goodbye with GOAWAY.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use vordr_spdy::{Codec, Frame, FLAG_FIN};

use crate::remotecommand::{self, Channel, Ended, Input, Wire};
use crate::tokens::ExecTarget;
use crate::Backend;

/// How long the client has to open its streams.
const STREAM_WAIT: Duration = Duration::from_secs(30);

/// The client's side of the session, as frames route it.
struct Inbound {
    ids: HashMap<String, u32>,
    input: Input,
}

/// The stream ids of the channels the server writes.
struct Streams {
    stdout: Option<u32>,
    stderr: Option<u32>,
    error: Option<u32>,
}

impl Streams {
    fn id(&self, ch: Channel) -> Option<u32> {
        match ch {
            Channel::Stdout => self.stdout,
            Channel::Stderr => self.stderr,
            Channel::Error => self.error,
        }
    }
}

impl Wire for Streams {
    type Msg = Frame;

    fn data(&self, ch: Channel, data: Bytes) -> Option<Frame> {
        Some(Frame::data(self.id(ch)?, 0, data))
    }

    fn end(&self, ch: Channel) -> Option<Frame> {
        Some(Frame::data(self.id(ch)?, FLAG_FIN, Bytes::new()))
    }
}

pub(crate) async fn serve(
    io: TokioIo<Upgraded>,
    status_json: bool,
    target: ExecTarget,
    backend: Arc<dyn Backend>,
    attach: bool,
) {
    let (mut frames, out, writer) = crate::session::start(Framed::new(io, Codec::new()));

    // The streams the request asked for, opened by the client.
    let mut wanted = vec!["error"];
    if target.stdin {
        wanted.push("stdin");
    }
    if target.stdout {
        wanted.push("stdout");
    }
    if target.stderr && !target.tty {
        wanted.push("stderr");
    }
    let (input, pending) = remotecommand::streams(&target);
    let mut inb = Inbound {
        ids: HashMap::new(),
        input,
    };
    let opened = tokio::time::timeout(STREAM_WAIT, async {
        while !wanted.iter().all(|w| inb.ids.contains_key(*w)) {
            match frames.next().await {
                Some(Ok(f)) => handle_frame(f, &out, &mut inb).await,
                _ => return false,
            }
        }
        true
    })
    .await;
    match opened {
        Ok(true) => {}
        Ok(false) => tracing::debug!("exec: the client left before opening its streams"),
        Err(_) => tracing::warn!(
            container = %target.container_id,
            "exec: the client did not open its streams in time"
        ),
    }
    if !matches!(opened, Ok(true)) {
        drop(out);
        let _ = writer.await;
        return;
    }

    let wire = Arc::new(Streams {
        stdout: inb.ids.get("stdout").copied(),
        stderr: inb.ids.get("stderr").copied(),
        error: inb.ids.get("error").copied(),
    });
    let last = inb.ids.values().copied().max().unwrap_or(0);
    let o = out.clone();
    let client = async move {
        while let Some(Ok(f)) = frames.next().await {
            if matches!(f, Frame::GoAway { .. }) {
                break;
            }
            handle_frame(f, &o, &mut inb).await;
        }
    };
    let ended = remotecommand::run(
        wire,
        &out,
        &target,
        backend,
        attach,
        pending,
        status_json,
        client,
    )
    .await;
    if let Ended::Done = ended {
        let _ = out
            .send(Frame::GoAway {
                last_good_stream_id: last,
                status: vordr_spdy::goaway::OK,
            })
            .await;
    }
    drop(out);
    let _ = writer.await;
}

/// One frame from the client: new streams are answered and recorded,
/// stdin data is handed on (its FIN closes stdin), terminal sizes are
/// read, pings are echoed.
async fn handle_frame(f: Frame, out: &mpsc::Sender<Frame>, inb: &mut Inbound) {
    match f {
        Frame::SynStream {
            stream_id, headers, ..
        } => {
            let kind = headers.get("streamtype").unwrap_or_default().to_string();
            let _ = out.send(Frame::accept(stream_id)).await;
            inb.ids.insert(kind, stream_id);
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } if inb.ids.get("stdin") == Some(&stream_id) => {
            inb.input.stdin(data).await;
            if flags & FLAG_FIN != 0 {
                inb.input.close_stdin();
            }
        }
        Frame::Data {
            stream_id, data, ..
        } if inb.ids.get("resize") == Some(&stream_id) => inb.input.resize(&data),
        Frame::RstStream { stream_id, .. } if inb.ids.get("stdin") == Some(&stream_id) => {
            inb.input.close_stdin();
        }
        Frame::Ping { id } => {
            let _ = out.send(Frame::Ping { id }).await;
        }
        _ => {}
    }
}
