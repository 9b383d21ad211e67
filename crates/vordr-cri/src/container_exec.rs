//! Exec: a single-use streaming URL for a command in a running container;
//! the command runs when the client connects (see `streaming::exec`).

use k8s_cri::v1::{ExecRequest, ExecResponse};
use tonic::Status;
use vordr_streaming::ExecTarget;

use crate::state::errors::invalid;
use crate::state::Runtime;
use crate::streaming::stream_of;

pub fn exec(rt: &Runtime, req: ExecRequest) -> Result<ExecResponse, Status> {
    if req.cmd.is_empty() {
        return Err(invalid("cmd", "is required"));
    }
    if req.tty && req.stderr {
        return Err(invalid(
            "tty",
            "with a terminal stderr is merged into stdout: stderr must be false",
        ));
    }
    let (c, server) = stream_of(rt, &req.container_id, [req.stdin, req.stdout, req.stderr])?;
    let url = server.exec_url(ExecTarget {
        container_id: c.id,
        cmd: req.cmd,
        tty: req.tty,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
    });
    Ok(ExecResponse { url })
}
