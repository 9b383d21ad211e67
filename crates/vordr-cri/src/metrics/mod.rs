//! Prometheus metrics of the daemon (`docs/metrics.md` lists them): one
//! process-wide [`Metrics`] of counters and histograms that the RPCs bump
//! in one call each, the pod and container gauges read from the store when
//! scraped, and the `process_*` figures read from `/proc/self` then too.
//! Served by [`http`] on `server.metrics_address` when it is set.

pub(crate) mod http;
pub(crate) mod layer;
pub(crate) mod process;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use vordr_image::pull::{FailureKind, PullError, PulledImage};

/// `vordr_cri_requests_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcCode {
    rpc: String,
    code: &'static str,
}

/// `vordr_cri_request_duration_seconds`'s label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rpc {
    rpc: String,
}

/// `vordr_gatekeeper_decisions_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Decision {
    verdict: &'static str,
    rule: &'static str,
}

/// `vordr_image_pulls_total`'s label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PullResult {
    result: &'static str,
}

/// `vordr_network_setup_duration_seconds`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetLabels {
    driver: &'static str,
    op: &'static str,
}

/// `vordr_pods` and `vordr_containers`' label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: &'static str,
}

/// What a pod's network driver did, for `vordr_network_setup_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetOp {
    NetavarkSetup,
    NetavarkTeardown,
    CniAdd,
    CniDel,
}

impl NetOp {
    fn labels(self) -> NetLabels {
        let (driver, op) = match self {
            NetOp::NetavarkSetup => ("netavark", "setup"),
            NetOp::NetavarkTeardown => ("netavark", "teardown"),
            NetOp::CniAdd => ("cni", "add"),
            NetOp::CniDel => ("cni", "del"),
        };
        NetLabels { driver, op }
    }
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Buckets from 0.5 ms to about 33 s, doubling: a Version call to a pull.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// The `rule` label: the denying rule's number, `none` when none denied.
const RULES: [&str; 33] = [
    "none", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32",
];

/// Every counter and histogram of the daemon.
pub struct Metrics {
    registry: Registry,
    cri_requests: Family<RpcCode, Counter>,
    cri_duration: Histograms<Rpc>,
    gatekeeper: Family<Decision, Counter>,
    pulls: Family<PullResult, Counter>,
    pull_bytes: Counter,
    pull_duration: Histogram,
    shim_starts: Counter,
    shim_crashes: Counter,
    network: Histograms<NetLabels>,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Records a network driver's run when dropped (success or not).
#[must_use = "the duration is recorded when the timer drops"]
pub struct NetTimer {
    metrics: &'static Metrics,
    op: NetOp,
    start: Instant,
}

impl Drop for NetTimer {
    fn drop(&mut self) {
        self.metrics
            .network
            .get_or_create(&self.op.labels())
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// The process's metrics (shims are started where no `Runtime` is at
    /// hand, so there is one set per process; `Runtime::metrics` is it).
    pub fn global() -> &'static Metrics {
        &GLOBAL
    }

    fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            cri_requests: Family::default(),
            cri_duration: Family::new_with_constructor(duration_histogram),
            gatekeeper: Family::default(),
            pulls: Family::default(),
            pull_bytes: Counter::default(),
            pull_duration: duration_histogram(),
            shim_starts: Counter::default(),
            shim_crashes: Counter::default(),
            network: Family::new_with_constructor(duration_histogram),
        };
        let mut registry = Registry::default();
        let v = registry.sub_registry_with_prefix("vordr");
        v.register(
            "cri_requests",
            "CRI calls answered, by method and gRPC status code",
            m.cri_requests.clone(),
        );
        v.register(
            "cri_request_duration_seconds",
            "Time to answer a CRI call, by method",
            m.cri_duration.clone(),
        );
        v.register(
            "gatekeeper_decisions",
            "Gatekeeper decisions on pods and containers, by verdict and denying rule",
            m.gatekeeper.clone(),
        );
        v.register(
            "image_pulls",
            "Image pulls, by result (ok or why they failed)",
            m.pulls.clone(),
        );
        v.register(
            "image_pull_bytes",
            "Bytes of config and compressed layers of the images pulled",
            m.pull_bytes.clone(),
        );
        v.register(
            "image_pull_duration_seconds",
            "Time an image pull took (waiting for a pull of the same name excluded)",
            m.pull_duration.clone(),
        );
        v.register(
            "shim_starts",
            "Container shims started",
            m.shim_starts.clone(),
        );
        v.register(
            "shim_crashes",
            "Container shims that died while their container was created or running",
            m.shim_crashes.clone(),
        );
        v.register(
            "network_setup_duration_seconds",
            "Time to attach or detach a pod's network, by driver and operation",
            m.network.clone(),
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        Metrics { registry, ..m }
    }

