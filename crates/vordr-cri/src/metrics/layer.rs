//! The tower layer around the CRI services that counts and times every
//! call: the method is the gRPC path's last segment, the code the
//! response's `grpc-status` header (tonic answers an error trailers-only,
//! so it is there) or `OK` when there is none (a success carries its status
//! in the trailers). A call whose caller went away before the answer is
//! counted as `Canceled`. Nothing is held across an await: a clock read at
//! the call and two map lookups at its answer.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use super::Metrics;

/// gRPC status codes by number, spelled as grpc-go's `codes.Code` (the
/// `grpc_code` label of go-grpc-prometheus).
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The gRPC paths the server answers, `/runtime.v1.RuntimeService/Version`
/// and the like: every `rpc` of every `service` in the CRI proto the
/// bindings are generated from.
static METHODS: LazyLock<HashSet<String>> =
    LazyLock::new(|| proto_methods(include_str!("../../../../proto/api.proto")));

/// The `/package.Service/Method` paths a proto file declares.
fn proto_methods(proto: &str) -> HashSet<String> {
    let mut package = "";
    let mut service = None;
    let mut out = HashSet::new();
    for line in proto.lines().map(str::trim) {
        let word = |prefix: &str| {
            line.strip_prefix(prefix).map(|rest| {
                rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                    .next()
                    .unwrap_or("")
            })
        };
        if let Some(p) = word("package ") {
            package = p;
        } else if let Some(s) = word("service ") {
            service = Some(s);
        } else if let (Some(m), Some(s)) = (word("rpc "), service) {
            out.insert(format!("/{package}.{s}/{m}"));
        }
    }
    out
}

/// The gRPC method a request path names (`/runtime.v1.RuntimeService/Version`
/// gives `Version`) when it is one the server answers; `unknown` for any
/// other path, so that a client calling made-up methods adds one label
/// value at most.
pub(crate) fn rpc_name(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some((_, method)) if METHODS.contains(path) => method,
        _ => "unknown",
    }
}

/// The status code of a response from its headers: `grpc-status` when
/// present (trailers-only errors), else `OK`.
pub(crate) fn status_code(headers: &http::HeaderMap) -> &'static str {
    match headers.get("grpc-status") {
        None => "OK",
        Some(v) => std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .and_then(|n| CODES.get(n).copied())
            .unwrap_or("Unknown"),
    }
}

/// Counts and times the calls of the services it wraps; passes them
/// through untouched when metrics are off (`None`).
#[derive(Clone, Copy)]
pub struct MetricsLayer(pub Option<&'static Metrics>);

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> MetricsService<S> {
        MetricsService {
            inner,
            metrics: self.0,
        }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Option<&'static Metrics>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for MetricsService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let call = self.metrics.map(|metrics| Call {
            metrics,
            rpc: rpc_name(req.uri().path()).to_string(),
            start: Instant::now(),
        });
        ResponseFuture {
            inner: self.inner.call(req),
            call,
        }
    }
}

/// A call being answered: recorded once, at its answer or when dropped
/// unanswered.
struct Call {
    metrics: &'static Metrics,
    rpc: String,
    start: Instant,
}

impl Call {
    fn record(self, code: &'static str) {
        self.metrics
            .cri_request(self.rpc, code, self.start.elapsed());
    }
}

