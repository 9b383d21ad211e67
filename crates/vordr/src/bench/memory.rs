//! Memory of the daemon and its shims, read from /proc.

/// Memory in KiB: daemon idle and with `hold` pods, per-shim RSS and PSS (medians).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Memory {
    pub(super) daemon_idle: u64,
    pub(super) daemon_holding: u64,
    pub(super) shim_rss: u64,
    pub(super) shim_pss: u64,
    pub(super) shims: usize,
}

/// (RSS, PSS) in KiB of a process, from /proc.
pub(super) fn rss_pss(pid: u32) -> Option<(u64, u64)> {
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
pub(super) fn shims_of(endpoint: &str) -> Vec<u32> {
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

pub(super) fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}
