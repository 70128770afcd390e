//! The queue's workers, on the real clock with millisecond latencies: which runtime a
//! worker is spawned on (a submit from outside any runtime, or from another one), and
//! what becomes of a prediction whose worker stops before it ends (its runtime shut
//! down, or a backend panicked): it ends, and nothing else is lost.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{Script, Scripted};
use mockpredict_core::backend::{
    Backend, Finished, MemoryBackend, MemoryJob, MemoryStamp, Started,
};
use mockpredict_core::{
    Error, FailureKind, InputRef, JobQueue, Outcome, Prediction, PredictionId, QueueConfig, Result,
    Status,
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

/// How [`Faulty`]'s first `start` goes wrong.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Panics before changing anything.
    PanicBefore,
    /// Makes the prediction `processing`, then panics.
    PanicAfter,
    /// Makes the prediction `processing`, then returns an error (say, a store that
    /// applied a write and lost the connection before answering).
    ErrorAfter,
    /// Leaves `start` alone; the first `finish` fails without changing anything.
    FinishFails,
}

/// The in-memory backend, except that its first `start` (or `finish`) goes wrong.
struct Faulty {
    inner: MemoryBackend<Script, u64>,
    armed: AtomicBool,
    fault: Fault,
}

impl Faulty {
    fn new(fault: Fault) -> Self {
        Self {
            inner: MemoryBackend::new(Duration::from_secs(60), 100),
            armed: AtomicBool::new(true),
            fault,
        }
    }
}

