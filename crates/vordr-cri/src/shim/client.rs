//! The daemon's side of the shims: starting one for a container, and
//! calling its task API over TTRPC.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim::shim::*;
use containerd_shim_protos::shim_async::TaskClient;
use ttrpc::context::{self, Context};
use vordr_shim_api::{CreateOptions, CREATE_OPTIONS_TYPE, NAMESPACE, SHIM_BINARY, SOCKET_DIR_ENV};

/// A failure talking to a shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("starting shim: {0}")]
    Start(String),
    #[error("shim at {address}: {source}")]
    Connect {
        address: String,
        source: ttrpc::Error,
    },
    #[error("{0}")]
    Call(String),
    #[error("not found: {0}")]
    NotFound(String),
}

fn call_err(e: ttrpc::Error) -> ShimError {
    match &e {
        ttrpc::Error::RpcStatus(s) if s.code() == ttrpc::Code::NOT_FOUND => {
            ShimError::NotFound(s.message().to_string())
        }
        ttrpc::Error::RpcStatus(s) => ShimError::Call(s.message().to_string()),
        _ => ShimError::Call(e.to_string()),
    }
}

/// Nanoseconds since the epoch of a shim's timestamp; 0 when unset.
pub fn timestamp_ns(
    t: &containerd_shim_protos::protobuf::MessageField<
        containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp,
    >,
) -> i64 {
    t.as_ref()
        .map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
        .unwrap_or(0)
}

