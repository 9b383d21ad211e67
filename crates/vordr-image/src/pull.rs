//! Pulling an image: manifest (an index resolved to this platform), config
//! and layers from the first source of a [`PullPlan`] that answers, every
//! blob verified into the content store, layers downloaded in parallel and
//! unpacked once each into snapshots.
//!
//! Bounds: connect and per-read timeouts on every request; a pull from one
//! source that moves no data for the progress timeout is cancelled;
//! manifests and configs are capped at 4 MiB ([`MAX_MANIFEST_SIZE`],
//! [`MAX_CONFIG_SIZE`]) and layers at what [`UnpackLimits`] allows. Pulls
//! hold no lock while they wait on the network: what they fetch is kept
//! from garbage collection by a [`Lease`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::stream::{self, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    OciDescriptor, OciImageManifest, OciManifest, IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::Deserialize;

use crate::content::{Algorithm, ContentError, ContentStore, Digest, Hasher};
use crate::registries::{PullPlan, Source};
use crate::snapshots::{chain_ids, SnapshotError, Snapshots};
use crate::unpack::{UnpackError, UnpackLimits};

/// The largest manifest (or index) read. oci-client reads a manifest whole
/// into memory with no bound, so Vordr fetches manifests itself and stops
/// reading past this.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// The largest image config read: its descriptor's size is checked before
/// the download, and the download stops at that size.
pub const MAX_CONFIG_SIZE: u64 = 4 << 20;
/// How much of a registry's error response is read for the message.
const MAX_ERROR_BODY: usize = 16 << 10;

/// The manifest types asked for and accepted.
const MANIFEST_TYPES: [&str; 4] = [
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// Why a pull failed, coarsely, for the gRPC status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    NotFound,
    Unauthorized,
    /// Connection refused or timed out, or a read timed out.
    Unreachable,
    BadContent,
    /// No data for the progress timeout: the pull was cancelled.
    Timeout,
    /// A manifest, config or layer over its cap.
    TooLarge,
    Other,
}

/// How pulls reach registries and what they accept.
#[derive(Debug, Clone, PartialEq)]
pub struct PullOptions {
    /// Layers downloaded at once per pull.
    pub parallel: usize,
    /// Connecting to a registry gives up after this; `None` waits as long
    /// as the kernel does.
    pub connect_timeout: Option<Duration>,
    /// A request that receives nothing for this long (waiting for the
    /// response's headers, or between two reads of its body) fails.
    pub read_timeout: Option<Duration>,
    /// A pull from one source that moves no data (network or unpacker) for
    /// this long is cancelled, and the next source tried.
    pub progress_timeout: Option<Duration>,
    /// What one layer may unpack to.
    pub limits: UnpackLimits,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            parallel: 3,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(60)),
            progress_timeout: Some(Duration::from_secs(300)),
            limits: UnpackLimits::default(),
        }
    }
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

/// When a pull last moved data, for its watchdog: every chunk received
/// from the registry and every read of the unpacker counts, so a pull whose
/// unpacker is busy (and so reads nothing off the network) is not stalled.
#[derive(Clone)]
struct Progress {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn tick(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }

    /// Returns once nothing has moved for `timeout`.
    async fn stalled(&self, timeout: Duration) {
        loop {
            let idle = self.idle();
            if idle >= timeout {
                return;
            }
            tokio::time::sleep(timeout - idle).await;
        }
    }
}

/// A reader that counts as progress.
struct ProgressReader<R> {
    inner: R,
    progress: Progress,
}

impl<R: std::io::Read> std::io::Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.tick();
        Ok(n)
    }
}

#[derive(Default)]
struct LeaseTable {
    next: u64,
    held: HashMap<u64, HashSet<String>>,
}

fn lock(t: &Mutex<LeaseTable>) -> std::sync::MutexGuard<'_, LeaseTable> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps the blobs and snapshots a pull uses (by digest and chain id) from
/// garbage collection until it is dropped. Take it before the pull and drop
/// it after the image is recorded.
pub struct Lease {
    id: u64,
    table: Arc<Mutex<LeaseTable>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        lock(&self.table).held.remove(&self.id);
    }
}

