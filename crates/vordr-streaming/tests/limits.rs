//! The streaming server's limits against real sockets on loopback: a
//! request head that never ends, upgraded sessions that open no stream, a
//! header block that inflates past its cap, too many streams, too many
//! forwarded connections, and the connection cap with sessions. Each
//! misbehaving client loses its own connection; the others are served.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use vordr_spdy::{goaway, Codec, Frame, FLAG_FIN};
use vordr_streaming::client::spdy::{exec, next_data, port_forward, syn, upgrade};
use vordr_streaming::client::{websocket, ClientError};
use vordr_streaming::{Limits, PortForwardTarget};

const V4: [&str; 1] = ["v4.channel.k8s.io"];
const PF: [&str; 1] = ["portforward.k8s.io"];

fn any_port() -> PortForwardTarget {
    PortForwardTarget {
        pod_id: "host".into(),
        ports: vec![],
    }
}

type Conn = Framed<TcpStream, Codec>;

/// Reads until the server closes the connection (within five seconds, or
/// the test fails); the status of the GOAWAY it sent, if any.
async fn closing(framed: &mut Conn) -> Option<u32> {
    let read = async {
        let mut status = None;
        while let Some(Ok(f)) = framed.next().await {
            if let Frame::GoAway { status: s, .. } = f {
                status = Some(s);
            }
        }
        status
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the server kept the session open")
}

/// Whether an exec on a fresh URL still works, within a second.
async fn still_serves(s: &vordr_streaming::Server) {
    let url = s.exec_url(target(&["echo", "still here"], false));
    let out = tokio::time::timeout(Duration::from_secs(1), exec(&url, &V4, None, true, true))
        .await
        .expect("not served within a second")
        .unwrap();
    assert_eq!(out.stdout, b"still here\n");
    assert_eq!(out.exit_code(), Some(0));
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_dropped_at_the_deadline() {
    let s = server_with(Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    for partial in [
        &b""[..],
        b"POST /exec/0123 HT",
        b"POST /exec/0123 HTTP/1.1\r\nHost: x\r\n",
    ] {
        let mut c = TcpStream::connect(s.addr()).await.unwrap();
        c.write_all(partial).await.unwrap();
        let t = Instant::now();
        let mut got = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            let mut buf = [0u8; 256];
            while let Ok(n @ 1..) = c.read(&mut buf).await {
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(closed.is_ok(), "{partial:?}: still open after 5 s");
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(250),
            "{partial:?}: dropped after {waited:?}, before the deadline"
        );
        let text = String::from_utf8_lossy(&got);
        assert!(!text.contains(" 101 "), "{partial:?}: {text}");
    }
    // A request head in time whose body never comes: answered, and the
    // connection is not held for the body.
    let mut c = TcpStream::connect(s.addr()).await.unwrap();
    let req = "POST /exec/0123 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    c.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = c.read(&mut buf).await {
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a request without its body held its connection"
    );
    assert!(
        got.starts_with(b"HTTP/1.1 404"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );

    // A whole request in time is served as ever.
    still_serves(&s).await;
}

#[tokio::test]
async fn sessions_without_streams_close_when_idle_and_pings_keep_them() {
    let idle = Duration::from_millis(300);
    let s = server_with(Limits {
        idle_timeout: idle,
        ..Limits::default()
    })
    .await;

    // A port-forward that opens nothing: GOAWAY, then closed.
    let (mut pf, _) = upgrade(&s.port_forward_url(any_port()), &PF).await.unwrap();
    let t = Instant::now();
    assert_eq!(closing(&mut pf).await, Some(goaway::OK));
    assert!(t.elapsed() >= idle - Duration::from_millis(50));

    // Pings every 100 ms keep one open well past the idle timeout.
    let (mut pf, _) = upgrade(&s.port_forward_url(any_port()), &PF).await.unwrap();
    for id in (1..20).step_by(2) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        pf.send(Frame::Ping { id }).await.unwrap();
        let pong = tokio::time::timeout(Duration::from_secs(2), pf.next()).await;
        assert!(
            matches!(pong, Ok(Some(Ok(Frame::Ping { id: got }))) if got == id),
            "{pong:?}"
        );
    }
    assert_eq!(closing(&mut pf).await, Some(goaway::OK));

    // A forwarded connection is an open stream: no idle timeout while it
    // lasts, however quiet.
    let lines = line_server().await;
    let (mut pf, _) = upgrade(&s.port_forward_url(any_port()), &PF).await.unwrap();
    let port = lines.to_string();
    for (id, kind) in [(1, "error"), (3, "data")] {
        let h = [("streamtype", kind), ("port", &port), ("requestid", "0")];
        syn(&mut pf, id, &h).await.unwrap();
    }
    tokio::time::sleep(idle * 3).await;
    pf.send(Frame::data(3, FLAG_FIN, Bytes::from_static(b"quiet\n")))
        .await
        .unwrap();
    let mut data = Vec::new();
    while let Some((stream, flags, d)) = next_data(&mut pf).await.unwrap() {
        if stream == 3 {
            data.extend_from_slice(&d);
            if flags & FLAG_FIN != 0 {
                break;
            }
        }
    }
    assert_eq!(data, b"QUIET\n");

    // An exec whose streams never all open is closed too.
    let url = s.exec_url(target(&["true"], false));
    let (mut ex, _) = upgrade(&url, &V4).await.unwrap();
    syn(&mut ex, 1, &[("streamtype", "error")]).await.unwrap();
    let t = Instant::now();
    closing(&mut ex).await;
    assert!(t.elapsed() >= idle - Duration::from_millis(50));
}

/// A SYN_STREAM whose one header's value is `len` zero bytes, compressed
/// with the SPDY dictionary as a fresh zlib stream: a few KiB that inflate
/// to `len`.
fn header_bomb(len: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut raw = Vec::with_capacity(len + 13);
    raw.extend_from_slice(&1u32.to_be_bytes());
    raw.extend_from_slice(&1u32.to_be_bytes());
    raw.push(b'x');
    raw.extend_from_slice(&(len as u32).to_be_bytes());
    raw.resize(len + 13, 0);
    let mut z = Compress::new(Compression::best(), true);
    z.set_dictionary(vordr_spdy::dictionary()).unwrap();
    let mut block = Vec::new();
    loop {
        block.reserve(64 * 1024);
        let done = z.total_in() as usize;
        z.compress_vec(&raw[done..], &mut block, FlushCompress::Sync)
            .unwrap();
        if z.total_in() as usize == raw.len() && block.len() < block.capacity() {
            break;
        }
    }
    let len = 10 + block.len();
    let mut frame = vec![
        0x80,
        3,
        0,
        1,
        0,
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
    ];
    frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    frame.extend_from_slice(&block);
    frame
}

#[tokio::test]
async fn a_header_block_bomb_closes_only_its_session() {
    let s = server().await;
    let bomb = header_bomb(16 << 20);
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    for url in [
        s.exec_url(target(&["true"], false)),
        s.port_forward_url(any_port()),
    ] {
        let protocols: &[&str] = if url.contains("/exec/") { &V4 } else { &PF };
        let (mut framed, _) = upgrade(&url, protocols).await.unwrap();
        // Another client's exec runs while the bomb is handled.
        let other = still_serves(&s);
        framed.get_mut().write_all(&bomb).await.unwrap();
        let (status, ()) = tokio::join!(closing(&mut framed), other);
        assert_eq!(status, Some(goaway::PROTOCOL_ERROR), "{url}");
    }
    still_serves(&s).await;
}

#[tokio::test]
async fn too_many_streams_close_only_that_session() {
    let s = server_with(Limits {
        max_streams_per_session: 8,
        ..Limits::default()
    })
    .await;
    // An exec: nine streams of no known kind.
    let url = s.exec_url(target(&["true"], false));
    let (mut ex, _) = upgrade(&url, &V4).await.unwrap();
    for i in 0..9 {
        syn(&mut ex, 2 * i + 1, &[("streamtype", "junk")])
            .await
            .unwrap();
    }
    assert_eq!(closing(&mut ex).await, Some(goaway::PROTOCOL_ERROR));

    // A port-forward: nine error streams that never get their data stream.
    let (mut pf, _) = upgrade(&s.port_forward_url(any_port()), &PF).await.unwrap();
    for i in 0..9 {
        let request = i.to_string();
        let h = [
            ("streamtype", "error"),
            ("port", "1"),
            ("requestid", &request),
        ];
        syn(&mut pf, 2 * i + 1, &h).await.unwrap();
    }
    assert_eq!(closing(&mut pf).await, Some(goaway::PROTOCOL_ERROR));

    // Eight streams are fine: an exec opens three, four pairs take eight.
    still_serves(&s).await;
    let port = upper_server().await;
    let got = port_forward(
        &s.port_forward_url(any_port()),
        &[(port, b"a"), (port, b"b"), (port, b"c"), (port, b"d")],
    )
    .await
    .unwrap();
    for (g, want) in got.iter().zip([":A", ":B", ":C", ":D"]) {
        assert!(g.error.is_empty(), "{g:?}");
        assert!(g.data.ends_with(want.as_bytes()), "{g:?}");
    }
}

#[tokio::test]
async fn too_many_forwarded_connections_close_only_that_session() {
    let s = server_with(Limits {
        max_port_forward_pairs: 2,
        ..Limits::default()
    })
    .await;
    // Connections to it stay open until a newline comes.
    let lines = line_server().await;
    let port = lines.to_string();
    let (mut pf, _) = upgrade(&s.port_forward_url(any_port()), &PF).await.unwrap();
    for i in 0..3u32 {
        let request = i.to_string();
        for (id, kind) in [(4 * i + 1, "error"), (4 * i + 3, "data")] {
            let h = [
                ("streamtype", kind),
                ("port", &port),
                ("requestid", &request),
            ];
            syn(&mut pf, id, &h).await.unwrap();
        }
        if i < 2 {
            // Let the pair connect before the next one comes.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The third pair's error stream says why; the session ends.
    let mut error = Vec::new();
    let mut status = None;
    let read = async {
        while let Some(Ok(f)) = pf.next().await {
            match f {
                Frame::Data {
                    stream_id: 9, data, ..
                } => error.extend_from_slice(&data),
                Frame::GoAway { status: s, .. } => status = Some(s),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the session stayed open");
    let error = String::from_utf8_lossy(&error);
    assert!(error.contains("at most 2"), "{error}");
    assert_eq!(status, Some(goaway::PROTOCOL_ERROR));

    // Other sessions go on; two pairs at once are fine.
    let got = port_forward(
        &s.port_forward_url(any_port()),
        &[(lines, b"one\n"), (lines, b"two\n")],
    )
    .await
    .unwrap();
    assert_eq!(got[0].data, b"ONE\n");
    assert_eq!(got[1].data, b"TWO\n");
    // Over WebSocket the ports are in the URL: more than the cap is refused.
    let url = s.port_forward_url(any_port());
    let three: [(u16, &[u8]); 3] = [(lines, b"1\n"), (lines, b"2\n"), (lines, b"3\n")];
    match websocket::port_forward(&url, &["v4.channel.k8s.io"], &three).await {
        Err(ClientError::Refused { status: 400, body }) => {
            assert!(body.contains("at most 2"), "{body}")
        }
        other => panic!("three ports over a cap of two: {other:?}"),
    }
}

#[tokio::test]
async fn at_the_cap_sessions_are_kept_and_newcomers_get_503() {
    let s = server_with(Limits {
        max_connections: 2,
        ..Limits::default()
    })
    .await;
    assert_eq!(s.limits().max_connections, 2);
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let (pf, _) = upgrade(&s.port_forward_url(any_port()), &PF).await.unwrap();
        sessions.push(pf);
    }
    // Both slots are sessions: a newcomer is turned away at once.
    let url = s.exec_url(target(&["true"], false));
    match tokio::time::timeout(Duration::from_secs(3), exec(&url, &V4, None, true, true)).await {
        Ok(Err(ClientError::Refused { status: 503, body })) => {
            assert!(body.contains("too many"), "{body}")
        }
        Ok(Err(ClientError::Io(_) | ClientError::Protocol(_))) => {} // closed before the 503 was read
        other => panic!("a third connection over a cap of two: {other:?}"),
    }
    // The sessions are untouched.
    for (i, pf) in sessions.iter_mut().enumerate() {
        let id = 2 * i as u32 + 1;
        pf.send(Frame::Ping { id }).await.unwrap();
        let pong = tokio::time::timeout(Duration::from_secs(2), pf.next()).await;
        assert!(matches!(pong, Ok(Some(Ok(Frame::Ping { id: got }))) if got == id));
    }
    // One leaves: its slot serves the next client.
    sessions.pop();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let url = s.exec_url(target(&["echo", "in"], false));
        match exec(&url, &V4, None, true, true).await {
            Ok(out) => {
                assert_eq!(out.stdout, b"in\n");
                break;
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the freed slot never served: {e}"),
        }
    }
}
