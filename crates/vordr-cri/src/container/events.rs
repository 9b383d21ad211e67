//! Container lifecycle events for GetContainerEvents (kubelet's evented
//! PLEG): each event carries the container's pod status and the statuses
//! of the pod's containers at the time it happened. Every open stream gets
//! every event, in order; while no stream is open, events wait in a
//! bounded backlog for the next one (the oldest dropped past
//! `events.backlog`), so a client that reconnects misses nothing that
//! happened in between, exits learned at restart included.

use std::collections::VecDeque;
use std::sync::Mutex as StdMutex;

use k8s_cri::v1::{ContainerEventResponse, ContainerEventType, ContainerStatus};
use tokio::sync::mpsc;
use tonic::Status;
use vordr_store::{ContainerRecord, PodRecord};

use crate::state::Runtime;

type Item = Result<ContainerEventResponse, Status>;

/// The streams and the backlog.
pub struct EventHub {
    inner: StdMutex<Inner>,
    backlog_cap: usize,
    stream_cap: usize,
}

#[derive(Default)]
struct Inner {
    backlog: VecDeque<ContainerEventResponse>,
    /// Events dropped from the backlog since a stream last took it.
    dropped: u64,
    streams: Vec<mpsc::Sender<Item>>,
}

impl EventHub {
    pub fn new(backlog_cap: usize, stream_cap: usize) -> EventHub {
        EventHub {
            inner: StdMutex::default(),
            backlog_cap,
            stream_cap: stream_cap.max(1),
        }
    }

    /// Sends `ev` to every open stream, or keeps it for the next one. A
    /// stream whose client stopped reading gets ResourceExhausted in its
    /// last free slot and is dropped.
    pub fn publish(&self, ev: ContainerEventResponse) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.streams.retain(|tx| {
            if tx.is_closed() {
                return false;
            }
            if tx.capacity() <= 1 {
                let _ = tx.try_send(Err(Status::resource_exhausted(
                    "this events stream fell behind: reconnect and list again",
                )));
                return false;
            }
            tx.try_send(Ok(ev.clone())).is_ok()
        });
        if inner.streams.is_empty() && self.backlog_cap > 0 {
            if inner.backlog.len() >= self.backlog_cap {
                inner.backlog.pop_front();
                inner.dropped += 1;
            }
            inner.backlog.push_back(ev);
        }
    }

    /// Ends every open stream (the daemon is stopping).
    pub fn close_all(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .streams
            .clear();
    }

    /// Opens a stream: the backlog first, then every new event.
    pub fn subscribe(&self) -> mpsc::Receiver<Item> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, rx) = mpsc::channel(self.stream_cap + self.backlog_cap);
        if inner.dropped > 0 {
            tracing::warn!(
                dropped = inner.dropped,
                "container events dropped from the backlog while no client streamed them"
            );
            inner.dropped = 0;
        }
        for ev in inner.backlog.drain(..) {
            let _ = tx.try_send(Ok(ev));
        }
        inner.streams.push(tx);
        rx
    }
}

/// The event of `kind` for `id`, a container of pod `pod` or the pod
/// itself: the pod's status (from `pod`, the last row of a removed pod) and
/// its containers' as they are now (a deleted container no longer among
/// them).
fn event_of(
    rt: &Runtime,
    id: &str,
    pod: Option<&PodRecord>,
    kind: ContainerEventType,
) -> ContainerEventResponse {
    let pod_sandbox_status = pod.and_then(|p| {
        let cfg = crate::sandbox_status::config_of(p).ok()?;
        crate::sandbox_status::status_of(rt, p, &cfg).ok()
    });
    let mut containers_statuses: Vec<ContainerStatus> = pod
        .and_then(|p| rt.store.pod_containers(&p.id).ok())
        .unwrap_or_default()
        .iter()
        .map(crate::container_status::to_status)
        .collect();
    if kind == ContainerEventType::ContainerDeletedEvent {
        containers_statuses.retain(|s| s.id != id);
    }
    ContainerEventResponse {
        container_id: id.to_string(),
        container_event_type: kind as i32,
        created_at: crate::state::ids::now_ns(),
        pod_sandbox_status,
        containers_statuses,
    }
}

