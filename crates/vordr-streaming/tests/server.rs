//! The streaming server end to end over loopback, with a backend that runs
//! the command as a host process: negotiation, single-use tokens, stdin,
//! stdout, stderr, exit codes per protocol version, a vanishing client.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vordr_streaming::client::{exec, open, port_forward, ClientError};
use vordr_streaming::{Backend, ExecIo, ExecTarget, PortForwardTarget, Server};

/// Runs the command on the host.
struct HostBackend;

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

async fn server() -> Arc<Server> {
    Server::start("127.0.0.1:0".parse().unwrap(), Arc::new(HostBackend))
        .await
        .unwrap()
}

fn target(cmd: &[&str], stdin: bool) -> ExecTarget {
    ExecTarget {
        container_id: "host".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: false,
        stdin,
        stdout: true,
        stderr: true,
    }
}

const ALL: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

#[tokio::test]
async fn exec_streams_and_exit_codes() {
    let s = server().await;
    let url = s.exec_url(target(&["echo", "hello"], false));
    let out = exec(&url, &ALL, None, true, true).await.unwrap();
    assert_eq!(out.protocol, "v4.channel.k8s.io");
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.exit_code(), Some(0));

    // 1 MiB through stdin and back, stderr apart, exit code 3.
    let input: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let url = s.exec_url(target(&["sh", "-c", "cat; echo err >&2; exit 3"], true));
    let out = exec(&url, &ALL, Some(&input), true, true).await.unwrap();
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input);
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.exit_code(), Some(3));
    let status: serde_json::Value = serde_json::from_slice(&out.error).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");

    // Before v4 the error stream carries a message, and nothing on success.
    let url = s.exec_url(target(&["sh", "-c", "exit 5"], false));
    let out = exec(&url, &["v2.channel.k8s.io"], None, true, true)
        .await
        .unwrap();
    assert_eq!(out.protocol, "v2.channel.k8s.io");
    assert!(String::from_utf8_lossy(&out.error).contains("exit code 5"));
    let url = s.exec_url(target(&["true"], false));
    let out = exec(&url, &["channel.k8s.io"], None, true, true)
        .await
        .unwrap();
    assert!(out.error.is_empty());
}

#[tokio::test]
async fn tokens_are_single_use_and_protocols_are_negotiated() {
    let s = server().await;
    let url = s.exec_url(target(&["true"], false));
    exec(&url, &ALL, None, true, true).await.unwrap();
    match exec(&url, &ALL, None, true, true).await {
        Err(ClientError::Refused { status: 404, body }) => {
            assert!(body.contains("token"), "{body}")
        }
        other => panic!("reused token: {other:?}"),
    }
    let bogus = format!("http://{}/exec/0123456789abcdef", s.addr());
    assert!(matches!(
        exec(&bogus, &ALL, None, true, true).await,
        Err(ClientError::Refused { status: 404, .. })
    ));
    let url = s.exec_url(target(&["true"], false));
    match exec(&url, &["v9.channel.k8s.io"], None, true, true).await {
        Err(ClientError::Refused { status: 403, body }) => {
            assert!(body.contains("v4.channel.k8s.io"), "{body}");
            assert!(body.contains("v9.channel.k8s.io"), "{body}");
        }
        other => panic!("unknown protocol: {other:?}"),
    }
}

#[tokio::test]
async fn a_vanishing_client_gets_its_process_killed() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 100", pidfile.display());
    let url = s.exec_url(target(&["sh", "-c", &script], false));
    let (framed, _, _) = open(&url, &ALL, &["error", "stdout", "stderr"])
        .await
        .unwrap();
    let mut pid = String::new();
    for _ in 0..100 {
        pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
        if !pid.trim().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let proc_dir = format!("/proc/{}", pid.trim());
    assert!(std::path::Path::new(&proc_dir).exists());
    drop(framed);
    for _ in 0..100 {
        let zombie_or_gone = std::fs::read_to_string(format!("{proc_dir}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        if zombie_or_gone {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the process outlived its client");
}

/// A TCP server on the host that answers each connection with "<n>:" and
/// what it read, upper-cased, then closes.
async fn upper_server() -> u16 {
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

#[tokio::test]
async fn port_forward_carries_many_connections_on_one_upgrade() {
    let s = server().await;
    let port = upper_server().await;
    let url = s.port_forward_url(PortForwardTarget {
        pod_id: "host".into(),
        ports: vec![],
    });
    let big = vec![b'a'; 3 << 20];
    let got = port_forward(&url, &[(port, b"hello"), (port, &big), (port, b"")])
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    for g in &got {
        assert!(
            g.error.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&g.error)
        );
    }
    let text = |v: &[u8]| String::from_utf8_lossy(v).to_string();
    assert!(
        text(&got[0].data).ends_with(":HELLO"),
        "{}",
        text(&got[0].data)
    );
    assert_eq!(got[1].data.len(), big.len() + 2);
    assert!(got[1].data.ends_with(&vec![b'A'; 1000]));
    assert!(text(&got[2].data).ends_with(':'));

    // A closed port and a port the URL was not for: errors on the error stream.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = s.port_forward_url(PortForwardTarget {
        pod_id: "host".into(),
        ports: vec![closed, port],
    });
    let got = port_forward(&url, &[(closed, b"x"), (port + 1, b"y"), (port, b"ok")])
        .await
        .unwrap();
    assert!(
        text(&got[0].error).contains(&format!("port {closed}")),
        "{got:?}"
    );
    assert!(text(&got[1].error).contains("was not requested"), "{got:?}");
    assert!(got[2].error.is_empty() && text(&got[2].data).ends_with(":OK"));
    // Port-forward URLs are single use and speak only portforward.k8s.io.
    assert!(matches!(
        port_forward(&url, &[(port, b"")]).await,
        Err(ClientError::Refused { status: 404, .. })
    ));
    let url = s.port_forward_url(PortForwardTarget {
        pod_id: "host".into(),
        ports: vec![],
    });
    assert!(matches!(
        exec(&url, &["v4.channel.k8s.io"], None, true, true).await,
        Err(ClientError::Refused { status: 403, .. })
    ));
}
