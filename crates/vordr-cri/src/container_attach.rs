//! Attach: a single-use streaming URL for a running container's main
//! process; the client is attached when it connects (see `streaming::attach`).

use k8s_cri::v1::{AttachRequest, AttachResponse};
use tonic::Status;
use vordr_streaming::ExecTarget;

use crate::state::Runtime;
use crate::streaming::stream_of;

pub fn attach(rt: &Runtime, req: AttachRequest) -> Result<AttachResponse, Status> {
    let (c, server) = stream_of(rt, &req.container_id, [req.stdin, req.stdout, req.stderr])?;
    let url = server.attach_url(ExecTarget {
        container_id: c.id,
        cmd: Vec::new(),
        tty: req.tty,
        stdin: req.stdin,
        stdout: req.stdout,
        // A terminal merges stderr into stdout.
        stderr: req.stderr && !req.tty,
    });
    Ok(AttachResponse { url })
}
