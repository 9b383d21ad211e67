//! Exec: a single-use streaming URL for a command in a running container,
//! and the [`ExecBackend`] that runs it when the client connects: the
//! process joins the container as in ExecSync, its stdin, stdout and stderr
//! are FIFOs the shim hands it, copied to and from the client's streams
//! (with a terminal, the shim's pty sits between the FIFOs and the process,
//! and the client's terminal sizes go to ResizePty).
//! A client that goes away gets its process killed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use k8s_cri::v1::{ExecRequest, ExecResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Status;
use vordr_store::ContainerState;
use vordr_streaming::{Backend, ExecIo, ExecTarget};

use crate::container_exec_sync::exec_process;
use crate::containers::{shim_of, shim_status};
use crate::errors::invalid;
use crate::runtime::Runtime;

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
    let c = running(rt, container_id)?;
    let server = rt
        .streaming
        .get()
        .ok_or_else(|| Status::unavailable("the streaming server is not running"))?;
    Ok((c, server))
}

/// The container, if it is running (NotFound, FailedPrecondition).
pub fn running(rt: &Runtime, container_id: &str) -> Result<vordr_store::ContainerRecord, Status> {
    let c = rt.find_container(container_id)?;
    if c.state != ContainerState::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is not running",
            c.id
        )));
    }
    Ok(c)
}

/// Runs execs for the streaming server.
pub struct ExecBackend(pub Weak<Runtime>);

/// Undoes an exec however it ends: FIFOs removed; a process still running
/// (the client left) killed and its exec record deleted.
struct ExecGuard {
    container: vordr_store::ContainerRecord,
    exec_id: String,
    fifos: Vec<PathBuf>,
    finished: bool,
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        for f in &self.fifos {
            let _ = std::fs::remove_file(f);
        }
        let (c, id, finished) = (self.container.clone(), self.exec_id.clone(), self.finished);
        tokio::spawn(async move {
            let Ok(shim) = shim_of(&c).await else {
                return;
            };
            if !finished {
                let _ = shim.kill(&id, 9, false).await;
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(5), shim.wait(&id)).await;
            }
            let _ = shim.delete(&id).await;
        });
    }
}

fn fifo(path: &Path) -> Result<(), String> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| format!("creating exec fifo {}: {e}", path.display()))
}

/// Copies a FIFO to a channel in chunks until EOF.
async fn copy_out(mut r: tokio::net::unix::pipe::Receiver, tx: tokio::sync::mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    // Nobody listens: keep draining so the process never blocks.
                    let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
                    break;
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Backend for ExecBackend {
    async fn attach(&self, t: &ExecTarget, io: ExecIo) -> Result<(), String> {
        let rt = self.0.upgrade().ok_or("vordr is shutting down")?;
        crate::container_attach::run(&rt, t, io).await
    }

    async fn connect(&self, pod_id: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
        let rt = self.0.upgrade().ok_or("vordr is shutting down")?;
        crate::sandbox_port_forward::connect(&rt, pod_id, port).await
    }

    async fn exec(&self, t: &ExecTarget, io: ExecIo) -> Result<i32, String> {
        let rt = self.0.upgrade().ok_or("vordr is shutting down")?;
        let c = running(&rt, &t.container_id).map_err(|s| s.message().to_string())?;
        let bundle = rt.bundle_dir(&c.id);
        let process = exec_process(&bundle, &t.cmd, t.tty).map_err(|s| s.message().to_string())?;
        let exec_id = crate::sandbox_run::new_id()[..16].to_string();
        let path = |name: &str| bundle.join(format!("exec-{exec_id}.{name}"));
        let mut guard = ExecGuard {
            container: c.clone(),
            exec_id: exec_id.clone(),
            fifos: Vec::new(),
            finished: true,
        };
        let mut paths = [String::new(), String::new(), String::new()];
        for (i, (name, on)) in [
            ("stdin", io.stdin.is_some()),
            ("stdout", io.stdout.is_some()),
            ("stderr", io.stderr.is_some()),
        ]
        .into_iter()
        .enumerate()
        {
            if on {
                let p = path(name);
                fifo(&p)?;
                paths[i] = p.display().to_string();
                guard.fifos.push(p);
            }
        }
        // Our ends first: stdin read-write (so the process sees no EOF
        // before the client closes it), output readers.
        let open_err = |e: std::io::Error| format!("opening exec fifo: {e}");
        let stdin_w = match &io.stdin {
            Some(_) => Some(
                tokio::net::unix::pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(&paths[0])
                    .map_err(open_err)?,
            ),
            None => None,
        };
        let open_r = |p: &str| {
            tokio::net::unix::pipe::OpenOptions::new()
                .open_receiver(p)
                .map_err(open_err)
        };
        let out_r = if io.stdout.is_some() {
            Some(open_r(&paths[1])?)
        } else {
            None
        };
        let err_r = if io.stderr.is_some() {
            Some(open_r(&paths[2])?)
        } else {
            None
        };

        let shim = shim_of(&c).await.map_err(|s| s.message().to_string())?;
        shim.exec(&exec_id, process, &paths[0], &paths[1], &paths[2], t.tty)
            .await
            .map_err(|e| shim_status("exec", e).message().to_string())?;
        if let Err(e) = shim.start(&exec_id).await {
            return Err(shim_status("starting exec", e).message().to_string());
        }
        guard.finished = false;

        let input = tokio::spawn(feed(
            io.stdin.zip(stdin_w),
            io.resize,
            shim.clone(),
            exec_id.clone(),
        ));
        let outs: Vec<_> = [(out_r, io.stdout), (err_r, io.stderr)]
            .into_iter()
            .filter_map(|(r, tx)| Some(tokio::spawn(copy_out(r?, tx?))))
            .collect();
        let waited = shim.wait(&exec_id).await;
        for o in outs {
            let _ = o.await;
        }
        input.abort();
        let (code, _) =
            waited.map_err(|e| shim_status("waiting for exec", e).message().to_string())?;
        guard.finished = true;
        Ok(code as i32)
    }
}

/// Hands the client's input to a process (exec `exec_id`, or the
/// container's own with ""): stdin to `stdin`'s writer, dropped when the
/// client closes stdin, and terminal sizes to ResizePty, each before any
/// stdin the client sent after it (a shell that reads a line and asks for
/// its size sees the size the client gave first).
pub(crate) async fn feed<W: tokio::io::AsyncWrite + Unpin>(
    mut stdin: Option<(tokio::sync::mpsc::Receiver<Bytes>, W)>,
    mut resize: Option<tokio::sync::mpsc::Receiver<(u16, u16)>>,
    shim: crate::shim_client::Shim,
    exec_id: String,
) {
    async fn next<T>(rx: Option<&mut tokio::sync::mpsc::Receiver<T>>) -> Option<T> {
        match rx {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }
    while stdin.is_some() || resize.is_some() {
        tokio::select! {
            biased;
            size = next(resize.as_mut()) => match size {
                Some((w, h)) => {
                    if let Err(e) = shim.resize_pty(&exec_id, w.into(), h.into()).await {
                        tracing::debug!(exec = %exec_id, "resize: {e}");
                    }
                }
                None => resize = None,
            },
            data = next(stdin.as_mut().map(|(rx, _)| rx)) => match (data, stdin.as_mut()) {
                (Some(b), Some((_, w))) => {
                    if w.write_all(&b).await.is_err() {
                        stdin = None;
                    }
                }
                // Dropping the writer: the process reads EOF.
                _ => stdin = None,
            },
        }
    }
}
