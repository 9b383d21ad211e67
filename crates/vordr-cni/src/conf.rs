//! Network config lists from a directory, read as libcni reads them: files
//! ending in `.conflist`, `.conf` or `.json`, in lexical order, the first
//! valid one wins; a single-plugin `.conf` is a list of one.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};

use rscni_types::types::NetConfList;
use rscni_types::version::SpecVersion;
use serde_json::Value;

use crate::CniError;

/// Config files bigger than this are not read.
const MAX_CONFIG: u64 = 1 << 20;

/// A loaded config list: validated, with each plugin's config kept as
/// written (plugins read keys no type here knows).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfList {
    pub name: String,
    pub cni_version: String,
    pub version: SpecVersion,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub plugins: Vec<Value>,
    /// The file it came from.
    pub source: PathBuf,
    /// Vordr's own key: pods may take pre-attached namespaces from the warm
    /// pool (no plugin of the list needs the pod's name at ADD).
    pub pool_safe: bool,
}

impl ConfList {
    /// Parses a `.conflist` (or, with `single`, a one-plugin `.conf`).
    pub fn parse(bytes: &[u8], source: &Path, single: bool) -> Result<ConfList, CniError> {
        let bad = |reason: String| CniError::Config {
            path: source.display().to_string(),
            reason,
        };
        let mut raw: Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        if single {
            let obj = raw.as_object().ok_or_else(|| bad("not an object".into()))?;
            raw = serde_json::json!({
                "cniVersion": obj.get("cniVersion").cloned().unwrap_or(Value::Null),
                "name": obj.get("name").cloned().unwrap_or(Value::Null),
                "plugins": [raw.clone()],
            });
        }
        let list: NetConfList = serde_json::from_value(raw.clone())
            .map_err(|e| bad(format!("not a config list: {e}")))?;
        if list.plugins.is_empty() {
            return Err(bad("it lists no plugins".into()));
        }
        let version = list.version().map_err(|e| bad(e.to_string()))?;
        for p in &list.plugins {
            if p.r#type.is_empty() || p.r#type.contains('/') || p.r#type.starts_with('.') {
                return Err(bad(format!(
                    "plugin type {:?} is not a plugin name",
                    p.r#type
                )));
            }
        }
        if list.name.is_empty()
            || !list
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(bad(format!("network name {:?} is not valid", list.name)));
        }
        let plugins = raw["plugins"].as_array().cloned().unwrap_or_default();
        Ok(ConfList {
            name: list.name,
            cni_version: list.cni_version,
            version,
            disable_check: list.disable_check,
            disable_gc: list.disable_gc,
            plugins,
            source: source.to_path_buf(),
            pool_safe: raw["vordr.io/pool-safe"].as_bool().unwrap_or(false),
        })
    }

    /// The type (binary name) of each plugin, in order.
    pub fn plugin_types(&self) -> Vec<String> {
        self.plugins
            .iter()
            .map(|p| p["type"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// Config file candidates in `dir`, in lexical order.
fn candidates(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("conflist" | "conf" | "json")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The first valid config list in `dir`, and why each file before it was
/// skipped; `None` when there is none.
pub fn load_dir(dir: &Path) -> (Option<ConfList>, Vec<CniError>) {
    let mut skipped = Vec::new();
    for path in candidates(dir) {
        let read = std::fs::File::open(&path).and_then(|f| {
            let mut buf = Vec::new();
            f.take(MAX_CONFIG + 1).read_to_end(&mut buf)?;
            Ok(buf)
        });
        let bytes = match read {
            Ok(b) if b.len() as u64 > MAX_CONFIG => {
                skipped.push(CniError::Config {
                    path: path.display().to_string(),
                    reason: format!("larger than {MAX_CONFIG} bytes"),
                });
                continue;
            }
            Ok(b) => b,
            Err(e) => {
                skipped.push(CniError::Config {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let single = path.extension().and_then(|e| e.to_str()) != Some("conflist");
        match ConfList::parse(&bytes, &path, single) {
            Ok(list) => return (Some(list), skipped),
            Err(e) => skipped.push(e),
        }
    }
    (None, skipped)
}

/// A value that changes whenever a config file in `dir` is added, removed
/// or rewritten (names, sizes and modification times).
pub fn fingerprint(dir: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    for path in candidates(dir) {
        path.hash(&mut h);
        if let Ok(md) = std::fs::metadata(&path) {
            md.len().hash(&mut h);
            md.modified().ok().hash(&mut h);
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE: &str = r#"{"cniVersion":"1.0.0","name":"k8s-pod-network","plugins":[
        {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.1.0.0/24"}]]}},
        {"type":"portmap","capabilities":{"portMappings":true}}]}"#;

    #[test]
    fn the_lexically_first_valid_file_wins() {
        let d = tempfile::tempdir().unwrap();
        assert!(load_dir(d.path()).0.is_none());
        std::fs::write(d.path().join("00-broken.conflist"), "{").unwrap();
        std::fs::write(
            d.path().join("05-empty.conflist"),
            r#"{"name":"x","cniVersion":"1.0.0","plugins":[]}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("10-net.conflist"), BRIDGE).unwrap();
        std::fs::write(
            d.path().join("20-other.conf"),
            r#"{"cniVersion":"0.4.0","name":"other","type":"ptp"}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("README"), "not a config").unwrap();
        let (list, skipped) = load_dir(d.path());
        let list = list.unwrap();
        assert_eq!(list.name, "k8s-pod-network");
        assert_eq!(list.plugin_types(), ["bridge", "portmap"]);
        assert_eq!(
            list.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            "10.1.0.0/24"
        );
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(!list.pool_safe);
    }

    #[test]
    fn a_single_plugin_conf_is_a_list_of_one() {
        let list = ConfList::parse(
            br#"{"cniVersion":"0.3.1","name":"single","type":"bridge","bridge":"b0"}"#,
            Path::new("x.conf"),
            true,
        )
        .unwrap();
        assert_eq!(list.name, "single");
        assert_eq!(list.cni_version, "0.3.1");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0]["bridge"], "b0");
    }

    #[test]
    fn plugin_types_are_names_not_paths() {
        for bad in ["../../bin/sh", "/bin/sh", ".hidden", ""] {
            let text =
                format!(r#"{{"cniVersion":"1.0.0","name":"n","plugins":[{{"type":"{bad}"}}]}}"#);
            assert!(
                ConfList::parse(text.as_bytes(), Path::new("x"), false).is_err(),
                "{bad}"
            );
        }
        let bad_name = r#"{"cniVersion":"1.0.0","name":"a/b","plugins":[{"type":"bridge"}]}"#;
        assert!(ConfList::parse(bad_name.as_bytes(), Path::new("x"), false).is_err());
    }

    #[test]
    fn the_fingerprint_follows_the_files() {
        let d = tempfile::tempdir().unwrap();
        let empty = fingerprint(d.path());
        std::fs::write(d.path().join("10-net.conflist"), BRIDGE).unwrap();
        let one = fingerprint(d.path());
        assert_ne!(empty, one);
        std::fs::write(d.path().join("notes.txt"), "x").unwrap();
        assert_eq!(one, fingerprint(d.path()));
        std::fs::remove_file(d.path().join("10-net.conflist")).unwrap();
        assert_eq!(empty, fingerprint(d.path()));
    }
}
