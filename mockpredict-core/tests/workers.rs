//! The queue's workers, on the real clock with millisecond latencies: submits from
//! outside any runtime or from another one, and what becomes of a prediction whose
//! worker stops before it ends (its runtime shut down, or a store panicked or failed):
//! it ends, and nothing else is lost.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{Script, Scripted};
use mockpredict_core::store::{Claimed, Counts, Expired, Finished, Lease, MemoryStore, Store};
use mockpredict_core::{
    Error, FailureKind, JobQueue, Outcome, Prediction, PredictionId, QueueConfig, Result, Status,
};
use tokio::runtime::{Builder, Runtime};

/// Long enough not to end during a test.
const LONG_MS: u64 = 600_000;

/// A bound on each wait, so that a regression fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

fn two_threads() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn one_thread() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A queue over a [`Scripted`] model, built in `rt`, and the model (for its counters).
fn queue_in(rt: &Runtime, config: QueueConfig) -> (JobQueue<Scripted>, Scripted) {
    let model = Scripted::default();
    let queue = rt
        .block_on(async { JobQueue::new(model.clone(), config) })
        .expect("valid");
    (queue, model)
}

/// Polls `f` once, outside any runtime.
fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
    pin!(f)
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

/// How [`Faulty`] goes wrong, once.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The first claim panics before changing anything.
    ClaimPanics,
    /// The first claim fails before changing anything (the store is unreachable).
    ClaimFails,
    /// The first finish panics before changing anything.
    FinishPanics,
    /// The first finish fails without changing anything.
    FinishFails,
}

/// The in-memory store, except that one call goes wrong once.
struct Faulty {
    inner: MemoryStore<Script, u64>,
    armed: AtomicBool,
    fault: Fault,
}

impl Faulty {
    fn new(fault: Fault) -> Self {
        Self {
            inner: MemoryStore::new(Duration::from_secs(60), 100),
            armed: AtomicBool::new(true),
            fault,
        }
    }

    /// Whether this call is the one that goes wrong.
    fn strikes(&self, at: &[Fault]) -> Option<Fault> {
        let hit = at
            .iter()
            .any(|f| std::mem::discriminant(f) == std::mem::discriminant(&self.fault));
        (hit && self.armed.swap(false, Ordering::SeqCst)).then_some(self.fault)
    }
}

impl Store for Faulty {
    type Input = Script;
    type Output = u64;
    type Watch = <MemoryStore<Script, u64> as Store>::Watch;

    async fn admit(&self, id: PredictionId, input: Script, capacity: usize) -> Result<bool> {
        self.inner.admit(id, input, capacity).await
    }
    async fn claim(&self) -> Result<Option<Claimed<Script, Self::Watch>>> {
        match self.strikes(&[Fault::ClaimPanics, Fault::ClaimFails]) {
            Some(Fault::ClaimPanics) => panic!("the store's claim panicked"),
            Some(_) => Err(Error::Backend("connection lost before the claim".into())),
            None => self.inner.claim().await,
        }
    }
    async fn renew(&self, id: PredictionId, lease: &Lease) -> Result<bool> {
        self.inner.renew(id, lease).await
    }
    async fn release(&self, id: PredictionId, lease: &Lease) -> Result<bool> {
        self.inner.release(id, lease).await
    }
    async fn finish(&self, id: PredictionId, outcome: Outcome<u64>) -> Result<Option<Finished>> {
        match self.strikes(&[Fault::FinishPanics, Fault::FinishFails]) {
            Some(Fault::FinishPanics) => panic!("the store's finish panicked"),
            Some(_) => Err(Error::Backend("connection lost before the write".into())),
            None => self.inner.finish(id, outcome).await,
        }
    }
    async fn read(&self, id: PredictionId) -> Result<Option<Prediction<Script, u64>>> {
        self.inner.read(id).await
    }
    async fn read_watched(
        &self,
        id: PredictionId,
        watch: &Self::Watch,
    ) -> Result<Option<Prediction<Script, u64>>> {
        self.inner.read_watched(id, watch).await
    }
    async fn watch(&self, id: PredictionId) -> Result<Option<Self::Watch>> {
        self.inner.watch(id).await
    }
    fn work_available(&self) -> impl Future<Output = ()> + Send + '_ {
        self.inner.work_available()
    }
    async fn expire_queued(&self, deadline: Duration) -> Result<Expired> {
        self.inner.expire_queued(deadline).await
    }
    async fn purge_expired(&self) -> Result<Duration> {
        self.inner.purge_expired().await
    }
    async fn cancel_queued(&self) -> Result<Vec<Finished>> {
        self.inner.cancel_queued().await
    }
    async fn counts(&self) -> Result<Counts> {
        self.inner.counts().await
    }
    async fn is_ready(&self) -> bool {
        self.inner.is_ready().await
    }
}

