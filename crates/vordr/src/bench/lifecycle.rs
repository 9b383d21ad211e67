//! The CRI calls a benchmark times: pod and container lifecycles, image pulls and removals.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use vordr_client::{cri, CriClient};

use super::report::Samples;

const RPCS: [&str; 5] = [
    "RunPodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
];

fn pod_config(tag: &str, i: usize) -> cri::PodSandboxConfig {
    let name = format!("bench-{tag}-{i}");
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.clone(),
            uid: format!("uid-{tag}-{i}"),
            namespace: "vordr-bench".into(),
            attempt: 0,
        }),
        hostname: name,
        linux: Some(cri::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// Runs `call`, records how long it took in `times`, names it on error.
async fn timed<T>(
    times: &mut Vec<Duration>,
    what: &'static str,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    let t = Instant::now();
    let r = call.await.context(what)?.into_inner();
    times.push(t.elapsed());
    Ok(r)
}

/// StopPodSandbox then RemovePodSandbox, timed.
async fn stop_and_remove_pod(c: &mut CriClient, id: &str, times: &mut Vec<Duration>) -> Result<()> {
    let pod_sandbox_id = id.to_string();
    timed(
        times,
        "StopPodSandbox",
        c.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.clone(),
        }),
    )
    .await?;
    timed(
        times,
        "RemovePodSandbox",
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id }),
    )
    .await?;
    Ok(())
}

pub(super) async fn lifecycle(
    c: &mut CriClient,
    tag: &str,
    i: usize,
    s: Option<&mut Samples>,
) -> Result<()> {
    let mut times = Vec::with_capacity(5);
    let id = timed(
        &mut times,
        "RunPodSandbox",
        c.runtime.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config(tag, i)),
            runtime_handler: String::new(),
        }),
    )
    .await?
    .pod_sandbox_id;
    timed(
        &mut times,
        "PodSandboxStatus",
        c.runtime.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        }),
    )
    .await?;
    timed(
        &mut times,
        "ListPodSandbox",
        c.runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
    )
    .await?;
    stop_and_remove_pod(c, &id, &mut times).await?;
    if let Some(s) = s {
        for (rpc, d) in RPCS.iter().zip(times) {
            s.add(rpc, d);
        }
    }
    Ok(())
}

const CONTAINER_RPCS: [&str; 8] = [
    "RunPodSandbox (with container)",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox (with container)",
    "RemovePodSandbox (with container)",
    "Pod + container lifecycle",
];

/// A pod and container config as kubelet sends them by default (each
/// container its own PID namespace).
fn container_config(image_name: &str, pod: &cri::PodSandboxConfig) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        image: image(image_name),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "c/0.log".into(),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                // kubelet's procMount Default.
                masked_paths: vordr_spec::DEFAULT_MASKED_PATHS.map(String::from).to_vec(),
                readonly_paths: vordr_spec::DEFAULT_READONLY_PATHS
                    .map(String::from)
                    .to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        labels: pod.labels.clone(),
        ..Default::default()
    }
}

/// Runs a pod with one container; returns (pod id, container id, times).
pub(super) async fn start_pod_with_container(
    c: &mut CriClient,
    image_name: &str,
    tag: &str,
    i: usize,
    cgroup_parent: &str,
) -> Result<(String, String, Vec<Duration>)> {
    let mut pod = pod_config(tag, i);
    pod.log_directory = format!("/tmp/vordr-bench-logs/{tag}-{i}");
    if let Some(l) = pod.linux.as_mut() {
        l.cgroup_parent = cgroup_parent.to_string();
    }
    let mut times = Vec::with_capacity(3);
    let pod_id = timed(
        &mut times,
        "RunPodSandbox",
        c.runtime.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        }),
    )
    .await?
    .pod_sandbox_id;
    let id = timed(
        &mut times,
        "CreateContainer",
        c.runtime.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(container_config(image_name, &pod)),
            sandbox_config: Some(pod),
        }),
    )
    .await?
    .container_id;
    timed(
        &mut times,
        "StartContainer",
        c.runtime.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        }),
    )
    .await?;
    Ok((pod_id, id, times))
}

/// Stops and removes a container and its pod; returns the four times.
pub(super) async fn tear_down(c: &mut CriClient, pod_id: &str, id: &str) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(4);
    timed(
        &mut times,
        "StopContainer",
        c.runtime.stop_container(cri::StopContainerRequest {
            container_id: id.to_string(),
            timeout: 0,
        }),
    )
    .await?;
    timed(
        &mut times,
        "RemoveContainer",
        c.runtime.remove_container(cri::RemoveContainerRequest {
            container_id: id.to_string(),
        }),
    )
    .await?;
    stop_and_remove_pod(c, pod_id, &mut times).await?;
    Ok(times)
}

pub(super) async fn container_lifecycle(
    c: &mut CriClient,
    image_name: &str,
    tag: &str,
    i: usize,
    s: Option<&mut Samples>,
) -> Result<()> {
    let whole = Instant::now();
    let (pod_id, id, mut times) = start_pod_with_container(c, image_name, tag, i, "").await?;
    times.extend(tear_down(c, &pod_id, &id).await?);
    times.push(whole.elapsed());
    if let Some(s) = s {
        for (rpc, d) in CONTAINER_RPCS.iter().zip(times) {
            s.add(rpc, d);
        }
    }
    Ok(())
}

pub(super) fn image(name: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: name.to_string(),
        ..Default::default()
    })
}

pub(super) async fn pull(c: &mut CriClient, name: &str) -> Result<String> {
    Ok(c.image
        .pull_image(cri::PullImageRequest {
            image: image(name),
            auth: None,
            sandbox_config: None,
        })
        .await
        .with_context(|| format!("PullImage {name}"))?
        .into_inner()
        .image_ref)
}

pub(super) async fn remove(c: &mut CriClient, name: &str) -> Result<()> {
    c.image
        .remove_image(cri::RemoveImageRequest { image: image(name) })
        .await
        .with_context(|| format!("RemoveImage {name}"))?;
    Ok(())
}
