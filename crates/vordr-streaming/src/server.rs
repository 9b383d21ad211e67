//! The HTTP side: one listener (127.0.0.1 by default), `/exec/<token>`,
//! `/attach/<token>` and `/portforward/<token>` URLs, and the upgrade to
//! SPDY/3.1 or WebSocket, whichever the client asks for. Plain HTTP, or
//! TLS with a certificate and key. Bounded: a cap on connections (the
//! oldest one still sending its request makes room for a new one), a
//! deadline for the TLS handshake and the request head, one request per
//! connection; the sessions have their own [`Limits`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::tokens::{ExecTarget, PortForwardTarget, Target, Tokens};
use crate::{spdy, websocket, Backend};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding the streaming server to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "the streaming server's address {addr} is not a loopback address: serving \
         it needs TLS (a certificate and key), or `insecure` for plain HTTP anyway"
    )]
    Insecure { addr: SocketAddr },
    #[error("streaming server TLS: {what} {path}: {reason}")]
    Tls {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// What the server allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// For the TLS handshake and the request head together.
    pub header_read_timeout: Duration,
    /// An upgraded session with no open stream (an exec whose streams are
    /// not all open, a port-forward with no forwarded connection) is closed
    /// after this long without a frame from its client.
    pub idle_timeout: Duration,
    /// Connections at once, sessions included (at most half the process's
    /// open-file limit in effect).
    pub max_connections: usize,
    /// Streams open at once in one SPDY session; more ends the session.
    pub max_streams_per_session: usize,
    /// Forwarded connections at once in one port-forward session; more
    /// ends a SPDY session and refuses a WebSocket URL.
    pub max_port_forward_pairs: usize,
}

impl Default for Limits {
    /// The embedded configuration's values.
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1000,
            max_streams_per_session: 256,
            max_port_forward_pairs: 64,
        }
    }
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where and how the server listens.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Port 0 picks a free one.
    pub addr: SocketAddr,
    pub limits: Limits,
    /// Serve HTTPS (and hand out https:// URLs).
    pub tls: Option<TlsFiles>,
    /// Serve plain HTTP on a non-loopback address anyway.
    pub insecure: bool,
}

impl Settings {
    /// Plain HTTP on `addr` with the default limits.
    pub fn new(addr: SocketAddr) -> Settings {
        Settings {
            addr,
            limits: Limits::default(),
            tls: None,
            insecure: false,
        }
    }
}

/// How long a new connection waits for the slot of the one it displaces.
const DISPLACE_WAIT: Duration = Duration::from_secs(1);

/// What a connection over the cap gets, if the socket takes it at once.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 31\r\nConnection: close\r\n\r\ntoo many streaming connections\n";

/// A running streaming server.
pub struct Server {
    tokens: Tokens,
    addr: SocketAddr,
    scheme: &'static str,
    limits: Limits,
}

/// The connection slots: a permit each, and the connections still in
/// their TLS handshake or request head, oldest first, each with the
/// switch that drops it.
struct Gate {
    slots: Arc<Semaphore>,
    heads: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
    next: AtomicU64,
}

/// A connection's slot; after an upgrade, the session holds it.
struct Slot {
    _permit: OwnedSemaphorePermit,
    id: u64,
    gate: Arc<Gate>,
}

impl Slot {
    /// The request head is in: the connection is no longer one to displace.
    fn head_done(&self) {
        let mut heads = self.gate.heads.lock().unwrap_or_else(|e| e.into_inner());
        heads.remove(&self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.head_done();
    }
}

impl Gate {
    fn new(cap: usize) -> Arc<Gate> {
        Arc::new(Gate {
            slots: Arc::new(Semaphore::new(cap)),
            heads: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
        })
    }

    /// A slot for a new connection: a free one, else the one of the oldest
    /// connection still sending its head (which is dropped); `None` when
    /// every connection is past its head. The receiver fires when this
    /// connection is displaced in turn.
    async fn admit(self: &Arc<Gate>) -> Option<(Slot, oneshot::Receiver<()>)> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let oldest = self
                    .heads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop_first();
                let (_, displace) = oldest?;
                let _ = displace.send(());
                // Its task drops the connection, and with it the slot.
                tokio::time::timeout(DISPLACE_WAIT, self.slots.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?
            }
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.heads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        let slot = Slot {
            _permit: permit,
            id,
            gate: self.clone(),
        };
        Some((slot, rx))
    }
}

/// The connection cap within the process's open-file limit: at most half
/// of it, so that a full server leaves the daemon files for the rest of
/// its work (sockets, shims, the store).
fn within_fd_limit(cap: usize) -> usize {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0
        || r.rlim_cur == libc::RLIM_INFINITY
    {
        return cap;
    }
    let budget = usize::try_from(r.rlim_cur / 2).unwrap_or(usize::MAX).max(1);
    if cap > budget {
        tracing::warn!(
            max_connections = cap,
            open_file_limit = r.rlim_cur,
            "streaming server: max_connections is more than half the open-file limit; using {budget}"
        );
        return budget;
    }
    cap
}

