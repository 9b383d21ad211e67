//! `vordr mcp`: the Model Context Protocol on stdio, for AI assistants
//! and other MCP clients. Each tool is a thin call of an operator verb's
//! typed function (`crate::cli::*`) over CRI to `-r/--runtime-endpoint`,
//! so the daemon's gatekeeper judges whatever `vordr_run` runs; its result
//! is structured JSON, its failure (a denial with its rule, an unknown id)
//! a tool error with the verb's sentence. `--read-only` keeps only the
//! listing and reading tools: the others are neither listed nor run.
//!
//! The tools are grouped in `containers` (run, ps, stop, rm, exec, logs,
//! inspect) and `node` (pull, images, audit, doctor).

mod containers;
mod node;

use std::path::PathBuf;

use clap::Args;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{tool_handler, ServerHandler, ServiceExt};
use serde::Serialize;

use vordr_client::CriClient;

use crate::cli::common::Common;
use crate::cli::EndpointArgs;

#[derive(Args, Debug)]
pub struct McpArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Only the listing and reading tools (vordr_ps, vordr_logs,
    /// vordr_inspect, vordr_images, vordr_audit, vordr_doctor); the others
    /// are neither listed nor run.
    #[arg(long)]
    pub read_only: bool,
    /// The daemon's state directory, where vordr_audit reads the audit
    /// table [default: the one the daemon reports, else /var/lib/vordr]
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// The daemon's TOML configuration (vordr_audit's root when --root is
    /// not given; vordr_doctor's configuration)
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// The tools `--read-only` keeps.
pub const READ_ONLY_TOOLS: [&str; 6] = [
    "vordr_ps",
    "vordr_logs",
    "vordr_inspect",
    "vordr_images",
    "vordr_audit",
    "vordr_doctor",
];

/// The MCP server: where the runtime is, and the tools it offers.
#[derive(Clone)]
pub struct Vordr {
    common: Common,
    root: Option<PathBuf>,
    config: Option<PathBuf>,
    tool_router: ToolRouter<Vordr>,
}

impl Vordr {
    pub fn new(a: McpArgs) -> Vordr {
        let mut tool_router = Vordr::container_tools() + Vordr::node_tools();
        if a.read_only {
            let names: Vec<String> = tool_router
                .list_all()
                .into_iter()
                .map(|t| t.name.into_owned())
                .collect();
            for name in names {
                if !READ_ONLY_TOOLS.contains(&name.as_str()) {
                    tool_router.remove_route(&name);
                }
            }
        }
        Vordr {
            common: Common {
                endpoint: a.endpoint,
                json: true,
            },
            root: a.root,
            config: a.config,
            tool_router,
        }
    }
}

impl Vordr {
    /// Connects to the runtime and runs `f` with the client: its result
    /// as the tool's (see [`reply`]).
    async fn cri<T: Serialize>(
        &self,
        f: impl AsyncFnOnce(&mut CriClient) -> anyhow::Result<T>,
    ) -> CallToolResult {
        reply(async { f(&mut self.common.connect().await?).await }.await)
    }
}

/// A verb's result as the tool's structured result (a JSON object), or
/// its error as a tool error carrying the verb's sentence.
fn reply<T: Serialize>(r: anyhow::Result<T>) -> CallToolResult {
    match r.and_then(|v| Ok(serde_json::to_value(v)?)) {
        Ok(v) => CallToolResult::structured(v),
        Err(e) => CallToolResult::error(vec![ContentBlock::text(format!("{e:#}"))]),
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Vordr {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("vordr", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Vordr, a Kubernetes CRI container runtime: run, list, inspect, exec in, \
                 stop and remove containers, pull and list images, read the gatekeeper's \
                 audit table and check the node. Containers and pods are named by id, \
                 unique id prefix or name. The runtime's gatekeeper judges what vordr_run \
                 runs; a denial names the rule.",
            )
    }
}

/// Serves MCP on stdin/stdout until the client goes away.
pub async fn serve(a: McpArgs) -> anyhow::Result<i32> {
    use anyhow::Context;
    let running = Vordr::new(a)
        .serve(rmcp::transport::stdio())
        .await
        .context("starting the MCP session")?;
    running.waiting().await.context("the MCP session")?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(read_only: bool) -> Vordr {
        Vordr::new(McpArgs {
            endpoint: EndpointArgs {
                endpoint: "/nonexistent.sock".into(),
            },
            read_only,
            root: None,
            config: None,
        })
    }

    fn names(v: &Vordr) -> Vec<String> {
        let mut n: Vec<String> = v
            .tool_router
            .list_all()
            .into_iter()
            .map(|t| t.name.into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn every_tool_and_the_read_only_ones() {
        let all = names(&server(false));
        assert_eq!(all.len(), 11, "{all:?}");
        assert!(all.iter().all(|n| n.starts_with("vordr_")), "{all:?}");
        let mut ro = READ_ONLY_TOOLS.map(String::from).to_vec();
        ro.sort();
        assert!(ro.iter().all(|n| all.contains(n)), "{all:?}");
        assert_eq!(names(&server(true)), ro);
    }

    #[test]
    fn arguments_have_typed_schemas() {
        let v = server(false);
        let run = v.tool_router.get("vordr_run").unwrap();
        let schema = serde_json::Value::Object((*run.input_schema).clone());
        assert_eq!(schema["properties"]["image"]["type"], "string", "{schema}");
        assert_eq!(schema["properties"]["privileged"]["type"], "boolean");
        assert!(schema["required"]
            .as_array()
            .unwrap()
            .contains(&"image".into()));
        let exec = v.tool_router.get("vordr_exec").unwrap();
        let schema = serde_json::Value::Object((*exec.input_schema).clone());
        assert_eq!(schema["properties"]["cmd"]["type"], "array", "{schema}");
        assert_eq!(schema["properties"]["timeout"]["default"], 60);
    }

    #[test]
    fn errors_are_tool_errors_with_the_sentence() {
        let r = reply::<()>(Err(anyhow::anyhow!("no container or pod matches 'x'")));
        assert_eq!(r.is_error, Some(true));
        let text = r.content[0].as_text().unwrap().text.clone();
        assert_eq!(text, "no container or pod matches 'x'");
        let r = reply(Ok(serde_json::json!({"a": 1})));
        assert_eq!(r.is_error, Some(false));
        assert_eq!(r.structured_content.unwrap()["a"], 1);
    }
}
