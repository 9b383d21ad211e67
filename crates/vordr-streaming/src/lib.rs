//! Vordr's streaming server. The CRI Exec RPC hands out a single-use URL
//! (a random token that expires after a minute); kubelet or crictl connect
//! to it, upgrade the HTTP/1.1 connection to SPDY/3.1, negotiate one of the
//! remotecommand subprotocols and open a stream each for the error channel,
//! stdin, stdout and stderr. The process itself is the [`Backend`]'s to run.

pub mod client;
mod remotecommand;
mod server;
mod tokens;

pub use remotecommand::{ExecIo, PROTOCOLS};
pub use server::{Server, ServerError};
pub use tokens::{ExecTarget, Tokens, TOKEN_TTL};

/// Runs what a streaming URL was handed out for.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs `target.cmd` in `target.container_id` with the given streams
    /// (each present when the request asked for it) and returns its exit
    /// code, or a message for the error channel.
    async fn exec(&self, target: &ExecTarget, io: ExecIo) -> Result<i32, String>;
}
