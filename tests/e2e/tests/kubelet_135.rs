//! What kubelet 1.33 to 1.35 sends and reads over CRI: a container's stop
//! signal used by StopContainer and reported, ContainerStatus's user,
//! image id and resources (after UpdateContainerResources too),
//! PodSandboxStatus's containers' statuses, ImageFsInfo's container
//! filesystem and UpdatePodSandboxResources (in-place pod resize) on the
//! pod's cgroup.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tonic::Code;
use vordr_e2e::setup::*;
use vordr_e2e::*;

/// A container that leaves with exit code 7 on SIGUSR1 (and 143 by SIGTERM's
/// default action otherwise), running as 1000:3000 with group 4000, 64 MiB.
fn usr1_container(s: &Setup, name: &str) -> cri::ContainerConfig {
    let script = "trap 'echo got-usr1; exit 7' USR1; echo ready; while true; do sleep 0.1; done";
    let mut cfg = s.config(name, &["sh", "-c", script]);
    cfg.stop_signal = cri::Signal::Sigusr1 as i32;
    let linux = cfg.linux.get_or_insert_with(Default::default);
    linux.resources = Some(cri::LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        ..Default::default()
    });
    let sc = linux.security_context.get_or_insert_with(Default::default);
    sc.run_as_user = Some(cri::Int64Value { value: 1000 });
    sc.run_as_group = Some(cri::Int64Value { value: 3000 });
    sc.supplemental_groups = vec![4000];
    cfg
}

async fn update_pod(
    s: &mut Setup,
    id: &str,
    memory: i64,
) -> Result<cri::UpdatePodSandboxResourcesResponse, tonic::Status> {
    s.c.runtime
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: id.into(),
            overhead: None,
            resources: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: memory,
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn stop_signal_user_resources_and_pod_views() {
    let Some(mut s) = setup("k135").await else {
        return;
    };
    let pod = s.pod("k135", "").await;

    // A stop signal outside the enum is refused, naming the field.
    let mut bad = s.config("bad", &["sleep", "100"]);
    bad.stop_signal = 99;
    let e = s.create(&pod, bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("stop_signal"), "{e}");

    let id = s.run(&pod, usr1_container(&s, "usr1")).await;
    let plain = s.run(&pod, s.config("plain", &["sleep", "1000"])).await;
    s.wait_log("k135", "usr1", "ready").await;

    let st = s.status(&id).await;
    assert_eq!(st.stop_signal, cri::Signal::Sigusr1 as i32);
    assert!(st.image_id.starts_with("sha256:"), "{:?}", st.image_id);
    let user = st.user.clone().and_then(|u| u.linux).expect("a user");
    assert_eq!((user.uid, user.gid), (1000, 3000));
    assert!(user.supplemental_groups.contains(&4000), "{user:?}");
    let mem = |st: &cri::ContainerStatus| {
        st.resources
            .as_ref()
            .and_then(|r| r.linux.as_ref())
            .map(|l| l.memory_limit_in_bytes)
    };
    assert_eq!(mem(&st), Some(64 << 20));
    // busybox has no STOPSIGNAL: SIGTERM; a root process reports uid 0.
    let pst = s.status(&plain).await;
    assert_eq!(pst.stop_signal, cri::Signal::Sigterm as i32);
    assert_eq!(pst.user.and_then(|u| u.linux).map(|u| u.uid), Some(0));

    // The resources reported follow UpdateContainerResources.
    s.set_memory_limit(&id, 128 << 20).await.unwrap();
    assert_eq!(mem(&s.status(&id).await), Some(128 << 20));

    // PodSandboxStatus carries its containers' statuses.
    let ps = pod_status(&mut s.c, &pod.0).await.unwrap();
    let mut ids: Vec<_> = ps
        .containers_statuses
        .iter()
        .map(|c| c.id.clone())
        .collect();
    ids.sort();
    let mut want = vec![id.clone(), plain.clone()];
    want.sort();
    assert_eq!(ids, want);
    let mine = ps.containers_statuses.iter().find(|c| c.id == id).unwrap();
    assert_eq!(mine.stop_signal, cri::Signal::Sigusr1 as i32);
    assert_eq!(mem(mine), Some(128 << 20));

    // ImageFsInfo: the containers' writable layers as the container filesystem.
    let fs =
        s.c.image
            .image_fs_info(cri::ImageFsInfoRequest {})
            .await
            .unwrap()
            .into_inner();
    assert_eq!(fs.image_filesystems.len(), 1);
    assert_eq!(fs.container_filesystems.len(), 1, "{fs:?}");
    let cfs = &fs.container_filesystems[0];
    let mountpoint = &cfs.fs_id.as_ref().unwrap().mountpoint;
    assert!(mountpoint.ends_with("/containers"), "{mountpoint}");
    assert!(cfs.used_bytes.as_ref().unwrap().value > 0);
    assert!(cfs.inodes_used.as_ref().unwrap().value >= 3);

    // UpdatePodSandboxResources: taken for a pod, NotFound for no pod,
    // InvalidArgument naming a negative field.
    update_pod(&mut s, &pod.0, 256 << 20).await.unwrap();
    let e = update_pod(&mut s, "no-such-pod", 1 << 20)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    let e = update_pod(&mut s, &pod.0, -5).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(
        e.message().contains("resources.memory_limit_in_bytes"),
        "{e}"
    );

    // StopContainer sends SIGUSR1: the trap's exit code, well within the grace.
    let t = Instant::now();
    s.c.runtime
        .stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 30,
        })
        .await
        .unwrap();
    assert!(
        t.elapsed() < scaled(Duration::from_secs(10)),
        "{:?}",
        t.elapsed()
    );
    let st = s.wait_exit(&id).await;
    assert_eq!(st.exit_code, 7, "{st:?}");
    assert!(s.log_of("k135", "usr1").contains("got-usr1"));
    assert_eq!(st.stop_signal, cri::Signal::Sigusr1 as i32);

    s.stop_remove(&plain).await;
    s.stop_remove(&id).await;
    s.d.remove_all_pods().await;
}

