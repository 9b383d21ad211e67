//! Creates that outlive their caller. kubelet puts a deadline on every
//! call and tonic drops the handler when it passes; a RunPodSandbox or
//! CreateContainer dropped half-way would leave a `creating` row behind
//! that makes kubelet's retry fail with AlreadyExists. Here the work runs
//! in a task of its own, to completion or to its own cleanup, and a retry
//! with the same key (the same pod or container name) joins it: it gets the
//! finished object's id, or, if the work failed, runs afresh. Objects
//! nobody came back for stay, and kubelet finds them by listing, as it
//! does containerd's and CRI-O's.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tonic::Status;

/// Runs `work` to completion on a blocking thread (driven by the runtime's
/// handle), whether or not anyone awaits the handle: blocking calls in it
/// (SQLite, the filesystem) never occupy the async worker threads.
pub fn off_runtime<T, F>(work: F) -> tokio::task::JoinHandle<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(work))
}

/// How long a finished result waits for a retry before it is forgotten.
const LINGER: Duration = Duration::from_secs(300);

type Outcome = Option<Result<String, Status>>;

struct Entry {
    outcome: watch::Sender<Outcome>,
    /// Set by whoever delivers the id, so it is delivered once.
    taken: AtomicBool,
}

/// Creates in flight, by key.
#[derive(Default)]
pub struct Inflight {
    map: Mutex<HashMap<String, Arc<Entry>>>,
}

impl Inflight {
    /// Runs `work` for `key` in a task of its own and waits for it, or
    /// joins the task already running for `key`.
    pub async fn run<F>(self: &Arc<Self>, key: String, work: F) -> Result<String, Status>
    where
        F: Future<Output = Result<String, Status>> + Send + 'static,
    {
        let mut work = Some(work);
        loop {
            let (entry, mine) = {
                let mut map = self.map.lock().expect("inflight map");
                match map.get(&key) {
                    Some(e) => (e.clone(), false),
                    None => {
                        let e = Arc::new(Entry {
                            outcome: watch::channel(None).0,
                            taken: AtomicBool::new(false),
                        });
                        map.insert(key.clone(), e.clone());
                        (e, true)
                    }
                }
            };
            let mut rx = entry.outcome.subscribe();
            if mine {
                let job = work.take().expect("work is spawned once");
                let (this, key, entry) = (self.clone(), key.clone(), entry.clone());
                let work = off_runtime(job);
                tokio::spawn(async move {
                    let outcome = work.await.unwrap_or_else(|e| {
                        Err(Status::internal(format!("the create failed: {e}")))
                    });
                    entry.outcome.send_replace(Some(outcome));
                    tokio::time::sleep(LINGER).await;
                    if !entry.taken.load(Ordering::SeqCst) {
                        tracing::info!(key = %key.replace('\0', "/"), "a create finished after its caller left and no retry came for it");
                    }
                    this.forget(&key, &entry);
                });
            } else {
                tracing::info!(key = %key.replace('\0', "/"), "a retry joins the create still in flight");
            }
            let outcome = rx
                .wait_for(Option::is_some)
                .await
                .map_err(|_| Status::internal("the create's task ended without an outcome"))?
                .clone()
                .expect("waited for Some");
            match outcome {
                Ok(id) => {
                    self.forget(&key, &entry);
                    if entry.taken.swap(true, Ordering::SeqCst) {
                        return Err(Status::already_exists(format!(
                            "{} was already created as {id} for an earlier request",
                            key.replace('\0', "/")
                        )));
                    }
                    return Ok(id);
                }
                Err(status) => {
                    self.forget(&key, &entry);
                    // The earlier attempt failed and cleaned up after
                    // itself: this request starts afresh.
                    if work.is_none() {
                        return Err(status);
                    }
                }
            }
        }
    }

    /// Removes `key` if it still maps to `entry`.
    fn forget(&self, key: &str, entry: &Arc<Entry>) {
        let mut map = self.map.lock().expect("inflight map");
        if map.get(key).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            map.remove(key);
        }
    }

    /// Keys in flight (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn a_dropped_caller_does_not_cancel_and_a_retry_gets_the_id() {
        let inflight = Arc::new(Inflight::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let work = |runs: Arc<AtomicUsize>, id: &'static str| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, Status>(id.to_string())
        };
        // The first caller gives up after 50 ms (kubelet's deadline).
        let first = tokio::time::timeout(
            Duration::from_millis(50),
            inflight.run("k".into(), work(runs.clone(), "pod-1")),
        )
        .await;
        assert!(first.is_err());
        // The retry joins the running work instead of starting its own.
        let retry = inflight
            .run("k".into(), work(runs.clone(), "pod-2"))
            .await
            .unwrap();
        assert_eq!(retry, "pod-1");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(inflight.len(), 0);
        // Once delivered, the same key runs again (and the store decides).
        let again = inflight.run("k".into(), work(runs.clone(), "pod-3")).await;
        assert_eq!(again.unwrap(), "pod-3");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_retry_after_a_failure_runs_afresh() {
        let inflight = Arc::new(Inflight::default());
        let failing = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err::<String, _>(Status::internal("netavark failed"))
        };
        let first =
            tokio::time::timeout(Duration::from_millis(20), inflight.run("k".into(), failing))
                .await;
        assert!(first.is_err());
        let retry = inflight
            .run("k".into(), async { Ok::<_, Status>("pod-2".to_string()) })
            .await;
        assert_eq!(retry.unwrap(), "pod-2");
    }

    #[tokio::test]
    async fn two_waiters_get_the_id_once() {
        let inflight = Arc::new(Inflight::default());
        let slow = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, Status>("pod-1".to_string())
        };
        let a = inflight.run("k".into(), slow);
        let b = inflight.run("k".into(), async { Ok::<_, Status>("never".to_string()) });
        let (a, b) = tokio::join!(a, b);
        let oks = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(oks, 1, "{a:?} {b:?}");
        let err = if a.is_err() { a } else { b }.unwrap_err();
        assert_eq!(err.code(), tonic::Code::AlreadyExists);
    }
}
