//! The tonic service implementations: thin dispatch to one file per RPC.

use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageService;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use k8s_cri::v1::*;
use tonic::{Request, Response, Status};

use crate::security::audit::{self, Event};
use crate::state::Runtime;
use crate::{
    container_attach, container_checkpoint, container_create, container_exec, container_exec_sync,
    container_list, container_remove, container_reopen_log, container_start, container_stats,
    container_status, container_stop, container_update, image_fs_info, image_list, image_pull,
    image_remove, image_status, runtime_config, runtime_status, sandbox_list, sandbox_port_forward,
    sandbox_remove, sandbox_run, sandbox_status, sandbox_stop, sandbox_update_resources,
    update_runtime_config, version,
};
use crate::{container_events, sandbox_metrics, sandbox_stats};

/// The CRI services over one shared [`Runtime`].
#[derive(Clone)]
pub struct Vordr(pub Arc<Runtime>);

type R<T> = Result<Response<T>, Status>;

/// Runs a call on a thread of its own, driven by the runtime's handle:
/// kubelet's deadline drops the handler, never a change half-way (see
/// `inflight`), and SQLite, cgroup files and disk walks never hold up the
/// async threads that answer Version, Status and the streaming server (a
/// hung disk stalls only the calls that need it).
async fn on_own_thread<T, F>(rt: &Arc<Runtime>, call: impl FnOnce(Arc<Runtime>) -> F) -> R<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, Status>> + Send + 'static,
{
    crate::state::inflight::off_runtime(call(rt.clone()))
        .await
        .map_err(|e| Status::internal(format!("the call's thread failed: {e}")))?
        .map(Response::new)
}

/// [`on_own_thread`], with the call's outcome appended to the audit chain
/// on that thread when the work ends.
async fn audited<T, F>(
    rt: &Arc<Runtime>,
    ev: Event,
    call: impl FnOnce(Arc<Runtime>) -> F + Send + 'static,
) -> R<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, Status>> + Send + 'static,
{
    on_own_thread(rt, move |rt| async move {
        let res = call(rt.clone()).await;
        audit::lifecycle(&rt, ev, &res);
        res
    })
    .await
}

