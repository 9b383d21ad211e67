//! One file per attachment holding what ADD was given (the config list,
//! `CNI_ARGS`, the capability arguments) and, once it succeeded, what it
//! returned. It is written before the first plugin runs, so a DEL after a
//! crash part-way through ADD still gets the config the ADD used.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::CniError;

/// This format's marker.
pub const KIND: &str = "vordr-cni-cache/1";

/// Files bigger than this are not read.
const MAX_ENTRY: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub kind: String,
    pub container_id: String,
    pub ifname: String,
    pub network_name: String,
    /// The whole config list ADD ran (`cniVersion`, `name`, `plugins`).
    pub config: Value,
    pub cni_args: String,
    pub capability_args: Value,
    /// The final plugin's result, once ADD succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

fn file_name(network: &str, container_id: &str, ifname: &str) -> String {
    format!("{network}-{container_id}-{ifname}.json")
}

/// Writes `e` into `dir` (0600, replacing any earlier one atomically).
pub fn write(dir: &Path, e: &Entry) -> Result<PathBuf, CniError> {
    let path = dir.join(file_name(&e.network_name, &e.container_id, &e.ifname));
    let err = |reason: String| CniError::Cache {
        path: path.display().to_string(),
        reason,
    };
    vordr_fsmode::ensure_dir(dir, vordr_fsmode::PRIVATE_DIR).map_err(|e| err(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    let data = serde_json::to_vec(e).expect("cache entries serialise");
    vordr_fsmode::write_private(&tmp, &data).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, &path).map_err(|e| err(e.to_string()))?;
    Ok(path)
}

/// Every entry in `dir` with its path; unreadable files are skipped.
pub fn list(dir: &Path) -> Vec<(PathBuf, Entry)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        if e.metadata().map(|m| m.len() > MAX_ENTRY).unwrap_or(true) {
            continue;
        }
        if let Some(entry) = std::fs::read(&p)
            .ok()
            .and_then(|d| serde_json::from_slice::<Entry>(&d).ok())
            .filter(|x| x.kind == KIND)
        {
            out.push((p, entry));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The entry for `container_id`'s interface `ifname`, whatever network it
/// was attached to.
pub fn find(dir: &Path, container_id: &str, ifname: &str) -> Option<(PathBuf, Entry)> {
    list(dir)
        .into_iter()
        .find(|(_, e)| e.container_id == container_id && e.ifname == ifname)
}

/// Removes the entry at `path` (missing is fine).
pub fn remove(path: &Path) -> Result<(), CniError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CniError::Cache {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_find_list_remove() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cache");
        let mut e = Entry {
            kind: KIND.into(),
            container_id: "abc".into(),
            ifname: "eth0".into(),
            network_name: "net".into(),
            config: serde_json::json!({"name": "net", "plugins": []}),
            cni_args: "K8S_POD_NAME=p".into(),
            capability_args: serde_json::json!({}),
            result: None,
        };
        let p = write(&dir, &e).unwrap();
        e.result = Some(serde_json::json!({"ips": []}));
        assert_eq!(write(&dir, &e).unwrap(), p);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(find(&dir, "abc", "eth0").unwrap().1, e);
        assert!(find(&dir, "abc", "eth1").is_none());
        std::fs::write(dir.join("junk.json"), "{").unwrap();
        assert_eq!(list(&dir).len(), 1);
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert!(find(&dir, "abc", "eth0").is_none());
    }
}
