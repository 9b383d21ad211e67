//! `vordr pull`, `images`, `rmi`: the runtime's image store over CRI.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use vordr_client::{cri, CriClient};

use super::common::{self, Common, Rpc};

#[derive(Args, Debug)]
pub struct PullArgs {
    #[command(flatten)]
    pub common: Common,
    /// Registry user (with --password): sent as kubelet sends pull secrets
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long, requires = "user")]
    pub password: Option<String>,
    /// The image, e.g. docker.io/library/busybox:1.36
    pub image: String,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(required = true)]
    pub images: Vec<String>,
}

fn image_spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

/// A registry user and password, as kubelet passes a pull secret.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// What a pull gave.
#[derive(Debug, Clone, Serialize)]
pub struct Pulled {
    pub image: String,
    /// The image's reference in the store (its id).
    pub image_ref: String,
}

/// Pulls `image` through the runtime.
pub async fn pull(c: &mut CriClient, image: &str, auth: Option<&Credentials>) -> Result<Pulled> {
    let image_ref = c
        .image
        .pull_image(cri::PullImageRequest {
            image: image_spec(image),
            auth: auth.map(|a| cri::AuthConfig {
                username: a.username.clone(),
                password: a.password.clone(),
                ..Default::default()
            }),
            sandbox_config: None,
        })
        .await
        .rpc(&format!("pulling {image}"))?
        .image_ref;
    Ok(Pulled {
        image: image.into(),
        image_ref,
    })
}

/// Whether the runtime has `image`.
pub async fn present(c: &mut CriClient, image: &str) -> Result<bool> {
    Ok(c.image
        .image_status(cri::ImageStatusRequest {
            image: image_spec(image),
            verbose: false,
        })
        .await
        .rpc(&format!("looking up {image}"))?
        .image
        .is_some())
}

async fn image_store_bytes(c: &mut CriClient) -> u64 {
    c.image
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .ok()
        .and_then(|r| r.into_inner().image_filesystems.into_iter().next())
        .and_then(|f| f.used_bytes)
        .map(|u| u.value)
        .unwrap_or(0)
}

pub async fn pull_cmd(a: PullArgs) -> Result<i32> {
    let mut c = a.common.connect().await?;
    let auth = a.user.as_ref().map(|u| Credentials {
        username: u.clone(),
        password: a.password.clone().unwrap_or_default(),
    });
    let start = image_store_bytes(&mut c).await;
    let bar = indicatif::ProgressBar::new_spinner();
    if a.common.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {bytes} stored, {elapsed}")
            .expect("a valid template"),
    );
    bar.set_message(format!("pulling {}", a.image));
    let mut pulling = c.clone();
    let image = a.image.clone();
    let mut call = Box::pin(async move { pull(&mut pulling, &image, auth.as_ref()).await });
    let res = loop {
        tokio::select! {
            r = &mut call => break r,
            _ = tokio::time::sleep(Duration::from_millis(150)) => {
                let now = image_store_bytes(&mut c).await;
                bar.set_position(now.saturating_sub(start));
                bar.tick();
            }
        }
    };
    bar.finish_and_clear();
    let pulled = res?;
    if a.common.json {
        common::print_json(&pulled)?;
    } else {
        println!("Image is up to date for {}", pulled.image_ref);
    }
    Ok(0)
}

/// One image of the store.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRow {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size: u64,
}

/// The runtime's images.
pub async fn images(c: &mut CriClient) -> Result<Vec<ImageRow>> {
    let images = c
        .image
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .rpc("listing images")?
        .images;
    Ok(images
        .into_iter()
        .map(|i| ImageRow {
            id: i.id,
            repo_tags: i.repo_tags,
            repo_digests: i.repo_digests,
            size: i.size,
        })
        .collect())
}

/// (repository, tag) pairs an image is listed under.
fn names(i: &ImageRow) -> Vec<(String, String)> {
    if i.repo_tags.is_empty() {
        return i
            .repo_digests
            .iter()
            .map(|d| {
                (
                    d.split('@').next().unwrap_or(d).to_string(),
                    "<none>".to_string(),
                )
            })
            .collect();
    }
    i.repo_tags
        .iter()
        .map(|t| match t.rsplit_once(':') {
            Some((n, tag)) if !tag.contains('/') => (n.to_string(), tag.to_string()),
            _ => (t.clone(), "<none>".to_string()),
        })
        .collect()
}

pub async fn cmd(a: ImagesArgs) -> Result<i32> {
    let mut c = a.common.connect().await?;
    let rows = images(&mut c).await?;
    if a.common.json {
        common::print_json(&rows)?;
        return Ok(0);
    }
    let mut cells = Vec::new();
    for i in &rows {
        let short_id: String =
            i.id.trim_start_matches("sha256:")
                .chars()
                .take(13)
                .collect();
        let size = format!("{:.1}MB", i.size as f64 / 1e6);
        for (name, tag) in names(i) {
            cells.push(vec![name, tag, short_id.clone(), size.clone()]);
        }
    }
    print!(
        "{}",
        common::table(&["IMAGE", "TAG", "IMAGE ID", "SIZE"], &cells)
    );
    Ok(0)
}

/// What `rmi` removed.
#[derive(Debug, Clone, Serialize)]
pub struct RemovedImage {
    pub image: String,
}

/// Removes `image` (by id, tag or digest).
pub async fn rmi(c: &mut CriClient, image: &str) -> Result<RemovedImage> {
    c.image
        .remove_image(cri::RemoveImageRequest {
            image: image_spec(image),
        })
        .await
        .rpc(&format!("removing {image}"))?;
    Ok(RemovedImage {
        image: image.into(),
    })
}

pub async fn rmi_cmd(a: RmiArgs) -> Result<i32> {
    let f = async |c: &mut CriClient, q: &str| rmi(c, q).await;
    common::each(&a.common, &a.images, f, |r| &r.image).await
}
