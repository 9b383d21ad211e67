//! ADD, CHECK and DEL of one attachment through every plugin of a config
//! list, as libcni runs them: each plugin gets the list's name and version,
//! the runtime's capability arguments it declared (`runtimeConfig`), and
//! the result of the plugin before it (`prevResult`); DEL runs the list in
//! reverse with the result ADD returned.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rscni_types::types::CNIResult;
use rscni_types::version::SpecVersion;
use serde_json::{Map, Value};

use crate::cache::{self, Entry};
use crate::exec::{self, Invocation};
use crate::{CniError, ConfList};

/// Where plugins are and where attachments are remembered.
#[derive(Debug, Clone)]
pub struct Cni {
    pub bin_dirs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    /// Per plugin call.
    pub timeout: Duration,
}

/// One pod's attachment.
#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    /// The pod sandbox id (`CNI_CONTAINERID`).
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    /// `CNI_ARGS` pairs (K8S_POD_NAMESPACE, K8S_POD_NAME, ...).
    pub args: Vec<(String, String)>,
    /// portMappings, bandwidth, dns, ipRanges, ...: given to each plugin
    /// that declares the capability.
    pub capability_args: Map<String, Value>,
}

impl Attachment<'_> {
    /// `CNI_ARGS`; a key or value with ';' or '=' (which would add keys
    /// of its own, such as host-local's IP=) is refused.
    fn cni_args(&self) -> Result<String, CniError> {
        if let Some((k, v)) = self
            .args
            .iter()
            .find(|(k, v)| format!("{k}{v}").contains([';', '=']))
        {
            return Err(CniError::Config {
                path: "CNI_ARGS".into(),
                reason: format!("{k}={v:?} holds ';' or '='"),
            });
        }
        Ok(std::iter::once("IgnoreUnknown=1".to_string())
            .chain(self.args.iter().map(|(k, v)| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(";"))
    }
}

/// What ADD gave the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodResult {
    /// Addresses, in the order the result lists them.
    pub ips: Vec<IpAddr>,
    /// The final result as the last plugin printed it.
    pub raw: Value,
}

impl PodResult {
    fn parse(raw: Value, plugin: &str) -> Result<PodResult, CniError> {
        let result: CNIResult =
            serde_json::from_value(raw.clone()).map_err(|e| CniError::Plugin {
                plugin: plugin.to_string(),
                command: "ADD",
                message: format!("unreadable result: {e}"),
            })?;
        Ok(PodResult {
            ips: result.ips.iter().map(|i| i.address.addr()).collect(),
            raw,
        })
    }
}