/// What recorded images use, by digest (blobs) and chain id (snapshots).
#[derive(Debug, Default, Clone)]
pub struct InUse {
    pub blobs: HashSet<String>,
    pub snapshots: HashSet<String>,
}

impl InUse {
    /// Marks what one image uses: its config blob, its layer blobs and
    /// their snapshots (by chain id).
    pub fn add_image(&mut self, config: &str, layers: &[String], chain_ids: &[String]) {
        self.blobs.insert(config.to_string());
        self.blobs.extend(layers.iter().cloned());
        self.snapshots.extend(chain_ids.iter().cloned());
    }
}

/// A failed garbage collection.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("listing what images use: {0}")]
    InUse(String),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("garbage collection task: {0}")]
    Task(String),
}

/// An error with its causes ("error decoding response body: operation
/// timed out"), each said once.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// A request's timeout or refused connection, wherever it surfaced.
fn timed_out_or_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            if r.is_timeout() || r.is_connect() {
                return true;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = e.source();
    }
    false
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
        OciDistributionError::IoError(io) if timed_out_or_refused(io) => FailureKind::Unreachable,
        OciDistributionError::DigestError(_) => FailureKind::BadContent,
        _ => FailureKind::Other,
    }
}

/// Pulls images into a content store and snapshots.
pub struct Puller {
    content: ContentStore,
    snapshots: Snapshots,
    opts: PullOptions,
    /// Clients for anonymous pulls (plain HTTP, HTTPS), kept so that their
    /// connections and registry tokens are reused across pulls. Pulls with
    /// credentials get a fresh client: oci-client keeps the first
    /// credentials it saw for a registry.
    anonymous: [OnceLock<Client>; 2],
    /// The client manifests are fetched with (oci-client reads them whole,
    /// without a bound), with the same timeouts.
    http: OnceLock<reqwest::Client>,
    /// Pulls hold it shared for a moment while they add to their lease;
    /// garbage collection holds it exclusively while it decides and deletes.
    /// Nobody holds it across network I/O.
    gc: Arc<tokio::sync::RwLock<()>>,
    leases: Arc<Mutex<LeaseTable>>,
}

/// How a manifest request authenticates, as oci-client negotiated it.
enum Authz {
    None,
    Bearer(String),
    Basic(String, String),
}

impl Puller {
    pub fn new(content: ContentStore, snapshots: Snapshots, opts: PullOptions) -> Puller {
        Puller {
            content,
            snapshots: snapshots.with_limits(opts.limits),
            opts,
            anonymous: [OnceLock::new(), OnceLock::new()],
            http: OnceLock::new(),
            gc: Arc::new(tokio::sync::RwLock::new(())),
            leases: Arc::new(Mutex::new(LeaseTable::default())),
        }
    }

    pub fn options(&self) -> &PullOptions {
        &self.opts
    }

    /// The content store pulls write blobs to.
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// The snapshots pulls unpack layers into.
    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    /// The stored config of image `id` (its config digest), parsed.
    pub fn image_config(
        &self,
        id: &Digest,
    ) -> Result<crate::config::ImageConfig, crate::config::ConfigError> {
        Ok(crate::config::parse(&self.content.read(id)?)?)
    }

    /// The directories of snapshots `chain_ids`, in the order given (an
    /// overlay's lower dirs want the top layer first: reverse them).
    pub fn snapshot_dirs(&self, chain_ids: &[Digest]) -> Vec<std::path::PathBuf> {
        chain_ids
            .iter()
            .map(|c| self.snapshots.fs_path(c))
            .collect()
    }