    /// One CRI call answered with gRPC status `code` after `took`.
    pub fn cri_request(&self, rpc: String, code: &'static str, took: Duration) {
        let rpc = Rpc { rpc };
        self.cri_duration
            .get_or_create(&rpc)
            .observe(took.as_secs_f64());
        self.cri_requests
            .get_or_create(&RpcCode { rpc: rpc.rpc, code })
            .inc();
    }

    /// A gatekeeper decision: `verdict` "allowed", "denied" or "error",
    /// `rule` the denying rule (0 for none).
    pub fn gatekeeper_decision(&self, verdict: &str, rule: u8) {
        let verdict = match verdict {
            "allowed" => "allowed",
            "denied" => "denied",
            _ => "error",
        };
        let rule = RULES.get(usize::from(rule)).copied().unwrap_or("other");
        self.gatekeeper
            .get_or_create(&Decision { verdict, rule })
            .inc();
    }

    /// Runs a pull, recording its result, duration and (on success) bytes.
    pub async fn image_pull<F>(&self, pull: F) -> Result<PulledImage, PullError>
    where
        F: std::future::Future<Output = Result<PulledImage, PullError>>,
    {
        let start = Instant::now();
        let res = pull.await;
        self.pull_duration.observe(start.elapsed().as_secs_f64());
        let result = match &res {
            Ok(p) => {
                self.pull_bytes.inc_by(p.size);
                "ok"
            }
            Err(e) => pull_failure(e.kind),
        };
        self.pulls.get_or_create(&PullResult { result }).inc();
        res
    }

    /// A shim was started.
    pub fn shim_started(&self) {
        self.shim_starts.inc();
    }

    /// A shim died under a created or running container.
    pub fn shim_crashed(&self) {
        self.shim_crashes.inc();
    }

    /// Times a network driver's run until the returned timer drops.
    pub fn timer(&'static self, op: NetOp) -> NetTimer {
        NetTimer {
            metrics: self,
            op,
            start: Instant::now(),
        }
    }
}

/// The `result` label of a failed pull.
fn pull_failure(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::NotFound => "not_found",
        FailureKind::Unauthorized => "unauthorized",
        FailureKind::Unreachable => "unreachable",
        FailureKind::BadContent => "bad_content",
        FailureKind::Timeout => "timeout",
        FailureKind::TooLarge => "too_large",
        FailureKind::Other => "other",
    }
}

/// Pods and containers by state, as the store has them now.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct StateCounts {
    pub pods: Vec<(&'static str, i64)>,
    pub containers: Vec<(&'static str, i64)>,
}

const POD_STATES: [vordr_store::PodState; 5] = [
    vordr_store::PodState::Creating,
    vordr_store::PodState::Ready,
    vordr_store::PodState::NotReady,
    vordr_store::PodState::PoolCreating,
    vordr_store::PodState::Pooled,
];

const CONTAINER_STATES: [vordr_store::ContainerState; 4] = [
    vordr_store::ContainerState::Creating,
    vordr_store::ContainerState::Created,
    vordr_store::ContainerState::Running,
    vordr_store::ContainerState::Exited,
];

impl StateCounts {
    /// Counts the rows of `store` (every state listed, 0 included).
    pub fn read(store: &vordr_store::Store) -> Result<StateCounts, vordr_store::StoreError> {
        let pods = store.list_pods()?;
        let containers = store.list_containers()?;
        Ok(StateCounts {
            pods: POD_STATES
                .iter()
                .map(|s| {
                    (
                        s.as_str(),
                        pods.iter().filter(|p| p.state == *s).count() as i64,
                    )
                })
                .collect(),
            containers: CONTAINER_STATES
                .iter()
                .map(|s| {
                    let n = containers.iter().filter(|c| c.state == *s).count();
                    (s.as_str(), n as i64)
                })
                .collect(),
        })
    }

    fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("vordr");
        for (name, help, counts) in [
            (
                "pods",
                "Pod sandboxes (and warm-pool slots, pool-creating and pooled) by state",
                &self.pods,
            ),
            ("containers", "Containers by state", &self.containers),
        ] {
            let family = Family::<State, Gauge>::default();
            for &(state, n) in counts {
                family.get_or_create(&State { state }).set(n);
            }
            r.register(name, help, family);
        }
        r
    }
}

