//! What the operator verbs share: the endpoint and `--json` flags, errors
//! a person can act on, finding a container or pod by id prefix or name,
//! and plain tables.

use std::collections::BTreeSet;

use anyhow::{anyhow, Result};
use clap::Args;
use serde::Serialize;
use vordr_client::{cri, CriClient};

use super::EndpointArgs;

/// `-r/--runtime-endpoint` and `--json`, on every operator verb.
#[derive(Args, Clone, Debug)]
pub struct Common {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Common {
    /// Connects; an error names the endpoint and the deepest cause once.
    pub async fn connect(&self) -> Result<CriClient> {
        let endpoint = &self.endpoint.endpoint;
        CriClient::connect(endpoint).await.map_err(|e| {
            let mut cause: &dyn std::error::Error = &e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            anyhow!("connecting to {endpoint}: {cause}")
        })
    }
}

/// Prints `v` as pretty JSON.
pub fn print_json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Runs `f` on each id given in turn; prints each result's id as it is
/// done, or with `--json` the list of results at the end.
pub async fn each<T: Serialize>(
    common: &Common,
    ids: &[String],
    mut f: impl AsyncFnMut(&mut CriClient, &str) -> Result<T>,
    id_of: fn(&T) -> &str,
) -> Result<i32> {
    let mut c = common.connect().await?;
    let mut done = Vec::new();
    for q in ids {
        let r = f(&mut c, q).await?;
        if !common.json {
            println!("{}", id_of(&r));
        }
        done.push(r);
    }
    if common.json {
        print_json(&done)?;
    }
    Ok(0)
}

/// The runtime's effective configuration from its verbose Status (Vordr
/// reports it as `config`); `Null` for a runtime that does not.
pub async fn runtime_config(c: &mut CriClient) -> serde_json::Value {
    let info = c
        .runtime
        .status(cri::StatusRequest { verbose: true })
        .await
        .map(|r| r.into_inner().info)
        .unwrap_or_default();
    info.get("config")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

/// A failed CRI call as a sentence: the gatekeeper's denial with its rule,
/// an unreachable runtime, or the runtime's message.
pub fn rpc_error(what: &str, s: tonic::Status) -> anyhow::Error {
    let msg = s.message();
    match s.code() {
        tonic::Code::PermissionDenied if msg.starts_with("gatekeeper:") => {
            anyhow!("{what}: denied by the {msg}")
        }
        tonic::Code::Unavailable | tonic::Code::Unknown if msg.contains("transport") => {
            anyhow!("{what}: the runtime did not answer ({msg})")
        }
        tonic::Code::NotFound => anyhow!("{what}: not found: {msg}"),
        code => anyhow!("{what}: {msg} ({code:?})"),
    }
}

/// `.rpc("what")` on a CRI call: its response body, or [`rpc_error`].
pub trait Rpc<T> {
    fn rpc(self, what: &str) -> Result<T>;
}

impl<T> Rpc<T> for std::result::Result<tonic::Response<T>, tonic::Status> {
    fn rpc(self, what: &str) -> Result<T> {
        self.map(tonic::Response::into_inner)
            .map_err(|s| rpc_error(what, s))
    }
}

/// A container found by [`resolve`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContainerRef {
    pub id: String,
    pub name: String,
    pub pod_id: String,
}

/// A pod found by [`resolve`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PodRef {
    pub id: String,
    pub name: String,
    pub namespace: String,
}

/// What an id or name given on the command line names.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    Container(ContainerRef),
    Pod(PodRef),
}

impl Target {
    pub fn id(&self) -> &str {
        match self {
            Target::Container(c) => &c.id,
            Target::Pod(p) => &p.id,
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Container(c) => format!("container {} ({})", short(&c.id), c.name),
            Target::Pod(p) => format!("pod {} ({}/{})", short(&p.id), p.namespace, p.name),
        }
    }
}

/// The first 13 characters of an id, as crictl shows them.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(13)]
}