fn container_event(
    rt: &Runtime,
    c: &ContainerRecord,
    kind: ContainerEventType,
) -> ContainerEventResponse {
    let pod = rt.store.get_pod(&c.pod_id).ok().flatten();
    event_of(rt, &c.id, pod.as_ref(), kind)
}

/// Publishes an event for pod `pod` itself, its id as the container id (as
/// containerd does for its sandbox containers: kubelet's evented PLEG
/// drops a pod from its cache on the DELETED event of the sandbox id).
/// `pod` is the row as it is now, or its last one once removed.
pub fn emit_pod(rt: &Runtime, pod: &PodRecord, kind: ContainerEventType) {
    let row = if kind == ContainerEventType::ContainerDeletedEvent {
        // Removed, so stopped first: not ready, whatever the row said
        // when the removal read it.
        PodRecord {
            state: vordr_store::PodState::NotReady,
            ..pod.clone()
        }
    } else {
        rt.store
            .get_pod(&pod.id)
            .ok()
            .flatten()
            .unwrap_or_else(|| pod.clone())
    };
    rt.events.publish(event_of(rt, &pod.id, Some(&row), kind));
}

/// Publishes a created, started or stopped event for container `id` from
/// its row as it is now, and brings its stats up to date.
pub fn emit(rt: &Runtime, id: &str, kind: ContainerEventType) {
    rt.stats.container_changed(rt, id);
    match rt.store.get_container(id) {
        Ok(Some(c)) => rt.events.publish(container_event(rt, &c, kind)),
        Ok(None) => {}
        Err(e) => tracing::warn!(container = %id, "container event: reading the row: {e}"),
    }
}

/// Publishes the deleted event of `c`, whose row is gone.
pub fn emit_deleted(rt: &Runtime, c: &ContainerRecord) {
    rt.stats.container_changed(rt, &c.id);
    rt.events.publish(container_event(
        rt,
        c,
        ContainerEventType::ContainerDeletedEvent,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str) -> ContainerEventResponse {
        ContainerEventResponse {
            container_id: id.into(),
            ..Default::default()
        }
    }

    fn ids(rx: &mut mpsc::Receiver<Item>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(item) = rx.try_recv() {
            out.push(match item {
                Ok(e) => e.container_id,
                Err(s) => format!("error {:?}", s.code()),
            });
        }
        out
    }

    #[test]
    fn backlog_goes_to_the_next_stream_capped() {
        let hub = EventHub::new(3, 10);
        for id in ["a", "b", "c", "d"] {
            hub.publish(ev(id));
        }
        let mut first = hub.subscribe();
        assert_eq!(
            ids(&mut first),
            ["b", "c", "d"],
            "oldest dropped past the cap"
        );
        hub.publish(ev("e"));
        let mut second = hub.subscribe();
        hub.publish(ev("f"));
        assert_eq!(ids(&mut first), ["e", "f"]);
        assert_eq!(
            ids(&mut second),
            ["f"],
            "a stream opened later gets no replay"
        );
        // Both gone: events wait again for whoever comes next.
        drop(first);
        drop(second);
        hub.publish(ev("g"));
        hub.publish(ev("h"));
        let mut third = hub.subscribe();
        assert_eq!(ids(&mut third), ["g", "h"]);
    }

    #[test]
    fn a_stream_that_falls_behind_ends_with_resource_exhausted() {
        let hub = EventHub::new(0, 3);
        let mut slow = hub.subscribe();
        for id in ["a", "b", "c", "d"] {
            hub.publish(ev(id));
        }
        assert_eq!(ids(&mut slow), ["a", "b", "error ResourceExhausted"]);
        assert!(slow.try_recv().is_err(), "the stream is closed");
        // With no stream left and no backlog configured, nothing is kept.
        let mut next = hub.subscribe();
        assert!(ids(&mut next).is_empty());
        hub.close_all();
        assert!(matches!(
            next.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}