const ROOT: &str = "/sys/fs/cgroup";

fn unified() -> bool {
    nix::sys::statfs::statfs(ROOT)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// The directory of the memory cgroup holding `pid`'s cgroup (its pod's).
fn pod_memory_dir(pid: u32) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let root = if unified() && ctrls.is_empty() {
            PathBuf::from(ROOT)
        } else if !unified() && ctrls.split(',').any(|c| c == "memory") {
            Path::new(ROOT).join(ctrls)
        } else {
            continue;
        };
        let leaf = root.join(path.trim_start_matches('/'));
        return leaf.parent().unwrap().to_path_buf();
    }
    panic!("no memory cgroup for {pid}:\n{text}");
}

fn memory_limit(pod_dir: &Path) -> String {
    let file = if unified() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    let p = pod_dir.join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

async fn pid_of(s: &mut Setup, id: &str) -> u32 {
    container_info(&mut s.c, id).await["pid"].as_u64().unwrap() as u32
}

/// Removes the test's kubelet-style parent cgroup when the test ends.
struct Parent(Vec<PathBuf>);

impl Drop for Parent {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

async fn resize(
    s: &mut Setup,
    id: &str,
    overhead: i64,
    memory: i64,
) -> Result<cri::UpdatePodSandboxResourcesResponse, tonic::Status> {
    let mem = |m: i64| cri::LinuxContainerResources {
        memory_limit_in_bytes: m,
        ..Default::default()
    };
    s.c.runtime
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: id.into(),
            overhead: Some(mem(overhead)),
            resources: Some(mem(memory)),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_resize_sizes_vordrs_pod_cgroup_and_leaves_kubelets() {
    if std::env::var("VORDR_E2E_CGROUP_DRIVER").is_ok_and(|d| d == "systemd") {
        return; // the kubelet-style parent below is a cgroupfs path
    }
    let Some(mut s) = setup("k135rs").await else {
        return;
    };
    // No parent given: Vordr's own pod cgroup, sized by the call with the
    // resources plus the overhead.
    let own = s.pod("k135-own", "").await;
    let c = s.run(&own, s.config("c", &["sleep", "300"])).await;
    let dir = pod_memory_dir(pid_of(&mut s, &c).await);
    resize(&mut s, &own.0, 8 << 20, 200 << 20).await.unwrap();
    assert_eq!(
        memory_limit(&dir),
        ((208u64) << 20).to_string(),
        "{}",
        s.d.log()
    );
    resize(&mut s, &own.0, 8 << 20, 100 << 20).await.unwrap();
    assert_eq!(memory_limit(&dir), ((108u64) << 20).to_string());

    // A parent kubelet named: kubelet sized it, the call only tells.
    let given = format!("/vordr-e2e-k135-{}", s.d.bridge);
    let mut cfg = s.pod_config("k135-kubelet");
    cfg.linux.get_or_insert_with(Default::default).cgroup_parent = given.clone();
    let kpod = s.run_pod(cfg, "").await;
    let kc = s.run(&kpod, s.config("c", &["sleep", "300"])).await;
    let kdir = pod_memory_dir(pid_of(&mut s, &kc).await);
    let _cleanup = Parent(vec![kdir.clone()]);
    assert!(
        kdir.ends_with(given.trim_start_matches('/')),
        "{}",
        kdir.display()
    );
    let before = memory_limit(&kdir);
    resize(&mut s, &kpod.0, 8 << 20, 64 << 20).await.unwrap();
    assert_eq!(memory_limit(&kdir), before);

    // A stopped pod: FailedPrecondition.
    s.c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: own.0.clone(),
        })
        .await
        .unwrap();
    let e = resize(&mut s, &own.0, 0, 64 << 20).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    s.d.remove_all_pods().await;
}

/// A two-layer image of data files with symlinks: one relative, one
/// absolute (`/etc`) and one climbing out of the image (`../..`).
fn data_layers() -> Vec<(Vec<u8>, &'static str)> {
    use oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE;
    let first = registry::tar(&[
        ("data/", None),
        ("data/a.txt", Some(b"one")),
        ("data/dir/", None),
        ("data/dir/c.txt", Some(b"three")),
    ]);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(3);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    b.append_data(&mut h, "data/b.txt", &b"two"[..]).unwrap();
    for (name, target) in [
        ("data/rel", "a.txt"),
        ("data/abs", "/etc"),
        ("data/up", "../.."),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1_600_000_000);
        b.append_link(&mut h, name, target).unwrap();
    }
    let second = b.into_inner().unwrap();
    vec![
        (first, IMAGE_LAYER_GZIP_MEDIA_TYPE),
        (second, IMAGE_LAYER_GZIP_MEDIA_TYPE),
    ]
}