    fn client(&self, source: &Source, auth: &RegistryAuth) -> Client {
        let make = || {
            Client::new(ClientConfig {
                protocol: if source.insecure {
                    ClientProtocol::Http
                } else {
                    ClientProtocol::Https
                },
                max_concurrent_download: self.opts.parallel.max(1),
                connect_timeout: self.opts.connect_timeout,
                read_timeout: self.opts.read_timeout,
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

    fn http(&self) -> Result<reqwest::Client, Fetch> {
        if let Some(c) = self.http.get() {
            return Ok(c.clone());
        }
        let mut b =
            reqwest::Client::builder().user_agent(concat!("vordr/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = self.opts.connect_timeout {
            b = b.connect_timeout(t);
        }
        if let Some(t) = self.opts.read_timeout {
            b = b.read_timeout(t);
        }
        let c = b
            .build()
            .map_err(|e| Fetch::Oci(OciDistributionError::RequestError(e)))?;
        Ok(self.http.get_or_init(|| c).clone())
    }

    /// A new, empty lease.
    pub fn lease(&self) -> Lease {
        let mut t = lock(&self.leases);
        t.next += 1;
        let id = t.next;
        t.held.insert(id, HashSet::new());
        Lease {
            id,
            table: self.leases.clone(),
        }
    }

    /// Adds `items` to `lease`. Done before the pull looks at whether they
    /// are stored: garbage collection then either finished deleting them
    /// before (and the pull fetches them again) or sees the lease.
    async fn protect(&self, lease: &Lease, items: impl IntoIterator<Item = String>) {
        let _gc = self.gc.read().await;
        lock(&lease.table)
            .held
            .entry(lease.id)
            .or_default()
            .extend(items);
    }

    /// Deletes the blobs and snapshots that neither `in_use` (what recorded
    /// images use, asked once the leases are read) nor a lease names.
    /// Returns how many blobs and snapshots it removed. It waits only for
    /// pulls adding to their leases, never for a download.
    pub async fn collect_garbage(
        &self,
        in_use: impl FnOnce() -> Result<InUse, String>,
    ) -> Result<(usize, usize), GcError> {
        let gc = self.gc.clone().write_owned().await;
        // Leases first, then the images: a pull drops its lease only after
        // recording its image, so whatever it used is in one or the other.
        let leased: HashSet<String> = lock(&self.leases)
            .held
            .values()
            .flatten()
            .cloned()
            .collect();
        let used = in_use().map_err(GcError::InUse)?;
        let (content, snapshots) = (self.content.clone(), self.snapshots.clone());
        tokio::task::spawn_blocking(move || {
            // Held until the deletions are done, even if the caller goes away.
            let _gc = gc;
            let keep = |d: &Digest, used: &HashSet<String>| {
                let d = d.to_string();
                used.contains(&d) || leased.contains(&d)
            };
            let (mut blobs, mut snaps) = (0, 0);
            for d in content.list()? {
                if !keep(&d, &used.blobs) {
                    content.delete(&d)?;
                    blobs += 1;
                }
            }
            for c in snapshots.list()? {
                if !keep(&c, &used.snapshots) {
                    snapshots.remove(&c)?;
                    snaps += 1;
                }
            }
            Ok((blobs, snaps))
        })
        .await
        .map_err(|e| GcError::Task(e.to_string()))?
    }

    /// Pulls `plan`'s image from its sources in order; the first that
    /// serves it wins. `auth` gives the credentials for each source. The
    /// error, if all fail, is the first source's. What it fetched is
    /// protected from garbage collection only until it returns: a caller
    /// that records the image afterwards uses [`Puller::pull_leased`].
    pub async fn pull(
        &self,
        plan: &PullPlan,
        auth: &(dyn Fn(&Source) -> RegistryAuth + Sync),
    ) -> Result<PulledImage, PullError> {
        self.pull_leased(plan, auth, &self.lease()).await
    }

    /// [`Puller::pull`], adding what the image uses to `lease`.
    pub async fn pull_leased(
        &self,
        plan: &PullPlan,
        auth: &(dyn Fn(&Source) -> RegistryAuth + Sync),
        lease: &Lease,
    ) -> Result<PulledImage, PullError> {
        let mut first_err = None;
        for source in &plan.sources {
            let progress = Progress::new();
            let source_auth = auth(source);
            let attempt = self.pull_from(plan, source, &source_auth, lease, &progress);
            let res = match self.opts.progress_timeout {
                None => attempt.await,
                Some(t) => tokio::select! {
                    res = attempt => res,
                    () = progress.stalled(t) => Err(PullError {
                        image: plan.reference.whole(),
                        registry: source.reference.registry().to_string(),
                        kind: FailureKind::Timeout,
                        cause: format!(
                            "no data for {t:?} (image.pull_progress_timeout): pull cancelled"
                        ),
                    }),
                },
            };
            match res {
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
        lease: &Lease,
        progress: &Progress,
    ) -> Result<PulledImage, PullError> {
        let r: &Reference = &source.reference;
        let fail = |kind, cause: String| PullError {
            image: plan.reference.whole(),
            registry: r.registry().to_string(),
            kind,
            cause,
        };
        let content = |e: ContentError| {
            let kind = match e {
                ContentError::DigestMismatch { .. } | ContentError::SizeMismatch { .. } => {
                    FailureKind::BadContent
                }
                _ => FailureKind::Other,
            };
            fail(kind, e.to_string())
        };
        let fetch_err = |e: Fetch, what: &str| match e {
            Fetch::Oci(e) => fail(classify(&e), format!("{what}: {}", describe(&e))),
            Fetch::Content(e) => content(e),
            Fetch::Snapshot(SnapshotError::Io { path, source }) => fail(
                FailureKind::Other,
                format!("{what}: snapshot I/O at {}: {source}", path.display()),
            ),
            Fetch::Snapshot(
                e @ SnapshotError::Unpack(
                    UnpackError::TooLarge { .. }
                    | UnpackError::TooManyEntries { .. }
                    | UnpackError::MetadataTooLarge { .. },
                ),
            ) => fail(FailureKind::TooLarge, format!("{what}: {e}")),
            Fetch::Snapshot(e) => fail(FailureKind::BadContent, format!("{what}: {e}")),
            Fetch::TooLarge(e) => fail(FailureKind::TooLarge, format!("{what}: {e}")),
            Fetch::Bad(e) => fail(FailureKind::BadContent, format!("{what}: {e}")),
            Fetch::Task(e) => fail(FailureKind::Other, format!("{what}: {e}")),
        };
        let client = self.client(source, auth);
        let (manifest, manifest_digest, list_digest) = self
            .manifest(&client, source, auth, progress)
            .await
            .map_err(|e| fetch_err(e, "manifest"))?;
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
        let layers = manifest
            .layers
            .iter()
            .map(|l| l.digest.parse::<Digest>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(content)?;
        self.protect(
            lease,
            std::iter::once(&config_digest)
                .chain(&layers)
                .map(|d| d.to_string()),
        )
        .await;
        let config_size = manifest.config.size;
        if config_size < 0 || config_size as u64 > MAX_CONFIG_SIZE {
            return Err(fail(
                FailureKind::TooLarge,
                format!(
                    "image config {config_digest}: its descriptor says {config_size} bytes; \
                     at most {MAX_CONFIG_SIZE} are accepted"
                ),
            ));
        }
        if !self.content.contains(&config_digest) {
            self.download(&client, r, &manifest.config, &config_digest, None, progress)
                .await
                .map_err(|e| fetch_err(e, "image config"))?;
        }
        let config = self.content.read(&config_digest).map_err(content)?;
        let parsed = crate::config::parse(&config)
            .map_err(|e| fail(FailureKind::BadContent, format!("image config: {e}")))?;
        let diff_ids = parsed
            .diff_ids
            .ok_or_else(|| fail(FailureKind::BadContent, "image config: no rootfs".into()))?
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
        self.protect(lease, chains.iter().map(|c| c.to_string()))
            .await;

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
                self.opts.parallel.max(1),
                |(desc, layer, diff, chain)| async move {
                    self.fetch_and_unpack(client, r, desc, layer, diff, chain, progress)
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

    /// The image manifest `source` serves for this platform: `(manifest,
    /// its digest, the index's digest if the reference named an index)`.
    async fn manifest(
        &self,
        client: &Client,
        source: &Source,
        auth: &RegistryAuth,
        progress: &Progress,
    ) -> Result<(OciImageManifest, String, Option<String>), Fetch> {
        let r = &source.reference;
        // oci-client negotiates the token (and caches it for the blobs).
        let authz = match (
            client
                .auth(r, auth, RegistryOperation::Pull)
                .await
                .map_err(Fetch::Oci)?,
            auth,
        ) {
            (Some(token), _) => Authz::Bearer(token),
            (None, RegistryAuth::Basic(u, p)) => Authz::Basic(u.clone(), p.clone()),
            (None, _) => Authz::None,
        };
        let (top, top_digest) = self
            .get_manifest(r, source.insecure, &authz, progress)
            .await?;
        let index = match top {
            OciManifest::Image(m) => return Ok((m, top_digest.to_string(), None)),
            OciManifest::ImageIndex(index) => index,
        };
        let Some(chosen) = oci_client::client::current_platform_resolver(&index.manifests) else {
            return Err(Fetch::Oci(
                OciDistributionError::ImageManifestNotFoundError(
                    "no entry in the image index matches this platform".into(),
                ),
            ));
        };
        if let Some(entry) = index.manifests.iter().find(|e| e.digest == chosen) {
            if entry.size < 0 || entry.size as u64 > MAX_MANIFEST_SIZE {
                return Err(Fetch::TooLarge(format!(
                    "the index says the manifest {chosen} is {} bytes; at most \
                     {MAX_MANIFEST_SIZE} are accepted",
                    entry.size
                )));
            }
        }
        let platform = r.clone_with_digest(chosen.clone());
        match self
            .get_manifest(&platform, source.insecure, &authz, progress)
            .await?
        {
            (OciManifest::Image(m), _) => Ok((m, chosen, Some(top_digest.to_string()))),
            (OciManifest::ImageIndex(_), _) => Err(Fetch::Bad(format!(
                "the index entry {chosen} is another index"
            ))),
        }
    }

    /// GETs one manifest, reading at most [`MAX_MANIFEST_SIZE`] bytes, and
    /// checks it against the digest the reference names.
    async fn get_manifest(
        &self,
        r: &Reference,
        insecure: bool,
        authz: &Authz,
        progress: &Progress,
    ) -> Result<(OciManifest, Digest), Fetch> {
        let url = format!(
            "{}://{}/v2/{}/manifests/{}",
            if insecure { "http" } else { "https" },
            r.resolve_registry(),
            r.repository(),
            r.digest().or(r.tag()).unwrap_or("latest"),
        );
        let req_err = |e| Fetch::Oci(OciDistributionError::RequestError(e));
        let mut req = self
            .http()?
            .get(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_TYPES.join(", "));
        req = match authz {
            Authz::None => req,
            Authz::Bearer(t) => req.bearer_auth(t),
            Authz::Basic(u, p) => req.basic_auth(u, Some(p)),
        };
        let mut resp = req.send().await.map_err(req_err)?;
        progress.tick();
        let status = resp.status();
        if !status.is_success() {
            let mut body = Vec::new();
            while body.len() < MAX_ERROR_BODY {
                match resp.chunk().await {
                    Ok(Some(c)) => body.extend_from_slice(&c),
                    _ => break,
                }
            }
            body.truncate(MAX_ERROR_BODY);
            return Err(Fetch::Oci(OciDistributionError::ServerError {
                code: status.as_u16(),
                url,
                message: String::from_utf8_lossy(&body).trim().to_string(),
            }));
        }
        let too_large = |n: String| {
            Fetch::TooLarge(format!(
                "the manifest {} is {n} bytes; at most {MAX_MANIFEST_SIZE} are accepted",
                r.whole()
            ))
        };
        if let Some(n) = resp.content_length().filter(|&n| n > MAX_MANIFEST_SIZE) {
            return Err(too_large(n.to_string()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(req_err)? {
            progress.tick();
            if (body.len() + chunk.len()) as u64 > MAX_MANIFEST_SIZE {
                return Err(too_large("more than that".into()));
            }
            body.extend_from_slice(&chunk);
        }
        let want: Option<Digest> = match r.digest() {
            Some(d) => Some(d.parse().map_err(Fetch::Content)?),
            None => None,
        };
        let mut h = Hasher::new(want.as_ref().map_or(Algorithm::Sha256, |d| d.algorithm()));
        h.update(&body);
        let digest = h.finish();
        if let Some(want) = want.filter(|w| *w != digest) {
            return Err(Fetch::Content(ContentError::DigestMismatch {
                expected: want,
                actual: digest,
            }));
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Versioned {
            schema_version: i64,
            media_type: Option<String>,
        }
        let v: Versioned = serde_json::from_slice(&body)
            .map_err(|e| Fetch::Bad(format!("the manifest is not JSON: {e}")))?;
        if v.schema_version != 2 {
            return Err(Fetch::Bad(format!(
                "schema version {} is not supported",
                v.schema_version
            )));
        }
        if let Some(t) = v
            .media_type
            .filter(|t| !MANIFEST_TYPES.contains(&t.as_str()))
        {
            return Err(Fetch::Bad(format!("media type {t} is not a manifest")));
        }
        let m = serde_json::from_slice(&body)
            .map_err(|e| Fetch::Bad(format!("parsing the manifest: {e}")))?;
        Ok((m, digest))
    }

    /// Makes the snapshot of one layer. A blob not yet stored is unpacked
    /// while it downloads: the chunks go to the content store's ingest and
    /// to the unpacker at once, and the snapshot becomes visible only after
    /// the ingest verified the blob (and the unpacker its diff id).
    #[allow(clippy::too_many_arguments)]
    async fn fetch_and_unpack(
        &self,
        client: &Client,
        r: &Reference,
        desc: &OciDescriptor,
        layer: &Digest,
        diff: &Digest,
        chain: &Digest,
        progress: &Progress,
    ) -> Result<(), Fetch> {
        let snaps = self.snapshots.clone();
        let (chain, diff) = (chain.clone(), diff.clone());
        let unpacker_progress = progress.clone();
        if self.content.contains(layer) {
            let path = self.content.path(layer);
            return tokio::task::spawn_blocking(move || {
                let f = std::fs::File::open(&path)
                    .map_err(|source| SnapshotError::Io { path, source })?;
                let r = ProgressReader {
                    inner: f,
                    progress: unpacker_progress,
                };
                snaps.create(&chain, &diff, std::io::BufReader::new(r))
            })
            .await
            .map_err(|e| Fetch::Task(e.to_string()))?
            .map(|_| ())
            .map_err(Fetch::Snapshot);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (verdict_tx, verdict_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let unpack = tokio::task::spawn_blocking(move || {
            let reader = ProgressReader {
                inner: ChunkReader {
                    rx,
                    chunk: bytes::Bytes::new(),
                },
                progress: unpacker_progress,
            };
            let verified = move || {
                verdict_rx
                    .recv()
                    .unwrap_or_else(|_| Err("the download stopped".into()))
            };
            snaps.create_gated(&chain, &diff, std::io::BufReader::new(reader), verified)
        });
        let downloaded = self
            .download(client, r, desc, layer, Some(tx), progress)
            .await;
        let _ = verdict_tx.send(match &downloaded {
            Ok(()) => Ok(()),
            Err(_) => Err(format!("blob {layer} failed to download or verify")),
        });
        let unpacked = unpack.await.map_err(|e| Fetch::Task(e.to_string()))?;
        // The download's own failure explains more than the unpacker's.
        downloaded?;
        unpacked.map(|_| ()).map_err(Fetch::Snapshot)
    }

    /// Downloads a blob into the content store, reading no more than its
    /// descriptor's size, and hands each chunk to `tee` as well (until its
    /// reader goes away). Dropped midway, it leaves no ingest file.
    async fn download(
        &self,
        client: &Client,
        r: &Reference,
        desc: &OciDescriptor,
        digest: &Digest,
        tee: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
        progress: &Progress,
    ) -> Result<(), Fetch> {
        use futures::StreamExt;
        use std::io::Write;
        let size = (desc.size >= 0).then_some(desc.size as u64);
        let mut ingest = self
            .content
            .ingest(digest.clone(), size)
            .map_err(Fetch::Content)?;
        let mut blob = client.pull_blob_stream(r, desc).await.map_err(Fetch::Oci)?;
        progress.tick();
        let mut tee = tee;
        while let Some(chunk) = blob.stream.next().await {
            let chunk = chunk.map_err(stream_error)?;
            progress.tick();
            let actual = ingest.written() + chunk.len() as u64;
            if let Some(expected) = size.filter(|&max| actual > max) {
                return Err(Fetch::Content(ContentError::SizeMismatch {
                    digest: digest.clone(),
                    expected,
                    actual,
                }));
            }
            ingest.write_all(&chunk).map_err(|source| {
                Fetch::Content(ContentError::Io {
                    path: self.content.path(digest),
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
}

enum Fetch {
    Oci(OciDistributionError),
    Content(ContentError),
    Snapshot(SnapshotError),
    /// Over a size cap.
    TooLarge(String),
    /// Not what a registry may serve.
    Bad(String),
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
