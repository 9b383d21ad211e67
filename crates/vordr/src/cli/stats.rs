//! `vordr stats`: CPU, memory and writable-layer use of running
//! containers (one, a pod's, or all), refreshed every two seconds until
//! interrupted, or printed once with `--no-stream`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use vordr_client::{cri, CriClient};

use super::common::{self, short, Common, Rpc, Target};

#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Print once and exit.
    #[arg(long)]
    pub no_stream: bool,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 2)]
    pub interval: u64,
    /// A container or a pod (id, id prefix or name) [default: every running container]
    pub id: Option<String>,
}

/// One container's use.
#[derive(Debug, Clone, Serialize)]
pub struct StatsRow {
    pub id: String,
    pub name: String,
    pub pod_id: String,
    /// CPU time so far, in nanoseconds.
    pub cpu_ns: Option<u64>,
    /// CPU use between the two samples, in percent of one core.
    pub cpu_percent: Option<f64>,
    pub memory_working_set_bytes: Option<u64>,
    pub memory_usage_bytes: Option<u64>,
    pub writable_layer_bytes: Option<u64>,
    pub writable_layer_inodes: Option<u64>,
    #[serde(skip)]
    timestamp: i64,
}

/// The containers [`stats`] looks at.
#[derive(Debug, Clone, Default)]
pub struct StatsFilter {
    pub container_id: String,
    pub pod_id: String,
}

/// Resolves `query` (a container or a pod) to a filter.
pub async fn filter(c: &mut CriClient, query: Option<&str>) -> Result<StatsFilter> {
    Ok(match query {
        None => StatsFilter::default(),
        Some(q) => match common::resolve(c, q).await? {
            Target::Container(k) => StatsFilter {
                container_id: k.id,
                ..Default::default()
            },
            Target::Pod(p) => StatsFilter {
                pod_id: p.id,
                ..Default::default()
            },
        },
    })
}

/// One sample of every container `f` selects.
pub async fn sample(c: &mut CriClient, f: &StatsFilter) -> Result<Vec<StatsRow>> {
    let stats = c
        .runtime
        .list_container_stats(cri::ListContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                id: f.container_id.clone(),
                pod_sandbox_id: f.pod_id.clone(),
                label_selector: Default::default(),
            }),
        })
        .await
        .rpc("reading container stats")?
        .stats;
    let pods: HashMap<String, String> = c
        .runtime
        .list_containers(cri::ListContainersRequest::default())
        .await
        .rpc("listing containers")?
        .containers
        .into_iter()
        .map(|k| (k.id, k.pod_sandbox_id))
        .collect();
    let mut rows: Vec<StatsRow> = stats
        .into_iter()
        .map(|s| {
            let attrs = s.attributes.unwrap_or_default();
            let v = |x: Option<cri::UInt64Value>| x.map(|x| x.value);
            // The runtime's own rate (over its last two samples) stands
            // until two of ours, further apart in time, give one.
            let (cpu_ns, ts, runtime_rate) = match s.cpu {
                Some(cpu) => (
                    v(cpu.usage_core_nano_seconds),
                    cpu.timestamp,
                    v(cpu.usage_nano_cores).map(|n| n as f64 / 1e7),
                ),
                None => (None, 0, None),
            };
            let (ws, usage) = match s.memory {
                Some(m) => (v(m.working_set_bytes), v(m.usage_bytes)),
                None => (None, None),
            };
            let (disk, inodes) = match s.writable_layer {
                Some(w) => (v(w.used_bytes), v(w.inodes_used)),
                None => (None, None),
            };
            StatsRow {
                pod_id: pods.get(&attrs.id).cloned().unwrap_or_default(),
                id: attrs.id,
                name: attrs.metadata.map(|m| m.name).unwrap_or_default(),
                cpu_ns,
                cpu_percent: runtime_rate,
                memory_working_set_bytes: ws,
                memory_usage_bytes: usage,
                writable_layer_bytes: disk,
                writable_layer_inodes: inodes,
                timestamp: ts,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(rows)
}

/// Fills in each row's CPU percentage from an earlier sample, where the
/// two are different samples (the runtime answers from a cache that
/// refreshes about once a second; the same sample twice keeps its rate).
pub fn rates(earlier: &[StatsRow], now: &mut [StatsRow]) {
    for r in now {
        let Some(e) = earlier.iter().find(|e| e.id == r.id) else {
            continue;
        };
        if let (Some(a), Some(b)) = (e.cpu_ns, r.cpu_ns) {
            let dt = r.timestamp - e.timestamp;
            if dt > 0 && b >= a {
                r.cpu_percent = Some((b - a) as f64 * 100.0 / dt as f64);
            }
        }
    }
}

/// Two samples `gap` apart, the second with CPU percentages.
pub async fn stats(c: &mut CriClient, f: &StatsFilter, gap: Duration) -> Result<Vec<StatsRow>> {
    let first = sample(c, f).await?;
    tokio::time::sleep(gap).await;
    let mut now = sample(c, f).await?;
    rates(&first, &mut now);
    Ok(now)
}

fn render(rows: &[StatsRow]) -> String {
    let opt = |v: Option<u64>, f: fn(u64) -> String| v.map(f).unwrap_or_else(|| "-".into());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                short(&r.id).to_string(),
                r.name.clone(),
                r.cpu_percent
                    .map(|p| format!("{p:.2}"))
                    .unwrap_or_else(|| "-".into()),
                opt(r.memory_working_set_bytes, common::bytes),
                opt(r.writable_layer_bytes, common::bytes),
                opt(r.writable_layer_inodes, |n| n.to_string()),
                short(&r.pod_id).to_string(),
            ]
        })
        .collect();
    common::table(
        &[
            "CONTAINER",
            "NAME",
            "CPU %",
            "MEM",
            "DISK",
            "INODES",
            "POD ID",
        ],
        &cells,
    )
}

