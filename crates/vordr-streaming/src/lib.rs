//! Vordr's streaming server. The CRI Exec RPC hands out a single-use URL
//! (a random token that expires after a minute); kubelet or crictl connect
//! to it, upgrade the HTTP/1.1 connection to SPDY/3.1, negotiate one of the
//! remotecommand subprotocols and open a stream each for the error channel,
//! stdin, stdout and stderr. PortForward URLs work alike with the
//! `portforward.k8s.io` protocol: a pair of streams (data and error) per
//! forwarded connection. Processes and connections are the [`Backend`]'s.

pub mod client;
mod portforward;
mod remotecommand;
mod server;
mod session;
mod tokens;

pub use remotecommand::{ExecIo, PROTOCOLS};
pub use server::{Server, ServerError};
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
