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

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_from_kubelet_or_the_auth_file() {
    if !can_run() {
        eprintln!("skipped: needs root and netavark");
        return;
    }
    let reg = Registry::start_with_auth("kube", "s3cret");
    let name = format!("{}/private/app:1", reg.addr);
    let creds = oci_client::secrets::RegistryAuth::Basic("kube".into(), "s3cret".into());
    let id = vordr_e2e::registry::push_as(
        &name,
        &[(tar(&[("p", Some(b"p"))]), IMAGE_LAYER_GZIP_MEDIA_TYPE)],
        "amd64",
        &creds,
    )
    .await;
    let mut d = Daemon::start_with_registries("auth", &registries(&reg)).await;
    let mut c = d.client().await;
    let with = |auth: cri::AuthConfig| cri::PullImageRequest {
        image: spec(&name),
        auth: Some(auth),
        sandbox_config: None,
    };
    // No credentials: refused, naming the registry.
    let e = pull(&mut c, &name).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains(&reg.addr));
    // Wrong ones too.
    let bad = cri::AuthConfig {
        username: "kube".into(),
        password: "nope".into(),
        ..Default::default()
    };
    assert_eq!(
        c.image.pull_image(with(bad)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // kubelet's username/password, and its base64 `auth` form.
    let password = cri::AuthConfig {
        username: "kube".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    let base64 = cri::AuthConfig {
        auth: "a3ViZTpzM2NyZXQ=".into(),
        ..Default::default()
    };
    // Credentials given for another registry are not sent to this one;
    // given for this one (in any spelling), they are.
    let elsewhere = cri::AuthConfig {
        server_address: "ghcr.io".into(),
        ..password.clone()
    };
    let e = c.image.pull_image(with(elsewhere)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let here = cri::AuthConfig {
        server_address: format!("http://{}/v2/", reg.addr),
        ..password.clone()
    };
    for good in [here, password, base64] {
        let pulled = c.image.pull_image(with(good)).await.unwrap().into_inner();
        assert_eq!(pulled.image_ref, id);
        c.image
            .remove_image(cri::RemoveImageRequest { image: spec(&id) })
            .await
            .unwrap();
    }

    // With an auth file, a pull without kubelet credentials works.
    let auth_file = d.dir.path().join("auth.json");
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths": {{"{}": {{"auth": "a3ViZTpzM2NyZXQ="}}}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        format!("{cfg}\n[image]\nauth_file = {auth_file:?}\n"),
    )
    .unwrap();
    d.terminate();
    d.spawn().await;
    let mut c = d.client().await;
    assert_eq!(pull(&mut c, &name).await.unwrap(), id);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_pull_leaves_nothing_half_visible() {
    if !can_run() {
        eprintln!("skipped: needs root and netavark");
        return;
    }
    let reg = Registry::start();
    // Five layers of incompressible data, about 25 MB: long enough to kill mid-way.
    let mut layers = Vec::new();
    let mut seed = 0x9e3779b97f4a7c15u64;
    for i in 0..5 {
        let data: Vec<u8> = (0..5_000_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        layers.push((
            tar(&[(&format!("blob{i}"), Some(&data))]),
            IMAGE_LAYER_GZIP_MEDIA_TYPE,
        ));
    }
    let name = format!("{}/e2e/big:1", reg.addr);
    let id = push(&name, &layers, "amd64").await;
    let mut d = Daemon::start_with_registries("pullcrash", &registries(&reg)).await;
    let images = d.root.join("images");
    let mut interrupted = 0;
    for delay_ms in [100u64, 300] {
        let mut c = d.client().await;
        let n = name.clone();
        let task = tokio::spawn(async move { pull(&mut c, &n).await });
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        d.kill9();
        let finished = task.await.unwrap().is_ok();
        d.spawn().await;
        let mut c = d.client().await;
        let listed = c
            .image
            .list_images(cri::ListImagesRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .images;
        if finished {
            // The pull won the race: then the image is whole.
            assert_eq!(listed.len(), 1);
            c.image
                .remove_image(cri::RemoveImageRequest { image: spec(&id) })
                .await
                .unwrap();
            continue;
        }
        interrupted += 1;
        assert!(
            listed.is_empty(),
            "a half-pulled image is listed: {listed:?}"
        );
        // No unfinished ingest or unpack is left behind.
        assert_eq!(dir_entries(&images.join("content/ingest")), 0);
        let tmp: Vec<_> = std::fs::read_dir(images.join("snapshots"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("tmp-"))
            .collect();
        assert!(tmp.is_empty(), "{tmp:?}");
        // And the next pull completes.
        assert_eq!(pull(&mut c, &name).await.unwrap(), id);
        c.image
            .remove_image(cri::RemoveImageRequest { image: spec(&id) })
            .await
            .unwrap();
        assert_eq!(dir_entries(&images.join("snapshots")), 0);
        assert_eq!(dir_entries(&images.join("content/blobs/sha256")), 0);
    }
    assert!(
        interrupted > 0,
        "no kill landed during a pull: the test proved nothing"
    );
}

/// A registry that completes TCP handshakes (the kernel does) and then
/// never says a word: connections are accepted and held. Returns its
/// address and a count of connections so far.
fn silent_registry() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(c);
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_registry_blocks_neither_other_pulls_nor_remove_image() {
    if !can_run() {
        eprintln!("skipped: needs root and netavark");
        return;
    }
    let reg = Registry::start();
    let (silent, connections) = silent_registry();
    let b = format!("{}/e2e/b:1", reg.addr);
    let b_id = push(
        &b,
        &[(tar(&[("b", Some(b"b"))]), IMAGE_LAYER_GZIP_MEDIA_TYPE)],
        "amd64",
    )
    .await;
    let conf = format!(
        "{}\n[[registry]]\nlocation = \"{silent}\"\ninsecure = true\n",
        registries(&reg)
    );
    let mut d = Daemon::start_with_registries("imgstall", &conf).await;
    let mut c = d.client().await;
    let a = format!("{silent}/e2e/a:1");
    let pull_a = tokio::spawn({
        let mut c = c.clone();
        let a = a.clone();
        async move { pull(&mut c, &a).await }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while connections.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pull of {a} never connected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // While A waits on its registry: B pulls, is removed (freeing its
    // content), and pulls again; removing A (not there) answers too.
    let quick = std::time::Duration::from_secs(10);
    for _ in 0..2 {
        let id = tokio::time::timeout(quick, pull(&mut c, &b))
            .await
            .expect("pulling B waited on A's registry")
            .unwrap();
        assert_eq!(id, b_id);
        tokio::time::timeout(
            quick,
            c.image
                .remove_image(cri::RemoveImageRequest { image: spec(&b) }),
        )
        .await
        .expect("RemoveImage waited on A's registry")
        .unwrap();
        assert_eq!(dir_entries(&d.root.join("images/snapshots")), 0);
    }
    tokio::time::timeout(
        quick,
        c.image
            .remove_image(cri::RemoveImageRequest { image: spec(&a) }),
    )
    .await
    .expect("RemoveImage of A waited on A's pull")
    .unwrap();
    assert!(!pull_a.is_finished(), "{:?}", pull_a.await);
    pull_a.abort();

    // With a progress timeout, the pull of A is cancelled, as containerd
    // cancels it, naming the image and the timeout.
    d.terminate();
    let cfg = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        format!("{cfg}\n[image]\npull_progress_timeout = \"2s\"\n"),
    )
    .unwrap();
    d.spawn().await;
    let mut c = d.client().await;
    let t0 = std::time::Instant::now();
    let e = tokio::time::timeout(std::time::Duration::from_secs(30), pull(&mut c, &a))
        .await
        .expect("the progress timeout did not end the pull")
        .unwrap_err();
    assert_eq!(e.code(), Code::Cancelled, "{e:?}");
    assert!(
        e.message().contains(&a) && e.message().contains("2s"),
        "{}",
        e.message()
    );
    assert!(t0.elapsed() >= std::time::Duration::from_secs(2));
}
