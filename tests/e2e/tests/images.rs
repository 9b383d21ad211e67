//! The ImageService end to end: a real `vordr serve` pulling from a real
//! registry on 127.0.0.1 that this test fills with images it builds.

use oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE;
use tonic::Code;
use vordr_e2e::registry::{push, tar, Registry, ZSTD_LAYER};
use vordr_e2e::*;

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

async fn pull(c: &mut CriClient, image: &str) -> Result<String, tonic::Status> {
    c.image
        .pull_image(cri::PullImageRequest {
            image: spec(image),
            auth: None,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

async fn status(c: &mut CriClient, image: &str) -> Option<cri::Image> {
    c.image
        .image_status(cri::ImageStatusRequest {
            image: spec(image),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
}

fn registries(reg: &Registry) -> String {
    format!(
        "[[registry]]\nlocation = \"{0}\"\ninsecure = true\n\n\
         [[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\
         [[registry.mirror]]\nlocation = \"{0}/mirror\"\ninsecure = true\n",
        reg.addr
    )
}

fn dir_entries(p: &std::path::Path) -> usize {
    std::fs::read_dir(p).map(|r| r.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_status_list_remove() {
    if !can_run() {
        eprintln!("skipped: needs root and netavark");
        return;
    }
    let reg = Registry::start();
    let name = format!("{}/e2e/app:1", reg.addr);
    let id = push(
        &name,
        &[
            (
                tar(&[("etc/", None), ("etc/motd", Some(b"hello"))]),
                IMAGE_LAYER_GZIP_MEDIA_TYPE,
            ),
            (
                tar(&[("bin/", None), ("bin/app", Some(b"app"))]),
                ZSTD_LAYER,
            ),
        ],
        "amd64",
    )
    .await;
    // docker.io/library/short:1 is served by the mirror.
    let short_id = push(
        &format!("{}/mirror/library/short:1", reg.addr),
        &[(tar(&[("s", Some(b"s"))]), IMAGE_LAYER_GZIP_MEDIA_TYPE)],
        "amd64",
    )
    .await;
    let d = Daemon::start_with_registries("img", &registries(&reg)).await;
    let mut c = d.client().await;
    let before = c
        .image
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();

    // Several pulls of the same image at once: one image.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut c = c.clone();
        let name = name.clone();
        tasks.push(tokio::spawn(
            async move { pull(&mut c, &name).await.unwrap() },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), id);
    }
    assert_eq!(pull(&mut c, "short:1").await.unwrap(), short_id);

    let img = status(&mut c, &name)
        .await
        .expect("pulled image has a status");
    assert_eq!(img.id, id);
    assert_eq!(img.repo_tags, vec![name.clone()]);
    assert_eq!(img.repo_digests.len(), 1);
    assert!(img.repo_digests[0].starts_with(&format!("{}/e2e/app@sha256:", reg.addr)));
    assert!(img.size > 0);
    assert_eq!(img.uid.as_ref().unwrap().value, 1000);
    // The same image by id, by bare hex id, and by digest.
    assert_eq!(status(&mut c, &id).await.unwrap().id, id);
    assert_eq!(
        status(&mut c, id.trim_start_matches("sha256:"))
            .await
            .unwrap()
            .id,
        id
    );
    assert_eq!(status(&mut c, &img.repo_digests[0]).await.unwrap().id, id);
    let short = status(&mut c, "docker.io/library/short:1").await.unwrap();
    assert_eq!(
        short.repo_tags,
        vec!["docker.io/library/short:1".to_string()]
    );
    // Unknown image: no status, no error.
    assert!(status(&mut c, &format!("{}/e2e/none:1", reg.addr))
        .await
        .is_none());

    let all = c
        .image
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(all.len(), 2);
    let one = c
        .image
        .list_images(cri::ListImagesRequest {
            filter: Some(cri::ImageFilter { image: spec(&name) }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(one.iter().map(|i| &i.id).collect::<Vec<_>>(), vec![&id]);

    let after = c
        .image
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let used =
        |f: &cri::ImageFsInfoResponse| f.image_filesystems[0].used_bytes.as_ref().unwrap().value;
    assert!(used(&after) > used(&before));
    let snaps = d.root.join("images/snapshots");
    assert_eq!(dir_entries(&snaps), 3);

    // Removing by tag removes the image; its layers are freed, the other's kept.
    for _ in 0..2 {
        c.image
            .remove_image(cri::RemoveImageRequest { image: spec(&name) })
            .await
            .unwrap();
    }
    assert!(status(&mut c, &id).await.is_none());
    assert_eq!(dir_entries(&snaps), 1);
    c.image
        .remove_image(cri::RemoveImageRequest {
            image: spec(&short_id),
        })
        .await
        .unwrap();
    assert_eq!(dir_entries(&snaps), 0);
    assert_eq!(dir_entries(&d.root.join("images/content/blobs/sha256")), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_pulls_are_clear_errors() {
    if !can_run() {
        eprintln!("skipped: needs root and netavark");
        return;
    }
    let reg = Registry::start();
    let d = Daemon::start_with_registries("imgbad", &registries(&reg)).await;
    let mut c = d.client().await;
    let e = pull(&mut c, "Not/A Valid:ref").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("image.image"));
    let e = pull(&mut c, "").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let missing = format!("{}/e2e/missing:1", reg.addr);
    let e = pull(&mut c, &missing).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(
        e.message().contains(&missing) && e.message().contains(&reg.addr),
        "{}",
        e.message()
    );
    // Nothing half-visible.
    let all = c
        .image
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(all.is_empty());
    // Removing what is not there succeeds.
    c.image
        .remove_image(cri::RemoveImageRequest {
            image: spec(&missing),
        })
        .await
        .unwrap();
}
