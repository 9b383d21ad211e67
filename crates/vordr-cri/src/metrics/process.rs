//! The daemon's own process metrics, read from `/proc/self` at each scrape
//! as Prometheus' client libraries name them: `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`,
//! `process_start_time_seconds`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// What `/proc/self/stat` says, in units of seconds and bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcStat {
    /// User and system CPU time.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    /// Since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Parses `/proc/<pid>/stat` given the clock tick rate, the page size and
/// the boot time (`btime` of `/proc/stat`). The command name may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub(crate) fn parse_stat(
    stat: &str,
    ticks_per_second: u64,
    page_size: u64,
    btime: u64,
) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name: field N is at N - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let ticks = ticks_per_second.max(1) as f64;
    let (utime, stime, start, rss) = (field(14)?, field(15)?, field(22)?, field(24)?);
    Some(ProcStat {
        cpu_seconds: (utime + stime) as f64 / ticks,
        resident_bytes: rss * page_size,
        start_time_seconds: btime as f64 + start as f64 / ticks,
    })
}

/// The boot time, seconds since the epoch, from `/proc/stat`.
pub(crate) fn parse_btime(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn read_self() -> Option<ProcStat> {
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let btime = parse_btime(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(
        &stat,
        u64::try_from(ticks).ok()?,
        u64::try_from(page).ok()?,
        btime,
    )
}

fn open_fds() -> Option<i64> {
    // The directory's own descriptor, open while it is read, is counted
    // out.
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(n.saturating_sub(1) as i64)
}

/// Encodes the process metrics at each scrape; a figure `/proc` does not
/// give is left out.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

/// Encodes one metric without labels under `name`.
fn put(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        if let Some(s) = read_self() {
            let (cpu, start) = (s.cpu_seconds, s.start_time_seconds);
            let cpu_help = "Total user and system CPU time spent in seconds";
            put(e, "process_cpu_seconds", cpu_help, ConstCounter::new(cpu))?;
            let rss = ConstGauge::new(s.resident_bytes as i64);
            put(
                e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                rss,
            )?;
            let start_help = "Start time of the process since unix epoch in seconds";
            put(
                e,
                "process_start_time_seconds",
                start_help,
                ConstGauge::new(start),
            )?;
        }
        if let Some(n) = open_fds() {
            let help = "Number of open file descriptors";
            put(e, "process_open_fds", help, ConstGauge::new(n))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        // A name with spaces and a ")" in it, as a process may call itself.
        let stat = "4242 (vordr (x) y) S 1 4242 4242 0 -1 4194560 9000 0 12 0 \
                    250 50 0 0 20 0 12 0 123456 987654321 2048 18446744073709551615 \
                    1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(stat, 100, 4096, 1_700_000_000).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.resident_bytes, 2048 * 4096);
        assert_eq!(s.start_time_seconds, 1_700_000_000.0 + 1234.56);
        assert_eq!(parse_stat("4242 (short) S 1 2", 100, 4096, 0), None);
        assert_eq!(parse_stat("no name here", 100, 4096, 0), None);
    }

    #[test]
    fn btime_from_proc_stat() {
        let text = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1764600000\nprocesses 7\n";
        assert_eq!(parse_btime(text), Some(1_764_600_000));
        assert_eq!(parse_btime("cpu 1 2\n"), None);
    }

    #[test]
    fn this_process_reads_plausibly() {
        let s = read_self().expect("/proc/self/stat");
        assert!(s.resident_bytes > 1 << 20, "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started in the last day, not in the future (clock ticks round).
        assert!(
            s.start_time_seconds <= now + 1.0 && s.start_time_seconds > now - 86_400.0,
            "{s:?}"
        );
        // stdin, stdout, stderr at least (other tests open and close more).
        assert!(open_fds().unwrap() >= 3);
    }
}
