//! Pulls from a real registry (Debian's docker-registry on 127.0.0.1, with
//! its own storage), filled with images this test builds and pushes.

use std::net::TcpListener;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use oci_client::manifest::{IMAGE_LAYER_GZIP_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use vordr_e2e::registry::{client, push, tar, Registry, ZSTD_LAYER};
use vordr_image::content::{ContentStore, Digest};
use vordr_image::pull::{FailureKind, PullOptions, Puller};
use vordr_image::registries::{RegistriesConf, Source};
use vordr_image::snapshots::Snapshots;

fn anonymous(_: &Source) -> RegistryAuth {
    RegistryAuth::Anonymous
}

struct Stores {
    _dir: tempfile::TempDir,
    puller: Puller,
}

fn stores() -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let puller = Puller::new(
        ContentStore::open(&dir.path().join("content")).unwrap(),
        Snapshots::open(&dir.path().join("snapshots")).unwrap(),
        PullOptions::default(),
    );
    Stores { _dir: dir, puller }
}

fn conf(reg: &Registry) -> RegistriesConf {
    RegistriesConf::parse(
        &format!(
            "[[registry]]\nlocation = \"{0}\"\ninsecure = true\n\n[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"{0}/mirror\"\ninsecure = true\n",
            reg.addr
        ),
        "test",
    )
    .unwrap()
}

