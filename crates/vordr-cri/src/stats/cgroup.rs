//! A container's counters from its cgroup, v1 (cpuacct, memory, pids
//! controllers) or v2 (the unified tree), under a given cgroupfs root so a
//! fake tree can stand in for /sys/fs/cgroup in tests.

use std::path::Path;

/// Nanoseconds per USER_HZ tick of `cpuacct.stat` (USER_HZ is 100 on Linux).
const NS_PER_TICK: u64 = 10_000_000;
/// v1 writes an unlimited memory limit as the largest page-aligned i64.
const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_F000;

/// One line of a `*.pressure` file.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PsiLine {
    /// Total stall time, nanoseconds (the file counts microseconds).
    pub total_ns: u64,
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
}

/// A `*.pressure` file: `some` (at least one task stalled) and `full`
/// (all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub some: PsiLine,
    pub full: Option<PsiLine>,
}

/// Pressure stall information of a cgroup, where the kernel keeps it (a
/// cgroup v2 directory: the unified tree, or the v2 hierarchy beside the v1
/// controllers on a hybrid host).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Psi {
    pub cpu: Option<Pressure>,
    pub memory: Option<Pressure>,
    pub io: Option<Pressure>,
}

/// What one read of a cgroup gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupSample {
    /// CPU time in all modes, nanoseconds.
    pub cpu_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    /// Memory charged to the cgroup, page cache included.
    pub memory_usage: u64,
    /// `memory_usage` less inactive file pages, as cAdvisor and containerd.
    pub working_set: u64,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub rss: u64,
    /// Page cache (v1 `total_cache`, v2 `file`).
    pub cache: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// The memory limit, `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// Swap in use, `None` where the kernel does not account it.
    pub swap: Option<u64>,
    /// Tasks in the cgroup (`pids.current`).
    pub pids: Option<u64>,
    /// Times the cgroup hit its memory limit (v1 `failcnt`, v2 `max` events).
    pub memory_failcnt: u64,
    pub psi: Psi,
}

impl CgroupSample {
    /// Memory left before the limit, as containerd and cAdvisor report it.
    pub fn available(&self) -> Option<u64> {
        self.memory_limit
            .map(|limit| limit.saturating_sub(self.working_set))
    }
}

/// Reads a whole small file, `None` if it cannot be read.
fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn read_u64(p: &Path) -> Option<u64> {
    read(p)?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`memory.stat`, `cpu.stat`).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Parses a `*.pressure` file: `None` unless it has a valid `some` line.
fn pressure(text: &str) -> Option<Pressure> {
    let line = |kind: &str| -> Option<PsiLine> {
        let rest = text
            .lines()
            .find_map(|l| l.strip_prefix(kind)?.strip_prefix(' '))?;
        let mut out = PsiLine::default();
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            match k {
                "avg10" => out.avg10 = v.parse().ok()?,
                "avg60" => out.avg60 = v.parse().ok()?,
                "avg300" => out.avg300 = v.parse().ok()?,
                "total" => out.total_ns = v.parse::<u64>().ok()?.saturating_mul(1000),
                _ => {}
            }
        }
        Some(out)
    };
    Some(Pressure {
        some: line("some")?,
        full: line("full"),
    })
}

/// The pressure files of the cgroup v2 directory `dir`.
fn read_psi(dir: &Path) -> Psi {
    let p = |name: &str| read(&dir.join(name)).as_deref().and_then(pressure);
    Psi {
        cpu: p("cpu.pressure"),
        memory: p("memory.pressure"),
        io: p("io.pressure"),
    }
}

/// Reads the cgroup at `rel` (absolute inside the hierarchy, as
/// `cgroupsPath`) under the cgroupfs mounted at `root`: v1 when the cpuacct
/// controller has it, else v2. `None` when neither does (the cgroup is gone).
pub fn read_cgroup(root: &Path, rel: &Path) -> Option<CgroupSample> {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    let cpuacct = root.join("cpuacct").join(rel);
    if cpuacct.join("cpuacct.usage").exists() {
        return read_v1(root, rel);
    }
    read_v2(&root.join(rel))
}

