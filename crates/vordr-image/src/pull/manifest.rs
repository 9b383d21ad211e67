//! Fetching the platform's image manifest (through an index), size-capped and digest-checked.

use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    OciImageManifest, OciManifest, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::Deserialize;

use super::download::Progress;
use super::error::Fetch;
use super::Puller;
use crate::content::{Algorithm, ContentError, Digest, Hasher};
use crate::registries::Source;

/// The largest manifest (or index) read. oci-client reads a manifest whole
/// into memory with no bound, so Vordr fetches manifests itself and stops
/// reading past this.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// How much of a registry's error response is read for the message.
const MAX_ERROR_BODY: usize = 16 << 10;

/// The manifest types asked for and accepted.
const MANIFEST_TYPES: [&str; 4] = [
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// How a manifest request authenticates, as oci-client negotiated it.
enum Authz {
    None,
    Bearer(String),
    Basic(String, String),
}

impl Puller {
    /// The image manifest `source` serves for this platform: `(manifest,
    /// its digest, the index's digest if the reference named an index)`.
    pub(super) async fn manifest(
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
        check_manifest(r, &body)
    }
}

/// Checks a manifest's body against the digest `r` names (if any), its
/// schema version and media type, and parses it.
fn check_manifest(r: &Reference, body: &[u8]) -> Result<(OciManifest, Digest), Fetch> {
    let want: Option<Digest> = match r.digest() {
        Some(d) => Some(d.parse().map_err(Fetch::Content)?),
        None => None,
    };
    let mut h = Hasher::new(want.as_ref().map_or(Algorithm::Sha256, |d| d.algorithm()));
    h.update(body);
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
    let v: Versioned = serde_json::from_slice(body)
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
    let m = serde_json::from_slice(body)
        .map_err(|e| Fetch::Bad(format!("parsing the manifest: {e}")))?;
    Ok((m, digest))
}
