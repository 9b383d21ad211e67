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

mod client;
mod download;
mod error;
mod lease;
mod manifest;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::stream::{self, TryStreamExt};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::content::{ContentStore, Digest};
use crate::registries::{PullPlan, Source};
use crate::snapshots::{chain_ids, Snapshots};
use crate::unpack::UnpackLimits;
use download::Progress;
use error::Blame;
use lease::LeaseTable;

pub use error::{FailureKind, PullError};
pub use lease::{GcError, InUse, Lease};
pub use manifest::MAX_MANIFEST_SIZE;

/// The largest image config read: its descriptor's size is checked before
/// the download, and the download stops at that size.
pub const MAX_CONFIG_SIZE: u64 = 4 << 20;

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
        let blame = Blame {
            image: plan.reference.whole(),
            registry: r.registry().to_string(),
        };
        let client = self.client(source, auth);
        let (manifest, manifest_digest, top_digest) = self
            .checked_manifest(&client, source, auth, progress, &blame)
            .await?;
        let (config_digest, layers) = Self::blob_digests(&manifest, &blame)?;
        self.protect(
            lease,
            std::iter::once(&config_digest)
                .chain(&layers)
                .map(|d| d.to_string()),
        )
        .await;
        let (config, diff_ids) = self
            .fetch_config(&client, r, &manifest, &config_digest, progress, &blame)
            .await?;
        let chains = chain_ids(&diff_ids);
        self.protect(lease, chains.iter().map(|c| c.to_string()))
            .await;
        let wanted = Layers {
            descs: &manifest.layers,
            blobs: &layers,
            diff_ids: &diff_ids,
            chains: &chains,
        };
        self.fetch_layers(&client, r, wanted, progress, &blame)
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

    /// The platform's image manifest, its digest and the digest the
    /// reference points to, which a pull by digest must match exactly.
    async fn checked_manifest(
        &self,
        client: &Client,
        source: &Source,
        auth: &RegistryAuth,
        progress: &Progress,
        blame: &Blame,
    ) -> Result<(OciImageManifest, String, String), PullError> {
        let (manifest, manifest_digest, list_digest) = self
            .manifest(client, source, auth, progress)
            .await
            .map_err(|e| blame.fetch(e, "manifest"))?;
        // A pull by digest must get exactly that.
        let top_digest = list_digest
            .clone()
            .unwrap_or_else(|| manifest_digest.clone());
        if let Some(want) = source.reference.digest() {
            if want != top_digest {
                return Err(blame.fail(
                    FailureKind::BadContent,
                    format!("registry served {top_digest} for {want}"),
                ));
            }
        }
        Ok((manifest, manifest_digest, top_digest))
    }

    /// The digests of the manifest's config and layers.
    fn blob_digests(
        manifest: &OciImageManifest,
        blame: &Blame,
    ) -> Result<(Digest, Vec<Digest>), PullError> {
        let config_digest: Digest = manifest
            .config
            .digest
            .parse()
            .map_err(|e| blame.content(e))?;
        let layers = manifest
            .layers
            .iter()
            .map(|l| l.digest.parse::<Digest>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| blame.content(e))?;
        Ok((config_digest, layers))
    }

    /// The image config (downloaded unless stored, within
    /// [`MAX_CONFIG_SIZE`]) and its diff ids, one per manifest layer.
    async fn fetch_config(
        &self,
        client: &Client,
        r: &Reference,
        manifest: &OciImageManifest,
        config_digest: &Digest,
        progress: &Progress,
        blame: &Blame,
    ) -> Result<(Vec<u8>, Vec<Digest>), PullError> {
        let config_size = manifest.config.size;
        if config_size < 0 || config_size as u64 > MAX_CONFIG_SIZE {
            return Err(blame.fail(
                FailureKind::TooLarge,
                format!(
                    "image config {config_digest}: its descriptor says {config_size} bytes; \
                     at most {MAX_CONFIG_SIZE} are accepted"
                ),
            ));
        }
        if !self.content.contains(config_digest) {
            self.download(client, r, &manifest.config, config_digest, None, progress)
                .await
                .map_err(|e| blame.fetch(e, "image config"))?;
        }
        let config = self
            .content
            .read(config_digest)
            .map_err(|e| blame.content(e))?;
        let parsed = crate::config::parse(&config)
            .map_err(|e| blame.fail(FailureKind::BadContent, format!("image config: {e}")))?;
        let diff_ids = parsed
            .diff_ids
            .ok_or_else(|| blame.fail(FailureKind::BadContent, "image config: no rootfs".into()))?
            .iter()
            .map(|d| d.parse::<Digest>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| blame.content(e))?;
        if diff_ids.len() != manifest.layers.len() {
            return Err(blame.fail(
                FailureKind::BadContent,
                format!(
                    "the manifest has {} layers but the config {} diff ids",
                    manifest.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        Ok((config, diff_ids))
    }

    /// Each missing snapshot: download its blob (unless stored) and
    /// unpack it at once. Snapshots are independent directories keyed by
    /// chain id, so layers download and unpack in parallel, a few at a time.
    async fn fetch_layers(
        &self,
        client: &Client,
        r: &Reference,
        layers: Layers<'_>,
        progress: &Progress,
        blame: &Blame,
    ) -> Result<(), PullError> {
        let mut seen = HashSet::new();
        let wanted: Vec<(&OciDescriptor, &Digest, &Digest, &Digest)> = layers
            .descs
            .iter()
            .zip(layers.blobs)
            .zip(layers.diff_ids)
            .zip(layers.chains)
            .map(|(((d, l), diff), chain)| (d, l, diff, chain))
            .filter(|(_, _, _, chain)| {
                !self.snapshots.contains(chain) && seen.insert((*chain).clone())
            })
            .collect();
        stream::iter(wanted.into_iter().map(Ok))
            .try_for_each_concurrent(
                self.opts.parallel.max(1),
                |(desc, layer, diff, chain)| async move {
                    self.fetch_and_unpack(client, r, desc, layer, diff, chain, progress)
                        .await
                        .map_err(|e| blame.fetch(e, &format!("layer {layer}")))
                },
            )
            .await
    }
}

/// An image's layers, bottom first: their descriptors, blob digests, diff
/// ids and chain ids.
struct Layers<'a> {
    descs: &'a [OciDescriptor],
    blobs: &'a [Digest],
    diff_ids: &'a [Digest],
    chains: &'a [Digest],
}
