//! Stdio: the daemon's FIFOs, the init's output into the CRI log and attach, exec pty copying.

use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use containerd_shim::TtrpcResult;
use vordr_shim_api::CreateOptions;

use super::console::{bind_console_socket, receive_master};
use super::reply::{internal, invalid};
use super::state::{lock, Shared};
use crate::attach::{self, Attach, StdinTarget, Tee};
use crate::crilog::CriLog;
use crate::runtime::ProcessIo;

/// Opens a FIFO or file the daemon named for a stream; empty means none.
pub(super) fn open_stream(path: &str, write: bool) -> std::io::Result<OwnedFd> {
    if path.is_empty() {
        return Ok(File::open("/dev/null")?.into());
    }
    let f = if write {
        // Read-write never blocks on a FIFO whose reader is not there yet.
        OpenOptions::new().read(true).write(true).open(path)?
    } else {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        // SAFETY: plain fcntl on an fd we own.
        unsafe {
            let fl = libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_GETFL);
            libc::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                libc::F_SETFL,
                fl & !libc::O_NONBLOCK,
            );
        }
        f
    };
    Ok(f.into())
}

/// /dev/null, for the stdout and stderr of a process with a terminal.
pub(super) fn null() -> TtrpcResult<OwnedFd> {
    File::open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| internal(e.to_string()))
}

/// Copies a container's output into its CRI log (or nowhere).
fn copy_output(log: Option<Arc<CriLog>>, name: &str, mut f: impl std::io::Read) {
    match log {
        Some(l) => l.copy(name, f),
        None => drop(std::io::copy(&mut f, &mut std::io::sink())),
    }
}

/// Copies an exec's pty master to its stdout FIFO, and its stdin FIFO (if
/// any) to the master, each on a thread that ends with the stream.
pub(super) fn copy_pty(master: &Arc<OwnedFd>, stdin: &str, stdout: &str) -> std::io::Result<()> {
    let out = File::from(open_stream(stdout, true)?);
    let from_master = File::from(master.try_clone()?);
    std::thread::spawn(move || {
        let (mut r, mut w) = (from_master, out);
        // Ends with EIO once the process and its children closed the slave.
        let _ = std::io::copy(&mut r, &mut w);
    });
    if !stdin.is_empty() {
        let input = File::from(open_stream(stdin, false)?);
        let to_master = File::from(master.try_clone()?);
        std::thread::spawn(move || {
            let (mut r, mut w) = (input, to_master);
            let _ = std::io::copy(&mut r, &mut w);
        });
    }
    Ok(())
}

fn pipe() -> TtrpcResult<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(std::io::Error::from)
        .map_err(|e| internal(e.to_string()))
}

/// The init's stdio, and what serves it while the container runs.
pub(super) struct InitIo {
    pub io: ProcessIo,
    /// The threads copying its output; they end with it.
    pub copiers: Vec<JoinHandle<()>>,
    pub stdin: StdinTarget,
    pub attach: Arc<Attach>,
}

/// Sets up the init's stdio: stdin from the daemon's FIFO, or a pipe that
/// attach clients write to (`opts.stdin`); output into the CRI log and to
/// attach clients, from its terminal or from two pipes.
pub(super) fn init_stdio(
    shared: &Shared,
    id: &str,
    stdin_path: &str,
    terminal: bool,
    opts: &CreateOptions,
    log: &Option<Arc<CriLog>>,
) -> TtrpcResult<InitIo> {
    let (stdin, stdin_writer) = if opts.stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        let s = open_stream(stdin_path, false).map_err(|e| invalid(format!("stdin: {e}")))?;
        (s, None)
    };
    let attach = Arc::new(Attach::default());
    let stdin_target: StdinTarget = Arc::new(Mutex::new(stdin_writer));
    let dir = vordr_shim_api::socket_dir();
    attach
        .serve(
            &vordr_shim_api::socket_path(&dir, &vordr_shim_api::attach_socket_name(id)),
            stdin_target.clone(),
            opts.stdin_once,
        )
        .map_err(|e| internal(format!("attach socket: {e}")))?;
    let (io, copiers) = if terminal {
        let (listener, sock) = bind_console_socket(&format!("{id}.console"))?;
        let copier = copy_console(
            shared,
            listener,
            sock.clone(),
            log.clone(),
            &attach,
            opts.stdin.then(|| stdin_target.clone()),
        );
        let io = ProcessIo {
            stdin,
            stdout: null()?,
            stderr: null()?,
            console_socket: Some(sock),
        };
        (io, vec![copier])
    } else {
        copy_pipes(stdin, log, &attach)?
    };
    Ok(InitIo {
        io,
        copiers,
        stdin: stdin_target,
        attach,
    })
}

/// A thread that receives the init's terminal master, keeps it for
/// ResizePty (and for attached stdin, given `stdin`), and copies it into
/// the log and to attach clients.
fn copy_console(
    shared: &Shared,
    listener: UnixListener,
    sock_path: PathBuf,
    log: Option<Arc<CriLog>>,
    attach: &Arc<Attach>,
    stdin: Option<StdinTarget>,
) -> JoinHandle<()> {
    let state = shared.clone();
    let attach = attach.clone();
    std::thread::spawn(move || {
        let accepted = receive_master(listener, None);
        let _ = std::fs::remove_file(&sock_path);
        if let Ok(master) = accepted {
            if let Ok(dup) = master.try_clone() {
                lock(&state).console = Some(dup);
            }
            if let Some(stdin_target) = stdin {
                if let Ok(dup) = master.try_clone() {
                    *stdin_target.lock().unwrap_or_else(|e| e.into_inner()) = Some(dup);
                }
            }
            let f = Tee {
                inner: File::from(master),
                stream: attach::STDOUT,
                attach,
            };
            copy_output(log, "stdout", f);
        }
    })
}

/// The init's stdout and stderr as pipes, each copied by a thread into the
/// log and to attach clients.
fn copy_pipes(
    stdin: OwnedFd,
    log: &Option<Arc<CriLog>>,
    attach: &Arc<Attach>,
) -> TtrpcResult<(ProcessIo, Vec<JoinHandle<()>>)> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let mut copiers = Vec::new();
    for (name, stream, r) in [
        ("stdout", attach::STDOUT, out_r),
        ("stderr", attach::STDERR, err_r),
    ] {
        let log = log.clone();
        let attach = attach.clone();
        copiers.push(std::thread::spawn(move || {
            let f = Tee {
                inner: File::from(r),
                stream,
                attach,
            };
            copy_output(log, name, f);
        }));
    }
    let io = ProcessIo {
        stdin,
        stdout: out_w,
        stderr: err_w,
        console_socket: None,
    };
    Ok((io, copiers))
}
