//! The queue's workers, on the real clock with millisecond latencies: which runtime a
//! worker is spawned on (a submit from outside any runtime, or from another one), and
//! what becomes of a prediction whose worker stops before it ends (its runtime shut
//! down, or a backend panicked): it ends, and nothing else is lost.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{Script, Scripted};
use mockpredict_core::backend::{
    Backend, Finished, MemoryBackend, MemoryJob, MemoryStamp, Started,
};
use mockpredict_core::{
    FailureKind, InputRef, JobQueue, Outcome, Prediction, PredictionId, QueueConfig, Result, Status,
};
use tokio::runtime::{Builder, Runtime};
use tokio::time::Instant;

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

/// Polls `f` once, outside any runtime.
fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
    pin!(f)
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

/// The in-memory backend, except that `start` panics once: before it changes
/// anything, or after it has made the prediction `processing`.
struct PanicsAtStart {
    inner: MemoryBackend<Script, u64>,
    armed: AtomicBool,
    after_applying: bool,
}

impl PanicsAtStart {
    fn new(after_applying: bool) -> Self {
        Self {
            inner: MemoryBackend::new(Duration::from_secs(60), 100),
            armed: AtomicBool::new(true),
            after_applying,
        }
    }
}

impl Backend for PanicsAtStart {
    type Input = Script;
    type Output = u64;
    type Job = MemoryJob<Script, u64>;
    type Stamp = MemoryStamp;