fn image_mount(container_path: &str, image: &str, sub: &str) -> cri::Mount {
    cri::Mount {
        container_path: container_path.into(),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        image_sub_path: sub.into(),
        ..Default::default()
    }
}

/// Mounts of this daemon's image volumes still attached.
fn image_volume_mounts(s: &Setup) -> Vec<String> {
    s.d.mounts()
        .into_iter()
        .filter(|m| m.contains("/image-volumes/"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn image_volumes_are_mounted_read_only_with_sub_paths() {
    image_volumes("k135iv", "").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn image_volumes_with_runc() {
    image_volumes("k135ivc", "runc").await;
}

/// Image volumes in a container run by `handler` ("" for youki).
async fn image_volumes(tag: &str, handler: &str) {
    let Some(mut s) = setup(tag).await else {
        return;
    };
    let data = format!("{}/e2e/data:1", s.reg.addr);
    registry::push(&data, &data_layers(), "amd64").await;
    let data_ref =
        s.c.image
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: data.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .image_ref;
    let pod = s.pod(&format!("{tag}-pod"), handler).await;

    // Refusals: an image not pulled, sub paths that leave the image or are
    // not in it. Nothing stays mounted after them.
    let refused = [
        (
            image_mount("/v", &format!("{}/e2e/absent:1", s.reg.addr), ""),
            Code::NotFound,
            "mounts[0].image",
        ),
        (
            image_mount("/v", &data_ref, "data/abs"),
            Code::InvalidArgument,
            "mounts[0].image_sub_path",
        ),
        (
            image_mount("/v", &data_ref, "data/up"),
            Code::InvalidArgument,
            "mounts[0].image_sub_path",
        ),
        (
            image_mount("/v", &data_ref, "data/abs/passwd"),
            Code::InvalidArgument,
            "mounts[0].image_sub_path",
        ),
        (
            image_mount("/v", &data_ref, "../etc"),
            Code::InvalidArgument,
            "mounts[0].image_sub_path",
        ),
        (
            image_mount("/v", &data_ref, "data/missing"),
            Code::NotFound,
            "mounts[0].image_sub_path",
        ),
    ];
    for (i, (m, code, field)) in refused.into_iter().enumerate() {
        let mut cfg = s.config(&format!("bad{i}"), &["sleep", "100"]);
        cfg.mounts = vec![m];
        let e = s.create(&pod, cfg).await.unwrap_err();
        assert_eq!(e.code(), code, "{i}: {e}");
        assert!(e.message().contains(field), "{i}: {e}");
    }
    assert_eq!(image_volume_mounts(&s), Vec::<String>::new());
    assert!(list_containers(&mut s.c).await.is_empty());

    // The whole image (two layers: an overlay), a directory of it, and a
    // file of the one-layer busybox image (a bind).
    let mut cfg = s.config("iv", &["sleep", "1000"]);
    cfg.mounts = vec![
        image_mount("/vol", &data_ref, ""),
        image_mount("/sub", &data_ref, "data/dir"),
        image_mount("/one", &s.image.clone(), "etc/passwd"),
    ];
    let id = s.run(&pod, cfg).await;
    let out = |r: cri::ExecSyncResponse| {
        (
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
        )
    };
    let r = s
        .exec(
            &id,
            &[
                "cat",
                "/vol/data/a.txt",
                "/vol/data/b.txt",
                "/sub/c.txt",
                "/vol/data/rel",
            ],
            10,
        )
        .await
        .unwrap();
    assert_eq!(out(r).1, "onetwothreeone");
    let r = s.exec(&id, &["cat", "/one"], 10).await.unwrap();
    assert!(out(r).1.starts_with("root:x:0:0:"));
    for target in ["/vol/data/new", "/sub/new", "/one"] {
        let r = s
            .exec(&id, &["sh", "-c", &format!("echo x > {target}")], 10)
            .await
            .unwrap();
        let (code, _, err) = out(r);
        assert_ne!(code, 0, "{target} is writable");
        assert!(err.contains("Read-only file system"), "{target}: {err}");
    }
    let r = s
        .exec(&id, &["grep", " /vol ", "/proc/mounts"], 10)
        .await
        .unwrap();
    let line = out(r).1;
    assert!(line.contains(" ro,") || line.contains(" ro "), "{line}");
    // ContainerStatus shows the mounts kubelet asked for.
    let st = s.status(&id).await;
    assert_eq!(st.mounts.len(), 3);
    assert_eq!(st.mounts[1].image_sub_path, "data/dir");
    assert_eq!(
        image_volume_mounts(&s).len(),
        3,
        "{:?}",
        image_volume_mounts(&s)
    );

    // The mounted image stays until its container goes.
    let remove = |r: &str| cri::RemoveImageRequest {
        image: Some(cri::ImageSpec {
            image: r.into(),
            ..Default::default()
        }),
    };
    let e = s.c.image.remove_image(remove(&data_ref)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("image volume"), "{e}");

    s.stop_remove(&id).await;
    assert_eq!(image_volume_mounts(&s), Vec::<String>::new());
    s.c.image.remove_image(remove(&data_ref)).await.unwrap();
    s.d.remove_all_pods().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn image_volumes_left_without_a_row_are_released_at_start() {
    let Some(mut s) = setup("k135ivr").await else {
        return;
    };
    // What a crash between staging and the container's row leaves: a
    // read-only mount under <run>/image-volumes/<id>/ that no row names.
    s.d.terminate();
    let id = "ab".repeat(32);
    let dir = s.d.run_dir.join("image-volumes").join(&id);
    let staged = dir.join("0");
    std::fs::create_dir_all(&staged).unwrap();
    let source = tempfile::tempdir().unwrap();
    nix::mount::mount(
        Some(source.path()),
        &staged,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    assert_eq!(image_volume_mounts(&s).len(), 1);
    s.d.spawn().await;
    s.c = s.d.client().await;
    assert_eq!(
        image_volume_mounts(&s),
        Vec::<String>::new(),
        "{}",
        s.d.log()
    );
    assert!(!dir.exists(), "{} left", dir.display());
}

/// An image volume in a user-namespaced pod: its files keep their owners
/// (root's are root's inside) through the idmapped staging.
#[tokio::test(flavor = "multi_thread")]
async fn image_volume_in_a_user_namespaced_pod() {
    let Some(mut s) = setup("k135ivu").await else {
        return;
    };
    let cfg = s.userns_pod_config("k135-ivu", 460_000);
    let pod = s.run_pod(cfg, "").await;
    let mut c = s.config("app", &["sleep", "1000"]);
    c.mounts = vec![image_mount("/one", &s.image.clone(), "etc")];
    let id = match s.create(&pod, c).await {
        Ok(id) => id,
        Err(e) => panic!("create: {e}\n{}", s.d.log()),
    };
    s.c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("start: {e}\n{}", s.d.log()));
    let r = s
        .exec(&id, &["busybox", "stat", "-c", "%u:%g", "/one/passwd"], 10)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "0:0", "{r:?}");
    let r = s.exec(&id, &["cat", "/one/passwd"], 10).await.unwrap();
    assert!(String::from_utf8_lossy(&r.stdout).starts_with("root:x:0:0:"));
    s.stop_remove(&id).await;
    assert_eq!(image_volume_mounts(&s), Vec::<String>::new());
    s.d.remove_all_pods().await;
}

/// Under the restricted profile an image volume is admitted (Vordr's own
/// read-only mount), while a host path at the same place is refused.
#[tokio::test(flavor = "multi_thread")]
async fn restricted_profile_admits_image_volumes_not_host_paths() {
    let Some(mut s) = setup_with("k135ivg", "profile = \"restricted\"").await else {
        return;
    };
    let pod = s.pod("k135-ivg", "").await;
    let restricted = |s: &Setup, name: &str, m: cri::Mount| {
        let mut cfg = s.config(name, &["sleep", "300"]);
        let sc = cfg
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap();
        sc.run_as_user = Some(cri::Int64Value { value: 1000 });
        sc.no_new_privs = true;
        sc.capabilities = Some(cri::Capability {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        });
        cfg.mounts = vec![m];
        cfg
    };
    let host = cri::Mount {
        container_path: "/one".into(),
        host_path: "/etc".into(),
        readonly: true,
        ..Default::default()
    };
    let e = s
        .create(&pod, restricted(&s, "host", host))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert!(e.message().contains("mounts host path /etc"), "{e}");
    let image = s.image.clone();
    let id = s
        .run(
            &pod,
            restricted(&s, "img", image_mount("/one", &image, "etc")),
        )
        .await;
    let r = s.exec(&id, &["cat", "/one/group"], 10).await.unwrap();
    assert!(
        String::from_utf8_lossy(&r.stdout).starts_with("root:x:0:"),
        "{r:?}"
    );
    s.stop_remove(&id).await;
    s.d.remove_all_pods().await;
}
