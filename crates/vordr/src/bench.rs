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

async fn lifecycle(c: &mut CriClient, tag: &str, i: usize, s: Option<&mut Samples>) -> Result<()> {
    let mut times = Vec::with_capacity(5);
    let t = Instant::now();
    let id = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config(tag, i)),
            runtime_handler: String::new(),
        })
        .await
        .context("RunPodSandbox")?
        .into_inner()
        .pod_sandbox_id;
    times.push(t.elapsed());
    let t = Instant::now();
    c.runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .context("PodSandboxStatus")?;
    times.push(t.elapsed());
    let t = Instant::now();
    c.runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .context("ListPodSandbox")?;
    times.push(t.elapsed());
    let t = Instant::now();
    c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .context("StopPodSandbox")?;
    times.push(t.elapsed());
    let t = Instant::now();
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .context("RemovePodSandbox")?;
    times.push(t.elapsed());
    if let Some(s) = s {
        for (rpc, d) in RPCS.iter().zip(times) {
            s.add(rpc, d);
        }
    }
    Ok(())
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

async fn bench_one(endpoint: &str, a: &BenchArgs) -> Result<Samples> {
    let mut c = CriClient::connect(endpoint)
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    let mut s = Samples::default();
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
    let mine = bench_one(&a.endpoint, &a).await?;
    let theirs = match &a.compare {
        Some(e) => Some(bench_one(e, &a).await?),
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
