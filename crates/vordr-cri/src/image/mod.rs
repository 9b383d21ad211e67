//! What the image RPCs share: finding an image by id, tag or digest, its
//! CRI view, and garbage collection of blobs and snapshots no image uses.

use k8s_cri::v1::{Image, ImageSpec, Int64Value};
use oci_client::Reference;
use vordr_image::content::Digest;
use vordr_image::pull::InUse;
use vordr_store::ImageRecord;

use crate::state::Runtime;

/// How a CRI image string names an image.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageName {
    /// An id: `sha256:<hex>`, or the bare hex.
    Id(String),
    /// A normalised tag, `docker.io/library/busybox:1.35`.
    Tag(String),
    /// A normalised `name@digest`.
    Digest(String),
}

/// Parses what kubelet or crictl calls an image.
pub fn parse_name(s: &str) -> Result<ImageName, String> {
    let s = s.trim();
    if let Ok(d) = s.parse::<Digest>() {
        return Ok(ImageName::Id(d.to_string()));
    }
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(ImageName::Id(format!("sha256:{}", s.to_ascii_lowercase())));
    }
    let r = Reference::try_from(s).map_err(|e| format!("{s:?} is not an image reference: {e}"))?;
    Ok(match r.digest() {
        Some(d) => ImageName::Digest(format!("{}/{}@{d}", r.registry(), r.repository())),
        None => ImageName::Tag(r.whole()),
    })
}

/// The stored image `name` refers to.
pub fn find(
    rt: &Runtime,
    name: &ImageName,
) -> Result<Option<ImageRecord>, vordr_store::StoreError> {
    if let ImageName::Id(id) = name {
        return rt.store.get_image(id);
    }
    Ok(rt.store.list_images()?.into_iter().find(|i| match name {
        ImageName::Tag(t) => i.repo_tags.contains(t),
        ImageName::Digest(d) => i.repo_digests.contains(d),
        ImageName::Id(_) => false,
    }))
}

/// The `User` of an image config blob, or empty.
pub fn config_user(config: &[u8]) -> String {
    vordr_image::config::parse(config)
        .map(|c| c.user)
        .unwrap_or_default()
}

/// The CRI view of a stored image: uid or username from the config's User,
/// as kubelet's runAsNonRoot check reads them.
pub fn to_cri(rt: &Runtime, img: &ImageRecord) -> Image {
    let user = img.user.split(':').next().unwrap_or("").to_string();
    let (uid, username) = match user.parse::<i64>() {
        Ok(n) => (Some(Int64Value { value: n }), String::new()),
        // No User means root, as the image spec says.
        Err(_) if user.is_empty() => (Some(Int64Value { value: 0 }), String::new()),
        Err(_) => (None, user),
    };
    let pinned = img.pinned
        || img.repo_tags.iter().any(|t| {
            rt.config
                .image
                .pinned_images
                .iter()
                .any(|p| parse_name(p).ok() == Some(ImageName::Tag(t.clone())))
        });
    Image {
        id: img.id.clone(),
        repo_tags: img.repo_tags.clone(),
        repo_digests: img.repo_digests.clone(),
        size: img.size,
        uid,
        username,
        spec: Some(ImageSpec {
            image: img.id.clone(),
            annotations: img.annotations.clone().into_iter().collect(),
            ..Default::default()
        }),
        pinned,
    }
}

/// Deletes blobs and snapshots that no image uses and no pull in progress
/// holds a lease on. Returns how many of each it removed.
pub async fn collect_garbage(rt: &Runtime) -> Result<(usize, usize), String> {
    rt.puller
        .collect_garbage(|| {
            let images = rt.store.list_images().map_err(|e| e.to_string())?;
            let mut used = InUse::default();
            for i in &images {
                used.add_image(&i.id, &i.layers, &i.chain_ids);
            }
            Ok(used)
        })
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let hex = "a".repeat(64);
        assert_eq!(
            parse_name(&format!("sha256:{hex}")).unwrap(),
            ImageName::Id(format!("sha256:{hex}"))
        );
        assert_eq!(
            parse_name(&hex).unwrap(),
            ImageName::Id(format!("sha256:{hex}"))
        );
        assert_eq!(
            parse_name("busybox").unwrap(),
            ImageName::Tag("docker.io/library/busybox:latest".into())
        );
        assert_eq!(
            parse_name(&format!("127.0.0.1:5000/a/b@sha256:{hex}")).unwrap(),
            ImageName::Digest(format!("127.0.0.1:5000/a/b@sha256:{hex}"))
        );
        assert!(parse_name("Not A Reference").is_err());
    }
}