pub async fn cmd(a: StatsArgs) -> Result<i32> {
    let mut c = a.common.connect().await?;
    let f = filter(&mut c, a.id.as_deref()).await?;
    if a.no_stream {
        // Longer than the runtime's default stats interval (1 s), so the
        // two samples differ.
        let rows = stats(&mut c, &f, Duration::from_millis(1500)).await?;
        if a.common.json {
            common::print_json(&rows)?;
        } else {
            print!("{}", render(&rows));
        }
        return Ok(0);
    }
    let interval = Duration::from_secs(a.interval.max(1));
    // One listener for the whole run: an interrupt while sampling counts.
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut earlier = sample(&mut c, &f).await?;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = interrupt.recv() => return Ok(0),
        }
        let mut now = sample(&mut c, &f).await?;
        rates(&earlier, &mut now);
        if a.common.json {
            // One document per refresh.
            println!("{}", serde_json::to_string(&now)?);
        } else {
            // Clear the screen, then the table.
            print!("\x1b[2J\x1b[H{}", render(&now));
            use std::io::Write;
            std::io::stdout().flush()?;
        }
        earlier = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, cpu: Option<u64>, ts: i64) -> StatsRow {
        StatsRow {
            id: id.into(),
            name: id.into(),
            pod_id: "p".into(),
            cpu_ns: cpu,
            cpu_percent: None,
            memory_working_set_bytes: Some(3 << 20),
            memory_usage_bytes: None,
            writable_layer_bytes: None,
            writable_layer_inodes: Some(7),
            timestamp: ts,
        }
    }

    #[test]
    fn cpu_percent_between_samples() {
        let earlier = [row("a", Some(1_000), 0), row("b", Some(5), 0)];
        let mut now = [
            row("a", Some(501_000), 1_000_000),
            row("b", None, 1_000_000),
            row("c", Some(9), 1_000_000),
        ];
        rates(&earlier, &mut now);
        assert_eq!(now[0].cpu_percent, Some(50.0));
        assert_eq!(now[1].cpu_percent, None);
        assert_eq!(now[2].cpu_percent, None);
        // The same cached sample twice: the runtime's rate stays.
        let mut again = [row("a", Some(501_000), 1_000_000)];
        again[0].cpu_percent = Some(12.5);
        rates(&now[..1], &mut again);
        assert_eq!(again[0].cpu_percent, Some(12.5));
        let t = render(&now);
        assert!(t.starts_with("CONTAINER"), "{t}");
        assert!(t.contains("50.00") && t.contains("3.0MiB"), "{t}");
    }
}