pin_project_lite::pin_project! {
    /// The wrapped service's future, recording the call's outcome.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(call) = this.project().call.take() {
                call.record("Canceled");
            }
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx));
        if let Some(call) = this.call.take() {
            call.record(match &res {
                Ok(r) => status_code(r.headers()),
                Err(_) => "Unknown",
            });
        }
        Poll::Ready(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_is_the_paths_last_segment() {
        assert_eq!(
            rpc_name("/runtime.v1.RuntimeService/RunPodSandbox"),
            "RunPodSandbox"
        );
        assert_eq!(rpc_name("/runtime.v1.ImageService/PullImage"), "PullImage");
        for odd in [
            "",
            "/",
            "/runtime.v1.RuntimeService",
            "/runtime.v1.RuntimeService/",
            "//Version",
            "/a/b/c",
            "/svc/Ver sion",
            "/svc/a\u{e9}",
            &format!("/svc/{}", "x".repeat(65)),
            "/runtime.v1.RuntimeService/MadeUp",
            "/runtime.v1.ImageService/RunPodSandbox",
            "/runtime.v1.RuntimeService/RunPodSandbox/",
            "/grpc.health.v1.Health/Check",
        ] {
            assert_eq!(rpc_name(odd), "unknown", "{odd:?}");
        }
    }

    #[test]
    fn every_cri_method_is_known_and_only_those() {
        // CRI 1.35: RuntimeService's and ImageService's rpcs.
        let runtime = METHODS
            .iter()
            .filter(|m| m.starts_with("/runtime.v1.RuntimeService/"))
            .count();
        let image = METHODS
            .iter()
            .filter(|m| m.starts_with("/runtime.v1.ImageService/"))
            .count();
        assert_eq!(runtime, 30, "{METHODS:?}");
        assert_eq!(image, 5, "{METHODS:?}");
        assert_eq!(METHODS.len(), runtime + image, "{METHODS:?}");
        for m in [
            "/runtime.v1.RuntimeService/GetContainerEvents",
            "/runtime.v1.RuntimeService/UpdatePodSandboxResources",
            "/runtime.v1.RuntimeService/ListPodSandboxMetrics",
            "/runtime.v1.ImageService/ImageFsInfo",
        ] {
            assert!(METHODS.contains(m), "{m}");
        }
        assert_eq!(
            rpc_name("/runtime.v1.ImageService/ImageFsInfo"),
            "ImageFsInfo"
        );
    }

    #[test]
    fn the_code_comes_from_grpc_status_else_ok() {
        let mut h = http::HeaderMap::new();
        assert_eq!(status_code(&h), "OK");
        for (v, code) in [
            ("0", "OK"),
            ("1", "Canceled"),
            ("5", "NotFound"),
            ("7", "PermissionDenied"),
            ("12", "Unimplemented"),
            ("16", "Unauthenticated"),
            ("17", "Unknown"),
            ("-1", "Unknown"),
            ("seven", "Unknown"),
        ] {
            h.insert("grpc-status", http::HeaderValue::from_static(v));
            assert_eq!(status_code(&h), code, "{v}");
        }
        // tonic's own codes agree with the table.
        assert_eq!(
            CODES[tonic::Code::PermissionDenied as usize],
            "PermissionDenied"
        );
        assert_eq!(
            CODES[tonic::Code::Unauthenticated as usize],
            "Unauthenticated"
        );
    }

    /// A service denying RunPodSandbox and answering anything else.
    #[derive(Clone)]
    struct Answer;

    impl tower::Service<http::Request<()>> for Answer {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<http::Response<()>, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<()>) -> Self::Future {
            let mut r = http::Response::new(());
            if req.uri().path().ends_with("/RunPodSandbox") {
                r.headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static("7"));
            }
            std::future::ready(Ok(r))
        }
    }

    #[test]
    fn the_layer_counts_answers_and_dropped_calls() {
        use tower::{Layer, Service};
        let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        let mut svc = MetricsLayer(Some(metrics)).layer(Answer);
        let req = |p: &str| http::Request::builder().uri(p).body(()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            svc.call(req("/runtime.v1.RuntimeService/Version"))
                .await
                .unwrap();
            svc.call(req("/runtime.v1.RuntimeService/Version"))
                .await
                .unwrap();
            svc.call(req("/runtime.v1.RuntimeService/RunPodSandbox"))
                .await
                .unwrap();
            svc.call(req("/runtime.v1.RuntimeService/MadeUp"))
                .await
                .unwrap();
        });
        drop(svc.call(req("/runtime.v1.ImageService/PullImage")));
        let text = metrics.encode(&Default::default(), super::super::Format::Prometheus);
        for line in [
            "vordr_cri_requests_total{rpc=\"Version\",code=\"OK\"} 2",
            "vordr_cri_requests_total{rpc=\"RunPodSandbox\",code=\"PermissionDenied\"} 1",
            "vordr_cri_requests_total{rpc=\"unknown\",code=\"OK\"} 1",
            "vordr_cri_requests_total{rpc=\"PullImage\",code=\"Canceled\"} 1",
            "vordr_cri_request_duration_seconds_count{rpc=\"Version\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
