//! Exec and attach over SPDY/3.1: the client opens one stream per channel
//! (`streamtype` error, stdin, stdout, stderr, resize), the server answers
//! each, runs the command once the streams it asked for are there, ends
//! stdout and stderr with FIN, and says goodbye with GOAWAY.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use vordr_spdy::{Frame, FLAG_FIN};

use crate::remotecommand::{self, Channel, Ended, Input, Wire};
use crate::server::Limits;
use crate::tokens::ExecTarget;
use crate::Backend;

/// The streams an exec may have; others are answered and ignored.
const KINDS: [&str; 5] = ["error", "stdin", "stdout", "stderr", "resize"];

/// The client's side of the session, as frames route it.
struct Inbound {
    ids: HashMap<&'static str, u32>,
    input: Input,
    /// Streams the client opened, and the most it may.
    streams: usize,
    max_streams: usize,
}

/// Why the client's side ended before its streams were all open.
enum Setup {
    Gone,
    Broke(String),
    /// Not all open within the idle timeout.
    TimedOut,
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
    limits: Limits,
) {
    let (mut frames, out, writer) = crate::session::start(Framed::new(io, super::codec()));

    let wanted = wanted_streams(&target);
    let (input, pending) = remotecommand::streams(&target);
    let mut inb = Inbound {
        ids: HashMap::new(),
        input,
        streams: 0,
        max_streams: limits.max_streams_per_session,
    };
    // Until its streams are open, nothing runs: the session is idle.
    let opened = tokio::time::timeout(limits.idle_timeout, async {
        while !wanted.iter().all(|w| inb.ids.contains_key(*w)) {
            match frames.next().await {
                Some(Ok(f)) => handle_frame(f, &out, &mut inb)
                    .await
                    .map_err(Setup::Broke)?,
                Some(Err(e)) => return Err(Setup::Broke(e.to_string())),
                None => return Err(Setup::Gone),
            }
        }
        Ok(())
    })
    .await;
    let opened = match opened {
        Ok(r) => r,
        Err(_) => Err(Setup::TimedOut),
    };
    if let Err(why) = opened {
        report_setup(why, &target, &out, &inb, &limits);
        drop(out);
        crate::session::flush_briefly(writer).await;
        return;
    }

    let wire = Arc::new(Streams {
        stdout: inb.ids.get("stdout").copied(),
        stderr: inb.ids.get("stderr").copied(),
        error: inb.ids.get("error").copied(),
    });
    let last = last_id(&inb);
    let o = out.clone();
    let container = target.container_id.clone();
    let client = async move {
        let broke = loop {
            match frames.next().await {
                None | Some(Ok(Frame::GoAway { .. })) => return,
                Some(Ok(f)) => {
                    if let Err(reason) = handle_frame(f, &o, &mut inb).await {
                        break reason;
                    }
                }
                Some(Err(e)) => break e.to_string(),
            }
        };
        tracing::warn!(%container, "exec: closing the session: {broke}");
        super::goaway_protocol_error(&o, last_id(&inb));
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
    match ended {
        Ended::Done => {
            let _ = out
                .send(Frame::GoAway {
                    last_good_stream_id: last,
                    status: vordr_spdy::goaway::OK,
                })
                .await;
            drop(out);
            let _ = writer.await;
        }
        Ended::ClientGone => {
            drop(out);
            crate::session::flush_briefly(writer).await;
        }
    }
}

/// The streams the request asked for, which the client must open.
fn wanted_streams(target: &ExecTarget) -> Vec<&'static str> {
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
    wanted
}

/// Logs why the session ended before its streams were open, and says
/// GOAWAY to a client that broke the protocol.
fn report_setup(
    why: Setup,
    target: &ExecTarget,
    out: &mpsc::Sender<Frame>,
    inb: &Inbound,
    limits: &Limits,
) {
    let container = &target.container_id;
    match why {
        Setup::Gone => tracing::debug!("exec: the client left before opening its streams"),
        Setup::Broke(reason) => {
            tracing::warn!(%container, "exec: closing the session: {reason}");
            super::goaway_protocol_error(out, last_id(inb));
        }
        Setup::TimedOut => tracing::warn!(
            %container,
            "exec: the client did not open its streams within {:?}",
            limits.idle_timeout
        ),
    }
}

/// The newest stream the client opened that the session knows.
fn last_id(inb: &Inbound) -> u32 {
    inb.ids.values().copied().max().unwrap_or(0)
}

/// One frame from the client: new streams are answered and recorded,
/// stdin data is handed on (its FIN closes stdin), terminal sizes are
/// read, pings are echoed. A stream past the cap is an error that ends
/// the session.
async fn handle_frame(
    f: Frame,
    out: &mpsc::Sender<Frame>,
    inb: &mut Inbound,
) -> Result<(), String> {
    match f {
        Frame::SynStream {
            stream_id, headers, ..
        } => {
            inb.streams += 1;
            if inb.streams > inb.max_streams {
                return Err(format!(
                    "the client opened more than {} streams",
                    inb.max_streams
                ));
            }
            let _ = out.send(Frame::accept(stream_id)).await;
            let kind = headers.get("streamtype").unwrap_or_default();
            if let Some(kind) = KINDS.iter().find(|k| **k == kind) {
                inb.ids.insert(kind, stream_id);
            }
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
        Frame::Ping { id } => super::pong(out, id),
        _ => {}
    }
    Ok(())
}
