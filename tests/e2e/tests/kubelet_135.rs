//! What kubelet 1.33 to 1.35 sends and reads over CRI: a container's stop
//! signal used by StopContainer and reported, ContainerStatus's user,
//! image id and resources (after UpdateContainerResources too),
//! PodSandboxStatus's containers' statuses, ImageFsInfo's container
//! filesystem and UpdatePodSandboxResources.

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
