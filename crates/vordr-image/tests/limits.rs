//! What keeps a pull from hanging or filling the node: timeouts against
//! registries that stall, the manifest and config caps, the layer caps, and
//! leases instead of locks. The misbehaving registries are real HTTP/1.1
//! servers on 127.0.0.1, scripted per request path; well-behaved images come
//! from Debian's docker-registry.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE;
use oci_client::secrets::RegistryAuth;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vordr_e2e::registry::{gzip, push, sha256, tar, Registry};
use vordr_image::content::ContentStore;
use vordr_image::pull::{
    FailureKind, InUse, PullError, PullOptions, PulledImage, Puller, MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
};
use vordr_image::registries::{RegistriesConf, Source};
use vordr_image::snapshots::Snapshots;
use vordr_image::unpack::UnpackLimits;

fn anonymous(_: &Source) -> RegistryAuth {
    RegistryAuth::Anonymous
}

/// What the scripted server answers to one request.
#[derive(Clone)]
enum Reply {
    /// 200 with this body and a Content-Length.
    Body(&'static str, Vec<u8>),
    /// 200 with this body, chunked (no length announced).
    Chunked(&'static str, Vec<u8>),
    /// 404.
    NotFound,
    /// Headers announcing `len` bytes, the first `body` bytes of them, then
    /// nothing more on this connection.
    Partial { len: usize, body: Vec<u8> },
    /// Reads the request and never answers.
    Silence,
}

/// An HTTP/1.1 server on 127.0.0.1 answering each request by its path.
struct Scripted {
    addr: String,
    /// The paths asked for, in order.
    seen: Arc<Mutex<Vec<String>>>,
}

type Script = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

impl Scripted {
    async fn start(script: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Scripted {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Script = Arc::new(script);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, script.clone(), log.clone()));
            }
        });
        Scripted { addr, seen }
    }

    fn asked_for(&self, part: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|p| p.contains(part))
    }
}

/// Answers the requests of one connection (kept alive) until it closes.
async fn serve(mut conn: tokio::net::TcpStream, script: Script, seen: Arc<Mutex<Vec<String>>>) {
    const MAX_HEAD: usize = 16 << 10;
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        seen.lock().unwrap().push(path.clone());
        let reply = script(&path);
        let sent = match reply {
            Reply::Body(ct, body) => {
                let h = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                write(&mut conn, &[h.as_bytes(), &body]).await
            }
            Reply::Chunked(ct, body) => {
                let h = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\n\r\n"
                );
                let mut out = h.into_bytes();
                for c in body.chunks(64 << 10) {
                    out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    out.extend_from_slice(c);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                write(&mut conn, &[&out]).await
            }
            Reply::NotFound => {
                write(
                    &mut conn,
                    &[b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"],
                )
                .await
            }
            Reply::Partial { len, body } => {
                let h = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
                );
                let _ = write(&mut conn, &[h.as_bytes(), &body]).await;
                std::future::pending::<()>().await;
                false
            }
            Reply::Silence => {
                std::future::pending::<()>().await;
                false
            }
        };
        if !sent {
            return;
        }
    }
}

async fn write(conn: &mut tokio::net::TcpStream, parts: &[&[u8]]) -> bool {
    for p in parts {
        if conn.write_all(p).await.is_err() {
            return false;
        }
    }
    true
}

/// A one-image repository `app` served by a scripted server: its manifest,
/// config and layer, by path.
struct Image {
    manifest: Vec<u8>,
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
}

impl Image {
    fn new(layer_tar: &[u8]) -> Image {
        let layer = gzip(layer_tar);
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar)]},
        })
        .to_string()
        .into_bytes();
        let (config_digest, layer_digest) = (sha256(&config), sha256(&layer));
        let manifest = manifest_json(
            &config_digest,
            config.len() as i64,
            &[(&layer_digest, layer.len())],
        );
        Image {
            manifest,
            config,
            config_digest,
            layer,
            layer_digest,
        }
    }

    /// The normal reply for `path`, if it is one of this image's.
    fn reply(&self, path: &str) -> Reply {
        if path == "/v2/" {
            return Reply::Body("application/json", b"{}".to_vec());
        }
        if path.starts_with("/v2/app/manifests/") {
            return Reply::Body(OCI_MANIFEST, self.manifest.clone());
        }
        if path.ends_with(&self.config_digest) {
            return Reply::Body("application/octet-stream", self.config.clone());
        }
        if path.ends_with(&self.layer_digest) {
            return Reply::Body("application/octet-stream", self.layer.clone());
        }
        Reply::NotFound
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn manifest_json(config_digest: &str, config_size: i64, layers: &[(&str, usize)]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(d, n)| serde_json::json!({"mediaType": IMAGE_LAYER_GZIP_MEDIA_TYPE, "digest": d, "size": n}))
        .collect();
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": layers,
    })
    .to_string()
    .into_bytes()
}

