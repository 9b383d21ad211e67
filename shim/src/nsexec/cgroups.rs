//! The init's cgroups: /proc/<init>/cgroup mapped through the cgroup mounts, then joined.

use std::path::PathBuf;

use vordr_mountinfo::MountInfo;

use super::error::NsExecError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProcCgroup {
    /// Controllers of the hierarchy (`name=systemd` included as is); empty for cgroup v2.
    pub(super) controllers: Vec<String>,
    pub(super) path: String,
}

pub(super) fn parse_proc_cgroup(content: &str) -> Vec<ProcCgroup> {
    content
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(ProcCgroup {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// Maps each line of /proc/<init>/cgroup to a directory: the mount of that hierarchy (cgroup2
/// for `0::`, else the v1 mount carrying all of the line's controllers) joined with the path
/// relative to the mount's root. A hierarchy that is not mounted here is skipped (nothing can be
/// joined or enforced through it); a mounted one that cannot reach the path is an error.
pub(super) fn cgroup_dirs(
    lines: &[ProcCgroup],
    mounts: &[MountInfo],
) -> Result<Vec<PathBuf>, NsExecError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for line in lines {
        let candidates: Vec<&MountInfo> = mounts
            .iter()
            .filter(|m| {
                if line.controllers.is_empty() {
                    m.fstype == "cgroup2"
                } else {
                    m.fstype == "cgroup"
                        && line
                            .controllers
                            .iter()
                            .all(|c| m.super_options.iter().any(|o| o == c))
                }
            })
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let found = candidates.iter().find_map(|m| {
            let root = m.root.trim_end_matches('/');
            let rel = if root.is_empty() {
                Some(line.path.as_str())
            } else if line.path == root {
                Some("")
            } else {
                line.path
                    .strip_prefix(root)
                    .filter(|rest| rest.starts_with('/'))
            }?;
            Some(m.mount_point.join(rel.trim_start_matches('/')))
        });
        match found {
            Some(dir) => {
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
            None => {
                return Err(NsExecError::Cgroup {
                    path: PathBuf::from(&line.path),
                    reason: format!(
                        "hierarchy {:?} is mounted here, but not the init's cgroup",
                        if line.controllers.is_empty() {
                            "cgroup2".to_string()
                        } else {
                            line.controllers.join(",")
                        }
                    ),
                    source: None,
                })
            }
        }
    }
    Ok(dirs)
}

pub(super) fn join_cgroups(dirs: &[PathBuf]) -> Result<(), NsExecError> {
    let me = std::process::id().to_string();
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, &me).map_err(|source| NsExecError::Cgroup {
            path: procs.clone(),
            reason: "join".into(),
            source: Some(source),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
23 1 0:21 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn nsexec_cgroup_dirs_hybrid() {
        let lines = parse_proc_cgroup(
            "9:name=systemd:/kubepods/pod1/c1\n8:pids:/kubepods/pod1/c1\n3:cpuset:/\n\
             2:cpu,cpuacct:/kubepods/pod1/c1\n1:rdma:/\n0::/kubepods/pod1/c1\n",
        );
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[3].controllers, vec!["cpu", "cpuacct"]);
        assert!(lines[5].controllers.is_empty());
        let dirs = cgroup_dirs(&lines, &vordr_mountinfo::parse(HYBRID_MOUNTINFO)).unwrap();
        let want: Vec<PathBuf> = [
            "/sys/fs/cgroup/systemd/kubepods/pod1/c1",
            "/sys/fs/cgroup/pids/kubepods/pod1/c1",
            "/sys/fs/cgroup/cpuset/",
            "/sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/c1",
            // rdma is not mounted: skipped.
            "/sys/fs/cgroup/unified/kubepods/pod1/c1",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dirs, want);
    }

    #[test]
    fn nsexec_cgroup_dirs_v2_and_mount_roots() {
        let mounts = vordr_mountinfo::parse(
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        let dirs = cgroup_dirs(&parse_proc_cgroup("0::/a/b\n"), &mounts).unwrap();
        assert_eq!(dirs, vec![PathBuf::from("/sys/fs/cgroup/a/b")]);

        // A mount of a sub-tree (as inside a container), with an escaped space in its path.
        let mounts = vordr_mountinfo::parse(
            "30 23 0:26 /outer /my\\040cg rw - cgroup2 cgroup2 rw\n\
             31 23 0:27 /outer /v1\\040pids rw - cgroup cgroup rw,pids\n",
        );
        let dirs =
            cgroup_dirs(&parse_proc_cgroup("1:pids:/outer/x\n0::/outer\n"), &mounts).unwrap();
        assert_eq!(
            dirs,
            vec![PathBuf::from("/v1 pids/x"), PathBuf::from("/my cg/")]
        );
        // /outerfoo is not below /outer, and no other mount reaches it.
        let err = cgroup_dirs(&parse_proc_cgroup("0::/outerfoo\n"), &mounts).unwrap_err();
        assert!(matches!(err, NsExecError::Cgroup { .. }), "{err}");
    }
}