/// A queue of capacity 2 and concurrency 1 over a store with this fault (inside a
/// runtime).
fn faulty_queue(fault: Fault) -> JobQueue<Scripted, Faulty> {
    JobQueue::builder(Scripted::default())
        .config(QueueConfig::default().capacity(2).concurrency(1))
        .store(Faulty::new(fault))
        .build()
        .expect("valid")
}

/// The store's counts, read outside any runtime (the in-memory store answers at once).
fn counts<M, S>(queue: &JobQueue<M, S>) -> mockpredict_core::Stats
where
    M: mockpredict_core::Model,
    S: Store<Input = M::Input, Output = M::Output>,
{
    match poll_once(queue.stats()) {
        Poll::Ready(stats) => stats,
        Poll::Pending => panic!("the in-memory store's counts waited"),
    }
}

/// Waits (on the runtime of the caller) until the prediction has status `status`.
async fn until(queue: &JobQueue<Scripted>, id: PredictionId, status: Status) {
    let reached = async {
        while queue.get(id).await.expect("known").status != status {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(PATIENCE, reached)
        .await
        .unwrap_or_else(|_| panic!("{id} never reached {status}"));
}

/// A thread with no runtime can submit (say, code bridging from a blocking thread):
/// the prediction runs on the runtime the queue was built in.
#[test]
fn a_submit_from_outside_any_runtime_runs_on_the_queue_s_runtime() {
    let rt = two_threads();
    let (queue, model) = queue_in(&rt, QueueConfig::default());
    let submitted = std::thread::spawn({
        let queue = queue.clone();
        move || {
            assert!(tokio::runtime::Handle::try_current().is_err());
            // The in-memory store answers a submit at its first poll.
            match poll_once(queue.submit(Script::ok(5))) {
                Poll::Ready(id) => id.expect("admitted"),
                Poll::Pending => panic!("a submit to the in-memory store waited"),
            }
        }
    })
    .join()
    .expect("the submit did not panic");
    let done = rt
        .block_on(async { tokio::time::timeout(PATIENCE, queue.wait(submitted, None)).await })
        .expect("finished in time")
        .expect("known");
    assert_eq!(done.status, Status::Succeeded);
    assert_eq!(done.output.as_deref(), Some(&5));
    assert_eq!(model.started.load(Ordering::SeqCst), 1);
}

/// A queue can be used from a second runtime: its predictions run on the queue's.
#[test]
fn a_submit_from_another_runtime_runs_on_the_queue_s_runtime() {
    let home = two_threads();
    let (queue, _) = queue_in(&home, QueueConfig::default());
    let other = one_thread();
    let done = other.block_on(async {
        let id = queue.submit(Script::ok(5)).await.expect("admitted");
        tokio::time::timeout(PATIENCE, queue.wait(id, None)).await
    });
    assert_eq!(
        done.expect("finished in time").expect("known").status,
        Status::Succeeded
    );
}

/// When the queue's runtime shuts down, its workers' futures are dropped with their
/// models': the prediction each was running ends `canceled` and gives its capacity
/// slot back, instead of staying `processing` for good. What was queued stays queued.
#[test]
fn a_runtime_that_shuts_down_cancels_what_its_workers_were_running() {
    let first = two_threads();
    let (queue, model) = queue_in(&first, QueueConfig::default().capacity(2).concurrency(1));
    let (running, waiting) = first.block_on(async {
        let running = queue.submit(Script::ok(LONG_MS)).await.expect("admitted");
        let waiting = queue.submit(Script::ok(5)).await.expect("admitted");
        until(&queue, running, Status::Processing).await;
        (running, waiting)
    });
    drop(first);
    assert_eq!(
        model.dropped_unfinished.load(Ordering::SeqCst),
        1,
        "the running model's future was dropped with its runtime"
    );
    let second = one_thread();
    second.block_on(async {
        let ended = queue.get(running).await.expect("known");
        assert_eq!(ended.status, Status::Canceled, "{ended:?}");
        assert!(ended.completed_at.is_some());
        let stats = queue.stats().await;
        assert_eq!((stats.processing, stats.queued), (0, 1), "{stats:?}");
        assert_eq!(stats.canceled_total, 1);
        let waiting = queue.get(waiting).await.expect("known");
        assert_eq!(waiting.status, Status::Queued);
        // The canceled prediction's slot is free: at capacity 2, one more is admitted.
        queue.submit(Script::ok(5)).await.expect("a slot was free");
    });
}

/// A store whose claim panics or fails loses nothing: the dispatcher survives, tries
/// again, and the prediction runs.
#[test]
fn a_faulty_claim_delays_the_work_and_loses_nothing() {
    for fault in [Fault::ClaimPanics, Fault::ClaimFails] {
        two_threads().block_on(async {
            let queue = faulty_queue(fault);
            let id = queue.submit(Script::ok(5)).await.expect("admitted");
            let done = tokio::time::timeout(PATIENCE, queue.wait(id, None))
                .await
                .expect("ended in time")
                .expect("known");
            assert_eq!(done.status, Status::Succeeded, "{fault:?}: {done:?}");
            let stats = queue.stats().await;
            assert_eq!((stats.processing, stats.queued), (0, 0), "{stats:?}");
        });
    }
}

/// A store whose `finish` panics or fails gets a failure (kind `backend`) recorded
/// instead, if it can: waiters get an answer, the slot is freed, the prediction queued
/// behind runs.
#[test]
fn an_outcome_the_store_cannot_record_becomes_a_failure() {
    for fault in [Fault::FinishPanics, Fault::FinishFails] {
        two_threads().block_on(async {
            let queue = faulty_queue(fault);
            let hit = queue.submit(Script::ok(5)).await.expect("admitted");
            let behind = queue.submit(Script::ok(5)).await.expect("admitted");
            let wait = async |id| {
                tokio::time::timeout(PATIENCE, queue.wait(id, None))
                    .await
                    .expect("ended in time")
                    .expect("known")
            };
            let failed = wait(hit).await;
            assert_eq!(failed.status, Status::Failed, "{fault:?}: {failed:?}");
            let error = failed.error.expect("an error");
            assert_eq!(error.kind, FailureKind::Backend, "{fault:?}");
            let said = match fault {
                Fault::FinishFails => "connection lost",
                _ => "panicked",
            };
            assert!(error.message.contains(said), "{fault:?}: {}", error.message);
            assert_eq!(wait(behind).await.status, Status::Succeeded, "{fault:?}");
            let stats = queue.stats().await;
            assert_eq!(
                (stats.processing, stats.queued, stats.failed_total),
                (0, 0, 1),
                "{fault:?}: {stats:?}"
            );
            // Both slots are free again.
            for _ in 0..2 {
                queue.submit(Script::ok(5)).await.expect("a slot was free");
            }
        });
    }
}

/// The semaphore bounds what runs: under a stream of predictions canceled the moment
/// they are seen `processing`, no more than `concurrency` are ever processing, and
/// none is left so at the end.
#[test]
fn no_more_than_concurrency_ever_run() {
    const CONCURRENCY: usize = 8;
    let rt = Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let config = QueueConfig::default().capacity(64).concurrency(CONCURRENCY);
    let (queue, _) = queue_in(&rt, config);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let (queue, stop) = (queue.clone(), Arc::clone(&stop));
        move || {
            let mut most = 0;
            while !stop.load(Ordering::Relaxed) {
                most = counts(&queue).processing.max(most);
            }
            most
        }
    });
    rt.block_on(async {
        let mut waits = Vec::new();
        for _ in 0..1000 {
            let id = queue.submit(Script::ok(1)).await.expect("admitted");
            let queue = queue.clone();
            waits.push(tokio::spawn(async move {
                let mut changes = queue.subscribe(id).await.expect("known");
                while let Some(p) = changes.next().await {
                    if p.status == Status::Processing {
                        let _ = queue.cancel(id).await;
                    }
                }
            }));
            if waits.len() == 32 {
                for w in waits.drain(..) {
                    tokio::time::timeout(PATIENCE, w)
                        .await
                        .expect("ended in time")
                        .expect("the canceler ran");
                }
            }
        }
        for w in waits {
            w.await.expect("the canceler ran");
        }
    });
    stop.store(true, Ordering::Relaxed);
    let most = sampler.join().expect("the sampler ran");
    assert!(most <= CONCURRENCY, "processing read {most}");
    assert!(most > 1, "the test ran predictions side by side ({most})");
    assert_eq!(counts(&queue).processing, 0);
}
