//! A pod's cgroup in the files of a cgroup tree (v1 hierarchies or the v2
//! unified one) below a root, so a fake tree in a tempdir can stand in for
//! /sys/fs/cgroup in tests: creating it (v1: in every hierarchy, cpuset
//! filled from its parent; v2: the controllers enabled down the path) and
//! writing its resources (v1 files or v2 files).

use std::io::Write;
use std::path::{Path, PathBuf};

use k8s_cri::v1::LinuxContainerResources;

use super::mode::Mode;
use super::CgroupError;

/// v2 controllers a pod's cgroup hands down to its containers, when the
/// tree has them.
const V2_CONTROLLERS: &[&str] = &[
    "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc",
];

/// A cgroup tree mounted at `root` in `mode`.
pub struct Tree<'a> {
    pub root: &'a Path,
    pub mode: Mode,
}

fn io_err(path: &Path, source: std::io::Error) -> CgroupError {
    CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` to an existing cgroup file (never creates one).
fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| io_err(path, e))
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `rel`'s components, refusing anything but plain names.
fn components(rel: &str) -> Result<Vec<&str>, CgroupError> {
    let parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    if parts.is_empty() {
        return Err(CgroupError::Invalid(format!(
            "{rel:?}: a pod's cgroup cannot be a hierarchy's root"
        )));
    }
    if parts
        .iter()
        .any(|c| *c == "." || *c == ".." || c.contains('\0'))
    {
        return Err(CgroupError::Invalid(format!(
            "{rel:?}: '.' and '..' are not cgroup names"
        )));
    }
    Ok(parts)
}

impl Tree<'_> {
    /// The v1 hierarchies: the directories under the root (symlinks such
    /// as `cpu -> cpu,cpuacct` skipped), the hybrid `unified` one included.
    pub fn v1_hierarchies(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(self.root) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        out.sort();
        out
    }

    /// Where `rel`'s files for `controller` are: `<root>/<rel>` on v2,
    /// `<root>/<controller>/<rel>` on v1.
    pub fn dir(&self, controller: &str, rel: &str) -> PathBuf {
        let rel = rel.trim_start_matches('/');
        match self.mode {
            Mode::Unified => self.root.join(rel),
            Mode::V1 | Mode::Hybrid => self.root.join(controller).join(rel),
        }
    }

    /// Creates `rel` (and its missing ancestors) so containers can be
    /// created below it. Existing directories are left as they are.
    pub fn create(&self, rel: &str) -> Result<(), CgroupError> {
        let parts = components(rel)?;
        match self.mode {
            Mode::Unified => self.create_v2(&parts),
            Mode::V1 | Mode::Hybrid => {
                for h in self.v1_hierarchies() {
                    create_v1(&h, &parts)?;
                }
                Ok(())
            }
        }
    }

    /// v2: down the path, each cgroup enables for its children the
    /// controllers it has (`cgroup.subtree_control`), then the child is
    /// made; the pod's own cgroup enables them for its containers.
    fn create_v2(&self, parts: &[&str]) -> Result<(), CgroupError> {
        let mut dir = self.root.to_path_buf();
        for part in parts {
            enable_controllers(&dir)?;
            dir.push(part);
            mkdir(&dir)?;
        }
        enable_controllers(&dir)
    }

    /// Writes `res` to the cgroup `rel` (zero fields are left as they
    /// are), v1 or v2 files as the mode says. `unified` keys need v2.
    pub fn apply(&self, rel: &str, res: &LinuxContainerResources) -> Result<(), CgroupError> {
        components(rel)?;
        if !res.unified.is_empty() {
            vordr_spec::validate_unified(&res.unified)
                .map_err(|e| CgroupError::Invalid(e.to_string()))?;
        }
        for h in &res.hugepage_limits {
            if !vordr_spec::cgroup::hugetlb_page_size_ok(&h.page_size) {
                return Err(CgroupError::Invalid(format!(
                    "hugepage_limits: {:?} is not a page size like 2MB",
                    h.page_size
                )));
            }
        }
        for (field, v) in [
            ("cpu_shares", res.cpu_shares),
            ("cpu_period", res.cpu_period),
            ("memory_limit_in_bytes", res.memory_limit_in_bytes),
            ("memory_swap_limit_in_bytes", res.memory_swap_limit_in_bytes),
        ] {
            if v < 0 {
                return Err(CgroupError::Invalid(format!(
                    "{field}: {v} must not be negative"
                )));
            }
        }
        match self.mode {
            Mode::Unified => self.apply_v2(rel, res),
            Mode::V1 | Mode::Hybrid => {
                if !res.unified.is_empty() {
                    return Err(CgroupError::Invalid(
                        "unified: cgroup v2 keys cannot be set on a cgroup v1 host".into(),
                    ));
                }
                self.apply_v1(rel, res)
            }
        }
    }

    fn apply_v1(&self, rel: &str, res: &LinuxContainerResources) -> Result<(), CgroupError> {
        let cpu = self.dir("cpu", rel);
        if res.cpu_shares > 0 {
            write_file(&cpu.join("cpu.shares"), &res.cpu_shares.to_string())?;
        }
        if res.cpu_period > 0 {
            write_file(&cpu.join("cpu.cfs_period_us"), &res.cpu_period.to_string())?;
        }
        if res.cpu_quota != 0 {
            let quota = if res.cpu_quota < 0 { -1 } else { res.cpu_quota };
            write_file(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        let cpuset = self.dir("cpuset", rel);
        if !res.cpuset_cpus.is_empty() {
            write_file(&cpuset.join("cpuset.cpus"), &res.cpuset_cpus)?;
        }
        if !res.cpuset_mems.is_empty() {
            write_file(&cpuset.join("cpuset.mems"), &res.cpuset_mems)?;
        }
        let memory = self.dir("memory", rel);
        if res.memory_limit_in_bytes > 0 {
            let limit = res.memory_limit_in_bytes.to_string();
            let memsw = memory.join("memory.memsw.limit_in_bytes");
            // Raising the limit past memory+swap is refused: memsw first.
            if let Err(e) = write_file(&memory.join("memory.limit_in_bytes"), &limit) {
                if !memsw.exists() {
                    return Err(e);
                }
                let swap = res
                    .memory_swap_limit_in_bytes
                    .max(res.memory_limit_in_bytes);
                write_file(&memsw, &swap.to_string())?;
                write_file(&memory.join("memory.limit_in_bytes"), &limit)?;
            }
        }
        if res.memory_swap_limit_in_bytes > 0 {
            let memsw = memory.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write_file(&memsw, &res.memory_swap_limit_in_bytes.to_string())?;
            }
        }
        let hugetlb = self.dir("hugetlb", rel);
        for h in &res.hugepage_limits {
            let file = hugetlb.join(format!("hugetlb.{}.limit_in_bytes", h.page_size));
            write_file(&file, &h.limit.to_string())?;
        }
        Ok(())
    }

    fn apply_v2(&self, rel: &str, res: &LinuxContainerResources) -> Result<(), CgroupError> {
        let dir = self.dir("", rel);
        if res.cpu_shares > 0 {
            let weight = vordr_spec::cgroup::cpu_weight_from_shares(res.cpu_shares as u64);
            write_file(&dir.join("cpu.weight"), &weight.to_string())?;
        }
        if res.cpu_quota != 0 || res.cpu_period > 0 {
            let max = vordr_spec::cgroup::cpu_max(res.cpu_quota, res.cpu_period as u64);
            write_file(&dir.join("cpu.max"), &max)?;
        }
        if !res.cpuset_cpus.is_empty() {
            write_file(&dir.join("cpuset.cpus"), &res.cpuset_cpus)?;
        }
        if !res.cpuset_mems.is_empty() {
            write_file(&dir.join("cpuset.mems"), &res.cpuset_mems)?;
        }
        if res.memory_swap_limit_in_bytes > 0 {
            // v2's swap file counts swap alone (v1's memsw counts both).
            let swap = res
                .memory_swap_limit_in_bytes
                .saturating_sub(res.memory_limit_in_bytes.max(0));
            let file = dir.join("memory.swap.max");
            if file.exists() {
                write_file(&file, &swap.to_string())?;
            }
        }
        if res.memory_limit_in_bytes > 0 {
            write_file(
                &dir.join("memory.max"),
                &res.memory_limit_in_bytes.to_string(),
            )?;
        }
        for h in &res.hugepage_limits {
            let file = dir.join(format!("hugetlb.{}.max", h.page_size));
            write_file(&file, &h.limit.to_string())?;
        }
        let mut keys: Vec<&String> = res.unified.keys().collect();
        keys.sort();
        for key in keys {
            // Checked above: a controller's file name, no separators.
            write_file(&dir.join(key), &res.unified[key])?;
        }
        Ok(())
    }
}

fn mkdir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(dir, e)),
    }
}

/// v1: `parts` made in hierarchy `h`; a cpuset cgroup made here gets its
/// parent's CPUs and memory nodes (a new one has none, and no task can
/// join it then).
fn create_v1(h: &Path, parts: &[&str]) -> Result<(), CgroupError> {
    let mut dir = h.to_path_buf();
    for part in parts {
        let parent = dir.clone();
        dir.push(part);
        if dir.is_dir() {
            continue;
        }
        mkdir(&dir)?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if dir.join(file).exists() && read_trimmed(&dir.join(file)).is_empty() {
                write_file(&dir.join(file), &read_trimmed(&parent.join(file)))?;
            }
        }
    }
    Ok(())
}

/// v2: enables in `dir`'s `cgroup.subtree_control` the wanted controllers
/// `dir` has and has not enabled yet: all in one write, else one by one
/// (a controller the kernel refuses is left out).
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let available = read_trimmed(&dir.join("cgroup.controllers"));
    let enabled = read_trimmed(&dir.join("cgroup.subtree_control"));
    let missing: Vec<String> = V2_CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .filter(|c| !enabled.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let control = dir.join("cgroup.subtree_control");
    if write_file(&control, &missing.join(" ")).is_ok() {
        return Ok(());
    }
    for c in &missing {
        if let Err(e) = write_file(&control, c) {
            tracing::debug!("{}: enabling {c}: {e}", control.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::HugepageLimit;

    fn put(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (f, v) in files {
            std::fs::write(dir.join(f), v).unwrap();
        }
    }

    fn get(p: PathBuf) -> String {
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    }

    /// A v2 root with controllers, and the files the kernel would create
    /// in the pod's cgroup (a plain directory creates none).
    fn v2_tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        put(
            d.path(),
            &[
                (
                    "cgroup.controllers",
                    "cpuset cpu io memory hugetlb pids rdma misc",
                ),
                ("cgroup.subtree_control", "memory"),
            ],
        );
        d
    }

    #[test]
    fn v2_create_enables_controllers_down_the_path() {
        let d = v2_tree();
        let t = Tree {
            root: d.path(),
            mode: Mode::Unified,
        };
        // kubepods exists and has fewer controllers than the root.
        put(
            &d.path().join("kubepods"),
            &[
                ("cgroup.controllers", "cpu memory pids"),
                ("cgroup.subtree_control", "cpu memory pids"),
            ],
        );
        t.create("/kubepods/pod1").unwrap();
        assert_eq!(
            get(d.path().join("cgroup.subtree_control")),
            "+cpuset +cpu +io +hugetlb +pids +rdma +misc"
        );
        // Everything it has was enabled already: left alone.
        assert_eq!(
            get(d.path().join("kubepods/cgroup.subtree_control")),
            "cpu memory pids"
        );
        assert!(d.path().join("kubepods/pod1").is_dir());
        // Creating it again is fine; a root or '..' is refused.
        t.create("/kubepods/pod1").unwrap();
        assert!(t.create("/").is_err());
        assert!(t.create("/kubepods/../etc").is_err());
    }

    #[test]
    fn v1_create_makes_every_hierarchy_and_fills_cpuset() {
        let d = tempfile::tempdir().unwrap();
        put(
            &d.path().join("cpuset"),
            &[("cpuset.cpus", "0-1\n"), ("cpuset.mems", "0\n")],
        );
        put(&d.path().join("memory"), &[]);
        put(&d.path().join("pids"), &[]);
        std::os::unix::fs::symlink(d.path().join("memory"), d.path().join("mem-link")).unwrap();
        // The kernel makes a new cpuset cgroup with empty files; here the
        // test makes the pod's parent beforehand with them.
        put(
            &d.path().join("cpuset/kubepods"),
            &[("cpuset.cpus", ""), ("cpuset.mems", "")],
        );
        let t = Tree {
            root: d.path(),
            mode: Mode::Hybrid,
        };
        assert_eq!(t.v1_hierarchies().len(), 3);
        t.create("/kubepods/pod1").unwrap();
        for h in ["cpuset", "memory", "pids"] {
            assert!(d.path().join(h).join("kubepods/pod1").is_dir(), "{h}");
        }
        // Existing directories are left as they were.
        assert_eq!(get(d.path().join("cpuset/kubepods/cpuset.cpus")), "");
    }

    fn pod_files(dir: &Path, files: &[&str]) {
        put(dir, &files.iter().map(|f| (*f, "")).collect::<Vec<_>>());
    }

    #[test]
    fn v2_resources_are_written_as_v2_files() {
        let d = v2_tree();
        let pod = d.path().join("kubepods/pod1");
        pod_files(
            &pod,
            &[
                "cpu.weight",
                "cpu.max",
                "cpuset.cpus",
                "cpuset.mems",
                "memory.max",
                "memory.swap.max",
                "memory.high",
                "pids.max",
                "io.weight",
                "hugetlb.2MB.max",
            ],
        );
        let t = Tree {
            root: d.path(),
            mode: Mode::Unified,
        };
        let res = LinuxContainerResources {
            cpu_shares: 1024,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            cpuset_cpus: "0".into(),
            cpuset_mems: "0".into(),
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 96 << 20,
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            unified: [
                ("pids.max".to_string(), "100".to_string()),
                ("io.weight".to_string(), "default 200".to_string()),
                ("memory.high".to_string(), "50000000".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        t.apply("/kubepods/pod1", &res).unwrap();
        for (f, v) in [
            ("cpu.weight", "100"),
            ("cpu.max", "50000 100000"),
            ("cpuset.cpus", "0"),
            ("cpuset.mems", "0"),
            ("memory.max", "67108864"),
            ("memory.swap.max", "33554432"),
            ("hugetlb.2MB.max", "4194304"),
            ("pids.max", "100"),
            ("io.weight", "default 200"),
            ("memory.high", "50000000"),
        ] {
            assert_eq!(get(pod.join(f)), v, "{f}");
        }
        // An unlimited quota.
        let r = LinuxContainerResources {
            cpu_quota: -1,
            ..Default::default()
        };
        t.apply("/kubepods/pod1", &r).unwrap();
        assert_eq!(get(pod.join("cpu.max")), "max 100000");
    }

    #[test]
    fn bad_resources_are_refused_before_any_write() {
        let d = v2_tree();
        let pod = d.path().join("pod1");
        pod_files(&pod, &["memory.max", "cgroup.procs"]);
        let t = Tree {
            root: d.path(),
            mode: Mode::Unified,
        };
        for (k, v) in [
            ("cgroup.procs", "1"),
            ("../cgroup.procs", "1"),
            ("memory.max", "1\n2"),
        ] {
            let res = LinuxContainerResources {
                memory_limit_in_bytes: 1 << 20,
                unified: [(k.to_string(), v.to_string())].into(),
                ..Default::default()
            };
            let e = t.apply("/pod1", &res).unwrap_err().to_string();
            assert!(e.contains(&format!("{k:?}")), "{k}: {e}");
        }
        assert_eq!(get(pod.join("memory.max")), "");
        assert_eq!(get(pod.join("cgroup.procs")), "");
        // An unknown (absent) controller file fails, and names it.
        let res = LinuxContainerResources {
            unified: [("memory.nonesuch".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let e = t.apply("/pod1", &res).unwrap_err().to_string();
        assert!(e.contains("memory.nonesuch"), "{e}");
        assert!(!pod.join("memory.nonesuch").exists());
        let res = LinuxContainerResources {
            memory_limit_in_bytes: -5,
            ..Default::default()
        };
        assert!(t.apply("/pod1", &res).is_err());
    }

    #[test]
    fn v1_resources_are_written_as_v1_files() {
        let d = tempfile::tempdir().unwrap();
        let t = Tree {
            root: d.path(),
            mode: Mode::V1,
        };
        pod_files(
            &d.path().join("cpu/pod1"),
            &["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"],
        );
        pod_files(
            &d.path().join("cpuset/pod1"),
            &["cpuset.cpus", "cpuset.mems"],
        );
        pod_files(&d.path().join("memory/pod1"), &["memory.limit_in_bytes"]);
        pod_files(
            &d.path().join("hugetlb/pod1"),
            &["hugetlb.2MB.limit_in_bytes"],
        );
        let res = LinuxContainerResources {
            cpu_shares: 512,
            cpu_quota: 20_000,
            cpu_period: 100_000,
            cpuset_cpus: "0-1".into(),
            memory_limit_in_bytes: 32 << 20,
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 2 << 20,
            }],
            ..Default::default()
        };
        t.apply("/pod1", &res).unwrap();
        for (f, v) in [
            ("cpu/pod1/cpu.shares", "512"),
            ("cpu/pod1/cpu.cfs_quota_us", "20000"),
            ("cpu/pod1/cpu.cfs_period_us", "100000"),
            ("cpuset/pod1/cpuset.cpus", "0-1"),
            ("cpuset/pod1/cpuset.mems", ""),
            ("memory/pod1/memory.limit_in_bytes", "33554432"),
            ("hugetlb/pod1/hugetlb.2MB.limit_in_bytes", "2097152"),
        ] {
            assert_eq!(get(d.path().join(f)), v, "{f}");
        }
        // v2 keys on v1: refused, naming the field.
        let res = LinuxContainerResources {
            unified: [("memory.high".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let e = t.apply("/pod1", &res).unwrap_err().to_string();
        assert!(e.contains("unified"), "{e}");
    }
}
