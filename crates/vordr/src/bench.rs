//! `vordr bench`: drives any CRI endpoint through the pod sandbox lifecycle,
//! image pulls and image queries, and prints median and p90 per RPC; with
//! `--compare`, a second endpoint (containerd, say) in the same run, and the
//! ratio between them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use vordr_client::{cri, CriClient};

#[derive(Args)]
pub struct BenchArgs {
    /// CRI endpoint under test
    #[arg(long, short = 'r', default_value = "unix:///run/vordr/vordr.sock")]
    pub endpoint: String,
    /// Label for the endpoint under test
    #[arg(long, default_value = "vordr")]
    pub name: String,
    /// A second endpoint to run the same benchmark against (e.g. containerd)
    #[arg(long)]
    pub compare: Option<String>,
    /// Label for the second endpoint
    #[arg(long, default_value = "containerd")]
    pub compare_name: String,
    /// Pod lifecycles per endpoint
    #[arg(long, short = 'n', default_value_t = 30)]
    pub iterations: usize,
    /// Untimed warm-up lifecycles per endpoint (pulls the pause image, fills caches)
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Print the results as JSON as well
    #[arg(long)]
    pub json: bool,
    /// Skip the pod sandbox lifecycle
    #[arg(long)]
    pub no_pods: bool,
    /// Time PullImage (then RemoveImage) of this image, `iterations` times; repeatable
    #[arg(long)]
    pub pull: Vec<String>,
    /// Pull `<prefix>0` .. `<prefix>N-1` (see --list-count), then time
    /// ListImages and ImageStatus with that many images present
    #[arg(long)]
    pub list_prefix: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub list_count: usize,
    /// Also time a pod with one container of this image (command `sleep`):
    /// Create, Start, Stop, Remove and the whole pod-plus-container lifecycle
    #[arg(long)]
    pub container: Option<String>,
    /// Then keep this many such pods running and report memory: the
    /// daemons' RSS (idle and holding) and the RSS and PSS per shim
    #[arg(long, default_value_t = 0)]
    pub hold: usize,
    /// With --container: also time Exec of `echo` (RPC, SPDY upgrade,
    /// streams, exit status) and a 64 MiB download through PortForward from
    /// a web server in the pod
    #[arg(long)]
    pub streaming: bool,
    /// pid of the daemon behind --endpoint (for the memory report)
    #[arg(long)]
    pub daemon_pid: Option<u32>,
    /// pid of the daemon behind --compare
    #[arg(long)]
    pub compare_daemon_pid: Option<u32>,
}

const RPCS: [&str; 5] = [
    "RunPodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
];

/// Timings per row label, and the labels in the order first seen.
#[derive(Default)]
struct Samples {
    rows: Vec<String>,
    times: HashMap<String, Vec<Duration>>,
    memory: Option<Memory>,
}

/// Memory in KiB: daemon idle and with `hold` pods, per-shim RSS and PSS (medians).
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    daemon_idle: u64,
    daemon_holding: u64,
    shim_rss: u64,
    shim_pss: u64,
    shims: usize,
}

impl Samples {
    fn add(&mut self, row: &str, d: Duration) {
        if !self.times.contains_key(row) {
            self.rows.push(row.to_string());
        }
        self.times.entry(row.to_string()).or_default().push(d);
    }
}

fn pod_config(tag: &str, i: usize) -> cri::PodSandboxConfig {
    let name = format!("bench-{tag}-{i}");
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.clone(),
            uid: format!("uid-{tag}-{i}"),
            namespace: "vordr-bench".into(),
            attempt: 0,
        }),
        hostname: name,
        linux: Some(cri::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// Runs `call`, records how long it took in `times`, names it on error.
async fn timed<T>(
    times: &mut Vec<Duration>,
    what: &'static str,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    let t = Instant::now();
    let r = call.await.context(what)?.into_inner();
    times.push(t.elapsed());
    Ok(r)
}

/// StopPodSandbox then RemovePodSandbox, timed.
async fn stop_and_remove_pod(c: &mut CriClient, id: &str, times: &mut Vec<Duration>) -> Result<()> {
    let pod_sandbox_id = id.to_string();
    timed(
        times,
        "StopPodSandbox",
        c.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.clone(),
        }),
    )
    .await?;
    timed(
        times,
        "RemovePodSandbox",
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id }),
    )
    .await?;
    Ok(())
}

