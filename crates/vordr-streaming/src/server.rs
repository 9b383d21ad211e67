//! The HTTP side: one listener (127.0.0.1 by default), `/exec/<token>`,
//! `/attach/<token>` and `/portforward/<token>` URLs, and the upgrade to
//! SPDY/3.1 or WebSocket, whichever the client asks for.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::tokens::{ExecTarget, PortForwardTarget, Target, Tokens};
use crate::{spdy, websocket, Backend};

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
        let switch = if upgrade
            .iter()
            .any(|u| u.eq_ignore_ascii_case(websocket::UPGRADE))
        {
            websocket::accept(&req, target, backend)
        } else if upgrade
            .iter()
            .any(|u| u.eq_ignore_ascii_case(spdy::UPGRADE))
        {
            spdy::accept(&req, target, backend)
        } else {
            Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "unsupported upgrade {upgrade:?}: this server speaks {} and {}\n",
                    spdy::UPGRADE,
                    websocket::UPGRADE
                ),
            ))
        };
        let Switch { headers, serve } = match switch {
            Ok(s) => s,
            Err((status, msg)) => return reply(status, msg),
        };
        let on_upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(up) => serve(TokioIo::new(up)).await,
                Err(e) => tracing::warn!("streaming upgrade failed: {e}"),
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        for (name, value) in headers {
            match HeaderValue::from_str(&value) {
                Ok(v) => {
                    h.insert(name, v);
                }
                Err(_) => return reply(StatusCode::INTERNAL_SERVER_ERROR, "bad header\n".into()),
            }
        }
        r
    }
}

/// A refused request: its status and the message for the body.
pub(crate) type Refusal = (StatusCode, String);

pub(crate) fn forbidden(msg: String) -> Refusal {
    (StatusCode::FORBIDDEN, msg)
}

/// Runs a session on the upgraded connection.
pub(crate) type Serve = Box<dyn FnOnce(TokioIo<Upgraded>) -> BoxFuture<'static, ()> + Send>;

/// An accepted upgrade: the 101 response's headers and the session.
pub(crate) struct Switch {
    pub headers: Vec<(&'static str, String)>,
    pub serve: Serve,
}

/// Every value of a header, comma lists split.
pub(crate) fn header_values(req: &Request<Incoming>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The client's first offered protocol that is among `ours`, as
/// kubelet's streaming server picks; "" (the original protocol) when it
/// offers none; an error listing both sides otherwise.
pub(crate) fn negotiate(offered: &[String], ours: &[&'static str]) -> Result<&'static str, String> {
    if offered.is_empty() {
        return Ok("");
    }
    offered
        .iter()
        .find_map(|o| ours.iter().find(|p| *p == o))
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
    fn negotiation_takes_the_clients_first_served_protocol() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let spdy = &crate::spdy::PROTOCOLS;
        assert_eq!(
            negotiate(
                &v(&["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"]),
                spdy
            ),
            Ok("v4.channel.k8s.io")
        );
        assert_eq!(
            negotiate(&v(&["v9.channel.k8s.io", "v2.channel.k8s.io"]), spdy),
            Ok("v2.channel.k8s.io")
        );
        assert_eq!(
            negotiate(&v(&["channel.k8s.io", "v4.channel.k8s.io"]), spdy),
            Ok("channel.k8s.io")
        );
        assert_eq!(negotiate(&[], spdy), Ok(""));
        let e = negotiate(&v(&["v5.channel.k8s.io"]), spdy).unwrap_err();
        assert!(
            e.contains("v4.channel.k8s.io") && e.contains("v5.channel.k8s.io"),
            "{e}"
        );
        let ws = &crate::websocket::EXEC_PROTOCOLS;
        assert_eq!(
            negotiate(&v(&["v4.base64.channel.k8s.io", "v4.channel.k8s.io"]), ws),
            Ok("v4.base64.channel.k8s.io")
        );
    }
}