/// The certificate chain and key, ready to serve.
fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |what, path: &PathBuf, reason: String| ServerError::Tls {
        what,
        path: path.clone(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err("certificate", &files.cert, e.to_string()))?;
    if certs.is_empty() {
        let reason = "no CERTIFICATE block".to_string();
        return Err(err("certificate", &files.cert, reason));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| err("private key", &files.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err("protocol versions for", &files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err("certificate and key", &files.cert, e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl Server {
    /// Plain HTTP on `addr` (port 0 picks a free one) with the default
    /// limits, until the runtime stops.
    pub async fn start(
        addr: SocketAddr,
        backend: Arc<dyn Backend>,
    ) -> Result<Arc<Server>, ServerError> {
        Server::start_with(Settings::new(addr), backend).await
    }

    /// Listens as `settings` say and serves until the runtime stops. A
    /// non-loopback address needs TLS or `insecure`.
    pub async fn start_with(
        settings: Settings,
        backend: Arc<dyn Backend>,
    ) -> Result<Arc<Server>, ServerError> {
        let Settings {
            addr,
            mut limits,
            tls,
            insecure,
        } = settings;
        if !addr.ip().is_loopback() && tls.is_none() && !insecure {
            return Err(ServerError::Insecure { addr });
        }
        let acceptor = tls.as_ref().map(tls_acceptor).transpose()?;
        limits.max_connections = within_fd_limit(limits.max_connections);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let server = Arc::new(Server {
            tokens: Tokens::default(),
            addr,
            scheme: if acceptor.is_some() { "https" } else { "http" },
            limits,
        });
        let gate = Gate::new(limits.max_connections);
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("streaming server: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some((slot, displaced)) = gate.admit().await else {
                    tracing::debug!(%peer, "streaming server: at its connection cap; refused");
                    if acceptor.is_none() {
                        let _ = tcp.try_write(BUSY);
                    }
                    continue;
                };
                let conn = s
                    .clone()
                    .connection(tcp, acceptor.clone(), slot, backend.clone());
                tokio::spawn(async move {
                    let mut displaced = displaced;
                    tokio::select! {
                        r = conn => if let Err(e) = r {
                            tracing::debug!(%peer, "streaming connection: {e}");
                        },
                        Ok(()) = &mut displaced => tracing::debug!(
                            %peer,
                            "streaming connection dropped before its request: the server is at its connection cap"
                        ),
                    }
                });
            }
        });
        tracing::info!(
            %addr,
            tls = server.scheme == "https",
            max_connections = limits.max_connections,
            "streaming server listening"
        );
        Ok(server)
    }

    /// One connection: the TLS handshake if any and the request head
    /// within the header deadline, then one answer. The whole HTTP part
    /// (a request body the client never sends included) gets twice that;
    /// an upgraded session goes on in a task of its own.
    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        tls: Option<TlsAcceptor>,
        slot: Slot,
        backend: Arc<dyn Backend>,
    ) -> Result<(), String> {
        let timeout = self.limits.header_read_timeout;
        let deadline = Instant::now() + timeout;
        let slot = Arc::new(slot);
        let http = async {
            match tls {
                None => self.serve_http(tcp, deadline, slot, backend).await,
                Some(acceptor) => {
                    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => self.serve_http(tls, deadline, slot, backend).await,
                        Ok(Err(e)) => Err(format!("TLS handshake: {e}")),
                        Err(_) => Err("no TLS handshake before the header deadline".into()),
                    }
                }
            }
        };
        tokio::time::timeout_at(deadline + timeout, http)
            .await
            .unwrap_or_else(|_| Err("the request was not over by twice the header deadline".into()))
    }

    async fn serve_http<IO>(
        self: &Arc<Self>,
        io: IO,
        deadline: Instant,
        slot: Arc<Slot>,
        backend: Arc<dyn Backend>,
    ) -> Result<(), String>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let s = self.clone();
        let svc = hyper::service::service_fn(move |req| {
            let (s, backend, slot) = (s.clone(), backend.clone(), slot.clone());
            async move { Ok::<_, std::convert::Infallible>(s.handle(req, backend, slot)) }
        });
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(left)
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades()
            .await
            .map_err(|e| e.to_string())
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The limits in effect (the connection cap after the open-file limit).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A single-use URL for an exec.
    pub fn exec_url(&self, target: ExecTarget) -> String {
        let token = self.tokens.insert(Target::Exec(target));
        format!("{}://{}/exec/{token}", self.scheme, self.addr)
    }

    /// A single-use URL for an attach.
    pub fn attach_url(&self, target: ExecTarget) -> String {
        let token = self.tokens.insert(Target::Attach(target));
        format!("{}://{}/attach/{token}", self.scheme, self.addr)
    }

    /// A single-use URL for a port-forward.
    pub fn port_forward_url(&self, target: PortForwardTarget) -> String {
        let token = self.tokens.insert(Target::PortForward(target));
        format!("{}://{}/portforward/{token}", self.scheme, self.addr)
    }

    fn handle(
        &self,
        req: Request<Incoming>,
        backend: Arc<dyn Backend>,
        slot: Arc<Slot>,
    ) -> Response<Full<Bytes>> {
        slot.head_done();
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
            websocket::accept(&req, target, backend, self.limits)
        } else if upgrade
            .iter()
            .any(|u| u.eq_ignore_ascii_case(spdy::UPGRADE))
        {
            spdy::accept(&req, target, backend, self.limits)
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
            // The session keeps the connection's slot.
            let _slot = slot;
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

/// A response that ends the connection: streaming URLs are single use, so
/// a connection serves one request.
fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
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