/// Every container and pod the runtime knows.
pub async fn everything(c: &mut CriClient) -> Result<Vec<Target>> {
    let containers = c
        .runtime
        .list_containers(cri::ListContainersRequest::default())
        .await
        .rpc("listing containers")?
        .containers;
    let pods = c
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .rpc("listing pods")?
        .items;
    let mut all: Vec<Target> = containers
        .into_iter()
        .map(|k| {
            Target::Container(ContainerRef {
                name: k.metadata.map(|m| m.name).unwrap_or_default(),
                id: k.id,
                pod_id: k.pod_sandbox_id,
            })
        })
        .collect();
    all.extend(pods.into_iter().map(|p| {
        let md = p.metadata.unwrap_or_default();
        Target::Pod(PodRef {
            id: p.id,
            name: md.name,
            namespace: md.namespace,
        })
    }));
    Ok(all)
}

/// Finds what `query` names among `all`: a whole id, else a name (a
/// container before the pod it runs in, so `vordr run --name web` then
/// `vordr logs web` means the container), else a unique id prefix. An
/// ambiguous query is an error listing the candidates.
pub fn pick(all: &[Target], query: &str) -> Result<Target> {
    if query.is_empty() {
        anyhow::bail!("an empty id matches nothing");
    }
    if let Some(t) = all.iter().find(|t| t.id() == query) {
        return Ok(t.clone());
    }
    let named: Vec<&Target> = all
        .iter()
        .filter(|t| match t {
            Target::Container(c) => c.name == query,
            Target::Pod(p) => p.name == query,
        })
        .collect();
    if !named.is_empty() {
        let containers: Vec<&ContainerRef> = named
            .iter()
            .filter_map(|t| match t {
                Target::Container(c) => Some(c),
                Target::Pod(_) => None,
            })
            .collect();
        let pods: BTreeSet<&str> = named
            .iter()
            .filter_map(|t| match t {
                Target::Pod(p) => Some(p.id.as_str()),
                Target::Container(_) => None,
            })
            .collect();
        // One container, and at most the pod it runs in.
        if containers.len() == 1 && pods.iter().all(|p| *p == containers[0].pod_id.as_str()) {
            return Ok(Target::Container(containers[0].clone()));
        }
        if named.len() == 1 {
            return Ok(named[0].clone());
        }
        return Err(ambiguous(query, "name", &named));
    }
    let prefixed: Vec<&Target> = all.iter().filter(|t| t.id().starts_with(query)).collect();
    match prefixed.len() {
        0 => anyhow::bail!("no container or pod matches '{query}'"),
        1 => Ok(prefixed[0].clone()),
        _ => Err(ambiguous(query, "id prefix", &prefixed)),
    }
}

fn ambiguous(query: &str, how: &str, candidates: &[&Target]) -> anyhow::Error {
    let list: Vec<String> = candidates.iter().map(|t| t.describe()).collect();
    anyhow!(
        "'{query}' is ambiguous: as {how} it matches {}:\n  {}\ngive more of the id",
        candidates.len(),
        list.join("\n  ")
    )
}

/// Finds the container or pod `query` names (see [`pick`]).
pub async fn resolve(c: &mut CriClient, query: &str) -> Result<Target> {
    let all = everything(c).await?;
    pick(&all, query)
}

/// Finds the pod `query` names (pods only: `web` is the pod even when its
/// container is called `web` too).
pub async fn resolve_pod(c: &mut CriClient, query: &str) -> Result<PodRef> {
    let pods: Vec<Target> = everything(c)
        .await?
        .into_iter()
        .filter(|t| matches!(t, Target::Pod(_)))
        .collect();
    match pick(&pods, query) {
        Ok(Target::Pod(p)) => Ok(p),
        Ok(Target::Container(_)) => unreachable!("only pods were given"),
        Err(e) if e.to_string().starts_with("no container or pod") => {
            anyhow::bail!("no pod matches '{query}'")
        }
        Err(e) => Err(e),
    }
}

/// Finds the container `query` names; a pod counts when it has exactly
/// one container (as `kubectl logs POD` does).
pub async fn resolve_container(c: &mut CriClient, query: &str) -> Result<ContainerRef> {
    let all = everything(c).await?;
    match pick(&all, query)? {
        Target::Container(k) => Ok(k),
        Target::Pod(p) => {
            let mut in_pod = all.into_iter().filter_map(|t| match t {
                Target::Container(k) if k.pod_id == p.id => Some(k),
                _ => None,
            });
            match (in_pod.next(), in_pod.next()) {
                (Some(k), None) => Ok(k),
                (None, _) => anyhow::bail!(
                    "'{query}' is pod {} ({}/{}), which has no container",
                    short(&p.id),
                    p.namespace,
                    p.name
                ),
                _ => anyhow::bail!(
                    "'{query}' is pod {} ({}/{}), which has several containers: name one",
                    short(&p.id),
                    p.namespace,
                    p.name
                ),
            }
        }
    }
}

