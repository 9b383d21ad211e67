//! GetContainerEvents end to end: a container's lifecycle as CREATED,
//! STARTED, STOPPED, DELETED in order to two concurrent streams, with the
//! pod's status and its containers' statuses; a stream that reconnects gets
//! what happened while it was away; after a daemon restart, the exit of a
//! container that ended while the daemon was down.

use std::time::{Duration, Instant};

use cri::ContainerEventType as T;
use tonic::Streaming;
use vordr_e2e::setup::*;
use vordr_e2e::*;

async fn subscribe(c: &mut CriClient) -> Streaming<cri::ContainerEventResponse> {
    c.runtime
        .get_container_events(cri::GetEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
}

/// The next event for container `id` (others skipped), within a time limit.
async fn next_for(
    s: &mut Streaming<cri::ContainerEventResponse>,
    id: &str,
) -> cri::ContainerEventResponse {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, s.message())
            .await
            .unwrap_or_else(|_| panic!("no event for {id} in time"))
            .unwrap()
            .expect("the stream ended");
        if ev.container_id == id {
            return ev;
        }
    }
}

fn kind(ev: &cri::ContainerEventResponse) -> T {
    T::try_from(ev.container_event_type).unwrap()
}

/// The status of `id` the event carries.
fn own_status<'a>(ev: &'a cri::ContainerEventResponse, id: &str) -> &'a cri::ContainerStatus {
    ev.containers_statuses
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("{id} not in {ev:?}"))
}

#[tokio::test]
async fn lifecycle_in_order_to_every_stream() {
    let Some(mut s) = setup("events").await else {
        return;
    };
    let mut a = subscribe(&mut s.c).await;
    let mut b = subscribe(&mut s.c).await;
    let pod = s.pod("events", "").await;
    let other = s.run(&pod, s.config("other", &["sleep", "1000"])).await;
    let id = s
        .run(&pod, s.config("short", &["sh", "-c", "sleep 1; exit 3"]))
        .await;
    s.wait_exit(&id).await;
    s.c.runtime
        .remove_container(cri::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    for stream in [&mut a, &mut b] {
        let mut last = 0;
        for want in [
            T::ContainerCreatedEvent,
            T::ContainerStartedEvent,
            T::ContainerStoppedEvent,
            T::ContainerDeletedEvent,
        ] {
            let ev = next_for(stream, &id).await;
            assert_eq!(kind(&ev), want, "{ev:?}");
            assert!(ev.created_at >= last, "events out of time order");
            last = ev.created_at;
            let ps = ev.pod_sandbox_status.as_ref().expect("the pod's status");
            assert_eq!(ps.id, pod.0);
            assert_eq!(ps.state, cri::PodSandboxState::SandboxReady as i32);
            assert!(!ps.network.as_ref().unwrap().ip.is_empty());
            // The pod's other container is always there, running.
            assert_eq!(
                own_status(&ev, &other).state,
                cri::ContainerState::ContainerRunning as i32
            );
            match want {
                T::ContainerCreatedEvent => assert_eq!(
                    own_status(&ev, &id).state,
                    cri::ContainerState::ContainerCreated as i32
                ),
                T::ContainerStartedEvent => assert_eq!(
                    own_status(&ev, &id).state,
                    cri::ContainerState::ContainerRunning as i32
                ),
                T::ContainerStoppedEvent => {
                    let st = own_status(&ev, &id);
                    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
                    assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));
                }
                T::ContainerDeletedEvent => assert!(
                    ev.containers_statuses.iter().all(|c| c.id != id),
                    "a deleted container among the statuses"
                ),
            }
        }
    }
    s.stop_remove(&other).await;
    s.d.remove_all_pods().await;
    // The pod's own events, its id as the container id (as containerd's
    // sandbox containers): kubelet drops the pod on its DELETED.
    let ev = next_for(&mut a, &pod.0).await;
    assert_eq!(kind(&ev), T::ContainerStoppedEvent, "{ev:?}");
    let ev = next_for(&mut a, &pod.0).await;
    assert_eq!(kind(&ev), T::ContainerDeletedEvent, "{ev:?}");
    let ps = ev
        .pod_sandbox_status
        .as_ref()
        .expect("the pod's last status");
    assert_eq!(ps.id, pod.0);
    assert_eq!(ps.state, cri::PodSandboxState::SandboxNotready as i32);
    assert!(ev.containers_statuses.is_empty(), "{ev:?}");
}

