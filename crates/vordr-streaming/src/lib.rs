//! Vordr's streaming server. The CRI Exec, Attach and PortForward RPCs hand
//! out single-use URLs (a random token that expires after a minute);
//! kubelet, crictl or kubectl connect to one and upgrade the HTTP/1.1
//! connection to SPDY/3.1 or to WebSocket. Exec and attach speak the
//! remotecommand subprotocols (`channel.k8s.io` and its versions): error,
//! stdin, stdout, stderr and resize channels, the outcome on the error
//! channel. Port-forward carries a data and an error channel per forwarded
//! connection. Processes and connections are the [`Backend`]'s.

pub mod client;
mod portforward;
mod remotecommand;
mod server;
mod session;
pub mod spdy;
mod tokens;
pub mod websocket;

pub use remotecommand::{parse_sizes, ExecIo};
pub use server::{Limits, Server, ServerError, Settings, TlsFiles};
pub use tokens::{ExecTarget, PortForwardTarget, Target, Tokens, TOKEN_TTL};

/// Runs what a streaming URL was handed out for.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs `target.cmd` in `target.container_id` with the given streams
    /// (each present when the request asked for it) and returns its exit
    /// code, or a message for the error channel.
    async fn exec(&self, target: &ExecTarget, io: ExecIo) -> Result<i32, String>;

    /// Attaches the streams to the container's main process until its
    /// output ends (it exited) or the client leaves.
    async fn attach(&self, target: &ExecTarget, io: ExecIo) -> Result<(), String>;

    /// A connection to `port` on the pod's loopback, inside its network
    /// namespace.
    async fn connect(&self, pod_id: &str, port: u16) -> Result<tokio::net::TcpStream, String>;
}
