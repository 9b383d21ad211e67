//! An exec session for the streaming server: the process joins the
//! container as in ExecSync; its stdin, stdout and stderr are FIFOs the shim
//! hands it, copied to and from the client's streams (with a terminal, the
//! shim's pty sits between the FIFOs and the process, and the client's
//! terminal sizes go to ResizePty). A client that goes away gets its
//! process killed.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use vordr_streaming::{ExecIo, ExecTarget};

use super::input::feed;
use crate::container::{shim_of, shim_status};
use crate::state::Runtime;

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

/// Runs `t.cmd` in the container until it exits; its exit code.
pub async fn run(rt: &Runtime, t: &ExecTarget, io: ExecIo) -> Result<i32, String> {
    let c = rt
        .running_container(&t.container_id)
        .map_err(|s| s.message().to_string())?;
    let bundle = rt.layout.bundle_dir(&c.id);
    let process = rt
        .exec_process(&c.id, &t.cmd, t.tty)
        .map_err(|s| s.message().to_string())?;
    let exec_id = crate::state::ids::new_exec_id();
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
    let (code, _) = waited.map_err(|e| shim_status("waiting for exec", e).message().to_string())?;
    guard.finished = true;
    Ok(code as i32)
}
