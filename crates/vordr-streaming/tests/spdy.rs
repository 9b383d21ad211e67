//! The streaming server over SPDY/3.1, end to end over loopback with host
//! processes and ports: negotiation, single-use tokens, stdin, stdout,
//! stderr, exit codes per protocol version, a vanishing client, many
//! forwarded connections on one upgrade.

mod common;

use common::*;
use vordr_streaming::client::spdy::{exec, open, port_forward};
use vordr_streaming::client::ClientError;
use vordr_streaming::PortForwardTarget;

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
    let (target, pidfile) = sleeper(dir.path());
    let url = s.exec_url(target);
    let (framed, _, _) = open(&url, &ALL, &["error", "stdout", "stderr"])
        .await
        .unwrap();
    let pid = started(&pidfile).await;
    drop(framed);
    assert!(dies(pid).await, "the process outlived its client");
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
    let closed = closed_port();
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