fn root() -> bool {
    nix::unistd::geteuid().is_root() && Path::new("/usr/bin/docker-registry").exists()
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_by_tag_and_digest_with_whiteouts_and_shared_layers() {
    if !root() {
        eprintln!("skipped: needs root and docker-registry");
        return;
    }
    let reg = Registry::start();
    let base = tar(&[
        ("etc/", None),
        ("etc/motd", Some(b"hi")),
        ("var/", None),
        ("var/cache/", None),
        ("var/cache/old", Some(b"o")),
    ]);
    let top = tar(&[
        ("etc/.wh.motd", Some(b"")),
        ("var/cache/", None),
        ("var/cache/.wh..wh..opq", Some(b"")),
        ("var/cache/new", Some(b"n")),
    ]);
    let name = format!("{}/app:1", reg.addr);
    let config_digest = push(
        &name,
        &[
            (base.clone(), IMAGE_LAYER_GZIP_MEDIA_TYPE),
            (top.clone(), IMAGE_LAYER_GZIP_MEDIA_TYPE),
        ],
        "amd64",
    )
    .await;
    let s = stores();
    let plan = conf(&reg).resolve(&name).unwrap();
    let img = s.puller.pull(&plan, &anonymous).await.unwrap();
    assert_eq!(img.config_digest.to_string(), config_digest);
    assert_eq!(img.name, name);
    assert_eq!(img.chain_ids.len(), 2);
    assert!(img.size > 0);
    let lower = s.puller.snapshots().fs_path(&img.chain_ids[0]);
    let upper = s.puller.snapshots().fs_path(&img.chain_ids[1]);
    assert_eq!(std::fs::read(lower.join("etc/motd")).unwrap(), b"hi");
    assert!(std::fs::symlink_metadata(upper.join("etc/motd"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(
        xattr::get(upper.join("var/cache"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );

    // By digest, from the same store: nothing new to unpack.
    let by_digest = format!("{}/app@{}", reg.addr, img.top_digest);
    let again = s
        .puller
        .pull(&conf(&reg).resolve(&by_digest).unwrap(), &anonymous)
        .await
        .unwrap();
    assert_eq!(again.config_digest, img.config_digest);

    // Another image on the same base shares its snapshot.
    let other = format!("{}/other:1", reg.addr);
    push(
        &other,
        &[
            (base, IMAGE_LAYER_GZIP_MEDIA_TYPE),
            (tar(&[("other", Some(b"x"))]), ZSTD_LAYER),
        ],
        "amd64",
    )
    .await;
    let o = s
        .puller
        .pull(&conf(&reg).resolve(&other).unwrap(), &anonymous)
        .await
        .unwrap();
    assert_eq!(o.chain_ids[0], img.chain_ids[0]);
    assert_eq!(
        std::fs::read(s.puller.snapshots().fs_path(&o.chain_ids[1]).join("other")).unwrap(),
        b"x"
    );
    assert_eq!(s.puller.snapshots().list().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_arch_index_resolves_to_this_platform_and_mirrors_serve_docker_io() {
    if !root() {
        eprintln!("skipped: needs root and docker-registry");
        return;
    }
    let reg = Registry::start();
    let c = client();
    let mut entries = Vec::new();
    let mut amd64_config = String::new();
    for arch in ["arm64", "amd64"] {
        let r = format!("{}/mirror/library/multi:{arch}", reg.addr);
        let cfg = push(
            &r,
            &[(
                tar(&[(arch, Some(arch.as_bytes()))]),
                IMAGE_LAYER_GZIP_MEDIA_TYPE,
            )],
            arch,
        )
        .await;
        if arch == "amd64" {
            amd64_config = cfg;
        }
        let reference: Reference = r.parse().unwrap();
        let (bytes, digest) = c
            .pull_manifest_raw(
                &reference,
                &RegistryAuth::Anonymous,
                &["application/vnd.oci.image.manifest.v1+json"],
            )
            .await
            .unwrap();
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": bytes.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE, "manifests": entries}).to_string();
    let index_ref: Reference = format!("{}/mirror/library/multi:latest", reg.addr)
        .parse()
        .unwrap();
    c.push_manifest_raw(
        &index_ref,
        index.clone().into_bytes(),
        http::HeaderValue::from_static(OCI_IMAGE_INDEX_MEDIA_TYPE),
    )
    .await
    .unwrap();

    // "multi" is docker.io/library/multi:latest, served by the mirror.
    let s = stores();
    let plan = conf(&reg).resolve("multi").unwrap();
    assert_eq!(plan.reference.whole(), "docker.io/library/multi:latest");
    let img = s.puller.pull(&plan, &anonymous).await.unwrap();
    assert_eq!(img.config_digest.to_string(), amd64_config);
    assert_eq!(
        img.top_digest,
        Digest::sha256_of(index.as_bytes()).to_string()
    );
    assert_ne!(img.top_digest, img.manifest_digest);
    assert!(s
        .puller
        .snapshots()
        .fs_path(&img.chain_ids[0])
        .join("amd64")
        .exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_name_the_cause_and_leave_nothing() {
    if !root() {
        eprintln!("skipped: needs root and docker-registry");
        return;
    }
    let reg = Registry::start();
    let s = stores();
    let missing = format!("{}/nope:1", reg.addr);
    let e = s
        .puller
        .pull(&conf(&reg).resolve(&missing).unwrap(), &anonymous)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::NotFound, "{e}");
    assert!(
        e.to_string().contains(&missing) && e.to_string().contains(&reg.addr),
        "{e}"
    );

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("127.0.0.1:{closed}/app:1");
    let plan = RegistriesConf::parse(
        &format!("[[registry]]\nlocation = \"127.0.0.1:{closed}\"\ninsecure = true\n"),
        "t",
    )
    .unwrap()
    .resolve(&dead)
    .unwrap();
    let e = s.puller.pull(&plan, &anonymous).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Unreachable, "{e}");

    // A hostile layer: refused, no snapshot, and its blob is verified but unused.
    let evil = format!("{}/evil:1", reg.addr);
    push(
        &evil,
        &[(
            vordr_e2e::registry::escaping_tar(),
            IMAGE_LAYER_GZIP_MEDIA_TYPE,
        )],
        "amd64",
    )
    .await;
    let e = s
        .puller
        .pull(&conf(&reg).resolve(&evil).unwrap(), &anonymous)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::BadContent, "{e}");
    assert!(e.to_string().contains("outside the layer"), "{e}");
    assert!(s.puller.snapshots().list().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_docker_schema2_images_with_annotations() {
    if !root() {
        eprintln!("skipped: needs root and docker-registry");
        return;
    }
    let reg = Registry::start();
    let name = format!("{}/docker/v2s2:1", reg.addr);
    let r: Reference = name.parse().unwrap();
    let layer_tar = tar(&[("hello", Some(b"docker"))]);
    let layer = vordr_e2e::registry::gzip(&layer_tar);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [vordr_e2e::registry::sha256(&layer_tar)]},
    })
    .to_string();
    let c = client();
    let (ld, cd) = (
        vordr_e2e::registry::sha256(&layer),
        vordr_e2e::registry::sha256(config.as_bytes()),
    );
    c.push_blob(&r, layer.clone(), &ld).await.unwrap();
    c.push_blob(&r, config.clone().into_bytes(), &cd)
        .await
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": cd},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": layer.len(), "digest": ld}],
    })
    .to_string();
    c.push_manifest_raw(
        &r,
        manifest.into_bytes(),
        http::HeaderValue::from_static("application/vnd.docker.distribution.manifest.v2+json"),
    )
    .await
    .unwrap();
    let s = stores();
    let img = s
        .puller
        .pull(&conf(&reg).resolve(&name).unwrap(), &anonymous)
        .await
        .unwrap();
    assert_eq!(img.config_digest.to_string(), cd);
    assert_eq!(
        std::fs::read(
            s.puller
                .snapshots()
                .fs_path(&img.chain_ids[0])
                .join("hello")
        )
        .unwrap(),
        b"docker"
    );

    // An OCI manifest's annotations come back with the pulled image.
    let annotated = format!("{}/oci/annotated:1", reg.addr);
    let ar: Reference = annotated.parse().unwrap();
    let cfg = oci_client::client::Config::new(
        config.clone().into_bytes(),
        oci_client::manifest::IMAGE_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let layers = vec![oci_client::client::ImageLayer::new(
        layer,
        IMAGE_LAYER_GZIP_MEDIA_TYPE.to_string(),
        None,
    )];
    let mut m = oci_client::manifest::OciImageManifest::build(&layers, &cfg, None);
    m.annotations = Some(
        [(
            "org.opencontainers.image.title".to_string(),
            "annotated".to_string(),
        )]
        .into(),
    );
    c.push(&ar, &layers, cfg, &RegistryAuth::Anonymous, Some(m))
        .await
        .unwrap();
    let img = s
        .puller
        .pull(&conf(&reg).resolve(&annotated).unwrap(), &anonymous)
        .await
        .unwrap();
    assert_eq!(
        img.annotations
            .get("org.opencontainers.image.title")
            .map(String::as_str),
        Some("annotated")
    );
}