/// The config plugin `plugin` is given: the list's name and version, the
/// capability arguments it declared, the previous plugin's result.
fn plugin_conf(
    list: &Value,
    plugin: &Value,
    caps: &Map<String, Value>,
    prev: Option<&Value>,
) -> Value {
    let mut conf = plugin.clone();
    let Some(obj) = conf.as_object_mut() else {
        return conf;
    };
    obj.insert("name".into(), list["name"].clone());
    obj.insert("cniVersion".into(), list["cniVersion"].clone());
    let declared: Vec<String> = plugin["capabilities"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, on)| on.as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let runtime: Map<String, Value> = declared
        .into_iter()
        .filter_map(|k| caps.get(&k).map(|v| (k, v.clone())))
        .collect();
    if runtime.is_empty() {
        obj.remove("runtimeConfig");
    } else {
        obj.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    match prev {
        Some(p) => obj.insert("prevResult".into(), p.clone()),
        None => obj.remove("prevResult"),
    };
    conf
}

fn list_value(list: &ConfList) -> Value {
    serde_json::json!({
        "cniVersion": list.cni_version,
        "name": list.name,
        "plugins": list.plugins,
    })
}

fn plugin_type(p: &Value) -> String {
    p["type"].as_str().unwrap_or_default().to_string()
}

impl Cni {
    fn invocation<'a>(
        &'a self,
        command: &'static str,
        a: &'a Attachment<'a>,
        args: &'a str,
    ) -> Invocation<'a> {
        Invocation {
            command,
            container_id: a.container_id,
            netns: a.netns,
            ifname: a.ifname,
            args,
            bin_dirs: &self.bin_dirs,
            timeout: self.timeout,
        }
    }

    /// ADD through every plugin of `list`. The cache entry is written first
    /// (without a result) and completed with the result.
    pub async fn add(&self, list: &ConfList, a: &Attachment<'_>) -> Result<PodResult, CniError> {
        let config = list_value(list);
        let args = a.cni_args()?;
        let mut entry = Entry {
            kind: cache::KIND.into(),
            container_id: a.container_id.into(),
            ifname: a.ifname.into(),
            network_name: list.name.clone(),
            config: config.clone(),
            cni_args: args.clone(),
            capability_args: Value::Object(a.capability_args.clone()),
            result: None,
        };
        cache::write(&self.cache_dir, &entry)?;
        let mut prev: Option<Value> = None;
        let mut last = String::new();
        for plugin in &list.plugins {
            last = plugin_type(plugin);
            let conf = plugin_conf(&config, plugin, &a.capability_args, prev.as_ref());
            let stdin = serde_json::to_vec(&conf).expect("JSON serialises");
            let out = exec::run(&last, &stdin, &self.invocation("ADD", a, &args)).await?;
            let result: Value = serde_json::from_slice(&out).map_err(|e| CniError::Plugin {
                plugin: last.clone(),
                command: "ADD",
                message: format!("unreadable result: {e}"),
            })?;
            prev = Some(result);
        }
        let raw = prev.unwrap_or(Value::Null);
        let result = PodResult::parse(raw.clone(), &last)?;
        entry.result = Some(raw);
        cache::write(&self.cache_dir, &entry)?;
        Ok(result)
    }

    /// CHECK through every plugin (spec 0.4.0 and later, unless the list
    /// disables it), with the cached result.
    pub async fn check(&self, list: &ConfList, a: &Attachment<'_>) -> Result<(), CniError> {
        if list.disable_check || list.version < SpecVersion::new(0, 4, 0) {
            return Ok(());
        }
        let Some((_, entry)) = cache::find(&self.cache_dir, a.container_id, a.ifname) else {
            return Err(CniError::Cache {
                path: self.cache_dir.display().to_string(),
                reason: format!("no attachment of {} to check", a.container_id),
            });
        };
        let config = list_value(list);
        let caps = entry
            .capability_args
            .as_object()
            .cloned()
            .unwrap_or_default();
        for plugin in &list.plugins {
            let conf = plugin_conf(&config, plugin, &caps, entry.result.as_ref());
            let stdin = serde_json::to_vec(&conf).expect("JSON serialises");
            exec::run(
                &plugin_type(plugin),
                &stdin,
                &self.invocation("CHECK", a, &entry.cni_args),
            )
            .await?;
        }
        Ok(())
    }

    /// DEL through every plugin in reverse, with what ADD was given and
    /// returned (from the cache; `fallback` when there is no entry, as after
    /// a cache written by an older version). Removes the entry when done.
    /// Nothing to delete (no entry, no fallback) is success.
    pub async fn del(
        &self,
        fallback: Option<&ConfList>,
        a: &Attachment<'_>,
    ) -> Result<(), CniError> {
        let cached = cache::find(&self.cache_dir, a.container_id, a.ifname);
        let (config, args, caps, result) = match (&cached, fallback) {
            (Some((_, e)), _) => (
                e.config.clone(),
                e.cni_args.clone(),
                e.capability_args.as_object().cloned().unwrap_or_default(),
                e.result.clone(),
            ),
            (None, Some(list)) => (
                list_value(list),
                a.cni_args()?,
                a.capability_args.clone(),
                None,
            ),
            (None, None) => return Ok(()),
        };
        let plugins = config["plugins"].as_array().cloned().unwrap_or_default();
        for plugin in plugins.iter().rev() {
            let conf = plugin_conf(&config, plugin, &caps, result.as_ref());
            let stdin = serde_json::to_vec(&conf).expect("JSON serialises");
            exec::run(
                &plugin_type(plugin),
                &stdin,
                &self.invocation("DEL", a, &args),
            )
            .await?;
        }
        if let Some((path, _)) = cached {
            cache::remove(&path)?;
        }
        Ok(())
    }

    /// STATUS through every plugin (spec 1.1.0 and later): whether the
    /// network can take pods now. An older list is ready once loaded.
    pub async fn status(&self, list: &ConfList) -> Result<(), CniError> {
        if list.version < SpecVersion::new(1, 1, 0) {
            return Ok(());
        }
        let config = list_value(list);
        for plugin in &list.plugins {
            let conf = plugin_conf(&config, plugin, &Map::new(), None);
            let stdin = serde_json::to_vec(&conf).expect("JSON serialises");
            exec::run(&plugin_type(plugin), &stdin, &self.bare("STATUS")).await?;
        }
        Ok(())
    }

    /// GC through every plugin (spec 1.1.0 and later, unless the list sets
    /// `disableGC`): each learns which attachments are still in use
    /// (`cni.dev/valid-attachments`) and may release the rest.
    pub async fn gc(&self, list: &ConfList, valid: &[(String, String)]) -> Result<(), CniError> {
        if list.disable_gc || list.version < SpecVersion::new(1, 1, 0) {
            return Ok(());
        }
        let config = list_value(list);
        let attachments: Vec<Value> = valid
            .iter()
            .map(|(id, ifname)| serde_json::json!({"containerID": id, "ifname": ifname}))
            .collect();
        for plugin in &list.plugins {
            let mut conf = plugin_conf(&config, plugin, &Map::new(), None);
            if let Some(obj) = conf.as_object_mut() {
                obj.insert(
                    "cni.dev/valid-attachments".into(),
                    Value::Array(attachments.clone()),
                );
            }
            let stdin = serde_json::to_vec(&conf).expect("JSON serialises");
            exec::run(&plugin_type(plugin), &stdin, &self.bare("GC")).await?;
        }
        Ok(())
    }

    /// An invocation about the network, not one attachment.
    fn bare(&self, command: &'static str) -> Invocation<'_> {
        Invocation {
            command,
            container_id: "",
            netns: Path::new(""),
            ifname: "",
            args: "",
            bin_dirs: &self.bin_dirs,
            timeout: self.timeout,
        }
    }

    /// Container ids with an attachment in the cache.
    pub fn cached_attachments(&self) -> Vec<(String, String)> {
        cache::list(&self.cache_dir)
            .into_iter()
            .map(|(_, e)| (e.container_id, e.ifname))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn cni(dir: &Path) -> Cni {
        Cni {
            bin_dirs: vec![dir.to_path_buf()],
            cache_dir: dir.join("cache"),
            timeout: Duration::from_secs(10),
        }
    }

    fn list(version: &str, plugin: &str, extra: &str) -> ConfList {
        let text = format!(
            r#"{{"cniVersion":"{version}","name":"n",{extra}"plugins":[{{"type":"{plugin}"}}]}}"#
        );
        ConfList::parse(text.as_bytes(), Path::new("x"), false).unwrap()
    }

    #[tokio::test]
    async fn status_and_gc_are_spec_1_1_verbs() {
        let d = tempfile::tempdir().unwrap();
        let seen = d.path().join("seen");
        script(
            d.path(),
            "notready",
            r#"cat >/dev/null; echo '{"code":50,"msg":"no route to the API server"}'; exit 1"#,
        );
        script(
            d.path(),
            "collector",
            &format!("echo $CNI_COMMAND >> {0}; cat >> {0}", seen.display()),
        );
        let c = cni(d.path());
        // Before 1.1 nothing runs: the list is ready once loaded.
        c.status(&list("1.0.0", "notready", "")).await.unwrap();
        let e = c.status(&list("1.1.0", "notready", "")).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "CNI plugin notready STATUS failed: no route to the API server (code 50)"
        );
        let valid = vec![("pod-1".to_string(), "eth0".to_string())];
        c.gc(&list("1.0.0", "collector", ""), &valid).await.unwrap();
        c.gc(&list("1.1.0", "collector", r#""disableGC":true,"#), &valid)
            .await
            .unwrap();
        assert!(!seen.exists());
        c.gc(&list("1.1.0", "collector", ""), &valid).await.unwrap();
        let text = std::fs::read_to_string(&seen).unwrap();
        assert!(text.starts_with("GC\n"), "{text}");
        let conf: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(conf["cni.dev/valid-attachments"][0]["containerID"], "pod-1");
        assert_eq!(conf["name"], "n");
    }

    #[test]
    fn each_plugin_gets_only_the_capabilities_it_declared() {
        let list = serde_json::json!({"cniVersion": "1.0.0", "name": "net", "plugins": []});
        let caps: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "bandwidth": {"ingressRate": 1000},
        }))
        .unwrap();
        let portmap = serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}, "snat": true});
        let prev = serde_json::json!({"cniVersion": "1.0.0", "ips": []});
        let conf = plugin_conf(&list, &portmap, &caps, Some(&prev));
        assert_eq!(conf["name"], "net");
        assert_eq!(conf["cniVersion"], "1.0.0");
        assert_eq!(conf["snat"], true);
        assert_eq!(conf["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert!(conf["runtimeConfig"].get("bandwidth").is_none());
        assert_eq!(conf["prevResult"], prev);
        let bridge = serde_json::json!({"type": "bridge", "runtimeConfig": {"stale": 1}});
        let conf = plugin_conf(&list, &bridge, &caps, None);
        assert!(conf.get("runtimeConfig").is_none());
        assert!(conf.get("prevResult").is_none());
    }

    #[test]
    fn results_of_every_version_give_the_addresses() {
        for raw in [
            r#"{"cniVersion":"0.3.1","interfaces":[{"name":"eth0"}],"ips":[{"version":"4","interface":0,"address":"10.1.0.5/24","gateway":"10.1.0.1"}]}"#,
            r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.0.5/24"},{"version":"6","address":"fd00::5/64"}]}"#,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24"},{"address":"fd00::5/64","gateway":"fd00::1"}],"dns":{}}"#,
        ] {
            let r = PodResult::parse(serde_json::from_str(raw).unwrap(), "bridge").unwrap();
            assert_eq!(r.ips[0], "10.1.0.5".parse::<IpAddr>().unwrap(), "{raw}");
        }
    }

    #[test]
    fn cni_args_as_kubelet_driven_runtimes_send_them() {
        let a = Attachment {
            container_id: "c",
            netns: Path::new("/x"),
            ifname: "eth0",
            args: vec![
                ("K8S_POD_NAMESPACE".into(), "ns".into()),
                ("K8S_POD_NAME".into(), "p".into()),
            ],
            capability_args: Map::new(),
        };
        assert_eq!(
            a.cni_args().unwrap(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"
        );
        let sneaky = Attachment {
            args: vec![("K8S_POD_NAME".into(), "p;IP=10.0.0.9".into())],
            ..a
        };
        assert!(sneaky.cni_args().is_err());
    }
}
