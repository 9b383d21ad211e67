//! Attach: a unix socket per container through which the daemon follows
//! the main process's output and feeds its stdin, as long as it runs.
//! Output reaches every attached client as frames (one byte for the
//! stream, 1 stdout or 2 stderr, a big-endian u32 length, the bytes);
//! what a client sends is the process's stdin, raw. A client too slow to
//! take output is dropped rather than stall the container.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use vordr_shim_api::attach_frame::{STDERR, STDOUT};

/// Where the process's stdin goes: the pipe a stdin container holds, or a
/// terminal's master.
pub type StdinTarget = Arc<Mutex<Option<OwnedFd>>>;

#[derive(Default)]
pub struct Attach {
    clients: Mutex<Vec<UnixStream>>,
    path: Mutex<Option<std::path::PathBuf>>,
}

impl Attach {
    /// Serves `path` on a thread; clients' input goes to `stdin`, which
    /// the first client to close its input closes when `stdin_once`.
    pub fn serve(
        self: &Arc<Self>,
        path: &Path,
        stdin: StdinTarget,
        stdin_once: bool,
    ) -> std::io::Result<()> {
        let _ = std::fs::remove_file(path);
        let listener = vordr_fsmode::bind_unix(path, vordr_fsmode::PRIVATE_SOCKET)?;
        *self.path.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.to_path_buf());
        let me = self.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
                if let Ok(out) = conn.try_clone() {
                    me.clients
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(out);
                }
                let stdin = stdin.clone();
                std::thread::spawn(move || feed_stdin(conn, stdin, stdin_once));
            }
        });
        Ok(())
    }

    /// Sends a chunk of output to every client.
    pub fn broadcast(&self, stream: u8, data: &[u8]) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.is_empty() {
            return;
        }
        let frame = vordr_shim_api::attach_frame::encode(stream, data);
        clients.retain_mut(|c| c.write_all(&frame).is_ok());
    }

    /// The process's output ended: every client reads end of file, and
    /// the socket goes (nothing is left to attach to).
    pub fn close_all(&self) {
        if let Some(p) = self.path.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = std::fs::remove_file(p);
        }
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        for c in clients.drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn feed_stdin(mut conn: UnixStream, stdin: StdinTarget, stdin_once: bool) {
    let mut buf = [0u8; 32 * 1024];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) => {
                if stdin_once {
                    // The process reads end of file.
                    *stdin.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                return;
            }
            Err(_) => return,
            Ok(n) => n,
        };
        let target = stdin.lock().unwrap_or_else(|e| e.into_inner());
        let Some(fd) = target.as_ref() else {
            // No stdin to feed: drain what the client sends.
            continue;
        };
        let Ok(dup) = fd.try_clone() else { return };
        drop(target);
        if std::fs::File::from(dup).write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// A reader whose every chunk also goes to the attached clients.
pub struct Tee<R> {
    pub inner: R,
    pub stream: u8,
    pub attach: Arc<Attach>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.attach.broadcast(self.stream, &buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_get_framed_output_and_feed_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("a.sock");
        let (r, w) = nix::unistd::pipe().unwrap();
        let stdin: StdinTarget = Arc::new(Mutex::new(Some(w)));
        let a = Arc::new(Attach::default());
        a.serve(&sock, stdin.clone(), true).unwrap();
        let mut c = UnixStream::connect(&sock).unwrap();
        // Wait until the client is registered.
        for _ in 0..100 {
            if !a.clients.lock().unwrap().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut tee = Tee {
            inner: &b"hello"[..],
            stream: STDERR,
            attach: a.clone(),
        };
        let mut sink = Vec::new();
        tee.read_to_end(&mut sink).unwrap();
        let mut frame = [0u8; 10];
        c.read_exact(&mut frame).unwrap();
        assert_eq!(&frame, b"\x02\x00\x00\x00\x05hello");
        c.write_all(b"typed").unwrap();
        let mut got = [0u8; 5];
        let mut r = std::fs::File::from(r);
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"typed");
        // stdin_once: the client's end of input is the process's.
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        assert_eq!(r.read_to_end(&mut rest).unwrap(), 0);
        a.close_all();
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).unwrap(), 0);
        assert!(!sock.exists());
    }
}
