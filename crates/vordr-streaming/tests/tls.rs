//! The streaming server over TLS, with a self-signed certificate made
//! here: https:// URLs, an exec through a rustls client, plain HTTP
//! refused; and a non-loopback address without TLS refused at start.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio_rustls::rustls;
use vordr_spdy::FLAG_FIN;
use vordr_streaming::client::spdy::{exec, next_data, open_streams, upgrade_on};
use vordr_streaming::{Server, ServerError, Settings, TlsFiles};

/// A certificate for 127.0.0.1 and its key, written as PEM in `dir`.
fn self_signed(dir: &std::path::Path) -> (TlsFiles, rustls::pki_types::CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, ck.cert.pem()).unwrap();
    std::fs::write(&files.key, ck.signing_key.serialize_pem()).unwrap();
    (files, ck.cert.der().clone())
}

fn client_config(trusted: rustls::pki_types::CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[tokio::test]
async fn exec_over_tls_with_https_urls() {
    let dir = tempfile::tempdir().unwrap();
    let (files, der) = self_signed(dir.path());
    let mut settings = Settings::new("127.0.0.1:0".parse().unwrap());
    settings.tls = Some(files);
    let s = Server::start_with(settings, Arc::new(HostBackend))
        .await
        .unwrap();
    let url = s.exec_url(target(&["sh", "-c", "echo over-tls; exit 7"], false));
    assert!(
        url.starts_with(&format!("https://{}/exec/", s.addr())),
        "{url}"
    );

    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(der)));
    let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut framed, protocol) = upgrade_on(tls, &url, &["v4.channel.k8s.io"]).await.unwrap();
    assert_eq!(protocol, "v4.channel.k8s.io");
    let ids = open_streams(&mut framed, &["error", "stdout", "stderr"])
        .await
        .unwrap();
    let (mut stdout, mut error, mut open) = (Vec::new(), Vec::new(), 3);
    let read = async {
        while open > 0 {
            let Some((id, flags, data)) = next_data(&mut framed).await.unwrap() else {
                break;
            };
            match ids.get(&id) {
                Some(&"stdout") => stdout.extend_from_slice(&data),
                Some(&"error") => error.extend_from_slice(&data),
                _ => {}
            }
            if flags & FLAG_FIN != 0 {
                open -= 1;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap();
    assert_eq!(stdout, b"over-tls\n");
    let status: serde_json::Value = serde_json::from_slice(&error).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "7");

    // Plain HTTP to the TLS port gets no answer but a closed connection.
    let url = s.exec_url(target(&["true"], false));
    let plain = tokio::time::timeout(
        Duration::from_secs(5),
        exec(&url, &["v4.channel.k8s.io"], None, true, true),
    )
    .await
    .unwrap();
    assert!(plain.is_err(), "{plain:?}");
}

#[tokio::test]
async fn a_non_loopback_address_needs_tls_or_insecure() {
    let any = "0.0.0.0:0".parse().unwrap();
    match Server::start_with(Settings::new(any), Arc::new(HostBackend)).await {
        Err(e @ ServerError::Insecure { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("TLS") && msg.contains("insecure"), "{msg}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("plain HTTP on 0.0.0.0 without insecure"),
    }
    let mut insecure = Settings::new(any);
    insecure.insecure = true;
    let s = Server::start_with(insecure, Arc::new(HostBackend))
        .await
        .unwrap();
    assert!(s.exec_url(target(&["true"], false)).starts_with("http://"));

    let dir = tempfile::tempdir().unwrap();
    let (files, _) = self_signed(dir.path());
    let mut tls = Settings::new(any);
    tls.tls = Some(files.clone());
    let s = Server::start_with(tls, Arc::new(HostBackend))
        .await
        .unwrap();
    assert!(s.exec_url(target(&["true"], false)).starts_with("https://"));

    // A key that is not there, or a certificate file without one.
    let mut missing = Settings::new("127.0.0.1:0".parse().unwrap());
    missing.tls = Some(TlsFiles {
        cert: files.cert.clone(),
        key: dir.path().join("nope.pem"),
    });
    match Server::start_with(missing, Arc::new(HostBackend)).await {
        Err(ServerError::Tls { what, path, .. }) => {
            assert_eq!(what, "private key");
            assert!(path.ends_with("nope.pem"));
        }
        other => panic!("{:?}", other.err()),
    }
    let mut swapped = Settings::new("127.0.0.1:0".parse().unwrap());
    swapped.tls = Some(TlsFiles {
        cert: files.key.clone(),
        key: files.key.clone(),
    });
    match Server::start_with(swapped, Arc::new(HostBackend)).await {
        Err(ServerError::Tls { what, .. }) => assert_eq!(what, "certificate"),
        other => panic!("{:?}", other.err()),
    }
}
