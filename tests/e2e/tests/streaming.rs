//! Exec, attach and port-forward through the streaming server against
//! real containers, with the project's own SPDY and WebSocket clients:
//! output, stdin, stderr, terminals, exit codes, bad requests, and a
//! client that vanishes mid-stream; a flood of half-open connections.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tonic::Code;
use vordr_e2e::setup::*;
use vordr_e2e::*;
use vordr_streaming::client::spdy::{exec, exec_tty, open, port_forward};
use vordr_streaming::client::{websocket, ClientError};

const V4: [&str; 2] = ["v4.channel.k8s.io", "channel.k8s.io"];

async fn exec_url(
    s: &mut Setup,
    id: &str,
    cmd: &[&str],
    stdin: bool,
) -> Result<String, tonic::Status> {
    s.c.runtime
        .exec(cri::ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|c| c.to_string()).collect(),
            tty: false,
            stdin,
            stdout: true,
            stderr: true,
        })
        .await
        .map(|r| r.into_inner().url)
}

/// An Exec URL with a terminal: stdin and stdout, no stderr.
async fn tty_url(s: &mut Setup, id: &str, cmd: &[&str]) -> String {
    s.c.runtime
        .exec(cri::ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|c| c.to_string()).collect(),
            tty: true,
            stdin: true,
            stdout: true,
            stderr: false,
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

/// Waits until `n` processes in the container run `sleep 4242`.
async fn sleepers_become(s: &mut Setup, id: &str, n: usize) -> bool {
    for _ in 0..100 {
        if sleepers(s, id).await == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Checks that the exec of `sleep 4242` behind `conn` runs, and that
/// dropping the connection kills it and removes its FIFOs.
async fn dies_with_its_client<C>(s: &mut Setup, id: &str, conn: C) {
    assert!(sleepers_become(s, id, 1).await, "the exec never started");
    drop(conn);
    assert!(
        sleepers_become(s, id, 0).await,
        "the exec outlived its client"
    );
    let fifos = exec_fifos(s, id);
    assert!(fifos.is_empty(), "{fifos:?}");
}

/// The exec FIFOs left in the container's bundle.
fn exec_fifos(s: &Setup, id: &str) -> Vec<String> {
    let bundle = s.d.run_dir.join("bundles").join(id);
    std::fs::read_dir(&bundle)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".stdout") || n.ends_with(".stderr") || n.ends_with(".stdin"))
        .collect()
}

async fn sleepers(s: &mut Setup, id: &str) -> usize {
    let out = s.exec(id, &["ps"], 10).await.unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("sleep 4242"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_over_spdy_in_a_real_container() {
    let Some(mut s) = setup("stream").await else {
        return;
    };
    let pod = s.pod("stream-pod", "").await;
    let cfg = s.config("app", &["sleep", "1000"]);
    let id = s.run(&pod, cfg).await;

    let url = exec_url(
        &mut s,
        &id,
        &["sh", "-c", "echo out; hostname; echo err >&2"],
        false,
    )
    .await
    .unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let out = exec(&url, &V4, None, true, true).await.unwrap();
    assert_eq!(out.protocol, "v4.channel.k8s.io");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\nstream-pod\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.exit_code(), Some(0));
    // With a terminal: one stream of output through a pty (CRLF line
    // ends), sized as the client said.
    let script = "tty; read x; echo got-$x; stty size";
    let url = tty_url(&mut s, &id, &["sh", "-c", script]).await;
    let out = exec_tty(&url, &V4, Some(b"abc\n"), (100, 30))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // The terminal is the container's own (its devpts), as with runc.
    assert!(text.lines().any(|l| l.starts_with("/dev/pts/")), "{text:?}");
    assert!(text.contains("got-abc\r\n"), "{text:?}");
    assert!(text.contains("30 100"), "{text:?}");
    assert_eq!(
        out.exit_code(),
        Some(0),
        "{:?}",
        String::from_utf8_lossy(&out.error)
    );
    // The URL was single use.
    assert!(matches!(
        exec(&url, &V4, None, true, true).await,
        Err(ClientError::Refused { status: 404, .. })
    ));

    // 2 MiB through the container's stdin and back; exit code 7.
    let input: Vec<u8> = (0..2 << 20).map(|i| (i % 253) as u8).collect();
    let url = exec_url(&mut s, &id, &["sh", "-c", "cat; exit 7"], true)
        .await
        .unwrap();
    let out = exec(&url, &V4, Some(&input), true, true).await.unwrap();
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input);
    assert_eq!(out.exit_code(), Some(7));

    // A client that vanishes mid-stream: its process is killed.
    let url = exec_url(&mut s, &id, &["sleep", "4242"], false)
        .await
        .unwrap();
    let (framed, _, _) = open(&url, &V4, &["error", "stdout", "stderr"])
        .await
        .unwrap();
    dies_with_its_client(&mut s, &id, framed).await;

    // Bad requests name the field.
    let code = |r: Result<String, tonic::Status>| r.unwrap_err().code();
    assert_eq!(
        code(exec_url(&mut s, &id, &[], false).await),
        Code::InvalidArgument
    );
    let none =
        s.c.runtime
            .exec(cri::ExecRequest {
                container_id: id.clone(),
                cmd: vec!["true".into()],
                ..Default::default()
            })
            .await
            .unwrap_err();
    assert_eq!(none.code(), Code::InvalidArgument);
    assert!(none.message().contains("stdin, stdout, stderr"), "{none:?}");
    let tty_err =
        s.c.runtime
            .exec(cri::ExecRequest {
                container_id: id.clone(),
                cmd: vec!["true".into()],
                tty: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
    assert_eq!(tty_err.code(), Code::InvalidArgument);
    assert_eq!(
        code(exec_url(&mut s, "0123456789ab", &["true"], false).await),
        Code::NotFound
    );
    s.c.runtime
        .stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        code(exec_url(&mut s, &id, &["true"], false).await),
        Code::FailedPrecondition
    );
}

/// runc (the fallback handler) allocates an exec's terminal in the
/// container's devpts and leaves the process to the shim.
#[tokio::test(flavor = "multi_thread")]
async fn terminal_exec_under_runc() {
    let Some(mut s) = setup("runctty").await else {
        return;
    };
    let pod = s.pod("runc-pod", "runc").await;
    let cfg = s.config("app", &["sleep", "1000"]);
    let id = s.run(&pod, cfg).await;
    let script = "tty; read x; echo got-$x; stty size; exit 2";
    let url = tty_url(&mut s, &id, &["sh", "-c", script]).await;
    let out = exec_tty(&url, &V4, Some(b"abc\n"), (90, 20)).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.lines().any(|l| l.starts_with("/dev/pts/")), "{text:?}");
    assert!(text.contains("got-abc\r\n"), "{text:?}");
    assert!(text.contains("20 90"), "{text:?}");
    assert_eq!(
        out.exit_code(),
        Some(2),
        "{:?}",
        String::from_utf8_lossy(&out.error)
    );
    // The same over WebSocket, and a client that leaves kills it.
    let url = tty_url(&mut s, &id, &["sh", "-c", script]).await;
    let out = websocket::exec_tty(&url, &["v4.channel.k8s.io"], Some(b"ws\n"), (70, 10))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("got-ws\r\n") && text.contains("10 70"),
        "{text:?}"
    );
    assert_eq!(out.exit_code(), Some(2));
    let url = tty_url(&mut s, &id, &["sleep", "4242"]).await;
    let (ws, _) = websocket::connect(&url, &["v4.channel.k8s.io"])
        .await
        .unwrap();
    dies_with_its_client(&mut s, &id, ws).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_over_websocket_in_a_real_container() {
    let Some(mut s) = setup("wsexec").await else {
        return;
    };
    let pod = s.pod("ws-pod", "").await;
    let cfg = s.config("app", &["sleep", "1000"]);
    let id = s.run(&pod, cfg).await;

    let script = ["sh", "-c", "echo out; hostname; echo err >&2; exit 4"];
    let url = exec_url(&mut s, &id, &script, false).await.unwrap();
    let out = websocket::exec(&url, &["v4.channel.k8s.io"], None)
        .await
        .unwrap();
    assert_eq!(out.protocol, "v4.channel.k8s.io");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\nws-pod\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.exit_code(), Some(4));
    // Base64 text channels carry any byte.
    let url = exec_url(&mut s, &id, &["sh", "-c", "printf 'a\\001\\377b'"], false)
        .await
        .unwrap();
    let out = websocket::exec(&url, &["v4.base64.channel.k8s.io"], None)
        .await
        .unwrap();
    assert_eq!(out.protocol, "v4.base64.channel.k8s.io");
    assert_eq!(out.stdout, b"a\x01\xffb");
    assert_eq!(out.exit_code(), Some(0));

    // v5 closes stdin: 2 MiB through cat and back.
    let input: Vec<u8> = (0..2 << 20).map(|i| (i % 251) as u8).collect();
    let url = exec_url(&mut s, &id, &["cat"], true).await.unwrap();
    let out = websocket::exec(&url, &["v5.channel.k8s.io"], Some(&input))
        .await
        .unwrap();
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input);
    assert_eq!(out.exit_code(), Some(0));

    // A terminal, sized as the client said (v4: the shell reads one line).
    let url = tty_url(&mut s, &id, &["sh", "-c", "read x; echo got-$x; stty size"]).await;
    let out = websocket::exec_tty(&url, &["v4.channel.k8s.io"], Some(b"xyz\n"), (120, 40))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("got-xyz\r\n"), "{text:?}");
    assert!(text.contains("40 120"), "{text:?}");
    assert_eq!(out.exit_code(), Some(0));

    // A client that vanishes: its process is killed, its FIFOs removed.
    let url = exec_url(&mut s, &id, &["sleep", "4242"], false)
        .await
        .unwrap();
    let (ws, _) = websocket::connect(&url, &["v4.channel.k8s.io"])
        .await
        .unwrap();
    dies_with_its_client(&mut s, &id, ws).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_into_a_pod() {
    let Some(mut s) = setup("pfwd").await else {
        return;
    };
    let pod = s.pod("pfwd-pod", "").await;
    let cfg = s.config(
        "web",
        &[
            "sh",
            "-c",
            "mkdir -p /tmp/www && echo hello-pf > /tmp/www/index.html && \
             exec busybox httpd -f -p 127.0.0.1:8080 -h /tmp/www",
        ],
    );
    s.run(&pod, cfg).await;
    let url = |s: &mut Setup, ports: Vec<i32>| {
        let mut c = s.c.clone();
        let pod = pod.0.clone();
        async move {
            c.runtime
                .port_forward(cri::PortForwardRequest {
                    pod_sandbox_id: pod,
                    port: ports,
                })
                .await
                .map(|r| r.into_inner().url)
        }
    };
    // The server listens on the pod's loopback only: nothing but a
    // connection made inside the pod's network namespace reaches it.
    let get = b"GET /index.html HTTP/1.0\r\n\r\n";
    let mut answered = None;
    for _ in 0..50 {
        let u = url(&mut s, vec![8080]).await.unwrap();
        let got = port_forward(&u, &[(8080, get), (8080, get)]).await.unwrap();
        if got.iter().all(|g| g.error.is_empty()) {
            answered = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = answered.expect("httpd never answered through the port-forward");
    for g in &got {
        let text = String::from_utf8_lossy(&g.data);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.ends_with("hello-pf\n"), "{text}");
    }
    // Over WebSocket: both connections on one upgrade, channels opened
    // with the port number.
    let u = url(&mut s, vec![8080]).await.unwrap();
    let got = websocket::port_forward(&u, &["v4.channel.k8s.io"], &[(8080, get), (8080, get)])
        .await
        .unwrap();
    for g in &got {
        let text = String::from_utf8_lossy(&g.data);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.ends_with("hello-pf\n"), "{text}");
    }
    // A port nobody listens on: the error stream says so.
    let u = url(&mut s, vec![]).await.unwrap();
    let got = port_forward(&u, &[(9, b"x")]).await.unwrap();
    assert!(
        String::from_utf8_lossy(&got[0].error).contains("connecting to port 9"),
        "{got:?}"
    );
    let u = url(&mut s, vec![]).await.unwrap();
    let got = websocket::port_forward(&u, &["v4.base64.channel.k8s.io"], &[(9, b"x")])
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&got[0].error).contains("connecting to port 9"),
        "{got:?}"
    );
    // Bad requests.
    assert_eq!(
        url(&mut s, vec![70000]).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut c = s.c.clone();
    let e = c
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: "0123456789ab".into(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

async fn attach_url(s: &mut Setup, id: &str) -> String {
    s.c.runtime
        .attach(cri::AttachRequest {
            container_id: id.into(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_to_a_shell() {
    let Some(mut s) = setup("attach").await else {
        return;
    };
    let pod = s.pod("attach-pod", "").await;
    let mut cfg = s.config("sh", &["sh"]);
    cfg.stdin = true;
    cfg.stdin_once = true;
    let id = s.run(&pod, cfg.clone()).await;
    let url = attach_url(&mut s, &id).await;
    assert!(url.contains("/attach/"), "{url}");
    // The shell runs what it reads, on its stdout and stderr; closing our
    // input closes its stdin (stdin_once): it exits, and the attach ends.
    let out = exec(
        &url,
        &V4,
        Some(b"echo attached-$((2+3)); echo oops >&2\n"),
        true,
        true,
    )
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "attached-5\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(out.exit_code(), Some(0));
    let st = s.wait_exit(&id).await;
    assert_eq!(st.exit_code, 0);
    // Over WebSocket v5, which can close stdin too.
    cfg.metadata.as_mut().unwrap().name = "sh2".into();
    let id2 = s.run(&pod, cfg).await;
    let url = attach_url(&mut s, &id2).await;
    let out = websocket::exec(
        &url,
        &["v5.channel.k8s.io"],
        Some(b"echo ws-$((4+3)); echo ws-err >&2; exit 9\n"),
    )
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ws-7\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "ws-err\n");
    assert_eq!(s.wait_exit(&id2).await.exit_code, 9);
    // Attach to a container that is not running is refused.
    let e =
        s.c.runtime
            .attach(cri::AttachRequest {
                container_id: id,
                stdin: false,
                tty: false,
                stdout: true,
                stderr: false,
            })
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

/// The daemon's open files and resident memory (KiB).
fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    (fds, rss)
}

/// A soft limit from /proc/<pid>/limits ("Max open files").
fn open_file_limit(pid: u32) -> usize {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Times a CRI Version call; it must answer within a second.
async fn version_within_a_second(c: &mut CriClient, when: &str) {
    let t = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(1),
        c.runtime.version(cri::VersionRequest::default()),
    )
    .await
    .unwrap_or_else(|_| panic!("Version took over a second {when}"))
    .unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{when}");
}

/// 2,000 connections to the daemon's streaming port that never finish
/// their request: CRI keeps answering within a second, the streaming
/// server still answers, and the daemon holds at most its connection cap
/// of them (1,000 by default, or half its open-file limit).
#[tokio::test(flavor = "multi_thread")]
async fn half_open_streaming_connections_leave_cri_answering() {
    if !can_run() {
        return;
    }
    // This process holds the clients' ends; the daemon inherits the limit.
    let wanted = 2000usize;
    let mut r = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct given.
    unsafe {
        assert_eq!(nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut r), 0);
        r.rlim_cur = r.rlim_cur.max((2 * wanted as u64 + 512).min(r.rlim_max));
        assert_eq!(nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &r), 0);
    }
    let n = wanted.min((r.rlim_cur as usize).saturating_sub(256));
    let d = Daemon::start("flood").await;
    let mut c = d.client().await;
    let info = c
        .runtime
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner()
        .info;
    let addr: std::net::SocketAddr = serde_json::from_str::<String>(&info["streaming"])
        .unwrap()
        .parse()
        .unwrap();
    let pid = d.pid().unwrap();
    let cap = 1000.min(open_file_limit(pid) / 2);
    assert!(n > cap, "{n} connections cannot reach a cap of {cap}");
    let (fds0, rss0) = fds_and_rss(pid);

    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"POST /exec/").await.unwrap();
        conns.push(tcp);
        if i % 250 == 0 {
            version_within_a_second(&mut c, &format!("after {i} connections")).await;
        }
    }
    for i in 0..5 {
        version_within_a_second(&mut c, &format!("with {n} connections open ({i})")).await;
    }
    // The streaming server answers a whole request at once too.
    let t = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /exec/0123 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(1), tcp.read_exact(&mut head))
        .await
        .expect("the streaming server did not answer within a second")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 404", "{:?}", t.elapsed());

    let (fds, rss) = fds_and_rss(pid);
    eprintln!(
        "daemon: {fds0} -> {fds} open files, {rss0} -> {rss} KiB; {n} connections, cap {cap}"
    );
    assert!(
        fds <= fds0 + cap + 64,
        "the daemon has {fds} open files ({fds0} before {n} connections, cap {cap})"
    );
    assert!(
        rss <= rss0 + 64 * 1024,
        "the daemon's memory grew from {rss0} KiB to {rss} KiB"
    );
    drop(conns);
}
