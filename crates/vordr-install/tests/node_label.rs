//! The node label's HTTPS PATCH, received by a TLS server on 127.0.0.1
//! with its own CA (no API server runs here): the request kube-apiserver
//! would get, the CA check, and the environment the installer reads.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use vordr_install::node_label::{LabelError, NodeLabel, LABEL, READY};

/// A certificate for 127.0.0.1 and a server that answers each connection's
/// request with `status` and hands back what it received.
async fn server(status: &str) -> (String, Vec<u8>, tokio::task::JoinHandle<Vec<String>>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let status = status.to_string();
    let task = tokio::spawn(async move {
        let mut got = Vec::new();
        // Two requests at most per test; a failed handshake counts as one.
        for _ in 0..2 {
            let Ok(Ok((tcp, _))) =
                tokio::time::timeout(std::time::Duration::from_secs(5), listener.accept()).await
            else {
                break;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                got.push("handshake failed".to_string());
                continue;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let request = loop {
                let n = tls.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len: usize = text[..i]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len || n == 0 {
                        break text;
                    }
                }
            };
            let body = "{\"kind\":\"Status\"}";
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            tls.write_all(resp.as_bytes()).await.unwrap();
            tls.shutdown().await.ok();
            got.push(request);
        }
        got
    });
    (format!("https://{addr}"), ck.cert.pem().into_bytes(), task)
}

fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    request.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn the_label_is_a_merge_patch_of_the_node_with_the_service_account_token() {
    let (server_url, ca, task) = server("200 OK").await;
    let l = NodeLabel {
        server: server_url,
        node: "node-1".into(),
        token: "tok3n".into(),
        ca_pem: ca,
    };
    l.set(Some(READY)).await.unwrap();
    l.set(None).await.unwrap();
    let got = task.await.unwrap();
    assert_eq!(got.len(), 2, "{got:#?}");
    for (request, value) in got.iter().zip(["\"ready\"", "null"]) {
        assert!(
            request.starts_with("PATCH /api/v1/nodes/node-1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert_eq!(header(request, "authorization"), Some("Bearer tok3n"));
        assert_eq!(
            header(request, "content-type"),
            Some("application/merge-patch+json")
        );
        let body = request.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(
            body,
            format!("{{\"metadata\":{{\"labels\":{{\"{LABEL}\":{value}}}}}}}")
        );
    }
}

#[tokio::test]
async fn refusals_and_unknown_servers_are_errors() {
    // RBAC says no: the status and the API's answer are in the error.
    let (server_url, ca, task) = server("403 Forbidden").await;
    let l = NodeLabel {
        server: server_url.clone(),
        node: "node-1".into(),
        token: "t".into(),
        ca_pem: ca,
    };
    let e = l.set(Some(READY)).await.unwrap_err();
    assert!(
        matches!(&e, LabelError::Status { status: 403, body, .. } if body.contains("Status")),
        "{e}"
    );
    // A server whose certificate the cluster's CA did not sign is refused.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let l = NodeLabel {
        ca_pem: other.cert.pem().into_bytes(),
        ..l
    };
    let e = l.set(Some(READY)).await.unwrap_err();
    assert!(matches!(e, LabelError::Request { .. }), "{e}");
    let got = task.await.unwrap();
    assert_eq!(got[1], "handshake failed");
}

#[test]
fn the_environment_says_whether_and_where_to_label() {
    let sa = tempfile::tempdir().unwrap();
    std::fs::write(sa.path().join("token"), "tok\n").unwrap();
    std::fs::write(sa.path().join("ca.crt"), "pem").unwrap();
    // SAFETY (edition 2021: safe): this is the only test here that touches
    // the environment.
    std::env::remove_var("KUBERNETES_SERVICE_HOST");
    std::env::remove_var("NODE_NAME");
    assert!(NodeLabel::from_env(sa.path()).unwrap().is_none());
    std::env::set_var("KUBERNETES_SERVICE_HOST", "fd00::1");
    std::env::set_var("KUBERNETES_SERVICE_PORT", "6443");
    let e = NodeLabel::from_env(sa.path()).unwrap_err();
    assert!(e.to_string().contains("NODE_NAME is not"), "{e}");
    std::env::set_var("NODE_NAME", "n1");
    let l = NodeLabel::from_env(sa.path()).unwrap().unwrap();
    assert_eq!(l.server, "https://[fd00::1]:6443");
    assert_eq!((l.node.as_str(), l.token.as_str()), ("n1", "tok"));
    assert_eq!(l.ca_pem, b"pem");
    std::fs::remove_file(sa.path().join("token")).unwrap();
    let e = NodeLabel::from_env(sa.path()).unwrap_err();
    assert!(e.to_string().starts_with("reading "), "{e}");
}
