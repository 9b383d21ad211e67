//! A pod's network counters: `/proc/<pid>/net/dev` of a process in the
//! pod's network namespace, or of a thread that joined the pinned namespace
//! when no container runs.

use std::os::fd::AsFd;
use std::path::Path;

/// The counters of one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfaceSample {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Most interfaces kept per pod: a pod that made thousands costs no more.
const MAX_IFACES: usize = 64;

/// Parses `/proc/net/dev`, loopback left out (as cAdvisor).
pub fn parse_net_dev(text: &str) -> Vec<IfaceSample> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            if name == "lo" || v.len() < 16 {
                return None;
            }
            Some(IfaceSample {
                name: name.to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .take(MAX_IFACES)
        .collect()
}

/// The interfaces seen by process `pid`.
pub fn of_pid(pid: u32) -> Option<Vec<IfaceSample>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    Some(parse_net_dev(&text))
}

/// The interfaces of the namespaces pinned at `paths`, read from one
/// short-lived thread that joins each in turn (a thread that changed its
/// network namespace is never handed back to a pool). `None` for a
/// namespace that cannot be joined.
pub fn of_pinned(paths: Vec<String>) -> Vec<Option<Vec<IfaceSample>>> {
    let n = paths.len();
    std::thread::Builder::new()
        .name("vordr-netstats".into())
        .spawn(move || {
            paths
                .iter()
                .map(|p| {
                    let f = std::fs::File::open(Path::new(p)).ok()?;
                    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
                    let text = std::fs::read_to_string("/proc/thread-self/net/dev").ok()?;
                    Some(parse_net_dev(&text))
                })
                .collect()
        })
        .ok()
        .and_then(|t| t.join().ok())
        .unwrap_or_else(|| vec![None; n])
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 123456     100    1    2    0     0          0         0    65432      50    3    4    0     0       0          0
";

    #[test]
    fn net_dev_is_parsed_without_loopback() {
        assert_eq!(
            parse_net_dev(NET_DEV),
            vec![IfaceSample {
                name: "eth0".into(),
                rx_bytes: 123_456,
                rx_packets: 100,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 65_432,
                tx_packets: 50,
                tx_errors: 3,
                tx_dropped: 4,
            }]
        );
        // Truncated or foreign lines are skipped.
        assert!(parse_net_dev("a\nb\n  eth0: 1 2 3\nnonsense\n").is_empty());
    }

    #[test]
    fn own_process_and_a_bad_pinned_path() {
        assert!(of_pid(std::process::id()).is_some());
        assert_eq!(of_pinned(vec!["/nonexistent/ns".into()]), vec![None]);
    }
}
