//! What the streaming server tests share: a backend that runs commands as
//! host processes and connects to host ports, TCP servers to forward to,
//! and a check that a process dies with its client.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use vordr_streaming::{Backend, ExecIo, ExecTarget, Limits, Server, Settings};

/// Runs the command on the host.
pub struct HostBackend;

#[async_trait::async_trait]
impl Backend for HostBackend {
    async fn exec(&self, t: &ExecTarget, io: ExecIo) -> Result<i32, String> {
        let mut cmd = tokio::process::Command::new(&t.cmd[0]);
        cmd.args(&t.cmd[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let mut child_in = child.stdin.take().unwrap();
        let stdin = io.stdin;
        let feed = tokio::spawn(async move {
            if let Some(mut rx) = stdin {
                while let Some(b) = rx.recv().await {
                    if child_in.write_all(&b).await.is_err() {
                        break;
                    }
                }
            }
        });
        let copy = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    tx: Option<tokio::sync::mpsc::Sender<Bytes>>| {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if let Some(tx) = &tx {
                        let _ = tx.send(Bytes::copy_from_slice(&buf[..n])).await;
                    }
                }
            })
        };
        let o = copy(Box::new(child.stdout.take().unwrap()), io.stdout);
        let e = copy(Box::new(child.stderr.take().unwrap()), io.stderr);
        let status = child.wait().await.map_err(|e| e.to_string())?;
        let _ = o.await;
        let _ = e.await;
        feed.abort();
        Ok(status.code().unwrap_or(-1))
    }

    async fn attach(&self, _t: &ExecTarget, _io: ExecIo) -> Result<(), String> {
        Err("the host has no container to attach to".into())
    }

    async fn connect(&self, _pod: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())
    }
}

pub async fn server() -> Arc<Server> {
    Server::start("127.0.0.1:0".parse().unwrap(), Arc::new(HostBackend))
        .await
        .unwrap()
}

/// A plain HTTP server on loopback with these limits.
pub async fn server_with(limits: Limits) -> Arc<Server> {
    let mut settings = Settings::new("127.0.0.1:0".parse().unwrap());
    settings.limits = limits;
    Server::start_with(settings, Arc::new(HostBackend))
        .await
        .unwrap()
}

pub fn target(cmd: &[&str], stdin: bool) -> ExecTarget {
    ExecTarget {
        container_id: "host".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: false,
        stdin,
        stdout: true,
        stderr: true,
    }
}

/// A TCP server on the host that answers each connection with "<n>:" and
/// what it read, upper-cased, then closes.
pub async fn upper_server() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut c, _)) = l.accept().await {
            n += 1;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let _ = c.read_to_end(&mut buf).await;
                let _ = c.write_all(format!("{n}:").as_bytes()).await;
                let _ = c.write_all(&buf.to_ascii_uppercase()).await;
            });
        }
    });
    port
}

/// A TCP server on the host that answers each connection with its first
/// line, upper-cased, then closes (for clients that cannot close their
/// side alone).
pub async fn line_server() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = c.into_split();
                let mut line = Vec::new();
                let _ = tokio::io::BufReader::new(r)
                    .read_until(b'\n', &mut line)
                    .await;
                let _ = w.write_all(&line.to_ascii_uppercase()).await;
            });
        }
    });
    port
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The exec target of a shell script that writes its PID to a file in
/// `dir` and sleeps; the file's path.
pub fn sleeper(dir: &std::path::Path) -> (ExecTarget, std::path::PathBuf) {
    let pidfile = dir.join("pid");
    let script = format!("echo $$ > {}; exec sleep 100", pidfile.display());
    (target(&["sh", "-c", &script], false), pidfile)
}

/// The PID in `pidfile` once the process has written it.
pub async fn started(pidfile: &std::path::Path) -> u32 {
    for _ in 0..100 {
        let pid = std::fs::read_to_string(pidfile).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse() {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the process never started");
}

/// Whether the process is gone (or a zombie) within five seconds.
pub async fn dies(pid: u32) -> bool {
    for _ in 0..100 {
        let zombie_or_gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        if zombie_or_gone {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
