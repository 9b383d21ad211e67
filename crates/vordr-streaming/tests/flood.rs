//! Two thousand connections that never finish their request, against a
//! server capped at 64: each new one displaces the oldest, another
//! client's exec is served within a second, and the process's open files
//! stay within the cap. Alone in its test binary, so that no other test's
//! sockets are counted.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vordr_streaming::client::spdy::exec;
use vordr_streaming::Limits;

const CAP: usize = 64;
const WANTED: usize = 2000;

/// Raises the soft open-file limit towards `want` (up to the hard
/// limit); the soft limit in effect.
fn raise_nofile(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write only the struct given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
        if r.rlim_cur < want {
            r.rlim_cur = want.min(r.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &r), 0);
        }
    }
    r.rlim_cur
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_neither_starve_requests_nor_pile_up_files() {
    // The clients' ends and the server's share this process.
    let limit = raise_nofile(2 * WANTED as u64 + 512) as usize;
    let n = WANTED.min(limit.saturating_sub(2 * CAP + 256));
    assert!(n >= 10 * CAP, "an open-file limit of {limit} is too low");
    if n < WANTED {
        eprintln!("open-file limit {limit}: {n} connections instead of {WANTED}");
    }
    let s = server_with(Limits {
        max_connections: CAP,
        header_read_timeout: Duration::from_secs(60),
        ..Limits::default()
    })
    .await;
    assert_eq!(s.limits().max_connections, CAP);
    let before = open_files();

    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = TcpStream::connect(s.addr()).await.unwrap();
        c.write_all(b"POST /exec/").await.unwrap();
        conns.push(c);
    }
    // All but the newest CAP were displaced, oldest first: the server
    // closed them.
    for (i, c) in conns[..n - CAP].iter_mut().enumerate() {
        let read = tokio::time::timeout(Duration::from_secs(10), c.read(&mut [0u8; 64])).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "connection {i} of {n} is still open: {read:?}"
        );
    }
    conns.drain(..n - CAP);

    // The newest CAP still wait for their heads; another client is served
    // at once.
    let url = s.exec_url(target(&["echo", "served"], false));
    let out = tokio::time::timeout(
        Duration::from_secs(1),
        exec(&url, &["v4.channel.k8s.io"], None, true, true),
    )
    .await
    .expect("an exec during the flood was not served within a second")
    .unwrap();
    assert_eq!(out.stdout, b"served\n");

    // Open files: the clients' CAP ends and at most CAP of the server's.
    let now = open_files();
    assert!(
        now <= before + 2 * CAP + 16,
        "{now} open files, {before} before {n} connections against a cap of {CAP}"
    );
}
