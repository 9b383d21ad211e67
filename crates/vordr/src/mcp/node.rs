//! The image and node tools: `vordr_pull`, `vordr_images`, `vordr_audit`
//! (the gatekeeper's newest decisions), `vordr_doctor` (the node's checks).

use std::path::PathBuf;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::json;

use super::{reply, Vordr};
use crate::cli::{audit, common, images};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct PullParams {
    /// The image, e.g. docker.io/library/busybox:1.36
    pub image: String,
    /// Registry user (with password), sent as kubelet sends a pull secret.
    pub username: Option<String>,
    pub password: Option<String>,
}

fn fifty() -> u32 {
    50
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AuditParams {
    /// How many records, newest first.
    #[serde(default = "fifty")]
    pub limit: u32,
    /// Only denials (and decisions the policy could not make).
    #[serde(default)]
    pub denied: bool,
    /// Only this namespace.
    pub namespace: Option<String>,
}

impl Vordr {
    /// Where the audit table is: `--root`, else `--config`'s root, else
    /// the root the daemon reports, else the default.
    async fn audit_root(&self) -> anyhow::Result<PathBuf> {
        if self.root.is_none() && self.config.is_none() {
            if let Ok(mut c) = self.common.connect().await {
                let config = common::runtime_config(&mut c).await;
                if let Some(root) = config["server"]["root"].as_str() {
                    return Ok(root.into());
                }
            }
        }
        audit::root_dir(self.config.as_deref(), self.root.clone())
    }
}

#[tool_router(router = node_tools, vis = "pub(super)")]
impl Vordr {
    /// Pull an image through the runtime.
    #[tool(name = "vordr_pull")]
    async fn pull(&self, Parameters(p): Parameters<PullParams>) -> CallToolResult {
        let auth = p.username.map(|username| images::Credentials {
            username,
            password: p.password.unwrap_or_default(),
        });
        self.cri(async |c| images::pull(c, &p.image, auth.as_ref()).await)
            .await
    }

    /// The runtime's images.
    #[tool(name = "vordr_images", annotations(read_only_hint = true))]
    async fn images(&self) -> CallToolResult {
        self.cri(async |c| Ok(json!({ "images": images::images(c).await? })))
            .await
    }

    /// The gatekeeper's newest decisions (the audit table), newest first.
    #[tool(name = "vordr_audit", annotations(read_only_hint = true))]
    async fn audit(&self, Parameters(p): Parameters<AuditParams>) -> CallToolResult {
        reply(
            async {
                let root = self.audit_root().await?;
                let filter = vordr_store::AuditFilter {
                    limit: p.limit,
                    denied_only: p.denied,
                    namespace: p.namespace,
                    decisions_only: true,
                };
                let records =
                    tokio::task::spawn_blocking(move || audit::audit(&root, &filter)).await??;
                Ok(json!({ "records": records }))
            }
            .await,
        )
    }

    /// Check this node for what Vordr needs: each check ok, warning,
    /// missing or skipped, with what was found and its fix.
    #[tool(name = "vordr_doctor", annotations(read_only_hint = true))]
    async fn doctor(&self) -> CallToolResult {
        let a = crate::doctor::DoctorArgs {
            host_root: "/".into(),
            config: self.config.clone(),
            kubelet_config: vordr_install::KUBELET_CONFIG.into(),
            kubeadm_flags: vordr_install::KUBEADM_FLAGS.into(),
            json: true,
        };
        reply(
            async {
                let report =
                    tokio::task::spawn_blocking(move || crate::doctor::report(&a)).await??;
                Ok(json!({ "missing": report.has_missing(), "checks": report }))
            }
            .await,
        )
    }
}
