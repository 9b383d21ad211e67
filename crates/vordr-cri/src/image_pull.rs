//! PullImage: resolve through registries.conf, pull (one pull per name at a
//! time), record the image, and answer with its id. No lock shared with
//! other images is held while the pull waits on a registry: its blobs are
//! kept from garbage collection by a lease, dropped once the image is
//! recorded.

use base64::Engine;
use k8s_cri::v1::{AuthConfig, PullImageRequest, PullImageResponse};
use oci_client::secrets::RegistryAuth;
use tonic::Status;
use vordr_image::auth::{credentials_for, KubeletAuth};
use vordr_image::pull::FailureKind;
use vordr_image::registries::RegistriesError;
use vordr_store::ImageRecord;

use crate::state::errors::{internal, invalid};
use crate::state::ids::now_ns;
use crate::state::Runtime;

/// kubelet's credentials in oci-client's form; `None` when it sent none.
pub fn registry_auth(a: Option<&AuthConfig>) -> Result<Option<RegistryAuth>, Status> {
    let Some(a) = a else {
        return Ok(None);
    };
    if !a.registry_token.is_empty() {
        return Ok(Some(RegistryAuth::Bearer(a.registry_token.clone())));
    }
    if !a.username.is_empty() {
        return Ok(Some(RegistryAuth::Basic(
            a.username.clone(),
            a.password.clone(),
        )));
    }
    if !a.auth.is_empty() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .map_err(|e| invalid("auth.auth", format!("not base64: {e}")))?;
        let s = String::from_utf8(raw).map_err(|_| invalid("auth.auth", "not UTF-8"))?;
        let (u, p) = s
            .split_once(':')
            .ok_or_else(|| invalid("auth.auth", "not user:password"))?;
        return Ok(Some(RegistryAuth::Basic(u.to_string(), p.to_string())));
    }
    Ok(None)
}

pub async fn pull_image(rt: &Runtime, req: PullImageRequest) -> Result<PullImageResponse, Status> {
    let image = req.image.map(|i| i.image).unwrap_or_default();
    if image.is_empty() {
        return Err(invalid("image.image", "is required"));
    }
    let plan = rt.registries.resolve(&image).map_err(|e| match e {
        RegistriesError::InvalidReference { .. } => invalid("image.image", e),
        RegistriesError::Blocked { .. } => Status::permission_denied(e.to_string()),
        e => internal("resolving the image", e),
    })?;
    let kubelet = registry_auth(req.auth.as_ref())?.map(|auth| KubeletAuth {
        auth,
        server_address: req
            .auth
            .as_ref()
            .map(|a| a.server_address.clone())
            .unwrap_or_default(),
    });
    // kubelet's pull secret for the registry it was given for (and mirrors
    // configured to receive it), else the auth file's entry for each
    // source's registry.
    let auth =
        |s: &vordr_image::registries::Source| credentials_for(s, kubelet.as_ref(), &rt.auth_file);
    let name = plan.reference.whole();
    // Only pulls of this same name wait for this one (bounded by the
    // progress timeout).
    let _pull = rt.lock_pull(&name).await;
    let lease = rt.puller.lease();
    let pulled = rt
        .metrics
        .image_pull(rt.puller.pull_leased(&plan, &auth, &lease))
        .await;
    // The pull's buffers were freed on several threads (downloads, unpacks):
    // hand the pages back instead of keeping them in malloc's arenas.
    tokio::task::spawn_blocking(release_freed_memory);
    let pulled = pulled.map_err(|e| {
        tracing::warn!("{e}");
        let msg = e.to_string();
        match e.kind {
            FailureKind::NotFound => Status::not_found(msg),
            FailureKind::Unauthorized => Status::permission_denied(msg),
            FailureKind::Unreachable => Status::unavailable(msg),
            FailureKind::BadContent => Status::data_loss(msg),
            // containerd cancels a pull that makes no progress, and answers
            // with the cancellation's code.
            FailureKind::Timeout => Status::cancelled(msg),
            FailureKind::TooLarge => Status::resource_exhausted(msg),
            FailureKind::Other => Status::unknown(msg),
        }
    })?;
    let r = &plan.reference;
    let repo = format!("{}/{}", r.registry(), r.repository());
    let record = ImageRecord {
        id: pulled.config_digest.to_string(),
        repo_tags: r.tag().map(|_| name.clone()).into_iter().collect(),
        repo_digests: vec![format!("{repo}@{}", pulled.top_digest)],
        size: pulled.size,
        layers: pulled.layers.iter().map(|d| d.to_string()).collect(),
        chain_ids: pulled.chain_ids.iter().map(|d| d.to_string()).collect(),
        pinned: false,
        pulled_at: now_ns(),
        user: crate::image::config_user(&pulled.config),
        annotations: pulled.annotations.clone(),
    };
    rt.store
        .put_image(&record)
        .map_err(|e| internal("recording the image", e))?;
    // Recorded: the image now keeps its blobs.
    drop(lease);
    tracing::info!(image = %name, id = %record.id, "pulled");
    Ok(PullImageResponse {
        image_ref: record.id,
    })
}

fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