async fn lifecycle(c: &mut CriClient, tag: &str, i: usize, s: Option<&mut Samples>) -> Result<()> {
    let mut times = Vec::with_capacity(5);
    let id = timed(
        &mut times,
        "RunPodSandbox",
        c.runtime.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config(tag, i)),
            runtime_handler: String::new(),
        }),
    )
    .await?
    .pod_sandbox_id;
    timed(
        &mut times,
        "PodSandboxStatus",
        c.runtime.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        }),
    )
    .await?;
    timed(
        &mut times,
        "ListPodSandbox",
        c.runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
    )
    .await?;
    stop_and_remove_pod(c, &id, &mut times).await?;
    if let Some(s) = s {
        for (rpc, d) in RPCS.iter().zip(times) {
            s.add(rpc, d);
        }
    }
    Ok(())
}

const CONTAINER_RPCS: [&str; 8] = [
    "RunPodSandbox (with container)",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox (with container)",
    "RemovePodSandbox (with container)",
    "Pod + container lifecycle",
];

/// A pod and container config as kubelet sends them by default (each
/// container its own PID namespace).
fn container_config(image_name: &str, pod: &cri::PodSandboxConfig) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        image: image(image_name),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "c/0.log".into(),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                // kubelet's procMount Default.
                masked_paths: vordr_spec::DEFAULT_MASKED_PATHS.map(String::from).to_vec(),
                readonly_paths: vordr_spec::DEFAULT_READONLY_PATHS
                    .map(String::from)
                    .to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        labels: pod.labels.clone(),
        ..Default::default()
    }
}

/// Runs a pod with one container; returns (pod id, container id, times).
async fn start_pod_with_container(
    c: &mut CriClient,
    image_name: &str,
    tag: &str,
    i: usize,
) -> Result<(String, String, Vec<Duration>)> {
    let mut pod = pod_config(tag, i);
    pod.log_directory = format!("/tmp/vordr-bench-logs/{tag}-{i}");
    let mut times = Vec::with_capacity(3);
    let pod_id = timed(
        &mut times,
        "RunPodSandbox",
        c.runtime.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        }),
    )
    .await?
    .pod_sandbox_id;
    let id = timed(
        &mut times,
        "CreateContainer",
        c.runtime.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(container_config(image_name, &pod)),
            sandbox_config: Some(pod),
        }),
    )
    .await?
    .container_id;
    timed(
        &mut times,
        "StartContainer",
        c.runtime.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        }),
    )
    .await?;
    Ok((pod_id, id, times))
}

/// Stops and removes a container and its pod; returns the four times.
async fn tear_down(c: &mut CriClient, pod_id: &str, id: &str) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(4);
    timed(
        &mut times,
        "StopContainer",
        c.runtime.stop_container(cri::StopContainerRequest {
            container_id: id.to_string(),
            timeout: 0,
        }),
    )
    .await?;
    timed(
        &mut times,
        "RemoveContainer",
        c.runtime.remove_container(cri::RemoveContainerRequest {
            container_id: id.to_string(),
        }),
    )
    .await?;
    stop_and_remove_pod(c, pod_id, &mut times).await?;
    Ok(times)
}

async fn container_lifecycle(
    c: &mut CriClient,
    image_name: &str,
    tag: &str,
    i: usize,
    s: Option<&mut Samples>,
) -> Result<()> {
    let whole = Instant::now();
    let (pod_id, id, mut times) = start_pod_with_container(c, image_name, tag, i).await?;
    times.extend(tear_down(c, &pod_id, &id).await?);
    times.push(whole.elapsed());
    if let Some(s) = s {
        for (rpc, d) in CONTAINER_RPCS.iter().zip(times) {
            s.add(rpc, d);
        }
    }
    Ok(())
}

