//! /proc/<pid>/mountinfo parsed into one [`MountInfo`] per mount, its octal escapes undone.
//!
//! vordr-spec reads it for the propagation of the host paths it bind-mounts, the shim for the
//! cgroup hierarchies an exec joins. It has no dependencies, so that the shim stays small.

use std::path::PathBuf;

/// One line of /proc/<pid>/mountinfo (proc(5)), as far as Vordr needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The directory of the filesystem mounted here (field 4: `/` for a whole filesystem).
    pub root: String,
    /// Where it is mounted (field 5).
    pub mount_point: PathBuf,
    /// Optional fields such as "shared:1" or "master:2".
    pub optional: Vec<String>,
    /// The filesystem type, e.g. "ext4", "cgroup" or "cgroup2"; empty if the line has none.
    pub fstype: String,
    /// The superblock options, e.g. `rw,cpu,cpuacct` for a cgroup v1 hierarchy.
    pub super_options: Vec<String>,
}

impl MountInfo {
    /// A shared mount (peer group `shared:N`).
    pub fn is_shared(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("shared:"))
    }

    /// A slave mount (receiving from `master:N`).
    pub fn is_slave(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("master:"))
    }
}

/// Parses the text of /proc/<pid>/mountinfo; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            if sep < 6 {
                return None;
            }
            let after = |n: usize| fields.get(sep + n).copied().unwrap_or("");
            Some(MountInfo {
                root: unescape(fields[3]),
                mount_point: PathBuf::from(unescape(fields[4])),
                optional: fields[6..sep].iter().map(|s| s.to_string()).collect(),
                fstype: after(1).to_string(),
                super_options: after(3).split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// Decodes mountinfo's `\ooo` escapes (space, tab, newline, backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_field_vordr_uses() {
        let t = parse(
            "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
             32 31 0:29 /outer /sys/fs/cgroup/cpu,cpuacct rw shared:7 master:2 - cgroup cgroup rw,cpu,cpuacct\n\
             44 27 0:54 /a\\040b /with\\040space\\134 rw - tmpfs tmpfs rw\n\
             too short - ext4 /dev/vda rw\n\
             no separator at all\n",
        );
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].root, "/");
        assert_eq!(t[0].mount_point, PathBuf::from("/"));
        assert_eq!(t[0].fstype, "ext4");
        assert!(t[0].optional.is_empty());
        assert_eq!(t[1].root, "/outer");
        assert_eq!(t[1].fstype, "cgroup");
        assert_eq!(t[1].super_options, vec!["rw", "cpu", "cpuacct"]);
        assert!(t[1].is_shared() && t[1].is_slave());
        assert_eq!(t[2].root, "/a b");
        assert_eq!(t[2].mount_point, PathBuf::from("/with space\\"));
        assert!(!t[2].is_shared() && !t[2].is_slave());
    }
}
