//! The streaming server over WebSocket, end to end over loopback with host
//! processes and ports: binary, base64 and v5 channels, exit codes per
//! protocol, the handshake's refusals, a vanishing client, and
//! port-forwarding several ports on one connection.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vordr_streaming::client::websocket::{connect, exec, port_forward};
use vordr_streaming::client::{spdy, ClientError};
use vordr_streaming::PortForwardTarget;

const V4: [&str; 1] = ["v4.channel.k8s.io"];
const V4_BASE64: [&str; 1] = ["v4.base64.channel.k8s.io"];
const V5: [&str; 1] = ["v5.channel.k8s.io"];

#[tokio::test]
async fn exec_over_binary_base64_and_v5_channels() {
    let s = server().await;
    let url = s.exec_url(target(&["echo", "hello"], false));
    let out = exec(&url, &V4, None).await.unwrap();
    assert_eq!(out.protocol, "v4.channel.k8s.io");
    assert_eq!(out.stdout, b"hello\n");
    assert!(out.stderr.is_empty());
    assert_eq!(out.exit_code(), Some(0));

    // Base64 text messages: stdout and stderr apart, exit code 3.
    let script = "printf 'out\\377'; echo err >&2; exit 3";
    let url = s.exec_url(target(&["sh", "-c", script], false));
    let out = exec(&url, &V4_BASE64, None).await.unwrap();
    assert_eq!(out.protocol, "v4.base64.channel.k8s.io");
    assert_eq!(out.stdout, b"out\xff");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.exit_code(), Some(3));

    // v5 closes stdin: 1 MiB through cat and back.
    let input: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let url = s.exec_url(target(&["cat"], true));
    let out = exec(&url, &V5, Some(&input)).await.unwrap();
    assert_eq!(out.protocol, "v5.channel.k8s.io");
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input);
    assert_eq!(out.exit_code(), Some(0));

    // v4 cannot close stdin: a command that reads what it needs ends.
    let url = s.exec_url(target(&["head", "-c", "5"], true));
    let out = exec(&url, &V4_BASE64, Some(b"hello world")).await.unwrap();
    assert_eq!(out.stdout, b"hello");

    // Before v4 the error channel carries a message, nothing on success;
    // a client that offers no protocol gets binary channels.
    let url = s.exec_url(target(&["sh", "-c", "exit 5"], false));
    let out = exec(&url, &["base64.channel.k8s.io"], None).await.unwrap();
    assert_eq!(out.protocol, "base64.channel.k8s.io");
    assert!(String::from_utf8_lossy(&out.error).contains("exit code 5"));
    let url = s.exec_url(target(&["echo", "plain"], false));
    let out = exec(&url, &[], None).await.unwrap();
    assert_eq!(out.protocol, "");
    assert_eq!(out.stdout, b"plain\n");
    assert!(out.error.is_empty());
}

/// The path of an `http://` URL.
fn path_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    rest[rest.find('/').unwrap()..].to_string()
}

