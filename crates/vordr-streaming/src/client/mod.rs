//! Vordr's own streaming client, for tests, benchmarks and operator tools:
//! exec, attach and port-forward against a streaming URL over SPDY/3.1
//! ([`spdy`], what client-go speaks) or WebSocket ([`websocket`]).

pub mod spdy;
pub mod websocket;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad streaming URL {0:?}")]
    Url(String),
    #[error("connecting: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("SPDY: {0}")]
    Spdy(#[from] vordr_spdy::SpdyError),
    #[error("WebSocket: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// What an exec produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The subprotocol the server chose.
    pub protocol: String,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// What the error stream carried (a Status JSON from v4 on).
    pub error: Vec<u8>,
}

impl ExecOutput {
    /// The exit code a v4 Status reports (0 for Success).
    pub fn exit_code(&self) -> Option<i32> {
        let v: serde_json::Value = serde_json::from_slice(&self.error).ok()?;
        if v["status"] == "Success" {
            return Some(0);
        }
        v["details"]["causes"]
            .as_array()?
            .iter()
            .find(|c| c["reason"] == "ExitCode")?["message"]
            .as_str()?
            .parse()
            .ok()
    }
}

/// What one forwarded connection produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// Bytes the pod's port sent back.
    pub data: Vec<u8>,
    /// What the error stream carried (empty when all went well).
    pub error: Vec<u8>,
}

/// The `host:port` and the path (without its leading slash) of an
/// `http://` or `https://` URL.
pub(crate) fn split_url(url: &str) -> Result<(&str, &str), ClientError> {
    url.strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(|| ClientError::Url(url.into()))
}
