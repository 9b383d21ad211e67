//! A daemon with the busybox image pulled, and the pod and container calls
//! the container tests make through it.

use std::time::{Duration, Instant};

use crate::registry::Registry;
use crate::{cri, daemon_with_busybox_full, pod_config, run_pod_with, scaled, CriClient, Daemon};

pub struct Setup {
    pub reg: Registry,
    pub d: Daemon,
    pub c: CriClient,
    pub image: String,
    pub logs: tempfile::TempDir,
}

pub async fn setup(tag: &str) -> Option<Setup> {
    setup_with(tag, "").await
}

/// [`setup`] with `[gatekeeper]` TOML lines.
pub async fn setup_with(tag: &str, gatekeeper: &str) -> Option<Setup> {
    setup_full(tag, "", gatekeeper).await
}

/// [`setup`] with `[network]` and `[gatekeeper]` TOML lines.
pub async fn setup_full(tag: &str, extra_network: &str, gatekeeper: &str) -> Option<Setup> {
    let (reg, d, image) = daemon_with_busybox_full(tag, extra_network, gatekeeper).await?;
    let c = d.client().await;
    let logs = tempfile::tempdir().unwrap();
    Some(Setup {
        reg,
        d,
        c,
        image,
        logs,
    })
}

impl Setup {
    pub async fn pod(&mut self, name: &str, handler: &str) -> (String, cri::PodSandboxConfig) {
        let cfg = self.pod_config(name);
        self.run_pod(cfg, handler).await
    }

    /// [`pod_config`], logging into this setup's log directory.
    pub fn pod_config(&self, name: &str) -> cri::PodSandboxConfig {
        let mut cfg = pod_config(name);
        cfg.log_directory = self.logs.path().join(name).display().to_string();
        cfg
    }

    /// [`Setup::pod_config`] with its own user namespace: container IDs
    /// 0..65536 mapped from host IDs `host..`.
    pub fn userns_pod_config(&self, name: &str, host: u32) -> cri::PodSandboxConfig {
        let mut cfg = self.pod_config(name);
        let map = vec![cri::IdMapping {
            host_id: host,
            container_id: 0,
            length: 65536,
        }];
        cfg.linux
            .get_or_insert_with(Default::default)
            .security_context = Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                userns_options: Some(cri::UserNamespace {
                    mode: cri::NamespaceMode::Pod as i32,
                    uids: map.clone(),
                    gids: map,
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        cfg
    }

    /// Runs a pod from `cfg`; its id and config.
    pub async fn run_pod(
        &mut self,
        cfg: cri::PodSandboxConfig,
        handler: &str,
    ) -> (String, cri::PodSandboxConfig) {
        let id = run_pod_with(&mut self.c, cfg.clone(), handler)
            .await
            .unwrap();
        (id, cfg)
    }

    /// UpdateContainerResources with a new memory limit.
    pub async fn set_memory_limit(&mut self, id: &str, bytes: i64) -> Result<(), tonic::Status> {
        self.c
            .runtime
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: id.into(),
                linux: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: bytes,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map(|_| ())
    }

    pub fn config(&self, name: &str, cmd: &[&str]) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}/0.log"),
            labels: [("c".to_string(), name.to_string())].into(),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    // kubelet's default: each container its own PID namespace.
                    namespace_options: Some(cri::NamespaceOption {
                        pid: cri::NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                        ..Default::default()
                    }),
                    // kubelet's lists for procMount Default.
                    masked_paths: vordr_spec::DEFAULT_MASKED_PATHS.map(String::from).to_vec(),
                    readonly_paths: vordr_spec::DEFAULT_READONLY_PATHS
                        .map(String::from)
                        .to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub async fn create(
        &mut self,
        pod: &(String, cri::PodSandboxConfig),
        cfg: cri::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        self.c
            .runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.0.clone(),
                config: Some(cfg),
                sandbox_config: Some(pod.1.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    pub async fn run(
        &mut self,
        pod: &(String, cri::PodSandboxConfig),
        cfg: cri::ContainerConfig,
    ) -> String {
        let id = self.create(pod, cfg).await.unwrap_or_else(|e| {
            panic!("create: {e}\n{}", self.d.log());
        });
        self.c
            .runtime
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("start: {e}\n{}", self.d.log()));
        id
    }

    async fn status_result(&mut self, id: &str) -> Result<cri::ContainerStatus, tonic::Status> {
        self.c
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .map(|r| r.into_inner().status.expect("a status"))
    }

    pub async fn status(&mut self, id: &str) -> cri::ContainerStatus {
        self.status_result(id).await.unwrap()
    }

    /// The code ContainerStatus fails with.
    pub async fn status_err(&mut self, id: &str) -> tonic::Code {
        self.status_result(id).await.unwrap_err().code()
    }

    pub async fn wait_exit(&mut self, id: &str) -> cri::ContainerStatus {
        let deadline = Instant::now() + scaled(Duration::from_secs(20));
        loop {
            let s = self.status(id).await;
            if s.state == cri::ContainerState::ContainerExited as i32 {
                return s;
            }
            assert!(Instant::now() < deadline, "{id} never exited: {s:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// StopContainer (no grace) then RemoveContainer.
    pub async fn stop_remove(&mut self, id: &str) {
        self.c
            .runtime
            .stop_container(cri::StopContainerRequest {
                container_id: id.into(),
                timeout: 0,
            })
            .await
            .unwrap();
        self.c
            .runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .unwrap();
    }

    pub async fn exec(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse, tonic::Status> {
        self.c
            .runtime
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout,
            })
            .await
            .map(|r| r.into_inner())
    }

    pub fn log_of(&self, pod: &str, name: &str) -> String {
        std::fs::read_to_string(self.logs.path().join(pod).join(name).join("0.log"))
            .unwrap_or_default()
    }

    pub async fn wait_log(&self, pod: &str, name: &str, needle: &str) -> String {
        let deadline = Instant::now() + scaled(Duration::from_secs(10));
        loop {
            let l = self.log_of(pod, name);
            if l.contains(needle) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "log never showed {needle:?}: {l:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