fn read_v1(root: &Path, rel: &Path) -> Option<CgroupSample> {
    let cpuacct = root.join("cpuacct").join(rel);
    let mem = root.join("memory").join(rel);
    let cpu_ns = read_u64(&cpuacct.join("cpuacct.usage"))?;
    let cpu_stat = read(&cpuacct.join("cpuacct.stat")).unwrap_or_default();
    let stat = read(&mem.join("memory.stat")).unwrap_or_default();
    let usage = read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0);
    let inactive = field(&stat, "total_inactive_file").unwrap_or(0);
    let limit = read_u64(&mem.join("memory.limit_in_bytes")).filter(|&l| l < V1_UNLIMITED);
    // memsw counts memory plus swap; present only with swap accounting.
    let swap = read_u64(&mem.join("memory.memsw.usage_in_bytes")).map(|m| m.saturating_sub(usage));
    Some(CgroupSample {
        cpu_ns,
        cpu_user_ns: field(&cpu_stat, "user").unwrap_or(0) * NS_PER_TICK,
        cpu_system_ns: field(&cpu_stat, "system").unwrap_or(0) * NS_PER_TICK,
        memory_usage: usage,
        working_set: usage.saturating_sub(inactive),
        rss: field(&stat, "total_rss").unwrap_or(0),
        cache: field(&stat, "total_cache").unwrap_or(0),
        page_faults: field(&stat, "total_pgfault").unwrap_or(0),
        major_page_faults: field(&stat, "total_pgmajfault").unwrap_or(0),
        memory_limit: limit,
        swap,
        pids: read_u64(&root.join("pids").join(rel).join("pids.current")),
        memory_failcnt: read_u64(&mem.join("memory.failcnt")).unwrap_or(0),
        // A hybrid host's v2 hierarchy holds the same cgroup, with PSI.
        psi: read_psi(&root.join("unified").join(rel)),
    })
}