#[tonic::async_trait]
impl RuntimeService for Vordr {
    async fn version(&self, r: Request<VersionRequest>) -> R<VersionResponse> {
        Ok(Response::new(version::version(r.into_inner())))
    }
    async fn run_pod_sandbox(&self, r: Request<RunPodSandboxRequest>) -> R<RunPodSandboxResponse> {
        let req = r.into_inner();
        let key = sandbox_run::inflight_key(&req);
        let mut ev = Event::new("RunPodSandbox");
        if let Some(m) = req.config.as_ref().and_then(|c| c.metadata.as_ref()) {
            (ev.namespace, ev.pod) = (m.namespace.clone(), m.name.clone());
        }
        let rt = self.0.clone();
        let work = async move {
            let res = sandbox_run::run_pod_sandbox(&rt, req)
                .await
                .map(|r| r.pod_sandbox_id);
            let ev = match &res {
                Ok(id) => ev.pod_id(id),
                Err(_) => ev,
            };
            audit::lifecycle(&rt, ev, &res);
            res
        };
        let id = match key {
            Some(key) => self.0.inflight.run(key, work).await?,
            None => on_own_thread(&self.0, |_| work).await?.into_inner(),
        };
        Ok(Response::new(RunPodSandboxResponse { pod_sandbox_id: id }))
    }
    async fn stop_pod_sandbox(
        &self,
        r: Request<StopPodSandboxRequest>,
    ) -> R<StopPodSandboxResponse> {
        let req = r.into_inner();
        let ev = Event::new("StopPodSandbox").pod_id(&req.pod_sandbox_id);
        audited(&self.0, ev, |rt| async move {
            sandbox_stop::stop_pod_sandbox(&rt, req).await
        })
        .await
    }
    async fn remove_pod_sandbox(
        &self,
        r: Request<RemovePodSandboxRequest>,
    ) -> R<RemovePodSandboxResponse> {
        let req = r.into_inner();
        let ev = Event::new("RemovePodSandbox").pod_id(&req.pod_sandbox_id);
        audited(&self.0, ev, |rt| async move {
            sandbox_remove::remove_pod_sandbox(&rt, req).await
        })
        .await
    }
    async fn pod_sandbox_status(
        &self,
        r: Request<PodSandboxStatusRequest>,
    ) -> R<PodSandboxStatusResponse> {
        let req = r.into_inner();
        on_own_thread(&self.0, |rt| async move {
            sandbox_status::pod_sandbox_status(&rt, req).await
        })
        .await
    }
    async fn list_pod_sandbox(
        &self,
        r: Request<ListPodSandboxRequest>,
    ) -> R<ListPodSandboxResponse> {
        let req = r.into_inner();
        on_own_thread(&self.0, |rt| async move {
            sandbox_list::list_pod_sandbox(&rt, req).await
        })
        .await
    }
    async fn create_container(
        &self,
        r: Request<CreateContainerRequest>,
    ) -> R<CreateContainerResponse> {
        let req = r.into_inner();
        let key = container_create::inflight_key(&req);
        let config = req.config.as_ref();
        let ev = Event::new("CreateContainer")
            .pod_id(&req.pod_sandbox_id)
            .container(
                config
                    .and_then(|c| c.metadata.as_ref())
                    .map_or("", |m| &m.name),
            )
            .detail(
                config
                    .and_then(|c| c.image.as_ref())
                    .map_or("", |i| &i.image),
            );
        let rt = self.0.clone();
        let work = async move {
            let res = container_create::create_container(&rt, req)
                .await
                .map(|r| r.container_id);
            let ev = match &res {
                Ok(id) => ev.container(id),
                Err(_) => ev,
            };
            audit::lifecycle(&rt, ev, &res);
            res
        };
        let id = match key {
            Some(key) => self.0.inflight.run(key, work).await?,
            None => on_own_thread(&self.0, |_| work).await?.into_inner(),
        };
        Ok(Response::new(CreateContainerResponse { container_id: id }))
    }
    async fn start_container(
        &self,
        r: Request<StartContainerRequest>,
    ) -> R<StartContainerResponse> {
        let req = r.into_inner();
        let ev = Event::new("StartContainer").container(&req.container_id);
        audited(&self.0, ev, |rt| async move {
            container_start::start_container(&rt, req).await
        })
        .await
    }
    async fn stop_container(&self, r: Request<StopContainerRequest>) -> R<StopContainerResponse> {
        let req = r.into_inner();
        let ev = Event::new("StopContainer").container(&req.container_id);
        audited(&self.0, ev, |rt| async move {
            container_stop::stop_container(&rt, req).await
        })
        .await
    }
    async fn remove_container(
        &self,
        r: Request<RemoveContainerRequest>,
    ) -> R<RemoveContainerResponse> {
        let req = r.into_inner();
        let ev = Event::new("RemoveContainer").container(&req.container_id);
        audited(&self.0, ev, |rt| async move {
            container_remove::remove_container(&rt, req).await
        })
        .await
    }
    async fn list_containers(
        &self,
        r: Request<ListContainersRequest>,
    ) -> R<ListContainersResponse> {
        let req = r.into_inner();
        on_own_thread(&self.0, |rt| async move {
            container_list::list_containers(&rt, req).await
        })
        .await
    }
    async fn container_status(
        &self,
        r: Request<ContainerStatusRequest>,
    ) -> R<ContainerStatusResponse> {
        let req = r.into_inner();
        on_own_thread(&self.0, |rt| async move {
            container_status::container_status(&rt, req).await
        })
        .await
    }
    async fn update_container_resources(
        &self,
        r: Request<UpdateContainerResourcesRequest>,
    ) -> R<UpdateContainerResourcesResponse> {
        let req = r.into_inner();
        let ev = Event::new("UpdateContainerResources").container(&req.container_id);
        audited(&self.0, ev, |rt| async move {
            container_update::update_container_resources(&rt, req).await
        })
        .await
    }
    async fn reopen_container_log(
        &self,
        r: Request<ReopenContainerLogRequest>,
    ) -> R<ReopenContainerLogResponse> {
        container_reopen_log::reopen_container_log(&self.0, r.into_inner())
            .await
            .map(Response::new)
    }
    async fn exec_sync(&self, r: Request<ExecSyncRequest>) -> R<ExecSyncResponse> {
        let req = r.into_inner();
        let ev = Event::new("ExecSync")
            .container(&req.container_id)
            .detail(format!("{:?}", req.cmd));
        let res = container_exec_sync::exec_sync(&self.0, req).await;
        audit::lifecycle(&self.0, ev, &res);
        res.map(Response::new)
    }
    async fn exec(&self, r: Request<ExecRequest>) -> R<ExecResponse> {
        let req = r.into_inner();
        let ev = Event::new("Exec")
            .container(&req.container_id)
            .detail(format!("{:?}", req.cmd));
        let res = container_exec::exec(&self.0, req);
        audit::lifecycle(&self.0, ev, &res);
        res.map(Response::new)
    }
    async fn attach(&self, r: Request<AttachRequest>) -> R<AttachResponse> {
        container_attach::attach(&self.0, r.into_inner()).map(Response::new)
    }
    async fn port_forward(&self, r: Request<PortForwardRequest>) -> R<PortForwardResponse> {
        sandbox_port_forward::port_forward(&self.0, r.into_inner()).map(Response::new)
    }
    async fn container_stats(
        &self,
        r: Request<ContainerStatsRequest>,
    ) -> R<ContainerStatsResponse> {
        let req = r.into_inner();
        on_own_thread(&self.0, |rt| async move {
            container_stats::container_stats(&rt, req).await
        })
        .await
    }
    async fn list_container_stats(
        &self,
        r: Request<ListContainerStatsRequest>,
    ) -> R<ListContainerStatsResponse> {
        // From memory: on the async thread.
        Ok(Response::new(container_stats::list_container_stats(
            &self.0,
            r.into_inner(),
        )))
    }
    async fn pod_sandbox_stats(
        &self,
        r: Request<PodSandboxStatsRequest>,
    ) -> R<PodSandboxStatsResponse> {
        let req = r.into_inner();
        on_own_thread(&self.0, |rt| async move {
            sandbox_stats::pod_sandbox_stats(&rt, req).await
        })
        .await
    }
    async fn list_pod_sandbox_stats(
        &self,
        r: Request<ListPodSandboxStatsRequest>,
    ) -> R<ListPodSandboxStatsResponse> {
        Ok(Response::new(sandbox_stats::list_pod_sandbox_stats(
            &self.0,
            r.into_inner(),
        )))
    }
    async fn update_runtime_config(
        &self,
        r: Request<UpdateRuntimeConfigRequest>,
    ) -> R<UpdateRuntimeConfigResponse> {
        let req = r.into_inner();
        on_own_thread(&self.0, |rt| async move {
            update_runtime_config::update_runtime_config(&rt, req).await
        })
        .await
    }
    async fn status(&self, r: Request<StatusRequest>) -> R<StatusResponse> {
        Ok(Response::new(
            runtime_status::status(&self.0, r.into_inner()).await,
        ))
    }
    async fn checkpoint_container(
        &self,
        r: Request<CheckpointContainerRequest>,
    ) -> R<CheckpointContainerResponse> {
        let req = r.into_inner();
        let ev = Event::new("CheckpointContainer")
            .container(&req.container_id)
            .detail(format!("location {}", req.location));
        audited(&self.0, ev, |rt| async move {
            container_checkpoint::checkpoint_container(&rt, req).await
        })
        .await
    }
    type GetContainerEventsStream =
        tokio_stream::wrappers::ReceiverStream<Result<ContainerEventResponse, Status>>;
    async fn get_container_events(
        &self,
        r: Request<GetEventsRequest>,
    ) -> R<Self::GetContainerEventsStream> {
        Ok(Response::new(container_events::get_container_events(
            &self.0,
            r.into_inner(),
        )))
    }
    async fn list_metric_descriptors(
        &self,
        r: Request<ListMetricDescriptorsRequest>,
    ) -> R<ListMetricDescriptorsResponse> {
        Ok(Response::new(sandbox_metrics::list_metric_descriptors(
            r.into_inner(),
        )))
    }
    async fn list_pod_sandbox_metrics(
        &self,
        r: Request<ListPodSandboxMetricsRequest>,
    ) -> R<ListPodSandboxMetricsResponse> {
        Ok(Response::new(sandbox_metrics::list_pod_sandbox_metrics(
            &self.0,
            r.into_inner(),
        )))
    }
    async fn runtime_config(&self, _: Request<RuntimeConfigRequest>) -> R<RuntimeConfigResponse> {
        Ok(Response::new(runtime_config::runtime_config(&self.0)))
    }
    async fn update_pod_sandbox_resources(
        &self,
        r: Request<UpdatePodSandboxResourcesRequest>,
    ) -> R<UpdatePodSandboxResourcesResponse> {
        let req = r.into_inner();
        let ev = Event::new("UpdatePodSandboxResources").pod_id(&req.pod_sandbox_id);
        audited(&self.0, ev, |rt| async move {
            sandbox_update_resources::update_pod_sandbox_resources(&rt, req).await
        })
        .await
    }
}

