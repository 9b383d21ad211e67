//! Running the benchmark against each endpoint, one part after the other.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use vordr_client::{cri, CriClient};

use super::args::BenchArgs;
use super::lifecycle::{
    container_lifecycle, image, lifecycle, pull, remove, start_pod_with_container, tear_down,
};
use super::memory::{median, rss_pss, shims_of, Memory};
use super::report::{self, Samples};
use super::streaming::streaming;

pub async fn run(a: BenchArgs) -> Result<()> {
    let mine = bench_one(&a.endpoint, &a, a.daemon_pid).await?;
    let theirs = match &a.compare {
        Some(e) => Some(bench_one(e, &a, a.compare_daemon_pid).await?),
        None => None,
    };
    report::print(&a, &mine, theirs.as_ref())
}

async fn bench_one(endpoint: &str, a: &BenchArgs, daemon_pid: Option<u32>) -> Result<Samples> {
    let mut c = CriClient::connect(endpoint)
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    let mut s = Samples::default();
    let idle = daemon_pid.and_then(rss_pss).map(|m| m.0).unwrap_or(0);
    if !a.no_pods {
        pods(&mut c, endpoint, a, &mut s).await?;
    }
    if let Some(img) = &a.container {
        containers(&mut c, endpoint, img, a, &mut s).await?;
        if a.hold > 0 {
            s.memory = Some(hold(&mut c, endpoint, img, a, (idle, daemon_pid), &mut s).await?);
        }
    }
    if let (true, Some(img)) = (a.streaming, &a.container) {
        streaming(&mut c, img, a, &mut s)
            .await
            .with_context(|| format!("streaming on {endpoint}"))?;
    }
    for name in &a.pull {
        pulls(&mut c, name, a, &mut s).await?;
    }
    if let Some(prefix) = &a.list_prefix {
        queries(&mut c, endpoint, prefix, a, &mut s).await?;
    }
    Ok(s)
}

/// Pod sandbox lifecycles: the warm-up, then the timed ones.
async fn pods(c: &mut CriClient, endpoint: &str, a: &BenchArgs, s: &mut Samples) -> Result<()> {
    let tag = format!(
        "{}-{}",
        std::process::id(),
        Instant::now().elapsed().subsec_nanos()
    );
    for i in 0..a.warmup {
        lifecycle(c, &format!("w{tag}"), i, None)
            .await
            .with_context(|| format!("warm-up on {endpoint}"))?;
    }
    for i in 0..a.iterations {
        lifecycle(c, &tag, i, Some(s))
            .await
            .with_context(|| format!("iteration {i} on {endpoint}"))?;
    }
    Ok(())
}

/// Pod-plus-container lifecycles of `img`: the warm-up, then the timed ones.
async fn containers(
    c: &mut CriClient,
    endpoint: &str,
    img: &str,
    a: &BenchArgs,
    s: &mut Samples,
) -> Result<()> {
    pull(c, img).await?;
    let tag = format!("c{}", std::process::id());
    for i in 0..a.warmup {
        container_lifecycle(c, img, &format!("w{tag}"), i, None)
            .await
            .with_context(|| format!("container warm-up on {endpoint}"))?;
    }
    for i in 0..a.iterations {
        container_lifecycle(c, img, &tag, i, Some(s))
            .await
            .with_context(|| format!("container iteration {i} on {endpoint}"))?;
    }
    Ok(())
}

/// Keeps `a.hold` pods with a container of `img` running and measures the
/// daemon (idle at `idle` KiB) and its shims, and with `a.stats` the stats
/// calls, then removes them.
async fn hold(
    c: &mut CriClient,
    endpoint: &str,
    img: &str,
    a: &BenchArgs,
    (idle, daemon_pid): (u64, Option<u32>),
    s: &mut Samples,
) -> Result<Memory> {
    let tag = format!("c{}", std::process::id());
    // A cgroup parent, as kubelet always sends (containerd's pod stats
    // need one); the bench script removes it.
    let parent = format!("/vordr-bench-{}", std::process::id());
    let mut held = Vec::new();
    for i in 0..a.hold {
        let (p, id, _) = start_pod_with_container(c, img, &format!("h{tag}"), i, &parent).await?;
        held.push((p, id));
    }
    // Let the daemon and the shims settle (shims trim when idle).
    tokio::time::sleep(Duration::from_secs(15)).await;
    let shims = shims_of(endpoint);
    let mem: Vec<(u64, u64)> = shims.iter().filter_map(|p| rss_pss(*p)).collect();
    let memory = Memory {
        daemon_idle: idle,
        daemon_holding: daemon_pid.and_then(rss_pss).map(|m| m.0).unwrap_or(0),
        shim_rss: median(mem.iter().map(|m| m.0).collect()),
        shim_pss: median(mem.iter().map(|m| m.1).collect()),
        shims: mem.len(),
    };
    if a.stats {
        stats_queries(c, endpoint, a, s).await?;
    }
    for (p, id) in held {
        tear_down(c, &p, &id).await?;
    }
    Ok(memory)
}

/// ListContainerStats and ListPodSandboxStats, unfiltered, with `a.hold`
/// pods of one running container each: what kubelet polls.
async fn stats_queries(
    c: &mut CriClient,
    endpoint: &str,
    a: &BenchArgs,
    s: &mut Samples,
) -> Result<()> {
    let containers = format!("ListContainerStats ({} containers)", a.hold);
    let pods = format!("ListPodSandboxStats ({} pods)", a.hold);
    for _ in 0..a.iterations.max(1) * 3 {
        let t = Instant::now();
        let listed = c
            .runtime
            .list_container_stats(cri::ListContainerStatsRequest { filter: None })
            .await
            .context("ListContainerStats")?
            .into_inner()
            .stats;
        s.add(&containers, t.elapsed());
        anyhow::ensure!(
            listed.len() >= a.hold,
            "{endpoint} lists stats of {} containers",
            listed.len()
        );
        let t = Instant::now();
        let listed = c
            .runtime
            .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest { filter: None })
            .await
            .context("ListPodSandboxStats")?
            .into_inner()
            .stats;
        s.add(&pods, t.elapsed());
        anyhow::ensure!(
            listed.len() >= a.hold,
            "{endpoint} lists stats of {} pods",
            listed.len()
        );
    }
    Ok(())
}

/// PullImage then RemoveImage of `name`, timed, starting from nothing.
async fn pulls(c: &mut CriClient, name: &str, a: &BenchArgs, s: &mut Samples) -> Result<()> {
    // Start from nothing: a pull of an image already present is no pull.
    remove(c, name).await?;
    for _ in 0..a.iterations {
        let t = Instant::now();
        pull(c, name).await?;
        s.add(&format!("PullImage {name}"), t.elapsed());
        let t = Instant::now();
        remove(c, name).await?;
        s.add(&format!("RemoveImage {name}"), t.elapsed());
    }
    Ok(())
}

/// ListImages and ImageStatus with `a.list_count` images `<prefix>N`
/// present, pulled first and removed after.
async fn queries(
    c: &mut CriClient,
    endpoint: &str,
    prefix: &str,
    a: &BenchArgs,
    s: &mut Samples,
) -> Result<()> {
    let names: Vec<String> = (0..a.list_count).map(|i| format!("{prefix}{i}")).collect();
    for n in &names {
        pull(c, n).await?;
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
        remove(c, n).await?;
    }
    Ok(())
}
