//! Attach: a single-use streaming URL for a running container's main
//! process, and the attach itself: the shim's attach socket carries the
//! process's output (framed by stream) and takes its stdin; a terminal
//! container is resized through ResizePty.

use k8s_cri::v1::{AttachRequest, AttachResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Status;
use vordr_streaming::{ExecIo, ExecTarget};

use crate::container_exec::{running, stream_of};
use crate::containers::shim_of;
use crate::runtime::Runtime;

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

/// The shim's attach socket for container `id`.
pub fn socket(rt: &Runtime, id: &str) -> std::path::PathBuf {
    vordr_shim_api::socket_path(
        &rt.shim_socket_dir(),
        &vordr_shim_api::attach_socket_name(id),
    )
}

/// Follows the container through its shim's attach socket until its
/// output ends or the client leaves.
pub async fn run(rt: &Runtime, t: &ExecTarget, io: ExecIo) -> Result<(), String> {
    let c = running(rt, &t.container_id).map_err(|s| s.message().to_string())?;
    let sock = socket(rt, &c.id);
    let conn = tokio::net::UnixStream::connect(&sock)
        .await
        .map_err(|e| format!("attaching to container {}: {e}", c.id))?;
    let (mut r, mut w) = conn.into_split();
    let stdin_task = io.stdin.map(|mut rx| {
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if w.write_all(&b).await.is_err() {
                    break;
                }
            }
            let _ = w.shutdown().await;
        })
    });
    let resize_task = match io.resize {
        Some(mut rx) => {
            let shim = shim_of(&c).await.map_err(|s| s.message().to_string())?;
            Some(tokio::spawn(async move {
                while let Some((w, h)) = rx.recv().await {
                    let _ = shim.resize_pty("", w.into(), h.into()).await;
                }
            }))
        }
        None => None,
    };
    // Frames: stream byte, big-endian u32 length, bytes.
    let (stdout, stderr) = (io.stdout, io.stderr);
    loop {
        let mut head = [0u8; 5];
        if r.read_exact(&mut head).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut data = vec![0u8; len];
        if r.read_exact(&mut data).await.is_err() {
            break;
        }
        let tx = match head[0] {
            1 => stdout.as_ref(),
            2 => stderr.as_ref(),
            _ => None,
        };
        if let Some(tx) = tx {
            let _ = tx.send(data.into()).await;
        }
    }
    for task in [stdin_task, resize_task].into_iter().flatten() {
        task.abort();
    }
    Ok(())
}
