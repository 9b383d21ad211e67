//! The shim's task API driven directly over TTRPC, as containerd would:
//! the RPCs the CRI does not reach (Connect, Pids, Pause, Resume, Stats,
//! ResizePty, State) on a real container started through `vordr serve`.

use std::time::{Duration, Instant};

use containerd_shim_protos::shim::shim::*;
use containerd_shim_protos::shim_async::TaskClient;
use containerd_shim_protos::types::task::Status;
use ttrpc::context;
use vordr_e2e::*;

fn ctx() -> context::Context {
    context::with_timeout(Duration::from_secs(20).as_nanos() as i64)
}

#[tokio::test(flavor = "multi_thread")]
async fn task_api_on_a_live_container() {
    let Some((reg, d, image)) = daemon_with_busybox("shimapi").await else {
        return;
    };
    let mut c = d.client().await;
    let logs = tempfile::tempdir().unwrap();
    let mut pod = pod_config("shimapi");
    pod.log_directory = logs.path().display().to_string();
    let pod_id = run_pod(&mut c, pod.clone()).await.unwrap();
    // A terminal container that prints its window size whenever it changes.
    let cfg = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "tty".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.clone(),
            ..Default::default()
        }),
        command: vec![
            "sh".into(),
            "-c".into(),
            "trap 'echo size $(stty size)' WINCH; while true; do sleep 0.1; done".into(),
        ],
        tty: true,
        log_path: "tty.log".into(),
        ..Default::default()
    };
    let id = c
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(cfg),
            sandbox_config: Some(pod),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    let v = container_info(&mut c, &id).await;
    let address = v["shimAddress"].as_str().unwrap().to_string();
    let pid = v["pid"].as_u64().unwrap() as u32;
    let shim = TaskClient::new(ttrpc::r#async::Client::connect(&address).await.unwrap());
    let with_id = || id.clone();

    let conn = shim
        .connect(
            ctx(),
            &ConnectRequest {
                id: with_id(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(conn.task_pid, pid);
    assert!(conn.shim_pid > 0 && conn.shim_pid != pid);

    let pids = shim
        .pids(
            ctx(),
            &PidsRequest {
                id: with_id(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(pids.processes.iter().any(|p| p.pid == pid), "{pids:?}");

    // Pause freezes every process; Resume thaws them.
    let state = |s: &TaskClient| {
        let s = s.clone();
        let id = id.clone();
        async move {
            s.state(
                ctx(),
                &StateRequest {
                    id,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .status
            .enum_value_or_default()
        }
    };
    shim.pause(
        ctx(),
        &PauseRequest {
            id: with_id(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(state(&shim).await, Status::PAUSED);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cgroup::is_frozen(pid) {
        if Instant::now() > deadline {
            panic!(
                "not frozen: {}",
                std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shim.resume(
        ctx(),
        &ResumeRequest {
            id: with_id(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(state(&shim).await, Status::RUNNING);

    // Stats: cgroup metrics for the container.
    let stats = shim
        .stats(
            ctx(),
            &StatsRequest {
                id: with_id(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let any = stats.stats.as_ref().unwrap();
    assert!(
        any.type_url.contains("Metrics") && !any.value.is_empty(),
        "{any:?}"
    );

    // ResizePty reaches the container's terminal (SIGWINCH, new size).
    shim.resize_pty(
        ctx(),
        &ResizePtyRequest {
            id: with_id(),
            width: 123,
            height: 45,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(logs.path().join("tty.log")).unwrap_or_default();
        if log.contains("size 45 123") {
            break;
        }
        assert!(Instant::now() < deadline, "no resize seen: {log:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Kill all, Wait, Delete and Shutdown as containerd ends a task.
    shim.kill(
        ctx(),
        &KillRequest {
            id: with_id(),
            signal: 9,
            all: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let w = shim
        .wait(
            ctx(),
            &WaitRequest {
                id: with_id(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(w.exit_status, 137);
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .unwrap();
    drop(reg);
}
