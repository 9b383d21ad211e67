//! GetContainerEvents: a stream of container lifecycle events (see
//! `container::events`), the backlog kept while no client streamed first.

use k8s_cri::v1::{ContainerEventResponse, GetEventsRequest};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::state::Runtime;

pub fn get_container_events(
    rt: &Runtime,
    _: GetEventsRequest,
) -> ReceiverStream<Result<ContainerEventResponse, Status>> {
    ReceiverStream::new(rt.events.subscribe())
}