impl Backend for Faulty {
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
    async fn start<F>(
        &self,
        job: &Self::Job,
        at: MemoryStamp,
        on_applied: F,
    ) -> Result<Option<Started>>
    where
        F: FnOnce(&Started) + Send,
    {
        let fault = match self.fault {
            Fault::FinishFails => None,
            fault => self.armed.swap(false, Ordering::SeqCst).then_some(fault),
        };
        match fault {
            None | Some(Fault::FinishFails) => self.inner.start(job, at, on_applied).await,
            Some(Fault::PanicBefore) => panic!("the backend's start panicked"),
            Some(Fault::PanicAfter) => {
                self.inner.start(job, at, on_applied).await?;
                panic!("the backend's start panicked");
            }
            Some(Fault::ErrorAfter) => {
                self.inner.start(job, at, on_applied).await?;
                Err(Error::Backend("connection lost after the write".into()))
            }
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
        if matches!(self.fault, Fault::FinishFails) && self.armed.swap(false, Ordering::SeqCst) {
            return Err(Error::Backend("connection lost before the write".into()));
        }
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
    let (queue, model) = queue_in(&rt, QueueConfig::default());
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

/// A runtime that shuts down drops the workers running on it, and with them their
/// models' futures. The prediction each was running ends `canceled`, as at the end of
/// a shutdown's grace period, with its capacity slot given back; what was still
/// queued stays queued and runs once a submit from a live runtime brings up a worker.
/// Before, a running prediction stayed `processing` for good, holding its slot.
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

/// A backend whose `start` panics or fails fails that one prediction (kind
/// `backend`; a panic's message is in the log) and frees its slot, and the prediction
/// queued behind it runs with no submit needed (a panicked worker calls another).
/// Whether the backend had made the prediction `processing` or not, the `processing`
/// count ends at 0.
#[test]
fn a_faulty_backend_start_fails_only_the_prediction_it_hit() {
    for fault in [Fault::PanicBefore, Fault::PanicAfter, Fault::ErrorAfter] {
        let rt = two_threads();
        let model = Scripted::default();
        rt.block_on(async {
            let queue = JobQueue::builder(model.clone())
                .config(QueueConfig::default().capacity(2).concurrency(1))
                .backend(Faulty::new(fault))
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
            assert_eq!(failed.status, Status::Failed, "{fault:?}: {failed:?}");
            let error = failed.error.expect("an error");
            assert_eq!(error.kind, FailureKind::Backend, "{fault:?}");
            let said = match fault {
                Fault::ErrorAfter | Fault::FinishFails => "connection lost",
                Fault::PanicBefore | Fault::PanicAfter => "panicked",
            };
            assert!(error.message.contains(said), "{fault:?}: {}", error.message);
            assert_eq!(wait(behind).await.status, Status::Succeeded, "{fault:?}");
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
                "{fault:?}: {stats:?}"
            );
            // Both slots are free again.
            for _ in 0..2 {
                queue.submit(Script::ok(5)).await.expect("a slot was free");
            }
        });
    }
}

/// A runtime dropped while its thread unwinds from a panic of its own (a test that
/// fails while its runtime holds a worker) ends the prediction that worker was running
/// and leaves the rest queued; the replacement worker its panicking drop calls is
/// dropped with the runtime too, unpolled, and calls no other in turn.
#[test]
fn a_runtime_dropped_by_an_unrelated_panic_loses_nothing() {
    let home = two_threads();
    let (queue, _) = queue_in(&home, QueueConfig::default().capacity(3).concurrency(1));
    let unwound = std::thread::spawn({
        let queue = queue.clone();
        move || {
            let doomed = one_thread();
            doomed.block_on(async {
                let running = queue.submit(Script::ok(LONG_MS)).await.expect("admitted");
                queue.submit(Script::ok(5)).await.expect("admitted");
                until(&queue, running, Status::Processing).await;
            });
            panic!("a test fails (on purpose) while its runtime holds a worker");
        }
    })
    .join();
    assert!(unwound.is_err());
    home.block_on(async {
        let stats = queue.stats();
        assert_eq!(
            (stats.processing, stats.queued, stats.failed_total),
            (0, 1, 1),
            "{stats:?}"
        );
        let next = queue.submit(Script::ok(5)).await.expect("a slot was free");
        let done = tokio::time::timeout(PATIENCE, queue.wait(next, None))
            .await
            .expect("finished in time")
            .expect("known");
        assert_eq!(done.status, Status::Succeeded);
        let stats = queue.stats();
        assert_eq!((stats.processing, stats.queued), (0, 0), "{stats:?}");
    });
}

/// `processing` is counted before a prediction can be seen `processing`: a client
/// that cancels the moment it sees that status never makes the count go below zero
/// (it read `usize::MAX` for an instant when the worker counted after the start).
#[test]
fn the_processing_count_never_reads_below_zero() {
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
                most = queue.stats().processing.max(most);
            }
            most
        }
    });
    rt.block_on(async {
        for _ in 0..1000 {
            let id = queue.submit(Script::ok(1)).await.expect("admitted");
            let canceler = tokio::spawn({
                let queue = queue.clone();
                async move {
                    let mut changes = queue.subscribe(id).await.expect("known");
                    while let Some(p) = changes.next().await {
                        if p.status == Status::Processing {
                            let _ = queue.cancel(id).await;
                        }
                    }
                }
            });
            tokio::time::timeout(PATIENCE, queue.wait(id, None))
                .await
                .expect("ended in time")
                .expect("known");
            canceler.await.expect("the canceler ran");
        }
    });
    stop.store(true, Ordering::Relaxed);
    let most = sampler.join().expect("the sampler ran");
    assert!(most <= CONCURRENCY, "processing read {most}");
    assert_eq!(queue.stats().processing, 0);
}

/// A backend that cannot record a prediction's outcome (its `finish` fails) gets a
/// failure recorded instead, if it can: waiters get an answer, the slot is freed.
#[test]
fn an_outcome_the_backend_cannot_record_becomes_a_failure() {
    let rt = two_threads();
    let model = Scripted::default();
    rt.block_on(async {
        let queue = JobQueue::builder(model.clone())
            .config(QueueConfig::default().capacity(1).concurrency(1))
            .backend(Faulty::new(Fault::FinishFails))
            .build()
            .expect("valid");
        let id = queue.submit(Script::ok(5)).await.expect("admitted");
        let ended = tokio::time::timeout(PATIENCE, queue.wait(id, None))
            .await
            .expect("ended in time")
            .expect("known");
        assert_eq!(ended.status, Status::Failed, "{ended:?}");
        let error = ended.error.expect("an error");
        assert_eq!(error.kind, FailureKind::Backend);
        assert!(
            error.message.contains("connection lost"),
            "{}",
            error.message
        );
        assert_eq!(queue.stats().processing, 0);
        let next = queue
            .submit(Script::ok(5))
            .await
            .expect("the slot was freed");
        let done = tokio::time::timeout(PATIENCE, queue.wait(next, None))
            .await
            .expect("finished in time")
            .expect("known");
        assert_eq!(done.status, Status::Succeeded);
    });
}
