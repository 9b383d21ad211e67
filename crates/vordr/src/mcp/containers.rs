//! The container tools: `vordr_run` (detached), `vordr_ps`, `vordr_stop`,
//! `vordr_rm`, `vordr_exec` (ExecSync, no terminal), `vordr_logs` (the
//! last lines, not followed), `vordr_inspect`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::json;

use super::{reply, Vordr};
use crate::cli::{exec, inspect, logs, ps, rm, run, stop};

fn default_namespace() -> String {
    "default".into()
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RunParams {
    /// The image, e.g. docker.io/library/busybox:1.36 (pulled if the runtime lacks it).
    pub image: String,
    /// The command and its arguments (the image's CMD otherwise; its entrypoint stays).
    #[serde(default)]
    pub cmd: Vec<String>,
    /// The pod's and the container's name (default: from the image, with a random suffix).
    pub name: Option<String>,
    /// The pod's namespace (its gatekeeper profile applies).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Labels on the pod and the container.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Host paths in the container: "/SRC:/DST" or "/SRC:/DST:ro" (absolute host paths).
    #[serde(default)]
    pub mounts: Vec<String>,
    /// Host ports to container ports: "[IP:]HOST:CONTAINER[/tcp|udp|sctp]".
    #[serde(default)]
    pub ports: Vec<String>,
    /// Run the container privileged (the gatekeeper's profile decides).
    #[serde(default)]
    pub privileged: bool,
    /// The runtime handler (e.g. "runc"; empty for the default).
    #[serde(default)]
    pub runtime_handler: String,
}

impl RunParams {
    /// What `vordr run -d` would run.
    fn spec(self) -> anyhow::Result<run::RunSpec> {
        let mounts = self
            .mounts
            .iter()
            .map(|m| {
                anyhow::ensure!(
                    m.starts_with('/'),
                    "mount '{m}': the host path must be absolute"
                );
                run::parse_mount(m).map_err(anyhow::Error::msg)
            })
            .collect::<anyhow::Result<_>>()?;
        let ports = self
            .ports
            .iter()
            .map(|p| run::parse_port(p).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?;
        Ok(run::RunSpec {
            image: self.image,
            name: self.name,
            namespace: self.namespace,
            env: self.env.into_iter().collect(),
            mounts,
            ports,
            labels: self.labels,
            privileged: self.privileged,
            runtime_handler: self.runtime_handler,
            stdin: false,
            tty: false,
            cmd: self.cmd,
        })
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct PsParams {
    /// Every container, exited ones too (running ones only otherwise).
    #[serde(default)]
    pub all: bool,
    /// Only the containers of this pod (id, id prefix or name).
    pub pod: Option<String>,
    /// Only containers with all these labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A container or pod: its id, a unique id prefix, or its name.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct IdParams {
    /// The container or pod (id, unique id prefix or name).
    pub id: String,
}

fn ten() -> i64 {
    10
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct StopParams {
    /// The container or pod (id, unique id prefix or name).
    pub id: String,
    /// Seconds of grace before the container is killed.
    #[serde(default = "ten")]
    pub timeout: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RmParams {
    /// The container or pod (id, unique id prefix or name).
    pub id: String,
    /// Stop it first if it runs (a running one is refused otherwise).
    #[serde(default)]
    pub force: bool,
}

fn sixty() -> i64 {
    60
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ExecParams {
    /// The container (id, unique id prefix or name; a pod with one container).
    pub id: String,
    /// The command and its arguments, e.g. ["sh", "-c", "ls /"].
    pub cmd: Vec<String>,
    /// Seconds before the command is killed (0: none).
    #[serde(default = "sixty")]
    pub timeout: i64,
}

fn hundred() -> usize {
    100
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LogsParams {
    /// The container (id, unique id prefix or name; a pod with one container).
    pub id: String,
    /// The last N lines.
    #[serde(default = "hundred")]
    pub tail: usize,
    /// Only lines since this long ago (10s, 5m, 1h30m) or this RFC 3339 time.
    pub since: Option<String>,
}

#[tool_router(router = container_tools, vis = "pub(super)")]
impl Vordr {
    /// Run an image in a new pod, detached (as `vordr run -d`): pulled if
    /// missing, a pod and one container of the same name, started. The
    /// runtime's gatekeeper judges both; a denial is an error naming the rule.
    #[tool(name = "vordr_run")]
    async fn run(&self, Parameters(p): Parameters<RunParams>) -> CallToolResult {
        let spec = match p.spec() {
            Ok(spec) => spec,
            Err(e) => return reply::<()>(Err(e)),
        };
        self.cri(async |c| run::run(c, &spec).await).await
    }

    /// List containers, newest first: running ones, or all.
    #[tool(name = "vordr_ps", annotations(read_only_hint = true))]
    async fn ps(&self, Parameters(p): Parameters<PsParams>) -> CallToolResult {
        let f = ps::PsFilter {
            all: p.all,
            pod: p.pod,
            labels: p.labels,
        };
        self.cri(async |c| Ok(json!({ "containers": ps::ps(c, &f).await? })))
            .await
    }

    /// Stop a container (signalled, killed after the grace period) or a pod.
    #[tool(name = "vordr_stop")]
    async fn stop(&self, Parameters(p): Parameters<StopParams>) -> CallToolResult {
        self.cri(async |c| stop::stop(c, &p.id, p.timeout).await)
            .await
    }

    /// Remove a container (with the pod vordr_run made for it) or a pod.
    #[tool(name = "vordr_rm", annotations(destructive_hint = true))]
    async fn rm(&self, Parameters(p): Parameters<RmParams>) -> CallToolResult {
        self.cri(async |c| rm::rm(c, &p.id, p.force).await).await
    }

    /// Run a command in a running container without a terminal (ExecSync):
    /// its stdout, stderr and exit code.
    #[tool(name = "vordr_exec")]
    async fn exec(&self, Parameters(p): Parameters<ExecParams>) -> CallToolResult {
        self.cri(async |c| {
            anyhow::ensure!(!p.cmd.is_empty(), "cmd is empty: give a command");
            exec::exec_sync(c, &p.id, &p.cmd, p.timeout).await
        })
        .await
    }

    /// The last lines of a container's log (not followed).
    #[tool(name = "vordr_logs", annotations(read_only_hint = true))]
    async fn logs(&self, Parameters(p): Parameters<LogsParams>) -> CallToolResult {
        self.cri(async |c| {
            let since = p
                .since
                .as_deref()
                .map(|s| logs::parse_since(s, SystemTime::now()))
                .transpose()?;
            logs::logs(c, &p.id, since, Some(p.tail)).await
        })
        .await
    }

    /// A container's or a pod's status with the runtime's verbose info.
    #[tool(name = "vordr_inspect", annotations(read_only_hint = true))]
    async fn inspect(&self, Parameters(p): Parameters<IdParams>) -> CallToolResult {
        self.cri(async |c| inspect::inspect(c, &p.id).await).await
    }
}