/// A raw HTTP request; the status and body of the answer.
async fn raw(addr: std::net::SocketAddr, path: &str, headers: &[&str]) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // The answers here are small and complete; stop at the first pause.
    while let Ok(Ok(n)) =
        tokio::time::timeout(std::time::Duration::from_millis(300), tcp.read(&mut buf)).await
    {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

#[tokio::test]
async fn the_handshake_refuses_what_it_cannot_serve() {
    let s = server().await;
    let url = s.exec_url(target(&["true"], false));
    match exec(&url, &["v9.channel.k8s.io"], None).await {
        Err(ClientError::Refused { status: 403, body }) => {
            assert!(body.contains("v9.channel.k8s.io"), "{body}");
            assert!(body.contains("v4.base64.channel.k8s.io"), "{body}");
        }
        other => panic!("unknown protocol: {other:?}"),
    }
    // The token went with the refused attempt.
    assert!(matches!(
        exec(&url, &V4, None).await,
        Err(ClientError::Refused { status: 404, .. })
    ));
    // A working URL is single use, whichever transport used it.
    let url = s.exec_url(target(&["true"], false));
    exec(&url, &V4, None).await.unwrap();
    assert!(matches!(
        spdy::exec(&url, &V4, None, true, true).await,
        Err(ClientError::Refused { status: 404, .. })
    ));

    let path = |url: String| path_of(&url);
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
    let (status, body) = raw(
        s.addr(),
        &path(s.exec_url(target(&["true"], false))),
        &["Upgrade: websocket", "Sec-WebSocket-Version: 8", key],
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("version"), "{body}");
    let (status, body) = raw(
        s.addr(),
        &path(s.exec_url(target(&["true"], false))),
        &["Upgrade: websocket", "Sec-WebSocket-Version: 13"],
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("Sec-WebSocket-Key"), "{body}");
    let (status, body) = raw(
        s.addr(),
        &path(s.exec_url(target(&["true"], false))),
        &["Upgrade: h2c"],
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body.contains("SPDY/3.1") && body.contains("websocket"),
        "{body}"
    );
    // A port-forward over WebSocket names its ports in the query.
    let pf = || {
        s.port_forward_url(PortForwardTarget {
            pod_id: "host".into(),
            ports: vec![],
        })
    };
    match connect(&pf(), &V4).await {
        Err(ClientError::Refused { status: 400, body }) => {
            assert!(body.contains("\"port\" is required"), "{body}")
        }
        other => panic!("no ports: {other:?}"),
    }
    match connect(&format!("{}?port=0", pf()), &V4).await {
        Err(ClientError::Refused { status: 400, body }) => {
            assert!(body.contains("\"0\""), "{body}")
        }
        other => panic!("port 0: {other:?}"),
    }
    // Exec's protocols are not port-forward's.
    assert!(matches!(
        connect(&format!("{}?port=80", pf()), &V5).await,
        Err(ClientError::Refused { status: 403, .. })
    ));
}

#[tokio::test]
async fn the_accept_key_is_rfc_6455s() {
    let s = server().await;
    let url = s.exec_url(target(&["sleep", "1"], false));
    let path = path_of(&url);
    let mut tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(tcp.read(&mut b).await.unwrap(), 1);
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    assert!(
        head.contains("sec-websocket-protocol: v4.channel.k8s.io"),
        "{head}"
    );
    assert!(head.contains("upgrade: websocket"), "{head}");
}

#[tokio::test]
async fn a_vanishing_client_gets_its_process_killed() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    let (target, pidfile) = sleeper(dir.path());
    let (ws, _) = connect(&s.exec_url(target), &V4).await.unwrap();
    let pid = started(&pidfile).await;
    drop(ws);
    assert!(dies(pid).await, "the process outlived its client");
}

#[tokio::test]
async fn port_forward_carries_several_ports_on_one_connection() {
    let s = server().await;
    let (lines, closed) = (line_server().await, closed_port());
    let url = s.port_forward_url(PortForwardTarget {
        pod_id: "host".into(),
        ports: vec![lines, closed],
    });
    let big = vec![b'a'; (3 << 20) - 1];
    let big_line = [big.as_slice(), b"\n"].concat();
    let conns: [(u16, &[u8]); 4] = [
        (lines, b"hello\n"),
        (lines, &big_line),
        (closed, b"x\n"),
        (lines + 1, b"y\n"),
    ];
    let got = port_forward(&url, &V4, &conns).await.unwrap();
    let text = |v: &[u8]| String::from_utf8_lossy(v).to_string();
    assert_eq!(text(&got[0].data), "HELLO\n");
    assert!(got[0].error.is_empty(), "{}", text(&got[0].error));
    assert_eq!(got[1].data.len(), big_line.len());
    assert!(got[1].data.starts_with(&[b'A'; 1000]));
    assert!(
        text(&got[2].error).contains(&format!("port {closed}")),
        "{got:?}"
    );
    assert!(text(&got[3].error).contains("was not requested"), "{got:?}");

    // A pair that fails at once ends the session while the client's data is
    // still unread: the client still gets the error and a clean close.
    for _ in 0..20 {
        let url = s.port_forward_url(PortForwardTarget {
            pod_id: "host".into(),
            ports: vec![],
        });
        let got = port_forward(&url, &V4, &[(closed, &[b'z'; 4096])])
            .await
            .unwrap();
        assert!(
            text(&got[0].error).contains(&format!("port {closed}")),
            "{got:?}"
        );
    }

    // Base64 channels, and a URL that allows any port.
    let url = s.port_forward_url(PortForwardTarget {
        pod_id: "host".into(),
        ports: vec![],
    });
    let got = port_forward(&url, &V4_BASE64, &[(lines, b"b64\xff\n")])
        .await
        .unwrap();
    assert_eq!(got[0].data, b"B64\xff\n");
}