/// A container state as a word.
pub fn container_state(state: i32) -> &'static str {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => "Created",
        Ok(cri::ContainerState::ContainerRunning) => "Running",
        Ok(cri::ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}

/// A pod state as a word.
pub fn pod_state(state: i32) -> &'static str {
    match cri::PodSandboxState::try_from(state) {
        Ok(cri::PodSandboxState::SandboxReady) => "Ready",
        Ok(cri::PodSandboxState::SandboxNotready) => "NotReady",
        _ => "Unknown",
    }
}

/// A time in nanoseconds since the epoch as RFC 3339 (seconds).
pub fn rfc3339(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// How long ago a time in nanoseconds since the epoch was, in words.
pub fn ago(ns: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64;
    let s = (now - ns).max(0) / 1_000_000_000;
    let (n, unit) = match s {
        0..60 => (s, "second"),
        60..3600 => (s / 60, "minute"),
        3600..86400 => (s / 3600, "hour"),
        _ => (s / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// Bytes in binary units, e.g. `12.3MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

/// A table: columns as wide as their widest cell, the last one unpadded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 3));
            }
        }
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// `k=v` (for `--label` and `--env`).
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, name: &str, pod: &str) -> Target {
        Target::Container(ContainerRef {
            id: id.into(),
            name: name.into(),
            pod_id: pod.into(),
        })
    }

    fn pod(id: &str, name: &str) -> Target {
        Target::Pod(PodRef {
            id: id.into(),
            name: name.into(),
            namespace: "default".into(),
        })
    }

    #[test]
    fn ids_names_and_prefixes() {
        let all = vec![
            container("abc111", "web", "fff000"),
            pod("fff000", "web"),
            container("abc222", "db", "fff999"),
            pod("fff999", "db-pod"),
            container("0123", "fff000x", "fff999"),
        ];
        // A whole id, a name (the container before its own pod), a prefix.
        assert_eq!(pick(&all, "abc222").unwrap().id(), "abc222");
        assert_eq!(pick(&all, "web").unwrap(), all[0]);
        assert_eq!(pick(&all, "db-pod").unwrap(), all[3]);
        assert_eq!(pick(&all, "abc1").unwrap().id(), "abc111");
        assert_eq!(pick(&all, "fff9").unwrap().id(), "fff999");
        // A whole id wins over a longer name it prefixes.
        assert_eq!(pick(&all, "fff000").unwrap().id(), "fff000");
        let e = pick(&all, "abc").unwrap_err().to_string();
        assert!(
            e.starts_with("'abc' is ambiguous: as id prefix it matches 2:"),
            "{e}"
        );
        assert!(
            e.contains("container abc111 (web)") && e.contains("container abc222 (db)"),
            "{e}"
        );
        let e = pick(&all, "xyz").unwrap_err().to_string();
        assert_eq!(e, "no container or pod matches 'xyz'");
        assert!(pick(&all, "").is_err());
        // Two containers of one name (in different pods) are ambiguous.
        let mut two = all.clone();
        two.push(container("9999", "web", "fff999"));
        let e = pick(&two, "web").unwrap_err().to_string();
        assert!(e.contains("as name it matches 3"), "{e}");
    }

    #[test]
    fn tables_and_units() {
        let t = table(
            &["ID", "NAME", "STATE"],
            &[
                vec!["a".into(), "longer-name".into(), "Running".into()],
                vec!["bbbb".into(), "x".into(), "Exited".into()],
            ],
        );
        assert_eq!(
            t,
            "ID     NAME          STATE\n\
             a      longer-name   Running\n\
             bbbb   x             Exited\n"
        );
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1536), "1.5KiB");
        assert_eq!(bytes(3 << 30), "3.0GiB");
        assert_eq!(key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(key_value("=b").is_err() && key_value("ab").is_err());
    }
}