/// Where the shim binary is: the configured path, next to this binary, PATH.
pub fn shim_binary(configured: &Path) -> PathBuf {
    if !configured.as_os_str().is_empty() {
        return configured.to_path_buf();
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        let p = dir.join(SHIM_BINARY);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(SHIM_BINARY)
}

/// How long `SHIM start` may take to print the address it serves.
pub const SHIM_START: Duration = Duration::from_secs(30);

/// Runs `SHIM start` in the bundle; returns the address the shim serves.
/// Past [`SHIM_START`] the start is killed and the create fails; a shim it
/// left serving is found by its socket path in the create's teardown.
pub async fn start_shim(
    binary: &Path,
    id: &str,
    bundle: &Path,
    daemon_socket: &Path,
    events_socket: &Path,
    socket_dir: &Path,
) -> Result<String, ShimError> {
    let out = tokio::process::Command::new(binary)
        .current_dir(bundle)
        .args(["-namespace", NAMESPACE, "-id", id, "-address"])
        .arg(daemon_socket)
        .arg("start")
        .env(
            "TTRPC_ADDRESS",
            format!("unix://{}", events_socket.display()),
        )
        .env(SOCKET_DIR_ENV, socket_dir)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(SHIM_START, out)
        .await
        .map_err(|_| {
            ShimError::Start(format!(
                "{} start did not answer in {SHIM_START:?}",
                binary.display()
            ))
        })?
        .map_err(|e| ShimError::Start(format!("{}: {e}", binary.display())))?;
    if !out.status.success() {
        let log =
            std::fs::read_to_string(bundle.join(vordr_shim_api::SHIM_LOG_FILE)).unwrap_or_default();
        return Err(ShimError::Start(format!(
            "{} start exited with {}: {}{}",
            binary.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            log.trim()
        )));
    }
    // A bare address, or (shim protocol v3) {"address": ..., "protocol": "ttrpc", ...}.
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let address = if printed.starts_with('{') {
        serde_json::from_str::<serde_json::Value>(&printed)
            .ok()
            .and_then(|v| v["address"].as_str().map(String::from))
            .unwrap_or_default()
    } else {
        printed
    };
    if address.is_empty() {
        return Err(ShimError::Start("shim printed no address".into()));
    }
    crate::metrics::Metrics::global().shim_started();
    Ok(address)
}

/// A connection to one shim.
#[derive(Clone)]
pub struct Shim {
    pub id: String,
    client: TaskClient,
}

fn ctx() -> Context {
    context::with_timeout(Duration::from_secs(60).as_nanos() as i64)
}

impl Shim {
    pub async fn connect(id: &str, address: &str) -> Result<Shim, ShimError> {
        let client = ttrpc::r#async::Client::connect(address)
            .await
            .map_err(|source| ShimError::Connect {
                address: address.to_string(),
                source,
            })?;
        Ok(Shim {
            id: id.to_string(),
            client: TaskClient::new(client),
        })
    }

    /// The shim's own process id (the task API's Connect).
    pub async fn pid(&self) -> Result<u32, ShimError> {
        let req = ConnectRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        let r = self.client.connect(ctx(), &req).await.map_err(call_err)?;
        Ok(r.shim_pid)
    }

    pub async fn create(
        &self,
        bundle: &Path,
        terminal: bool,
        stdin: &str,
        opts: &CreateOptions,
    ) -> Result<u32, ShimError> {
        let mut any = Any::new();
        any.type_url = CREATE_OPTIONS_TYPE.to_string();
        any.value = serde_json::to_vec(opts).map_err(|e| ShimError::Call(e.to_string()))?;
        let req = CreateTaskRequest {
            id: self.id.clone(),
            bundle: bundle.display().to_string(),
            terminal,
            stdin: stdin.to_string(),
            options: Some(any).into(),
            ..Default::default()
        };
        let r = self.client.create(ctx(), &req).await.map_err(call_err)?;
        Ok(r.pid)
    }

    pub async fn start(&self, exec_id: &str) -> Result<u32, ShimError> {
        let req = StartRequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        Ok(self.client.start(ctx(), &req).await.map_err(call_err)?.pid)
    }

    pub async fn state(&self, exec_id: &str) -> Result<StateResponse, ShimError> {
        let req = StateRequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        self.client.state(ctx(), &req).await.map_err(call_err)
    }

    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<(), ShimError> {
        let req = KillRequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            signal,
            all,
            ..Default::default()
        };
        self.client.kill(ctx(), &req).await.map_err(call_err)?;
        Ok(())
    }

    /// Waits for a process to exit; `(exit status, exited at ns)`.
    pub async fn wait(&self, exec_id: &str) -> Result<(u32, i64), ShimError> {
        let req = WaitRequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let r = self
            .client
            .wait(context::with_timeout(0), &req)
            .await
            .map_err(call_err)?;
        Ok((r.exit_status, timestamp_ns(&r.exited_at)))
    }

    pub async fn delete(&self, exec_id: &str) -> Result<DeleteResponse, ShimError> {
        let req = DeleteRequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        self.client.delete(ctx(), &req).await.map_err(call_err)
    }

    pub async fn exec(
        &self,
        exec_id: &str,
        process_json: Vec<u8>,
        stdin: &str,
        stdout: &str,
        stderr: &str,
        terminal: bool,
    ) -> Result<(), ShimError> {
        let mut any = Any::new();
        any.type_url = vordr_shim_api::PROCESS_SPEC_TYPE.to_string();
        any.value = process_json;
        let req = ExecProcessRequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            stdin: stdin.to_string(),
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
            terminal,
            spec: Some(any).into(),
            ..Default::default()
        };
        self.client.exec(ctx(), &req).await.map_err(call_err)?;
        Ok(())
    }

    /// Resizes the terminal of the container (empty `exec_id`) or an exec.
    pub async fn resize_pty(
        &self,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), ShimError> {
        let req = ResizePtyRequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            width,
            height,
            ..Default::default()
        };
        self.client
            .resize_pty(ctx(), &req)
            .await
            .map_err(call_err)?;
        Ok(())
    }

    pub async fn update(
        &self,
        resources_json: Option<Vec<u8>>,
        annotations: &[(&str, &str)],
    ) -> Result<(), ShimError> {
        let mut req = UpdateTaskRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        if let Some(r) = resources_json {
            let mut any = Any::new();
            any.type_url = vordr_shim_api::RESOURCES_TYPE.to_string();
            any.value = r;
            req.resources = Some(any).into();
        }
        for (k, v) in annotations {
            req.annotations.insert(k.to_string(), v.to_string());
        }
        self.client.update(ctx(), &req).await.map_err(call_err)?;
        Ok(())
    }

    /// Dumps the running container with criu into `images`, leaving it
    /// running; criu may take long for a big container, hence `timeout`.
    pub async fn checkpoint(&self, images: &Path, timeout: Duration) -> Result<(), ShimError> {
        let req = CheckpointTaskRequest {
            id: self.id.clone(),
            path: images.display().to_string(),
            ..Default::default()
        };
        let ctx = context::with_timeout(timeout.as_nanos() as i64);
        self.client.checkpoint(ctx, &req).await.map_err(call_err)?;
        Ok(())
    }

    /// Asks the shim to exit (it does once nothing runs).
    pub async fn shutdown(&self) -> Result<(), ShimError> {
        let req = ShutdownRequest {
            id: self.id.clone(),
            now: true,
            ..Default::default()
        };
        // The shim exits while answering: a broken connection is success.
        match self.client.shutdown(ctx(), &req).await {
            Ok(_) => Ok(()),
            Err(ttrpc::Error::RpcStatus(s)) => Err(ShimError::Call(s.message().to_string())),
            Err(_) => Ok(()),
        }
    }
}