#[tonic::async_trait]
impl ImageService for Vordr {
    async fn list_images(&self, r: Request<ListImagesRequest>) -> R<ListImagesResponse> {
        let req = r.into_inner();
        on_own_thread(&self.0, |rt| async move {
            image_list::list_images(&rt, req).await
        })
        .await
    }
    async fn image_status(&self, r: Request<ImageStatusRequest>) -> R<ImageStatusResponse> {
        let req = r.into_inner();
        on_own_thread(&self.0, |rt| async move {
            image_status::image_status(&rt, req).await
        })
        .await
    }
    async fn pull_image(&self, r: Request<PullImageRequest>) -> R<PullImageResponse> {
        let req = r.into_inner();
        let ev = Event::new("PullImage").detail(image_of(&req.image));
        let res = image_pull::pull_image(&self.0, req).await;
        audit::lifecycle(&self.0, ev, &res);
        res.map(Response::new)
    }
    async fn remove_image(&self, r: Request<RemoveImageRequest>) -> R<RemoveImageResponse> {
        let req = r.into_inner();
        let ev = Event::new("RemoveImage").detail(image_of(&req.image));
        let res = image_remove::remove_image(&self.0, req).await;
        audit::lifecycle(&self.0, ev, &res);
        res.map(Response::new)
    }
    async fn image_fs_info(&self, _: Request<ImageFsInfoRequest>) -> R<ImageFsInfoResponse> {
        image_fs_info::image_fs_info(&self.0)
            .await
            .map(Response::new)
    }
}

fn image_of(spec: &Option<ImageSpec>) -> String {
    spec.as_ref().map(|i| i.image.clone()).unwrap_or_default()
}