/// Which exposition format a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The Prometheus text format, version 0.0.4.
    Prometheus,
    /// OpenMetrics text 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The format a scraper's `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

impl Metrics {
    /// Every metric in `format`, the store's counts among them.
    pub(crate) fn encode(&self, states: &StateCounts, format: Format) -> String {
        use prometheus_client::encoding::{prometheus_text, text};
        let states = states.registry();
        let mut out = String::with_capacity(16 << 10);
        // Writing to a String fails only if an encoder does.
        let res = match format {
            Format::Prometheus => prometheus_text::encode(&mut out, &self.registry)
                .and_then(|()| prometheus_text::encode(&mut out, &states)),
            Format::OpenMetrics => text::encode_registry(&mut out, &self.registry)
                .and_then(|()| text::encode_registry(&mut out, &states))
                .and_then(|()| text::encode_eof(&mut out)),
        };
        if let Err(e) = res {
            tracing::error!("encoding metrics: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(m: &Metrics, format: Format) -> String {
        let states = StateCounts {
            pods: vec![("ready", 2), ("notready", 0)],
            containers: vec![("running", 3)],
        };
        m.encode(&states, format)
    }

    #[test]
    fn every_metric_is_named_with_its_labels() {
        let m = Metrics::new();
        m.cri_request("RunPodSandbox".into(), "OK", Duration::from_millis(3));
        m.cri_request("RunPodSandbox".into(), "OK", Duration::from_millis(5));
        m.cri_request("CreateContainer".into(), "PermissionDenied", Duration::ZERO);
        m.gatekeeper_decision("denied", 4);
        m.gatekeeper_decision("allowed", 0);
        m.gatekeeper_decision("error", 200);
        m.shim_started();
        m.shim_crashed();
        drop(Metrics::global().timer(NetOp::CniAdd));
        let text = scrape(&m, Format::Prometheus);
        for line in [
            "vordr_cri_requests_total{rpc=\"RunPodSandbox\",code=\"OK\"} 2",
            "vordr_cri_requests_total{rpc=\"CreateContainer\",code=\"PermissionDenied\"} 1",
            "vordr_cri_request_duration_seconds_count{rpc=\"RunPodSandbox\"} 2",
            "vordr_cri_request_duration_seconds_bucket{rpc=\"RunPodSandbox\",le=\"0.004\"} 1",
            "vordr_gatekeeper_decisions_total{verdict=\"denied\",rule=\"4\"} 1",
            "vordr_gatekeeper_decisions_total{verdict=\"allowed\",rule=\"none\"} 1",
            "vordr_gatekeeper_decisions_total{verdict=\"error\",rule=\"other\"} 1",
            "vordr_shim_starts_total 1",
            "vordr_shim_crashes_total 1",
            "vordr_image_pull_bytes_total 0",
            "vordr_image_pull_duration_seconds_count 0",
            "vordr_pods{state=\"ready\"} 2",
            "vordr_pods{state=\"notready\"} 0",
            "vordr_containers{state=\"running\"} 3",
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_resident_memory_bytes gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
        // The global set's timer landed there, not here.
        assert!(!text.contains("network_setup_duration_seconds_count"));
        let global = scrape(Metrics::global(), Format::Prometheus);
        assert!(
            global
                .contains("vordr_network_setup_duration_seconds_count{driver=\"cni\",op=\"add\"}"),
            "{global}"
        );
    }

    #[test]
    fn openmetrics_when_asked_for() {
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Prometheus);
        let prom_accept =
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                           version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prom_accept)), Format::OpenMetrics);
        assert!(Format::OpenMetrics
            .content_type()
            .starts_with("application/openmetrics-text"));
        assert!(Format::Prometheus
            .content_type()
            .starts_with("text/plain; version=0.0.4"));
        let m = Metrics::new();
        let text = scrape(&m, Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.contains("vordr_pods{state=\"ready\"} 2"), "{text}");
    }

    #[test]
    fn pulls_count_their_result_bytes_and_time() {
        let m = Metrics::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let failed = rt.block_on(m.image_pull(async {
            Err(PullError {
                image: "i".into(),
                registry: "r".into(),
                kind: FailureKind::NotFound,
                cause: "gone".into(),
            })
        }));
        assert!(failed.is_err());
        let text = scrape(&m, Format::Prometheus);
        assert!(
            text.contains("vordr_image_pulls_total{result=\"not_found\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vordr_image_pull_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("vordr_image_pull_bytes_total 0"), "{text}");
    }
}
