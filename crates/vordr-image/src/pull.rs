//! Pulling an image: manifest (an index resolved to this platform), config
//! and layers from the first source of a [`PullPlan`] that answers, every
//! blob verified into the content store, layers downloaded in parallel and
//! unpacked once each into snapshots.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use futures::stream::{self, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use tokio::io::AsyncWrite;

use crate::content::{ContentError, ContentStore, Digest, Ingest};
use crate::registries::{PullPlan, Source};
use crate::snapshots::{chain_ids, SnapshotError, Snapshots};

/// Why a pull failed, coarsely, for the gRPC status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    NotFound,
    Unauthorized,
    Unreachable,
    BadContent,
    Other,
}

/// A failed pull, naming the image, the registry and the cause.
#[derive(Debug, thiserror::Error)]
#[error("pulling {image} from {registry}: {cause}")]
pub struct PullError {
    pub image: String,
    pub registry: String,
    pub kind: FailureKind,
    pub cause: String,
}

/// What a successful pull produced.
#[derive(Debug, Clone, PartialEq)]
pub struct PulledImage {
    /// The normalised name asked for, e.g. `docker.io/library/busybox:1.35`.
    pub name: String,
    /// The digest of what the name points to (an index for multi-arch images).
    pub top_digest: String,
    /// The platform image manifest's digest.
    pub manifest_digest: String,
    /// The image id: its config's digest.
    pub config_digest: Digest,
    pub config: Vec<u8>,
    /// Compressed layer blobs, bottom first.
    pub layers: Vec<Digest>,
    /// Their snapshots, bottom first.
    pub chain_ids: Vec<Digest>,
    /// Bytes of config and compressed layers.
    pub size: u64,
    /// The image manifest's annotations.
    pub annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ConfigRootfs {
    rootfs: Rootfs,
}

#[derive(Deserialize)]
struct Rootfs {
    diff_ids: Vec<String>,
}

/// The AsyncWrite oci-client streams a blob into: the content store's
/// verified ingest (local file writes, short enough to do inline).
struct AsyncIngest(Ingest);

impl AsyncWrite for AsyncIngest {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(std::io::Write::write(&mut self.get_mut().0, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(std::io::Write::flush(&mut self.get_mut().0))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn classify(e: &OciDistributionError) -> FailureKind {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => FailureKind::NotFound,
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => FailureKind::Unauthorized,
        OciDistributionError::ServerError { code, .. } if *code == 404 => FailureKind::NotFound,
        OciDistributionError::ServerError { code, .. } if *code == 401 || *code == 403 => {
            FailureKind::Unauthorized
        }
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .map(|e| match e.code {
                OciErrorCode::ManifestUnknown
                | OciErrorCode::NameUnknown
                | OciErrorCode::BlobUnknown
                | OciErrorCode::NotFound => FailureKind::NotFound,
                OciErrorCode::Unauthorized | OciErrorCode::Denied => FailureKind::Unauthorized,
                OciErrorCode::DigestInvalid | OciErrorCode::SizeInvalid => FailureKind::BadContent,
                _ => FailureKind::Other,
            })
            .next()
            .unwrap_or(FailureKind::Other),
        OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() => {
            FailureKind::Unreachable
        }
        OciDistributionError::DigestError(_) => FailureKind::BadContent,
        _ => FailureKind::Other,
    }
}

/// Pulls images into a content store and snapshots.
pub struct Puller {
    pub content: ContentStore,
    pub snapshots: Snapshots,
    /// Layers downloaded at once.
    pub parallel: usize,
    /// Clients for anonymous pulls (plain HTTP, HTTPS), kept so that their
    /// connections and registry tokens are reused across pulls. Pulls with
    /// credentials get a fresh client: oci-client keeps the first
    /// credentials it saw for a registry.
    anonymous: [OnceLock<Client>; 2],
}

impl Puller {
    pub fn new(content: ContentStore, snapshots: Snapshots, parallel: usize) -> Puller {
        Puller {
            content,
            snapshots,
            parallel,
            anonymous: [OnceLock::new(), OnceLock::new()],
        }
    }

    fn client(&self, source: &Source, auth: &RegistryAuth) -> Client {
        let make = || {
            Client::new(ClientConfig {
                protocol: if source.insecure {
                    ClientProtocol::Http
                } else {
                    ClientProtocol::Https
                },
                max_concurrent_download: self.parallel.max(1),
                ..Default::default()
            })
        };
        match auth {
            RegistryAuth::Anonymous => self.anonymous[source.insecure as usize]
                .get_or_init(make)
                .clone(),
            _ => make(),
        }
    }

    /// Pulls `plan`'s image from its sources in order; the first that
    /// serves it wins. `auth` gives the credentials for each source. The
    /// error, if all fail, is the first source's.
    pub async fn pull(
        &self,
        plan: &PullPlan,
        auth: &(dyn Fn(&Reference) -> RegistryAuth + Sync),
    ) -> Result<PulledImage, PullError> {
        let mut first_err = None;
        for source in &plan.sources {
            match self.pull_from(plan, source, &auth(&source.reference)).await {
                Ok(img) => return Ok(img),
                Err(e) => {
                    tracing::debug!("{e}");
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.expect("a plan has at least one source"))
    }

    async fn pull_from(
        &self,
        plan: &PullPlan,
        source: &Source,
        auth: &RegistryAuth,
    ) -> Result<PulledImage, PullError> {
        let r: &Reference = &source.reference;
        let fail = |kind, cause: String| PullError {
            image: plan.reference.whole(),
            registry: r.registry().to_string(),
            kind,
            cause,
        };
        let oci = |e: OciDistributionError| fail(classify(&e), e.to_string());
        let content = |e: ContentError| {
            let kind = match e {
                ContentError::DigestMismatch { .. } | ContentError::SizeMismatch { .. } => {
                    FailureKind::BadContent
                }
                _ => FailureKind::Other,
            };
            fail(kind, e.to_string())
        };
        let client = self.client(source, auth);
        let (manifest, manifest_digest, list_digest) = client
            .pull_image_manifest_and_list_digest(r, auth)
            .await
            .map_err(oci)?;
        // A pull by digest must get exactly that.
        let top_digest = list_digest
            .clone()
            .unwrap_or_else(|| manifest_digest.clone());
        if let Some(want) = r.digest() {
            if want != top_digest {
                return Err(fail(
                    FailureKind::BadContent,
                    format!("registry served {top_digest} for {want}"),
                ));
            }
        }

        let config_digest: Digest = manifest.config.digest.parse().map_err(content)?;
        let fetch_err = |e: Fetch, what: &str| match e {
            Fetch::Oci(e) => oci(e),
            Fetch::Content(e) => content(e),
            Fetch::Snapshot(SnapshotError::Io { path, source }) => fail(
                FailureKind::Other,
                format!("{what}: snapshot I/O at {}: {source}", path.display()),
            ),
            Fetch::Snapshot(e) => fail(FailureKind::BadContent, format!("{what}: {e}")),
            Fetch::Task(e) => fail(FailureKind::Other, format!("{what}: {e}")),
        };
        self.fetch(&client, r, &manifest.config)
            .await
            .map_err(|e| fetch_err(e, "image config"))?;
        let config = self.content.read(&config_digest).map_err(content)?;
        let parsed: ConfigRootfs = serde_json::from_slice(&config)
            .map_err(|e| fail(FailureKind::BadContent, format!("image config: {e}")))?;
        let diff_ids = parsed
            .rootfs
            .diff_ids
            .iter()
            .map(|d| d.parse::<Digest>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(content)?;
        if diff_ids.len() != manifest.layers.len() {
            return Err(fail(
                FailureKind::BadContent,
                format!(
                    "the manifest has {} layers but the config {} diff ids",
                    manifest.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let chains = chain_ids(&diff_ids);
        let layers = manifest
            .layers
            .iter()
            .map(|l| l.digest.parse::<Digest>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(content)?;

        // Each missing snapshot: download its blob (unless stored) and
        // unpack it at once. Snapshots are independent directories keyed by
        // chain id, so layers download and unpack in parallel, a few at a time.
        let mut seen = HashSet::new();
        let wanted: Vec<(&OciDescriptor, &Digest, &Digest, &Digest)> = manifest
            .layers
            .iter()
            .zip(&layers)
            .zip(&diff_ids)
            .zip(&chains)
            .map(|(((d, l), diff), chain)| (d, l, diff, chain))
            .filter(|(_, _, _, chain)| {
                !self.snapshots.contains(chain) && seen.insert((*chain).clone())
            })
            .collect();
        let client = &client;
        let fetch_err = &fetch_err;
        stream::iter(wanted.into_iter().map(Ok))
            .try_for_each_concurrent(
                self.parallel.max(1),
                |(desc, layer, diff, chain)| async move {
                    self.fetch_and_unpack(client, r, desc, layer, diff, chain)
                        .await
                        .map_err(|e| fetch_err(e, &format!("layer {layer}")))
                },
            )
            .await?;

        let size = manifest.config.size.max(0) as u64
            + manifest
                .layers
                .iter()
                .map(|l| l.size.max(0) as u64)
                .sum::<u64>();
        Ok(PulledImage {
            name: plan.reference.whole(),
            top_digest,
            manifest_digest,
            config_digest,
            config,
            layers,
            chain_ids: chains,
            size,
            annotations: manifest.annotations.clone().unwrap_or_default(),
        })
    }

    /// Makes the snapshot of one layer. A blob not yet stored is unpacked
    /// while it downloads: the chunks go to the content store's ingest and
    /// to the unpacker at once, and the snapshot becomes visible only after
    /// the ingest verified the blob (and the unpacker its diff id).
    async fn fetch_and_unpack(
        &self,
        client: &Client,
        r: &Reference,
        desc: &OciDescriptor,
        layer: &Digest,
        diff: &Digest,
        chain: &Digest,
    ) -> Result<(), Fetch> {
        let snaps = self.snapshots.clone();
        let (chain, diff) = (chain.clone(), diff.clone());
        if self.content.contains(layer) {
            let path = self.content.path(layer);
            return tokio::task::spawn_blocking(move || {
                let f = std::fs::File::open(&path)
                    .map_err(|source| SnapshotError::Io { path, source })?;
                snaps.create(&chain, &diff, std::io::BufReader::new(f))
            })
            .await
            .map_err(|e| Fetch::Task(e.to_string()))?
            .map(|_| ())
            .map_err(Fetch::Snapshot);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (verdict_tx, verdict_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let unpack = tokio::task::spawn_blocking(move || {
            let reader = ChunkReader {
                rx,
                chunk: bytes::Bytes::new(),
            };
            let verified = move || {
                verdict_rx
                    .recv()
                    .unwrap_or_else(|_| Err("the download stopped".into()))
            };
            snaps.create_gated(&chain, &diff, std::io::BufReader::new(reader), verified)
        });
        let downloaded = self.download_teeing(client, r, desc, layer, tx).await;
        let _ = verdict_tx.send(match &downloaded {
            Ok(()) => Ok(()),
            Err(_) => Err(format!("blob {layer} failed to download or verify")),
        });
        let unpacked = unpack.await.map_err(|e| Fetch::Task(e.to_string()))?;
        // The download's own failure explains more than the unpacker's.
        downloaded?;
        unpacked.map(|_| ()).map_err(Fetch::Snapshot)
    }

    /// Downloads a blob into the content store, handing each chunk to `tee`
    /// as well (until its reader goes away).
    async fn download_teeing(
        &self,
        client: &Client,
        r: &Reference,
        desc: &OciDescriptor,
        layer: &Digest,
        tee: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<(), Fetch> {
        use futures::StreamExt;
        use std::io::Write;
        let size = (desc.size >= 0).then_some(desc.size as u64);
        let mut ingest = self
            .content
            .ingest(layer.clone(), size)
            .map_err(Fetch::Content)?;
        let mut blob = client.pull_blob_stream(r, desc).await.map_err(Fetch::Oci)?;
        let mut tee = Some(tee);
        while let Some(chunk) = blob.stream.next().await {
            let chunk = chunk.map_err(stream_error)?;
            let actual = ingest.written() + chunk.len() as u64;
            if let Some(expected) = size.filter(|&max| actual > max) {
                return Err(Fetch::Content(ContentError::SizeMismatch {
                    digest: layer.clone(),
                    expected,
                    actual,
                }));
            }
            ingest.write_all(&chunk).map_err(|source| {
                Fetch::Content(ContentError::Io {
                    path: self.content.path(layer),
                    source,
                })
            })?;
            if let Some(t) = &tee {
                if t.send(chunk).await.is_err() {
                    // The unpacker stopped (bad layer); its error will tell.
                    tee = None;
                }
            }
        }
        drop(tee);
        tokio::task::spawn_blocking(move || ingest.commit())
            .await
            .map_err(|e| Fetch::Task(e.to_string()))?
            .map(|_| ())
            .map_err(Fetch::Content)
    }

    /// Downloads one blob into the content store unless it is there.
    async fn fetch(&self, client: &Client, r: &Reference, d: &OciDescriptor) -> Result<(), Fetch> {
        let digest: Digest = d.digest.parse().map_err(Fetch::Content)?;
        if self.content.contains(&digest) {
            return Ok(());
        }
        let size = (d.size >= 0).then_some(d.size as u64);
        let ingest = self.content.ingest(digest, size).map_err(Fetch::Content)?;
        let mut w = AsyncIngest(ingest);
        client.pull_blob(r, d, &mut w).await.map_err(Fetch::Oci)?;
        w.0.commit().map_err(Fetch::Content)?;
        Ok(())
    }
}

enum Fetch {
    Oci(OciDistributionError),
    Content(ContentError),
    Snapshot(SnapshotError),
    Task(String),
}

/// A failed blob stream: oci-client's own digest check, or the transfer.
fn stream_error(e: std::io::Error) -> Fetch {
    use oci_client::errors::DigestError;
    if e.get_ref().is_some_and(|i| i.is::<DigestError>()) {
        if let Some(Ok(d)) = e.into_inner().map(|i| i.downcast::<DigestError>()) {
            return Fetch::Oci(OciDistributionError::DigestError(*d));
        }
        return Fetch::Task("unreachable: a digest error that is not one".into());
    }
    Fetch::Oci(OciDistributionError::IoError(e))
}

/// A blob stream as `Read`, for the unpacker on a blocking thread: chunks
/// arrive from the download as they land.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    chunk: bytes::Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(c) => self.chunk = c,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        bytes::Buf::advance(&mut self.chunk, n);
        Ok(n)
    }
}
