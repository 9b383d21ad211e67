//! The node label that tells the cluster Vordr is ready here
//! (`vordr.io/runtime: ready`), set and removed through the Kubernetes API
//! with the pod's service account: one JSON merge patch of the node's
//! labels over HTTPS, verified against the cluster's CA.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The label's key, and its value once Vordr is installed.
pub const LABEL: &str = "vordr.io/runtime";
pub const READY: &str = "ready";

/// Where a pod finds its service account's token and the cluster's CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("{0} is set but NODE_NAME is not (the DaemonSet passes spec.nodeName as NODE_NAME)")]
    NoNodeName(&'static str),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the cluster's CA in {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("PATCH {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("PATCH {url}: {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// The API server and the node this pod runs on.
#[derive(Debug, Clone)]
pub struct NodeLabel {
    /// `https://host:port`.
    pub server: String,
    pub node: String,
    pub token: String,
    pub ca_pem: Vec<u8>,
}

impl NodeLabel {
    /// From a pod's environment (`KUBERNETES_SERVICE_HOST`/`_PORT`,
    /// `NODE_NAME`) and its service account directory; `Ok(None)` outside a
    /// cluster (no `KUBERNETES_SERVICE_HOST`), where there is nothing to label.
    pub fn from_env(sa_dir: &Path) -> Result<Option<NodeLabel>, LabelError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let Some(host) = var("KUBERNETES_SERVICE_HOST") else {
            return Ok(None);
        };
        let port = var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into());
        let node = var("NODE_NAME").ok_or(LabelError::NoNodeName("KUBERNETES_SERVICE_HOST"))?;
        let read = |name: &str| {
            let path = sa_dir.join(name);
            std::fs::read(&path).map_err(|source| LabelError::Read { path, source })
        };
        let token = String::from_utf8_lossy(&read("token")?).trim().to_string();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(Some(NodeLabel {
            server: format!("https://{host}:{port}"),
            node,
            token,
            ca_pem: read("ca.crt")?,
        }))
    }

    /// Sets the label to `value`, or removes it (`None`).
    pub async fn set(&self, value: Option<&str>) -> Result<(), LabelError> {
        let url = format!("{}/api/v1/nodes/{}", self.server, self.node);
        let certs =
            reqwest::Certificate::from_pem_bundle(&self.ca_pem).map_err(|e| LabelError::Ca {
                path: Path::new(SERVICE_ACCOUNT_DIR).join("ca.crt"),
                reason: e.to_string(),
            })?;
        let request = |reason: String| LabelError::Request {
            url: url.clone(),
            reason,
        };
        let client = reqwest::Client::builder()
            .tls_certs_only(certs)
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("vordr-install/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| request(e.to_string()))?;
        let body = serde_json::json!({"metadata": {"labels": {LABEL: value}}});
        let resp = client
            .patch(&url)
            .bearer_auth(&self.token)
            .header("Content-Type", "application/merge-patch+json")
            .header("Accept", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| request(error_chain(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(LabelError::Status {
            url,
            status: status.as_u16(),
            body: body.chars().take(500).collect(),
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
