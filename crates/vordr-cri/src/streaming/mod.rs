//! The streaming backend: what runs when a client connects to an Exec,
//! Attach or PortForward URL of vordr-streaming's server. Exec and attach
//! each have a module; port forwarding dials from inside the pod's network
//! namespace (`sandbox_port_forward::connect`).

mod attach;
mod exec;
mod input;

use std::sync::{Arc, Weak};

use tonic::Status;
use vordr_streaming::{Backend, ExecIo, ExecTarget};

use crate::state::errors::invalid;
use crate::state::Runtime;

/// What Exec and Attach both check: a stream asked for, a running
/// container, the streaming server up.
pub fn stream_of<'a>(
    rt: &'a Runtime,
    container_id: &str,
    [stdin, stdout, stderr]: [bool; 3],
) -> Result<
    (
        vordr_store::ContainerRecord,
        &'a Arc<vordr_streaming::Server>,
    ),
    Status,
> {
    if !(stdin || stdout || stderr) {
        return Err(invalid("stdin, stdout, stderr", "one of them must be true"));
    }
    let c = rt.running_container(container_id)?;
    let server = rt
        .streaming
        .get()
        .ok_or_else(|| Status::unavailable("the streaming server is not running"))?;
    Ok((c, server))
}

/// Runs execs, attaches and port forwards for the streaming server.
pub struct StreamingBackend(pub Weak<Runtime>);

impl StreamingBackend {
    fn runtime(&self) -> Result<Arc<Runtime>, String> {
        self.0
            .upgrade()
            .ok_or_else(|| "vordr is shutting down".to_string())
    }
}

#[async_trait::async_trait]
impl Backend for StreamingBackend {
    async fn attach(&self, t: &ExecTarget, io: ExecIo) -> Result<(), String> {
        let rt = self.runtime()?;
        attach::run(&rt, t, io).await
    }

    async fn connect(&self, pod_id: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
        let rt = self.runtime()?;
        crate::sandbox_port_forward::connect(&rt, pod_id, port).await
    }

    async fn exec(&self, t: &ExecTarget, io: ExecIo) -> Result<i32, String> {
        let rt = self.runtime()?;
        exec::run(&rt, t, io).await
    }
}