/// Bytes the port-forward benchmark downloads.
const FORWARD_BYTES: usize = 64 << 20;

/// Exec round trips and port-forward downloads in one pod.
async fn streaming(c: &mut CriClient, img: &str, a: &BenchArgs, s: &mut Samples) -> Result<()> {
    use vordr_streaming::client;
    let tag = format!("s{}", std::process::id());
    let (pod_id, id, _) = start_pod_with_container(c, img, &tag, 0).await?;
    for websocket in [false, true] {
        let exec_row = if websocket {
            "Exec echo, WebSocket (round trip)"
        } else {
            "Exec echo, SPDY (round trip)"
        };
        for i in 0..a.warmup + a.iterations {
            let t = Instant::now();
            let url = c
                .runtime
                .exec(cri::ExecRequest {
                    container_id: id.clone(),
                    cmd: vec!["echo".into(), "hi".into()],
                    tty: false,
                    stdin: false,
                    stdout: true,
                    stderr: true,
                })
                .await
                .context("Exec")?
                .into_inner()
                .url;
            let v4 = ["v4.channel.k8s.io"];
            let out = if websocket {
                client::websocket::exec(&url, &v4, None).await?
            } else {
                client::spdy::exec(&url, &v4, None, true, true).await?
            };
            anyhow::ensure!(out.stdout == b"hi\n", "exec echo printed {:?}", out.stdout);
            if i >= a.warmup {
                s.add(exec_row, t.elapsed());
            }
        }
    }
    let serve = format!(
        "head -c {FORWARD_BYTES} /dev/zero > /tmp/pf.bin && busybox httpd -p 127.0.0.1:8099 -h /tmp"
    );
    c.runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sh".into(), "-c".into(), serve],
            timeout: 30,
        })
        .await
        .context("starting the web server")?;
    let get = b"GET /pf.bin HTTP/1.0\r\n\r\n";
    for websocket in [false, true] {
        let row = format!(
            "PortForward {} MiB download, {}",
            FORWARD_BYTES >> 20,
            if websocket { "WebSocket" } else { "SPDY" }
        );
        for i in 0..1 + a.iterations.min(5) {
            let url = c
                .runtime
                .port_forward(cri::PortForwardRequest {
                    pod_sandbox_id: pod_id.clone(),
                    port: vec![8099],
                })
                .await
                .context("PortForward")?
                .into_inner()
                .url;
            let t = Instant::now();
            let got = if websocket {
                client::websocket::port_forward(&url, &["v4.channel.k8s.io"], &[(8099, get)])
                    .await?
            } else {
                client::spdy::port_forward(&url, &[(8099, get)]).await?
            };
            let took = t.elapsed();
            anyhow::ensure!(
                got[0].data.len() > FORWARD_BYTES,
                "port-forward brought {} bytes: {}",
                got[0].data.len(),
                String::from_utf8_lossy(&got[0].error)
            );
            if i > 0 {
                s.add(&row, took);
            }
        }
    }
    tear_down(c, &pod_id, &id).await?;
    Ok(())
}

/// (RSS, PSS) in KiB of a process, from /proc.
fn rss_pss(pid: u32) -> Option<(u64, u64)> {
    let field = |text: &str, key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some((field(&status, "VmRSS:")?, field(&rollup, "Pss:")?))
}

/// The shims serving the daemon at `endpoint`: processes named
/// containerd-shim-* whose command line names the endpoint's socket.
fn shims_of(endpoint: &str) -> Vec<u32> {
    let socket = endpoint.trim_start_matches("unix://");
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    c.contains("containerd-shim") && c.contains(socket)
                })
                .unwrap_or(false)
        })
        .collect()
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// The `q` quantile (nearest rank) of `v`, in milliseconds.
pub fn quantile_ms(v: &[Duration], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s: Vec<Duration> = v.to_vec();
    s.sort();
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1].as_secs_f64() * 1000.0
}