struct Stores {
    dir: tempfile::TempDir,
    puller: Puller,
}

impl Stores {
    fn new(opts: PullOptions) -> Stores {
        let dir = tempfile::tempdir().unwrap();
        let puller = Puller::new(
            ContentStore::open(&dir.path().join("content")).unwrap(),
            Snapshots::open(&dir.path().join("snapshots")).unwrap(),
            opts,
        );
        Stores { dir, puller }
    }

    async fn pull(&self, image: &str) -> Result<PulledImage, PullError> {
        let host = image.split('/').next().unwrap();
        let plan = RegistriesConf::parse(
            &format!("[[registry]]\nlocation = \"{host}\"\ninsecure = true\n"),
            "t",
        )
        .unwrap()
        .resolve(image)
        .unwrap();
        self.puller.pull(&plan, &anonymous).await
    }

    /// Unfinished ingests and unpacks, waiting up to 5 s for them to go
    /// (a cancelled unpack cleans up on its own thread).
    async fn leftovers(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut left: Vec<String> = Vec::new();
            for (dir, prefix) in [("content/ingest", ""), ("snapshots", "tmp-")] {
                for e in std::fs::read_dir(self.dir.path().join(dir))
                    .unwrap()
                    .flatten()
                {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with(prefix) {
                        left.push(format!("{dir}/{name}"));
                    }
                }
            }
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn opts(f: impl FnOnce(&mut PullOptions)) -> PullOptions {
    let mut o = PullOptions::default();
    f(&mut o);
    o
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Incompressible bytes, so a gzip layer is as large as its content.
fn noise(n: usize) -> Vec<u8> {
    let mut seed = 0x2545f4914f6cdd1du64;
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_that_stalls_cancels_the_pull_after_the_progress_timeout() {
    if !root() {
        eprintln!("skipped: unpacking needs root");
        return;
    }
    let img = Image::new(&tar(&[("big", Some(&noise(1 << 20)))]));
    let (layer, layer_digest) = (img.layer.clone(), img.layer_digest.clone());
    let server = Scripted::start(move |path| {
        if path.ends_with(&layer_digest) {
            // Half the layer, then nothing.
            Reply::Partial {
                len: layer.len(),
                body: layer[..layer.len() / 2].to_vec(),
            }
        } else {
            img.reply(path)
        }
    })
    .await;
    // The read timeout alone would take 30 s.
    let s = Stores::new(opts(|o| {
        o.progress_timeout = Some(Duration::from_secs(1));
        o.read_timeout = Some(Duration::from_secs(30));
    }));
    let name = format!("{}/app:1", server.addr);
    let t0 = Instant::now();
    let e = s.pull(&name).await.unwrap_err();
    let took = t0.elapsed();
    assert_eq!(e.kind, FailureKind::Timeout, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&name) && msg.contains("1s") && msg.contains("pull_progress_timeout"),
        "{msg}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // The half-written blob and the half-unpacked layer are gone.
    assert_eq!(s.leftovers().await, Vec::<String>::new());
    assert!(s.puller.snapshots().list().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_never_answers_fails_on_the_read_timeout() {
    let server = Scripted::start(|_| Reply::Silence).await;
    let s = Stores::new(opts(|o| {
        o.read_timeout = Some(Duration::from_secs(1));
        o.progress_timeout = None;
    }));
    let t0 = Instant::now();
    let e = s.pull(&format!("{}/app:1", server.addr)).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Unreachable, "{e}");
    assert!(e.to_string().contains("timed out"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(server.asked_for("/v2/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_never_accepts_fails_on_the_connect_timeout() {
    // A listener whose accept queue is full: the kernel drops further SYNs,
    // so a connect hangs until the client gives up.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(c);
        }
    }
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
        eprintln!("skipped: this kernel accepts connections past a full backlog");
        return;
    }
    let s = Stores::new(opts(|o| {
        o.connect_timeout = Some(Duration::from_secs(1));
        o.progress_timeout = None;
    }));
    let t0 = Instant::now();
    let e = s.pull(&format!("{addr}/app:1")).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Unreachable, "{e}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    drop(listener);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_manifests_are_refused_without_being_read_whole() {
    // Valid JSON, 5 MiB: a manifest with a huge annotation.
    let config = sha256(b"c");
    let huge = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 1},
        "layers": [],
        "annotations": {"pad": "x".repeat(5 << 20)},
    })
    .to_string()
    .into_bytes();
    assert!(huge.len() as u64 > MAX_MANIFEST_SIZE);
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": sha256(b"m"), "size": MAX_MANIFEST_SIZE + 1,
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    })
    .to_string()
    .into_bytes();
    let server = Scripted::start(move |path| match path {
        "/v2/" => Reply::Body("application/json", b"{}".to_vec()),
        "/v2/app/manifests/sized" => Reply::Body(OCI_MANIFEST, huge.clone()),
        "/v2/app/manifests/chunked" => Reply::Chunked(OCI_MANIFEST, huge.clone()),
        "/v2/app/manifests/index" => {
            Reply::Body("application/vnd.oci.image.index.v1+json", index.clone())
        }
        _ => Reply::NotFound,
    })
    .await;
    let s = Stores::new(PullOptions::default());
    for tag in ["sized", "chunked", "index"] {
        let name = format!("{}/app:{tag}", server.addr);
        let e = s.pull(&name).await.unwrap_err();
        assert_eq!(e.kind, FailureKind::TooLarge, "{tag}: {e}");
        assert!(
            e.to_string().contains(&MAX_MANIFEST_SIZE.to_string()),
            "{e}"
        );
    }
    // The index's oversized entry was not fetched, nor any config.
    assert!(!server.asked_for(&sha256(b"m")));
    assert!(!server.asked_for("/blobs/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_configs_are_refused_before_or_while_downloading() {
    let big = sha256(b"a config said to be huge");
    let lying = sha256(b"a config said to be small");
    let server = Scripted::start(move |path| match path {
        "/v2/" => Reply::Body("application/json", b"{}".to_vec()),
        "/v2/app/manifests/big" => Reply::Body(
            OCI_MANIFEST,
            manifest_json(&big, MAX_CONFIG_SIZE as i64 + 1, &[]),
        ),
        "/v2/app/manifests/lying" => Reply::Body(OCI_MANIFEST, manifest_json(&lying, 100, &[])),
        // What the lying config's descriptor calls 100 bytes is 5 MiB.
        p if p.ends_with(&lying) => Reply::Body("application/octet-stream", vec![b'{'; 5 << 20]),
        _ => Reply::NotFound,
    })
    .await;
    let s = Stores::new(PullOptions::default());
    let e = s
        .pull(&format!("{}/app:big", server.addr))
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::TooLarge, "{e}");
    assert!(e.to_string().contains(&MAX_CONFIG_SIZE.to_string()), "{e}");
    assert!(!server.asked_for("/blobs/"), "the config was downloaded");
    let e = s
        .pull(&format!("{}/app:lying", server.addr))
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::BadContent, "{e}");
    assert!(e.to_string().contains("expected 100 bytes"), "{e}");
    assert_eq!(s.leftovers().await, Vec::<String>::new());
    assert!(s.puller.content().list().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn layers_over_the_entry_or_size_cap_leave_nothing() {
    if !root() {
        eprintln!("skipped: unpacking needs root");
        return;
    }
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let entries: Vec<(&str, Option<&[u8]>)> = names
        .iter()
        .map(|n| (n.as_str(), Some(&b"0123456789"[..])))
        .collect();
    let img = Image::new(&tar(&entries));
    let layer_digest = img.layer_digest.clone();
    let server = Scripted::start(move |p| img.reply(p)).await;
    let name = format!("{}/app:1", server.addr);
    for (limits, cap) in [
        (
            UnpackLimits {
                max_entries: Some(19),
                max_bytes: None,
            },
            "more than 19 entries",
        ),
        (
            UnpackLimits {
                max_entries: None,
                max_bytes: Some(199),
            },
            "more than 199 bytes",
        ),
    ] {
        let s = Stores::new(opts(|o| o.limits = limits));
        let e = s.pull(&name).await.unwrap_err();
        assert_eq!(e.kind, FailureKind::TooLarge, "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&layer_digest) && msg.contains(cap), "{msg}");
        assert!(s.puller.snapshots().list().unwrap().is_empty());
        assert_eq!(s.leftovers().await, Vec::<String>::new());
    }
    // At the caps exactly, it unpacks.
    let s = Stores::new(opts(|o| {
        o.limits = UnpackLimits {
            max_entries: Some(20),
            max_bytes: Some(200),
        }
    }));
    let img = s.pull(&name).await.unwrap();
    assert!(s
        .puller
        .snapshots()
        .fs_path(&img.chain_ids[0])
        .join("f19")
        .exists());
}

fn docker_registry() -> bool {
    root() && Path::new("/usr/bin/docker-registry").exists()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_registry_blocks_neither_other_pulls_nor_garbage_collection() {
    if !docker_registry() {
        eprintln!("skipped: needs root and docker-registry");
        return;
    }
    // Image A: its registry serves the manifest and config, then stalls
    // the layer.
    let a = Image::new(&tar(&[("a", Some(&noise(64 << 10)))]));
    let (a_layer, a_config) = (a.layer_digest.clone(), a.config_digest.clone());
    let stalled = Scripted::start(move |path| {
        if path.ends_with(&a.layer_digest) {
            Reply::Partial {
                len: a.layer.len(),
                body: a.layer[..100].to_vec(),
            }
        } else {
            a.reply(path)
        }
    })
    .await;
    // Image B: on a working registry.
    let reg = Registry::start();
    let b_name = format!("{}/b:1", reg.addr);
    push(
        &b_name,
        &[(tar(&[("b", Some(b"b"))]), IMAGE_LAYER_GZIP_MEDIA_TYPE)],
        "amd64",
    )
    .await;

    let s = Arc::new(Stores::new(opts(|o| {
        o.progress_timeout = Some(Duration::from_secs(30));
        o.read_timeout = Some(Duration::from_secs(30));
    })));
    let a_name = format!("{}/app:1", stalled.addr);
    let pull_a = tokio::spawn({
        let s = s.clone();
        async move { s.pull(&a_name).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stalled.asked_for(&a_layer) {
        assert!(Instant::now() < deadline, "pull A never reached its layer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A is stuck in its download. B pulls, and garbage collection runs.
    let b = tokio::time::timeout(Duration::from_secs(10), s.pull(&b_name))
        .await
        .expect("pull B waited on pull A")
        .unwrap();
    let in_use = || {
        Ok(InUse {
            blobs: std::iter::once(b.config_digest.to_string())
                .chain(b.layers.iter().map(|d| d.to_string()))
                .collect(),
            snapshots: b.chain_ids.iter().map(|d| d.to_string()).collect(),
        })
    };
    let (blobs, snaps) =
        tokio::time::timeout(Duration::from_secs(5), s.puller.collect_garbage(in_use))
            .await
            .expect("garbage collection waited on pull A")
            .unwrap();
    // A's config is downloaded and leased by its running pull: kept. Nothing
    // else is unused.
    assert_eq!((blobs, snaps), (0, 0));
    let stored: HashSet<String> = s
        .puller
        .content()
        .list()
        .unwrap()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert!(stored.contains(&a_config), "{stored:?}");
    assert!(stored.contains(&b.config_digest.to_string()));
    assert!(!pull_a.is_finished());

    // Once A's pull is gone, its lease is too, and its config is garbage.
    pull_a.abort();
    let _ = pull_a.await;
    let (blobs, _) = s.puller.collect_garbage(in_use).await.unwrap();
    assert_eq!(blobs, 1);
    assert!(!s.puller.content().contains(&a_config.parse().unwrap()));
    assert!(s.puller.content().contains(&b.config_digest));
}
