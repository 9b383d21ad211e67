//! The TTRPC events endpoint shims publish to: a container's exit is
//! recorded the moment its shim reports it.

use std::path::Path;
use std::sync::Arc;

use containerd_shim_protos::events::task::TaskExit;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{create_events, Events};
use ttrpc::r#async::transport::Listener;
use ttrpc::r#async::{Server, TtrpcContext};

use crate::state::Runtime;

struct Handler(Arc<Runtime>);

#[async_trait::async_trait]
impl Events for Handler {
    async fn forward(&self, _ctx: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        let Some(env) = req.envelope.as_ref() else {
            return Ok(Empty::new());
        };
        let Some(ev) = env.event.as_ref() else {
            return Ok(Empty::new());
        };
        if env.topic == "/tasks/exit" {
            if let Ok(exit) = TaskExit::parse_from_bytes(&ev.value) {
                // An exec's exit is the caller's business; the init's is ours.
                if exit.id == exit.container_id {
                    let at = crate::shim::client::timestamp_ns(&exit.exited_at);
                    crate::container::exit::record_exit(
                        &self.0,
                        &exit.container_id,
                        exit.exit_status as i32,
                        at,
                    );
                }
            }
        }
        Ok(Empty::new())
    }
}

/// Serves the events endpoint at `socket` (mode 0600, whatever the umask)
/// until the process exits.
pub async fn serve_events(rt: Arc<Runtime>, socket: &Path) -> Result<Server, ttrpc::Error> {
    let _ = std::fs::remove_file(socket);
    let io = |what: &str, e: std::io::Error| {
        ttrpc::Error::Others(format!("{what} {}: {e}", socket.display()))
    };
    let listener = vordr_fsmode::bind_unix(socket, vordr_fsmode::PRIVATE_SOCKET)
        .map_err(|e| io("binding", e))?;
    let listener = Listener::try_from(listener).map_err(|e| {
        let _ = std::fs::remove_file(socket);
        io("listening on", e)
    })?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(create_events(Arc::new(Handler(rt))));
    server.start().await?;
    Ok(server)
}