fn image(name: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: name.to_string(),
        ..Default::default()
    })
}

async fn pull(c: &mut CriClient, name: &str) -> Result<String> {
    Ok(c.image
        .pull_image(cri::PullImageRequest {
            image: image(name),
            auth: None,
            sandbox_config: None,
        })
        .await
        .with_context(|| format!("PullImage {name}"))?
        .into_inner()
        .image_ref)
}

async fn remove(c: &mut CriClient, name: &str) -> Result<()> {
    c.image
        .remove_image(cri::RemoveImageRequest { image: image(name) })
        .await
        .with_context(|| format!("RemoveImage {name}"))?;
    Ok(())
}

async fn bench_one(endpoint: &str, a: &BenchArgs, daemon_pid: Option<u32>) -> Result<Samples> {
    let mut c = CriClient::connect(endpoint)
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    let mut s = Samples::default();
    let idle = daemon_pid.and_then(rss_pss).map(|m| m.0).unwrap_or(0);
    if !a.no_pods {
        let tag = format!(
            "{}-{}",
            std::process::id(),
            Instant::now().elapsed().subsec_nanos()
        );
        for i in 0..a.warmup {
            lifecycle(&mut c, &format!("w{tag}"), i, None)
                .await
                .with_context(|| format!("warm-up on {endpoint}"))?;
        }
        for i in 0..a.iterations {
            lifecycle(&mut c, &tag, i, Some(&mut s))
                .await
                .with_context(|| format!("iteration {i} on {endpoint}"))?;
        }
    }
    if let Some(img) = &a.container {
        pull(&mut c, img).await?;
        let tag = format!("c{}", std::process::id());
        for i in 0..a.warmup {
            container_lifecycle(&mut c, img, &format!("w{tag}"), i, None)
                .await
                .with_context(|| format!("container warm-up on {endpoint}"))?;
        }
        for i in 0..a.iterations {
            container_lifecycle(&mut c, img, &tag, i, Some(&mut s))
                .await
                .with_context(|| format!("container iteration {i} on {endpoint}"))?;
        }
        if a.hold > 0 {
            let mut held = Vec::new();
            for i in 0..a.hold {
                let (p, id, _) =
                    start_pod_with_container(&mut c, img, &format!("h{tag}"), i).await?;
                held.push((p, id));
            }
            // Let the daemon and the shims settle (shims trim when idle).
            tokio::time::sleep(Duration::from_secs(15)).await;
            let shims = shims_of(endpoint);
            let mem: Vec<(u64, u64)> = shims.iter().filter_map(|p| rss_pss(*p)).collect();
            s.memory = Some(Memory {
                daemon_idle: idle,
                daemon_holding: daemon_pid.and_then(rss_pss).map(|m| m.0).unwrap_or(0),
                shim_rss: median(mem.iter().map(|m| m.0).collect()),
                shim_pss: median(mem.iter().map(|m| m.1).collect()),
                shims: mem.len(),
            });
            for (p, id) in held {
                tear_down(&mut c, &p, &id).await?;
            }
        }
    }
    if let (true, Some(img)) = (a.streaming, &a.container) {
        streaming(&mut c, img, a, &mut s)
            .await
            .with_context(|| format!("streaming on {endpoint}"))?;
    }
    for name in &a.pull {
        // Start from nothing: a pull of an image already present is no pull.
        remove(&mut c, name).await?;
        for _ in 0..a.iterations {
            let t = Instant::now();
            pull(&mut c, name).await?;
            s.add(&format!("PullImage {name}"), t.elapsed());
            let t = Instant::now();
            remove(&mut c, name).await?;
            s.add(&format!("RemoveImage {name}"), t.elapsed());
        }
    }
    if let Some(prefix) = &a.list_prefix {
        let names: Vec<String> = (0..a.list_count).map(|i| format!("{prefix}{i}")).collect();
        for n in &names {
            pull(&mut c, n).await?;
        }
        let label_list = format!("ListImages ({} images)", a.list_count);
        let label_status = format!("ImageStatus ({} images)", a.list_count);
        for i in 0..a.iterations.max(1) * 3 {
            let t = Instant::now();
            let listed = c
                .image
                .list_images(cri::ListImagesRequest { filter: None })
                .await
                .context("ListImages")?
                .into_inner()
                .images;
            s.add(&label_list, t.elapsed());
            anyhow::ensure!(
                listed.len() >= a.list_count,
                "{endpoint} lists {} images",
                listed.len()
            );
            let t = Instant::now();
            c.image
                .image_status(cri::ImageStatusRequest {
                    image: image(&names[i % names.len()]),
                    verbose: false,
                })
                .await
                .context("ImageStatus")?;
            s.add(&label_status, t.elapsed());
        }
        for n in &names {
            remove(&mut c, n).await?;
        }
    }
    Ok(s)
}

