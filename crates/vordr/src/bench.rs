//! `vordr bench`: drives any CRI endpoint through the pod sandbox lifecycle
//! and prints median and p90 per RPC; with `--compare`, a second endpoint
//! (containerd, say) in the same run, and the ratio between them.

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
}

const RPCS: [&str; 5] = [
    "RunPodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
];

type Samples = HashMap<&'static str, Vec<Duration>>;

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
            s.entry(rpc).or_default().push(d);
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

async fn bench_one(endpoint: &str, a: &BenchArgs) -> Result<Samples> {
    let mut c = CriClient::connect(endpoint)
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
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
    let mut s = Samples::new();
    for i in 0..a.iterations {
        lifecycle(&mut c, &tag, i, Some(&mut s))
            .await
            .with_context(|| format!("iteration {i} on {endpoint}"))?;
    }
    Ok(s)
}

pub async fn run(a: BenchArgs) -> Result<()> {
    let mine = bench_one(&a.endpoint, &a).await?;
    let theirs = match &a.compare {
        Some(e) => Some(bench_one(e, &a).await?),
        None => None,
    };
    println!(
        "pod sandbox lifecycle, {} iterations (milliseconds)",
        a.iterations
    );
    match &theirs {
        None => println!(
            "{:<18} {:>10} {:>10}",
            "RPC",
            format!("{} p50", a.name),
            "p90"
        ),
        Some(_) => println!(
            "{:<18} {:>10} {:>10} {:>15} {:>10} {:>8}",
            "RPC",
            format!("{} p50", a.name),
            "p90",
            format!("{} p50", a.compare_name),
            "p90",
            "ratio"
        ),
    }
    let mut json = serde_json::Map::new();
    for rpc in RPCS {
        let m = &mine[rpc];
        let (m50, m90) = (quantile_ms(m, 0.5), quantile_ms(m, 0.9));
        let mut row = serde_json::json!({ a.name.clone(): { "p50_ms": m50, "p90_ms": m90 } });
        match &theirs {
            None => println!("{rpc:<18} {m50:>10.2} {m90:>10.2}"),
            Some(t) => {
                let t = &t[rpc];
                let (t50, t90) = (quantile_ms(t, 0.5), quantile_ms(t, 0.9));
                println!(
                    "{rpc:<18} {m50:>10.2} {m90:>10.2} {t50:>15.2} {t90:>10.2} {:>7.2}x",
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
