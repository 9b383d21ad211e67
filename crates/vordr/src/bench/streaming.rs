//! Exec and port-forward round trips through a pod, over SPDY and WebSocket.

use std::time::Instant;

use anyhow::{Context, Result};
use vordr_client::{cri, CriClient};
use vordr_streaming::client;

use super::args::BenchArgs;
use super::lifecycle::{start_pod_with_container, tear_down};
use super::report::Samples;

/// Bytes the port-forward benchmark downloads.
const FORWARD_BYTES: usize = 64 << 20;

/// Exec round trips and port-forward downloads in one pod.
pub(super) async fn streaming(
    c: &mut CriClient,
    img: &str,
    a: &BenchArgs,
    s: &mut Samples,
) -> Result<()> {
    let tag = format!("s{}", std::process::id());
    let (pod_id, id, _) = start_pod_with_container(c, img, &tag, 0, "").await?;
    exec_round_trips(c, &id, a, s).await?;
    port_forward_downloads(c, &pod_id, &id, a, s).await?;
    tear_down(c, &pod_id, &id).await?;
    Ok(())
}

/// `echo` through Exec, over SPDY then WebSocket.
async fn exec_round_trips(
    c: &mut CriClient,
    id: &str,
    a: &BenchArgs,
    s: &mut Samples,
) -> Result<()> {
    for websocket in [false, true] {
        let exec_row = if websocket {
            "Exec echo, WebSocket (round trip)"
        } else {
            "Exec echo, SPDY (round trip)"
        };
        for i in 0..a.warmup + a.iterations {
            let t = Instant::now();
            let url = c
                .runtime
                .exec(cri::ExecRequest {
                    container_id: id.to_string(),
                    cmd: vec!["echo".into(), "hi".into()],
                    tty: false,
                    stdin: false,
                    stdout: true,
                    stderr: true,
                })
                .await
                .context("Exec")?
                .into_inner()
                .url;
            let v4 = ["v4.channel.k8s.io"];
            let out = if websocket {
                client::websocket::exec(&url, &v4, None).await?
            } else {
                client::spdy::exec(&url, &v4, None, true, true).await?
            };
            anyhow::ensure!(out.stdout == b"hi\n", "exec echo printed {:?}", out.stdout);
            if i >= a.warmup {
                s.add(exec_row, t.elapsed());
            }
        }
    }
    Ok(())
}

/// Downloads through PortForward from a web server started in container
/// `id` of pod `pod_id`, over SPDY then WebSocket.
async fn port_forward_downloads(
    c: &mut CriClient,
    pod_id: &str,
    id: &str,
    a: &BenchArgs,
    s: &mut Samples,
) -> Result<()> {
    let serve = format!(
        "head -c {FORWARD_BYTES} /dev/zero > /tmp/pf.bin && busybox httpd -p 127.0.0.1:8099 -h /tmp"
    );
    c.runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: vec!["sh".into(), "-c".into(), serve],
            timeout: 30,
        })
        .await
        .context("starting the web server")?;
    let get = b"GET /pf.bin HTTP/1.0\r\n\r\n";
    for websocket in [false, true] {
        let row = format!(
            "PortForward {} MiB download, {}",
            FORWARD_BYTES >> 20,
            if websocket { "WebSocket" } else { "SPDY" }
        );
        for i in 0..1 + a.iterations.min(5) {
            let url = c
                .runtime
                .port_forward(cri::PortForwardRequest {
                    pod_sandbox_id: pod_id.to_string(),
                    port: vec![8099],
                })
                .await
                .context("PortForward")?
                .into_inner()
                .url;
            let t = Instant::now();
            let got = if websocket {
                client::websocket::port_forward(&url, &["v4.channel.k8s.io"], &[(8099, get)])
                    .await?
            } else {
                client::spdy::port_forward(&url, &[(8099, get)]).await?
            };
            let took = t.elapsed();
            anyhow::ensure!(
                got[0].data.len() > FORWARD_BYTES,
                "port-forward brought {} bytes: {}",
                got[0].data.len(),
                String::from_utf8_lossy(&got[0].error)
            );
            if i > 0 {
                s.add(&row, took);
            }
        }
    }
    Ok(())
}
