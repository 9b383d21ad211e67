//! The HTTP side: one listener (127.0.0.1 by default), `/exec/<token>`
//! URLs, the SPDY/3.1 upgrade and the subprotocol negotiation.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::portforward::{serve_port_forward, PROTOCOL as PORT_FORWARD};
use crate::remotecommand::{serve_exec, PROTOCOLS};
use crate::tokens::{ExecTarget, PortForwardTarget, Target, Tokens};
use crate::Backend;

const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
const SPDY: &str = "SPDY/3.1";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding the streaming server to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running streaming server.
pub struct Server {
    tokens: Tokens,
    addr: SocketAddr,
}

impl Server {
    /// Listens on `addr` (port 0 picks a free one) and serves until the
    /// runtime stops.
    pub async fn start(
        addr: SocketAddr,
        backend: Arc<dyn Backend>,
    ) -> Result<Arc<Server>, ServerError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let server = Arc::new(Server {
            tokens: Tokens::default(),
            addr,
        });
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("streaming server: accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (s, backend) = (s.clone(), backend.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (s, backend) = (s.clone(), backend.clone());
                        async move { Ok::<_, std::convert::Infallible>(s.handle(req, backend)) }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await
                    {
                        tracing::debug!(%peer, "streaming connection: {e}");
                    }
                });
            }
        });
        tracing::info!(%addr, "streaming server listening");
        Ok(server)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A single-use URL for an exec.
    pub fn exec_url(&self, target: ExecTarget) -> String {
        let token = self.tokens.insert(Target::Exec(target));
        format!("http://{}/exec/{token}", self.addr)
    }

    /// A single-use URL for an attach.
    pub fn attach_url(&self, target: ExecTarget) -> String {
        let token = self.tokens.insert(Target::Attach(target));
        format!("http://{}/attach/{token}", self.addr)
    }

    /// A single-use URL for a port-forward.
    pub fn port_forward_url(&self, target: PortForwardTarget) -> String {
        let token = self.tokens.insert(Target::PortForward(target));
        format!("http://{}/portforward/{token}", self.addr)
    }

    fn handle(&self, req: Request<Incoming>, backend: Arc<dyn Backend>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let Some((kind, token)) = ["exec", "attach", "portforward"]
            .iter()
            .find_map(|k| path.strip_prefix(&format!("/{k}/")).map(|t| (*k, t)))
        else {
            return reply(StatusCode::NOT_FOUND, "not found\n".into());
        };
        let target = match (kind, self.tokens.take(token)) {
            ("exec", Some(t @ Target::Exec(_)))
            | ("attach", Some(t @ Target::Attach(_)))
            | ("portforward", Some(t @ Target::PortForward(_))) => t,
            _ => {
                return reply(
                    StatusCode::NOT_FOUND,
                    "unknown, used or expired streaming token\n".into(),
                )
            }
        };
        let upgrade = header_values(&req, UPGRADE.as_str());
        if !upgrade.iter().any(|u| u.eq_ignore_ascii_case(SPDY)) {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("unsupported upgrade {upgrade:?}: this server speaks {SPDY}\n"),
            );
        }
        let offered = header_values(&req, PROTOCOL_HEADER);
        let protocol = match &target {
            Target::Exec(_) | Target::Attach(_) => negotiate(&offered),
            Target::PortForward(_) => negotiate_among(&offered, &[PORT_FORWARD]),
        };
        let protocol = match protocol {
            Ok(p) => p,
            Err(msg) => return reply(StatusCode::FORBIDDEN, msg),
        };
        tokio::spawn(async move {
            let up = match hyper::upgrade::on(req).await {
                Ok(up) => TokioIo::new(up),
                Err(e) => {
                    tracing::warn!("streaming upgrade failed: {e}");
                    return;
                }
            };
            match target {
                Target::Exec(t) => serve_exec(up, protocol, t, backend, false).await,
                Target::Attach(t) => serve_exec(up, protocol, t, backend, true).await,
                Target::PortForward(t) => serve_port_forward(up, t, backend).await,
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(CONNECTION, "Upgrade".parse().expect("valid header"));
        h.insert(UPGRADE, SPDY.parse().expect("valid header"));
        if !protocol.is_empty() {
            h.insert(PROTOCOL_HEADER, protocol.parse().expect("valid header"));
        }
        r
    }
}

/// Every value of a header, comma lists split.
fn header_values(req: &Request<Incoming>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The first of our protocols the client offers; "" (the original
/// protocol) when it offers none; an error listing both sides otherwise.
pub(crate) fn negotiate(offered: &[String]) -> Result<&'static str, String> {
    negotiate_among(offered, &PROTOCOLS)
}

fn negotiate_among(offered: &[String], ours: &[&'static str]) -> Result<&'static str, String> {
    if offered.is_empty() {
        return Ok("");
    }
    ours.iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .copied()
        .ok_or_else(|| {
            format!(
                "unable to negotiate a streaming protocol: the client offers {offered:?}, this server supports {ours:?}\n"
            )
        })
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_the_newest_common_protocol() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            negotiate(&v(&[
                "channel.k8s.io",
                "v4.channel.k8s.io",
                "v3.channel.k8s.io"
            ])),
            Ok("v4.channel.k8s.io")
        );
        assert_eq!(
            negotiate(&v(&["v2.channel.k8s.io"])),
            Ok("v2.channel.k8s.io")
        );
        assert_eq!(negotiate(&[]), Ok(""));
        let e = negotiate(&v(&["v5.channel.k8s.io"])).unwrap_err();
        assert!(
            e.contains("v4.channel.k8s.io") && e.contains("v5.channel.k8s.io"),
            "{e}"
        );
    }
}