pub async fn run(a: BenchArgs) -> Result<()> {
    let mine = bench_one(&a.endpoint, &a, a.daemon_pid).await?;
    let theirs = match &a.compare {
        Some(e) => Some(bench_one(e, &a, a.compare_daemon_pid).await?),
        None => None,
    };
    println!("{} iterations per row (milliseconds)", a.iterations);
    let w = mine.rows.iter().map(|r| r.len()).max().unwrap_or(3).max(3);
    match &theirs {
        None => println!(
            "{:<w$} {:>12} {:>10}",
            "RPC",
            format!("{} p50", a.name),
            "p90"
        ),
        Some(_) => println!(
            "{:<w$} {:>12} {:>10} {:>15} {:>10} {:>8}",
            "RPC",
            format!("{} p50", a.name),
            "p90",
            format!("{} p50", a.compare_name),
            "p90",
            "ratio"
        ),
    }
    let mut json = serde_json::Map::new();
    for rpc in &mine.rows {
        let m = &mine.times[rpc];
        let (m50, m90) = (quantile_ms(m, 0.5), quantile_ms(m, 0.9));
        let mut row = serde_json::json!({ a.name.clone(): { "p50_ms": m50, "p90_ms": m90 } });
        match theirs.as_ref().and_then(|t| t.times.get(rpc)) {
            None => println!("{rpc:<w$} {m50:>12.2} {m90:>10.2}"),
            Some(t) => {
                let (t50, t90) = (quantile_ms(t, 0.5), quantile_ms(t, 0.9));
                println!(
                    "{rpc:<w$} {m50:>12.2} {m90:>10.2} {t50:>15.2} {t90:>10.2} {:>7.2}x",
                    m50 / t50
                );
                row[a.compare_name.clone()] = serde_json::json!({ "p50_ms": t50, "p90_ms": t90 });
                row["ratio_p50"] = serde_json::json!(m50 / t50);
            }
        }
        json.insert(rpc.to_string(), row);
    }
    for (name, s) in [(&a.name, Some(&mine)), (&a.compare_name, theirs.as_ref())] {
        if let Some(m) = s.and_then(|s| s.memory) {
            println!(
                "memory {name}: daemon {:.1} MB idle, {:.1} MB with {} pods; per shim ({} shims) RSS {:.1} MB, PSS {:.1} MB",
                m.daemon_idle as f64 / 1024.0,
                m.daemon_holding as f64 / 1024.0,
                a.hold,
                m.shims,
                m.shim_rss as f64 / 1024.0,
                m.shim_pss as f64 / 1024.0,
            );
            json.insert(
                format!("memory {name}"),
                serde_json::json!({
                    "daemon_idle_kb": m.daemon_idle, "daemon_holding_kb": m.daemon_holding,
                    "pods": a.hold, "shims": m.shims,
                    "shim_rss_kb": m.shim_rss, "shim_pss_kb": m.shim_pss,
                }),
            );
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_nearest_rank() {
        let v: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&v, 0.5), 5.0);
        assert_eq!(quantile_ms(&v, 0.9), 9.0);
        assert_eq!(quantile_ms(&v[..1], 0.9), 1.0);
        assert!(quantile_ms(&[], 0.5).is_nan());
    }
}
