//! The streaming protocols over SPDY/3.1 (kubectl through kubelet,
//! crictl): the upgrade, the subprotocol from `X-Stream-Protocol-Version`,
//! and the sessions, where the client opens a stream per channel.

mod exec;
mod portforward;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::Request;

use crate::server::{forbidden, header_values, negotiate, Limits, Refusal, Switch};
use crate::tokens::Target;
use crate::Backend;

pub(crate) const UPGRADE: &str = "SPDY/3.1";
const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// The remotecommand subprotocols served over SPDY, newest first.
pub const PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// The port-forward subprotocol.
pub const PORT_FORWARD: &str = "portforward.k8s.io";

/// The largest frame a client may send. client-go writes what one read
/// gave it (32 KiB); every frame in flight is held in memory.
pub const MAX_CLIENT_FRAME: usize = 1 << 20;

/// The server side's codec: frames and header blocks capped. Public for
/// the fuzz targets.
pub fn codec() -> vordr_spdy::Codec {
    vordr_spdy::Codec::with_limits(vordr_spdy::Limits {
        max_frame: MAX_CLIENT_FRAME,
        ..vordr_spdy::Limits::default()
    })
}

/// Answers a ping unless our queue to the client is full: a client that
/// does not read must not hold up the reading of its frames.
fn pong(out: &tokio::sync::mpsc::Sender<vordr_spdy::Frame>, id: u32) {
    let _ = out.try_send(vordr_spdy::Frame::Ping { id });
}

/// Ends a session on a client's protocol violation: GOAWAY, if it fits.
fn goaway_protocol_error(out: &tokio::sync::mpsc::Sender<vordr_spdy::Frame>, last: u32) {
    let _ = out.try_send(vordr_spdy::Frame::GoAway {
        last_good_stream_id: last,
        status: vordr_spdy::goaway::PROTOCOL_ERROR,
    });
}

/// Negotiates the subprotocol (the client's first one that is served;
/// the original protocol when the client offers none) and readies the
/// session; a refusal lists both sides.
pub(crate) fn accept(
    req: &Request<Incoming>,
    target: Target,
    backend: Arc<dyn Backend>,
    limits: Limits,
) -> Result<Switch, Refusal> {
    let offered = header_values(req, PROTOCOL_HEADER);
    let protocol = match &target {
        Target::Exec(_) | Target::Attach(_) => {
            negotiate(&offered, &PROTOCOLS).map_err(forbidden)?
        }
        Target::PortForward(_) => negotiate(&offered, &[PORT_FORWARD]).map_err(forbidden)?,
    };
    let mut headers = vec![("upgrade", UPGRADE.to_string())];
    if !protocol.is_empty() {
        headers.push((PROTOCOL_HEADER, protocol.to_string()));
    }
    let status_json = protocol == PROTOCOLS[0];
    Ok(Switch {
        headers,
        serve: Box::new(move |io| {
            Box::pin(async move {
                match target {
                    Target::Exec(t) => {
                        exec::serve(io, status_json, t, backend, false, limits).await
                    }
                    Target::Attach(t) => {
                        exec::serve(io, status_json, t, backend, true, limits).await
                    }
                    Target::PortForward(t) => portforward::serve(io, t, backend, limits).await,
                }
            })
        }),
    })
}
