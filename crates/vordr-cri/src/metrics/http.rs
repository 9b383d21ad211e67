//! Serving the metrics: plain HTTP/1.1 on `server.metrics_address`, `GET
//! /metrics` (or HEAD) and nothing else. A scraper whose `Accept` names
//! `application/openmetrics-text` gets OpenMetrics text 1.0.0, any other
//! the Prometheus text format 0.0.4. The store is read for the pod and
//! container gauges on a blocking thread, never on the async ones.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};

use super::{Format, StateCounts};
use crate::state::Runtime;

/// Scrapes served at once; more connections wait to be accepted.
const MAX_CONNECTIONS: usize = 16;

/// A client has this long to send its request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the metrics address (a failure names it).
pub(crate) async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, crate::ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| crate::ServeError::Metrics { addr, source })
}

/// Serves `/metrics` from `listener` on a task of its own, for as long as
/// the runtime lives; the task ends when the returned handle is aborted.
pub(crate) fn spawn(
    listener: tokio::net::TcpListener,
    rt: Weak<Runtime>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("metrics: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let rt = rt.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let rt = rt.clone();
                    async move { Ok::<_, Infallible>(answer(req, rt).await) }
                });
                let res = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                if let Err(e) = res {
                    tracing::debug!("metrics: connection: {e}");
                }
                drop(permit);
            });
        }
    })
}

fn reply(status: http::StatusCode, text: &'static str) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn answer<B>(req: http::Request<B>, rt: Weak<Runtime>) -> http::Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return reply(
            http::StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    let head = req.method() == http::Method::HEAD;
    if req.method() != http::Method::GET && !head {
        let mut r = reply(http::StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
        r.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    let Some(rt) = rt.upgrade() else {
        return reply(http::StatusCode::SERVICE_UNAVAILABLE, "vordr is stopping\n");
    };
    let format = Format::from_accept(
        req.headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let encoded = tokio::task::spawn_blocking(move || {
        let states = StateCounts::read(&rt.store).unwrap_or_else(|e| {
            tracing::warn!("metrics: reading pods and containers: {e}");
            StateCounts::default()
        });
        rt.metrics.encode(&states, format)
    })
    .await;
    let Ok(text) = encoded else {
        return reply(http::StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n");
    };
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(text)
    };
    let mut r = http::Response::new(Full::new(body));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(format.content_type()),
    );
    r
}
