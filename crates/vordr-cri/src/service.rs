//! The tonic service implementations: thin dispatch to one file per RPC.

use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageService;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use k8s_cri::v1::*;
use tonic::{Request, Response, Status};

use crate::runtime::Runtime;
use crate::{
    image_fs_info, image_list, image_pull, image_remove, image_status, runtime_config,
    sandbox_list, sandbox_remove, sandbox_run, sandbox_status, sandbox_stop, status,
    update_runtime_config, version,
};

/// The CRI services over one shared [`Runtime`].
#[derive(Clone)]
pub struct Vordr(pub Arc<Runtime>);

type R<T> = Result<Response<T>, Status>;

fn not_yet<T>(rpc: &str) -> R<T> {
    Err(Status::unimplemented(format!(
        "{rpc} is not implemented by this vordr yet"
    )))
}

#[tonic::async_trait]
impl RuntimeService for Vordr {
    async fn version(&self, r: Request<VersionRequest>) -> R<VersionResponse> {
        Ok(Response::new(version::version(r.into_inner())))
    }
    async fn run_pod_sandbox(&self, r: Request<RunPodSandboxRequest>) -> R<RunPodSandboxResponse> {
        sandbox_run::run_pod_sandbox(&self.0, r.into_inner())
            .await
            .map(Response::new)
    }
    async fn stop_pod_sandbox(
        &self,
        r: Request<StopPodSandboxRequest>,
    ) -> R<StopPodSandboxResponse> {
        sandbox_stop::stop_pod_sandbox(&self.0, r.into_inner())
            .await
            .map(Response::new)
    }
    async fn remove_pod_sandbox(
        &self,
        r: Request<RemovePodSandboxRequest>,
    ) -> R<RemovePodSandboxResponse> {
        sandbox_remove::remove_pod_sandbox(&self.0, r.into_inner())
            .await
            .map(Response::new)
    }
    async fn pod_sandbox_status(
        &self,
        r: Request<PodSandboxStatusRequest>,
    ) -> R<PodSandboxStatusResponse> {
        sandbox_status::pod_sandbox_status(&self.0, r.into_inner())
            .await
            .map(Response::new)
    }
    async fn list_pod_sandbox(
        &self,
        r: Request<ListPodSandboxRequest>,
    ) -> R<ListPodSandboxResponse> {
        sandbox_list::list_pod_sandbox(&self.0, r.into_inner())
            .await
            .map(Response::new)
    }
    async fn create_container(
        &self,
        _: Request<CreateContainerRequest>,
    ) -> R<CreateContainerResponse> {
        not_yet("CreateContainer")
    }
    async fn start_container(
        &self,
        _: Request<StartContainerRequest>,
    ) -> R<StartContainerResponse> {
        not_yet("StartContainer")
    }
    async fn stop_container(&self, _: Request<StopContainerRequest>) -> R<StopContainerResponse> {
        not_yet("StopContainer")
    }
    async fn remove_container(
        &self,
        _: Request<RemoveContainerRequest>,
    ) -> R<RemoveContainerResponse> {
        not_yet("RemoveContainer")
    }
    async fn list_containers(
        &self,
        _: Request<ListContainersRequest>,
    ) -> R<ListContainersResponse> {
        // No container can exist yet: the list is truthfully empty.
        Ok(Response::new(ListContainersResponse { containers: vec![] }))
    }
    async fn container_status(
        &self,
        _: Request<ContainerStatusRequest>,
    ) -> R<ContainerStatusResponse> {
        not_yet("ContainerStatus")
    }
    async fn update_container_resources(
        &self,
        _: Request<UpdateContainerResourcesRequest>,
    ) -> R<UpdateContainerResourcesResponse> {
        not_yet("UpdateContainerResources")
    }
    async fn reopen_container_log(
        &self,
        _: Request<ReopenContainerLogRequest>,
    ) -> R<ReopenContainerLogResponse> {
        not_yet("ReopenContainerLog")
    }
    async fn exec_sync(&self, _: Request<ExecSyncRequest>) -> R<ExecSyncResponse> {
        not_yet("ExecSync")
    }
    async fn exec(&self, _: Request<ExecRequest>) -> R<ExecResponse> {
        not_yet("Exec")
    }
    async fn attach(&self, _: Request<AttachRequest>) -> R<AttachResponse> {
        not_yet("Attach")
    }
    async fn port_forward(&self, _: Request<PortForwardRequest>) -> R<PortForwardResponse> {
        not_yet("PortForward")
    }
    async fn container_stats(
        &self,
        _: Request<ContainerStatsRequest>,
    ) -> R<ContainerStatsResponse> {
        not_yet("ContainerStats")
    }
    async fn list_container_stats(
        &self,
        _: Request<ListContainerStatsRequest>,
    ) -> R<ListContainerStatsResponse> {
        Ok(Response::new(ListContainerStatsResponse { stats: vec![] }))
    }
    async fn pod_sandbox_stats(
        &self,
        _: Request<PodSandboxStatsRequest>,
    ) -> R<PodSandboxStatsResponse> {
        not_yet("PodSandboxStats")
    }
    async fn list_pod_sandbox_stats(
        &self,
        _: Request<ListPodSandboxStatsRequest>,
    ) -> R<ListPodSandboxStatsResponse> {
        not_yet("ListPodSandboxStats")
    }
    async fn update_runtime_config(
        &self,
        r: Request<UpdateRuntimeConfigRequest>,
    ) -> R<UpdateRuntimeConfigResponse> {
        update_runtime_config::update_runtime_config(&self.0, r.into_inner())
            .await
            .map(Response::new)
    }
    async fn status(&self, r: Request<StatusRequest>) -> R<StatusResponse> {
        Ok(Response::new(status::status(&self.0, r.into_inner()).await))
    }
    async fn checkpoint_container(
        &self,
        _: Request<CheckpointContainerRequest>,
    ) -> R<CheckpointContainerResponse> {
        not_yet("CheckpointContainer")
    }
    type GetContainerEventsStream =
        tokio_stream::wrappers::ReceiverStream<Result<ContainerEventResponse, Status>>;
    async fn get_container_events(
        &self,
        _: Request<GetEventsRequest>,
    ) -> R<Self::GetContainerEventsStream> {
        not_yet("GetContainerEvents")
    }
    async fn list_metric_descriptors(
        &self,
        _: Request<ListMetricDescriptorsRequest>,
    ) -> R<ListMetricDescriptorsResponse> {
        not_yet("ListMetricDescriptors")
    }
    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<ListPodSandboxMetricsRequest>,
    ) -> R<ListPodSandboxMetricsResponse> {
        not_yet("ListPodSandboxMetrics")
    }
    async fn runtime_config(&self, _: Request<RuntimeConfigRequest>) -> R<RuntimeConfigResponse> {
        Ok(Response::new(runtime_config::runtime_config(&self.0)))
    }
}

#[tonic::async_trait]
impl ImageService for Vordr {
    async fn list_images(&self, r: Request<ListImagesRequest>) -> R<ListImagesResponse> {
        image_list::list_images(&self.0, r.into_inner())
            .await
            .map(Response::new)
    }
    async fn image_status(&self, r: Request<ImageStatusRequest>) -> R<ImageStatusResponse> {
        image_status::image_status(&self.0, r.into_inner())
            .await
            .map(Response::new)
    }
    async fn pull_image(&self, r: Request<PullImageRequest>) -> R<PullImageResponse> {
        image_pull::pull_image(&self.0, r.into_inner())
            .await
            .map(Response::new)
    }
    async fn remove_image(&self, r: Request<RemoveImageRequest>) -> R<RemoveImageResponse> {
        image_remove::remove_image(&self.0, r.into_inner())
            .await
            .map(Response::new)
    }
    async fn image_fs_info(&self, _: Request<ImageFsInfoRequest>) -> R<ImageFsInfoResponse> {
        image_fs_info::image_fs_info(&self.0)
            .await
            .map(Response::new)
    }
}