fn read_v2(dir: &Path) -> Option<CgroupSample> {
    let cpu = read(&dir.join("cpu.stat"))?;
    let usec = |k| field(&cpu, k).map(|v| v.saturating_mul(1000));
    let stat = read(&dir.join("memory.stat")).unwrap_or_default();
    let usage = read_u64(&dir.join("memory.current")).unwrap_or(0);
    let inactive = field(&stat, "inactive_file").unwrap_or(0);
    // "max" when unlimited.
    let limit = read_u64(&dir.join("memory.max"));
    let events = read(&dir.join("memory.events")).unwrap_or_default();
    Some(CgroupSample {
        cpu_ns: usec("usage_usec")?,
        cpu_user_ns: usec("user_usec").unwrap_or(0),
        cpu_system_ns: usec("system_usec").unwrap_or(0),
        memory_usage: usage,
        working_set: usage.saturating_sub(inactive),
        rss: field(&stat, "anon").unwrap_or(0),
        cache: field(&stat, "file").unwrap_or(0),
        page_faults: field(&stat, "pgfault").unwrap_or(0),
        major_page_faults: field(&stat, "pgmajfault").unwrap_or(0),
        memory_limit: limit,
        swap: read_u64(&dir.join("memory.swap.current")),
        pids: read_u64(&dir.join("pids.current")),
        memory_failcnt: field(&events, "max").unwrap_or(0),
        psi: read_psi(dir),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn v2_files_are_read() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("kubepods/pod1/vordr-c1");
        write(
            &dir,
            &[
                (
                    "cpu.stat",
                    "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 0\n",
                ),
                ("memory.current", "10485760\n"),
                ("memory.max", "max\n"),
                (
                    "memory.stat",
                    "anon 4096000\nfile 6000000\ninactive_file 1048576\nactive_file 10\n\
                     pgfault 120\npgmajfault 3\n",
                ),
                ("memory.swap.current", "8192\n"),
                ("memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"),
                ("pids.current", "7\n"),
                (
                    "cpu.pressure",
                    "some avg10=1.50 avg60=0.25 avg300=0.05 total=1234\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=56\n",
                ),
                (
                    "memory.pressure",
                    "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
                ),
                ("io.pressure", "garbage\n"),
            ],
        );
        let s = read_cgroup(root.path(), Path::new("/kubepods/pod1/vordr-c1")).unwrap();
        assert_eq!(
            s,
            CgroupSample {
                cpu_ns: 2_500_000,
                cpu_user_ns: 2_000_000,
                cpu_system_ns: 500_000,
                memory_usage: 10_485_760,
                working_set: 10_485_760 - 1_048_576,
                rss: 4_096_000,
                cache: 6_000_000,
                page_faults: 120,
                major_page_faults: 3,
                memory_limit: None,
                swap: Some(8192),
                pids: Some(7),
                memory_failcnt: 4,
                psi: Psi {
                    cpu: Some(Pressure {
                        some: PsiLine {
                            total_ns: 1_234_000,
                            avg10: 1.5,
                            avg60: 0.25,
                            avg300: 0.05,
                        },
                        full: Some(PsiLine {
                            total_ns: 56_000,
                            ..Default::default()
                        }),
                    }),
                    memory: Some(Pressure::default()),
                    io: None,
                },
            }
        );
        assert_eq!(s.available(), None);
        std::fs::write(dir.join("memory.max"), "20971520\n").unwrap();
        let s = read_cgroup(root.path(), Path::new("/kubepods/pod1/vordr-c1")).unwrap();
        assert_eq!(s.memory_limit, Some(20_971_520));
        assert_eq!(s.available(), Some(20_971_520 - 9_437_184));
    }

    #[test]
    fn v1_files_are_read() {
        let root = tempfile::tempdir().unwrap();
        let rel = "vordr/vordr-c2";
        write(
            &root.path().join("cpuacct").join(rel),
            &[
                ("cpuacct.usage", "123456789\n"),
                ("cpuacct.stat", "user 7\nsystem 3\n"),
            ],
        );
        write(
            &root.path().join("memory").join(rel),
            &[
                ("memory.usage_in_bytes", "5000000\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.failcnt", "2\n"),
                (
                    "memory.stat",
                    "cache 1\nrss 2\ninactive_file 3\ntotal_cache 3000000\ntotal_rss 1900000\n\
                     total_inactive_file 1000000\ntotal_pgfault 50\ntotal_pgmajfault 1\n",
                ),
            ],
        );
        write(
            &root.path().join("pids").join(rel),
            &[("pids.current", "2\n")],
        );
        let s = read_cgroup(root.path(), Path::new("/vordr/vordr-c2")).unwrap();
        assert_eq!(
            s,
            CgroupSample {
                cpu_ns: 123_456_789,
                cpu_user_ns: 70_000_000,
                cpu_system_ns: 30_000_000,
                memory_usage: 5_000_000,
                working_set: 4_000_000,
                rss: 1_900_000,
                cache: 3_000_000,
                page_faults: 50,
                major_page_faults: 1,
                memory_limit: None,
                swap: None,
                pids: Some(2),
                memory_failcnt: 2,
                psi: Psi::default(),
            }
        );
        // A hybrid host: the v2 hierarchy's copy of the cgroup has PSI.
        write(
            &root.path().join("unified").join(rel),
            &[("io.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=9\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=8\n")],
        );
        let s = read_cgroup(root.path(), Path::new("/vordr/vordr-c2")).unwrap();
        let io = s.psi.io.unwrap();
        assert_eq!((io.some.total_ns, io.full.unwrap().total_ns), (9000, 8000));
        assert_eq!((s.psi.cpu, s.psi.memory), (None, None));
        // With swap accounting and a limit.
        write(
            &root.path().join("memory").join(rel),
            &[
                ("memory.memsw.usage_in_bytes", "5004096\n"),
                ("memory.limit_in_bytes", "8388608\n"),
            ],
        );
        let s = read_cgroup(root.path(), Path::new("/vordr/vordr-c2")).unwrap();
        assert_eq!((s.swap, s.memory_limit), (Some(4096), Some(8_388_608)));
        assert_eq!(s.available(), Some(8_388_608 - 4_000_000));
    }

    #[test]
    fn a_missing_cgroup_reads_as_none() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(read_cgroup(root.path(), Path::new("/gone")), None);
        // Garbage in a counter file is not a number, never a panic.
        write(
            &root.path().join("bad"),
            &[("cpu.stat", "usage_usec lots\n")],
        );
        assert_eq!(read_cgroup(root.path(), Path::new("/bad")), None);
    }
}
