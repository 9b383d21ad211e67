//! What a benchmark measured: timings per row, quantiles, and the comparing table and JSON.

use std::collections::HashMap;
use std::time::Duration;

use super::args::BenchArgs;
use super::memory::Memory;

/// Timings per row label, and the labels in the order first seen.
#[derive(Default)]
pub(super) struct Samples {
    pub(super) rows: Vec<String>,
    pub(super) times: HashMap<String, Vec<Duration>>,
    pub(super) memory: Option<Memory>,
}

impl Samples {
    pub(super) fn add(&mut self, row: &str, d: Duration) {
        if !self.times.contains_key(row) {
            self.rows.push(row.to_string());
        }
        self.times.entry(row.to_string()).or_default().push(d);
    }
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

/// Prints the table of `mine` (and `theirs`, with the ratio) and the
/// memory report, and the JSON with `--json`.
pub(super) fn print(a: &BenchArgs, mine: &Samples, theirs: Option<&Samples>) -> anyhow::Result<()> {
    println!("{} iterations per row (milliseconds)", a.iterations);
    let w = mine.rows.iter().map(|r| r.len()).max().unwrap_or(3).max(3);
    match theirs {
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
        match theirs.and_then(|t| t.times.get(rpc)) {
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
    for (name, s) in [(&a.name, Some(mine)), (&a.compare_name, theirs)] {
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