    fn stamp(&self, at: Instant) -> MemoryStamp {
        self.inner.stamp(at)
    }
    async fn insert(
        &self,
        id: PredictionId,
        input: Script,
        created: MemoryStamp,
    ) -> Result<Self::Job> {
        self.inner.insert(id, input, created).await
    }
    async fn lookup(&self, id: PredictionId) -> Result<Option<Self::Job>> {
        self.inner.lookup(id).await
    }
    async fn snapshot(&self, job: &Self::Job) -> Result<Prediction<Script, u64>> {
        self.inner.snapshot(job).await
    }
    async fn status(&self, job: &Self::Job) -> Result<Status> {
        self.inner.status(job).await
    }
    async fn input(&self, job: &Self::Job) -> Result<InputRef<Script>> {
        self.inner.input(job).await
    }
    async fn start(&self, job: &Self::Job, at: MemoryStamp) -> Result<Option<Started>> {
        let started = if self.after_applying {
            Some(self.inner.start(job, at).await)
        } else {
            None
        };
        assert!(
            !self.armed.swap(false, Ordering::SeqCst),
            "the backend's start panicked"
        );
        match started {
            Some(started) => started,
            None => self.inner.start(job, at).await,
        }
    }
    async fn finish<F>(
        &self,
        job: &Self::Job,
        outcome: Outcome<u64>,
        at: MemoryStamp,
        on_applied: F,
    ) -> Result<Option<Finished>>
    where
        F: FnOnce(&Finished) + Send,
    {
        self.inner.finish(job, outcome, at, on_applied).await
    }
    fn wake(&self, job: &Self::Job) {
        self.inner.wake(job);
    }
    fn changed<'a>(&'a self, job: &'a Self::Job) -> impl Future<Output = ()> + Send + 'a {
        self.inner.changed(job)
    }
    async fn purge_expired(&self) -> Result<Instant> {
        self.inner.purge_expired().await
    }
    fn retained(&self) -> usize {
        self.inner.retained()
    }
    async fn is_ready(&self) -> bool {
        self.inner.is_ready().await
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
/// the worker is spawned on the runtime the queue was built in, and the prediction
/// runs there. Before, the submit admitted the prediction and then panicked, as
/// `tokio::spawn` does outside a runtime.
#[test]
fn a_submit_from_outside_any_runtime_runs_on_the_queue_s_runtime() {
    let rt = two_threads();
    let model = Scripted::default();
    let queue = rt
        .block_on(async { JobQueue::new(model.clone(), QueueConfig::default()) })
        .expect("valid");
    let submitted = std::thread::spawn({
        let queue = queue.clone();
        move || {
            assert!(tokio::runtime::Handle::try_current().is_err());
            // The in-memory backend answers a submit at its first poll.
            match poll_once(queue.submit(Script::ok(5))) {
                Poll::Ready(id) => id.expect("admitted"),
                Poll::Pending => panic!("a submit to the in-memory backend waited"),
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

/// A queue used from a second runtime runs its predictions there, as before: the
/// worker is spawned on the runtime of the submit when there is one.
#[test]
fn a_submit_from_another_runtime_runs_there() {
    let home = two_threads();
    let queue = home
        .block_on(async { JobQueue::new(Scripted::default(), QueueConfig::default()) })
        .expect("valid");
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

/// A runtime that shuts down drops the workers running on it, and with them their
/// models' futures. The prediction each was running ends `canceled`, as at the end of
/// a shutdown's grace period, with its capacity slot given back; what was still
/// queued stays queued and runs once a submit from a live runtime brings up a worker.
/// Before, a running prediction stayed `processing` for good, holding its slot.
#[test]
fn a_runtime_that_shuts_down_cancels_what_its_workers_were_running() {
    let first = two_threads();
    let model = Scripted::default();
    let config = QueueConfig::default().capacity(2).concurrency(1);
    let queue = first
        .block_on(async { JobQueue::new(model.clone(), config) })
        .expect("valid");
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
        let stats = queue.stats();
        assert_eq!((stats.processing, stats.queued), (0, 1), "{stats:?}");
        assert_eq!(stats.canceled_total, 1);
        assert_eq!(
            queue.get(waiting).await.expect("known").status,
            Status::Queued
        );
        // The canceled prediction's slot is free: at capacity 2, one more is admitted.
        let next = queue.submit(Script::ok(5)).await.expect("a slot was free");
        for id in [waiting, next] {
            let done = tokio::time::timeout(PATIENCE, queue.wait(id, None))
                .await
                .expect("finished in time")
                .expect("known");
            assert_eq!(done.status, Status::Succeeded, "{done:?}");
        }
    });
    assert_eq!(model.started.load(Ordering::SeqCst), 3);
}

/// A backend that panics on a worker's task fails that one prediction (kind
/// `backend`; the panic's message is in the log) and frees its slot, and the worker
/// calls another for the prediction queued behind it, with no submit needed. Whether
/// the backend had made the prediction `processing` before it panicked, the
/// `processing` count ends at 0.
#[test]
fn a_backend_panic_fails_only_the_prediction_it_hit() {
    for after_applying in [false, true] {
        let rt = two_threads();
        let model = Scripted::default();
        rt.block_on(async {
            let queue = JobQueue::builder(model.clone())
                .config(QueueConfig::default().capacity(2).concurrency(1))
                .backend(PanicsAtStart::new(after_applying))
                .build()
                .expect("valid");
            let hit = queue.submit(Script::ok(5)).await.expect("admitted");
            let behind = queue.submit(Script::ok(5)).await.expect("admitted");
            let wait = async |id| {
                tokio::time::timeout(PATIENCE, queue.wait(id, None))
                    .await
                    .expect("ended in time")
                    .expect("known")
            };
            let failed = wait(hit).await;
            assert_eq!(failed.status, Status::Failed, "{failed:?}");
            let error = failed.error.expect("an error");
            assert_eq!(error.kind, FailureKind::Backend);
            assert!(error.message.contains("panicked"), "{}", error.message);
            assert_eq!(wait(behind).await.status, Status::Succeeded);
            assert_eq!(model.started.load(Ordering::SeqCst), 1, "only `behind` ran");
            let stats = queue.stats();
            assert_eq!(
                (
                    stats.processing,
                    stats.queued,
                    stats.failed_total,
                    stats.succeeded_total
                ),
                (0, 0, 1, 1),
                "after_applying {after_applying}: {stats:?}"
            );
            // Both slots are free again.
            for _ in 0..2 {
                queue.submit(Script::ok(5)).await.expect("a slot was free");
            }
        });
    }
}