#[tokio::test]
async fn a_reconnecting_stream_gets_what_it_missed() {
    let Some(mut s) = setup("evreconn").await else {
        return;
    };
    let pod = s.pod("evreconn", "").await;
    let first = s.run(&pod, s.config("first", &["sleep", "1000"])).await;
    {
        // A client that reads the backlog, then goes away.
        let mut gone = subscribe(&mut s.c).await;
        assert_eq!(
            kind(&next_for(&mut gone, &pod.0).await),
            T::ContainerCreatedEvent
        );
        assert_eq!(
            kind(&next_for(&mut gone, &pod.0).await),
            T::ContainerStartedEvent
        );
        assert_eq!(
            kind(&next_for(&mut gone, &first).await),
            T::ContainerCreatedEvent
        );
        assert_eq!(
            kind(&next_for(&mut gone, &first).await),
            T::ContainerStartedEvent
        );
    }
    // The server notices the closed stream.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = s.run(&pod, s.config("second", &["sleep", "1000"])).await;
    s.c.runtime
        .stop_container(cri::StopContainerRequest {
            container_id: first.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    let mut back = subscribe(&mut s.c).await;
    assert_eq!(
        kind(&next_for(&mut back, &second).await),
        T::ContainerCreatedEvent
    );
    assert_eq!(
        kind(&next_for(&mut back, &second).await),
        T::ContainerStartedEvent
    );
    let ev = next_for(&mut back, &first).await;
    assert_eq!(kind(&ev), T::ContainerStoppedEvent, "{ev:?}");
    s.stop_remove(&first).await;
    s.stop_remove(&second).await;
    s.d.remove_all_pods().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_during_a_restart_are_emitted() {
    let Some(mut s) = setup("evrestart").await else {
        return;
    };
    let pod = s.pod("evrestart", "").await;
    let stays = s.run(&pod, s.config("stays", &["sleep", "1000"])).await;
    let quits = s
        .run(&pod, s.config("quits", &["sh", "-c", "sleep 2; exit 7"]))
        .await;
    s.d.kill9();
    tokio::time::sleep(Duration::from_secs(4)).await;
    s.d.spawn().await;
    s.c = s.d.client().await;
    let mut events = subscribe(&mut s.c).await;
    let ev = next_for(&mut events, &quits).await;
    assert_eq!(kind(&ev), T::ContainerStoppedEvent, "{ev:?}");
    let st = own_status(&ev, &quits);
    assert_eq!(st.exit_code, 7, "{st:?}");
    assert_eq!(
        own_status(&ev, &stays).state,
        cri::ContainerState::ContainerRunning as i32
    );
    // And events flow on after the restart.
    s.c.runtime
        .stop_container(cri::StopContainerRequest {
            container_id: stays.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        kind(&next_for(&mut events, &stays).await),
        T::ContainerStoppedEvent
    );
    s.stop_remove(&stays).await;
    s.stop_remove(&quits).await;
    s.d.remove_all_pods().await;
    // An open stream does not hold up a stop: it ends.
    let t = Instant::now();
    // The client's connection is served meanwhile (the stop is graceful).
    let st = tokio::task::block_in_place(|| s.d.terminate()).expect("the daemon ran");
    assert!(st.success(), "{st:?}");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "stopping took {:?} with a stream open",
        t.elapsed()
    );
    // What was queued for it still comes, then its end.
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = events.message().await {}
    })
    .await;
    assert!(drained.is_ok(), "the stream did not end");
}
