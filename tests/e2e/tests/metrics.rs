//! Prometheus metrics end to end: a daemon with `server.metrics_address`
//! on a free loopback port runs a pod and a container, refuses a pod, pulls
//! an image, and its `/metrics` (parsed as Prometheus text) says so; a
//! daemon without the key serves no metrics anywhere, and one whose
//! metrics address is taken does not start.

use std::io::{Read, Write};
use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use tonic::Code;
use vordr_e2e::setup::*;
use vordr_e2e::*;

/// A loopback port free right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.1: (status code, content type, body).
fn get(port: u16, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, content_type, body.to_string()))
}

fn scrape(port: u16) -> Scrape {
    let (status, content_type, body) = get(port, "/metrics", None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample `metric` whose labels include `labels`.
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
}

fn must(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    value(s, metric, labels).unwrap_or_else(|| {
        let names: Vec<_> = s.samples.iter().map(|x| (&x.metric, &x.labels)).collect();
        panic!("no {metric} {labels:?} in {names:?}")
    })
}

/// TCP ports process `pid` listens on (from its descriptors and the
/// kernel's socket tables).
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local address, state 0A (LISTEN), inode
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

fn host_network_pod(name: &str) -> cri::PodSandboxConfig {
    let mut cfg = pod_config(name);
    cfg.linux.as_mut().unwrap().security_context = Some(cri::LinuxSandboxSecurityContext {
        namespace_options: Some(cri::NamespaceOption {
            network: cri::NamespaceMode::Node as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    cfg
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_calls_denials_pods_pulls_and_the_process() {
    let Some(mut s) = setup("metrics").await else {
        return;
    };
    let port = free_port();
    s.d.restart_with_server(&format!("metrics_address = \"127.0.0.1:{port}\""))
        .await;
    s.c = s.d.client().await;
    let log = s.d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("serving metrics at /metrics")
                && l.contains(&format!("127.0.0.1:{port}"))),
        "{log}"
    );
    // The way the other test looks for an endpoint finds this one.
    assert!(listening_ports(s.d.pid().unwrap()).contains(&port));

    // A pull (the image is stored already: the pull is counted all the same).
    s.c.image
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: s.image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    // The baseline profile refuses the host network (rule 4).
    let e = run_pod(&mut s.c, host_network_pod("m-hostnet"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let pod = s.pod("m-pod", "").await;
    let cfg = s.config("c", &["sleep", "300"]);
    let ctr = s.run(&pod, cfg).await;

    let m = scrape(port);
    let rpc = |rpc, code| {
        must(
            &m,
            "vordr_cri_requests_total",
            &[("rpc", rpc), ("code", code)],
        )
    };
    assert!(rpc("RunPodSandbox", "OK") >= 1.0);
    assert_eq!(rpc("RunPodSandbox", "PermissionDenied"), 1.0);
    assert_eq!(rpc("CreateContainer", "OK"), 1.0);
    assert_eq!(rpc("StartContainer", "OK"), 1.0);
    assert_eq!(rpc("PullImage", "OK"), 1.0);
    assert!(
        must(
            &m,
            "vordr_cri_request_duration_seconds_count",
            &[("rpc", "RunPodSandbox")]
        ) >= 2.0
    );
    assert_eq!(
        must(
            &m,
            "vordr_gatekeeper_decisions_total",
            &[("verdict", "denied"), ("rule", "4")]
        ),
        1.0
    );
    assert!(
        must(
            &m,
            "vordr_gatekeeper_decisions_total",
            &[("verdict", "allowed"), ("rule", "none")]
        ) >= 2.0,
        "the pod and the container were judged"
    );
    assert_eq!(must(&m, "vordr_pods", &[("state", "ready")]), 1.0);
    assert_eq!(must(&m, "vordr_containers", &[("state", "running")]), 1.0);
    assert_eq!(must(&m, "vordr_containers", &[("state", "exited")]), 0.0);
    assert_eq!(
        must(&m, "vordr_image_pulls_total", &[("result", "ok")]),
        1.0
    );
    assert!(must(&m, "vordr_image_pull_bytes_total", &[]) > 1000.0);
    assert_eq!(
        must(&m, "vordr_image_pull_duration_seconds_count", &[]),
        1.0
    );
    assert_eq!(must(&m, "vordr_shim_starts_total", &[]), 1.0);
    assert_eq!(must(&m, "vordr_shim_crashes_total", &[]), 0.0);
    assert!(must(&m, "process_cpu_seconds_total", &[]) > 0.0);
    assert!(must(&m, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(must(&m, "process_open_fds", &[]) > 3.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = must(&m, "process_start_time_seconds", &[]);
    assert!(
        start > now - 600.0 && start <= now + 1.0,
        "{start} vs {now}"
    );

    // A shim killed under its running container is a crash.
    let cfg = s.config("k", &["sleep", "300"]);
    let killed = s.run(&pod, cfg).await;
    let bundle = s.d.run_dir.join("bundles").join(&killed);
    let shim =
        s.d.processes()
            .into_iter()
            .find_map(|p| {
                let pid = p.split(' ').next()?.to_string();
                let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
                (cwd == bundle).then(|| pid.parse::<i32>().ok())?
            })
            .expect("the container's shim");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    s.wait_exit(&killed).await;
    s.stop_remove(&killed).await;

    // Stopping the pod detaches it through netavark, and the gauges follow
    // the store.
    s.stop_remove(&ctr).await;
    s.c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.0.clone(),
        })
        .await
        .unwrap();
    let m = scrape(port);
    assert_eq!(must(&m, "vordr_pods", &[("state", "ready")]), 0.0);
    assert_eq!(must(&m, "vordr_pods", &[("state", "notready")]), 1.0);
    assert_eq!(must(&m, "vordr_containers", &[("state", "running")]), 0.0);
    assert_eq!(must(&m, "vordr_shim_starts_total", &[]), 2.0);
    assert_eq!(must(&m, "vordr_shim_crashes_total", &[]), 1.0);
    assert_eq!(
        must(
            &m,
            "vordr_cri_requests_total",
            &[("rpc", "StopPodSandbox"), ("code", "OK")]
        ),
        1.0
    );
    assert!(
        must(
            &m,
            "vordr_network_setup_duration_seconds_count",
            &[("driver", "netavark"), ("op", "teardown")]
        ) >= 1.0
    );

    // OpenMetrics for a scraper that asks for it; nothing but /metrics.
    let (status, content_type, body) = get(
        port,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("vordr_pods{state=\"notready\"} 1"), "{body}");
    assert_eq!(get(port, "/", None).unwrap().0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_metrics_without_the_key_and_a_taken_address_stops_the_start() {
    if !can_run() {
        eprintln!("skipped: needs root and netavark");
        return;
    }
    let mut d = Daemon::start("nometrics").await;
    assert!(!d.log().contains("serving metrics"), "{}", d.log());
    // Whatever it listens on (the streaming server), none of it is metrics.
    let ports = listening_ports(d.pid().unwrap());
    assert!(!ports.is_empty(), "the streaming server listens somewhere");
    for port in ports {
        if let Ok((status, _, body)) = get(port, "/metrics", None) {
            assert!(
                status != 200 && !body.contains("vordr_"),
                "port {port} serves metrics: {body}"
            );
        }
    }

    // --metrics-address on a port that is taken: the daemon says which and
    // does not start.
    d.terminate();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let stderr = d.serve_must_fail(&["--metrics-address", &addr]).await;
    assert!(
        stderr.contains(&format!("metrics address {addr} (server.metrics_address)")),
        "{stderr}"
    );
    drop(taken);
}
