// The behavioural suite every store must pass, included by each store's test file
// (`tests/memory_store.rs`), which defines `TheStore` and `make_store(&QueueConfig)`.
// It runs the queue through its public API on tokio's paused clock: every
// multi-second latency runs in virtual time.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Action, Script, Scripted};
use mockpredict_core::store::{Finished, Store, Watch};
use mockpredict_core::{
    Error, FailureKind, JobQueue, Observer, Outcome, PredictionId, QueueConfig, Status,
};
use proptest::prelude::*;
use tokio::time::Instant;

const S: Duration = Duration::from_secs(1);

/// A queue over this store.
type Q = JobQueue<Scripted, TheStore>;

fn queue(config: QueueConfig) -> (Q, Scripted) {
    let model = Scripted::default();
    let queue = JobQueue::builder(model.clone())
        .store(make_store(&config))
        .config(config)
        .build()
        .expect("valid config");
    (queue, model)
}

#[tokio::test(start_paused = true)]
async fn capacity_overflow_fails_fast_with_queue_full_and_a_retry_hint() {
    let (queue, _) = queue(QueueConfig::default().capacity(2).concurrency(1));
    let a = queue.submit(Script::ok(10_000)).await.expect("slot 1");
    queue.submit(Script::ok(10_000)).await.expect("slot 2");
    match queue.submit(Script::ok(1)).await {
        Err(Error::QueueFull {
            capacity,
            retry_after,
        }) => {
            assert_eq!(capacity, 2);
            assert!(retry_after >= S, "retry_after {retry_after:?}");
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    assert_eq!(queue.stats().await.rejected_total, 1);
    // A finished prediction frees its slot.
    queue.wait(a, None).await.expect("known");
    queue
        .submit(Script::ok(1))
        .await
        .expect("a slot is free again");
}

/// Slots are counted on two sides (taken by submits, freed by finishes): filled
/// and drained over and over, the queue admits exactly `capacity` each time and
/// refuses the next, and reports what is in flight.
#[tokio::test(start_paused = true)]
async fn capacity_holds_exactly_over_many_fills_and_drains() {
    let (queue, _) = queue(QueueConfig::default().capacity(3).concurrency(2));
    for round in 0..50 {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(queue.submit(Script::ok(100)).await.expect("a free slot"));
        }
        assert!(
            matches!(
                queue.submit(Script::ok(1)).await,
                Err(Error::QueueFull { .. })
            ),
            "round {round}: a fourth was admitted"
        );
        let stats = queue.stats().await;
        assert_eq!(
            stats.queued + stats.processing,
            3,
            "round {round}: {stats:?}"
        );
        for id in ids {
            queue.wait(id, None).await.expect("known");
        }
        let stats = queue.stats().await;
        assert_eq!(
            stats.queued + stats.processing,
            0,
            "round {round}: {stats:?}"
        );
    }
    assert_eq!(queue.stats().await.rejected_total, 50);
}

#[tokio::test(start_paused = true)]
async fn cancel_while_queued_means_it_never_runs() {
    let (queue, model) = queue(QueueConfig::default().concurrency(1));
    let a = queue.submit(Script::ok(10_000)).await.expect("admitted");
    let b = queue.submit(Script::ok(10_000)).await.expect("admitted");
    tokio::time::sleep(S).await;
    let canceled = queue.cancel(b).await.expect("known");
    assert_eq!(canceled.status, Status::Canceled);
    assert_eq!(canceled.started_at, None);
    assert_eq!(
        queue.wait(a, None).await.expect("known").status,
        Status::Succeeded
    );
    tokio::time::sleep(60 * S).await;
    assert_eq!(
        model.started.load(Ordering::SeqCst),
        1,
        "b must never start"
    );
    let stats = queue.stats().await;
    assert_eq!(
        (stats.canceled_total, stats.succeeded_total, stats.queued),
        (1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_while_processing_drops_the_model_future() {
    let (queue, model) = queue(QueueConfig::default());
    let id = queue.submit(Script::ok(10_000)).await.expect("admitted");
    tokio::time::sleep(2 * S).await;
    assert_eq!(
        queue.get(id).await.expect("known").status,
        Status::Processing
    );
    let p = queue.cancel(id).await.expect("known");
    assert_eq!(p.status, Status::Canceled);
    assert!(p.started_at.is_some());
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        model.dropped_unfinished.load(Ordering::SeqCst),
        1,
        "future dropped mid-sleep"
    );
    // Canceling again reports the terminal status it already has.
    assert_eq!(
        queue.cancel(id).await.expect("known").status,
        Status::Canceled
    );
    assert_eq!(queue.stats().await.processing, 0);
}

#[tokio::test(start_paused = true)]
async fn cancel_after_success_keeps_the_success() {
    let (queue, _) = queue(QueueConfig::default());
    let id = queue.submit(Script::ok(10)).await.expect("admitted");
    queue.wait(id, None).await.expect("known");
    let p = queue.cancel(id).await.expect("known");
    assert_eq!(p.status, Status::Succeeded);
    assert_eq!(p.output.as_deref(), Some(&10));
}

#[tokio::test(start_paused = true)]
async fn deadline_while_queued_fails_without_running() {
    let config = QueueConfig::default().concurrency(1).deadline(Some(5 * S));
    let (queue, model) = queue(config);
    let a = queue.submit(Script::ok(10_000)).await.expect("admitted");
    let b = queue.submit(Script::ok(1)).await.expect("admitted");
    let start = Instant::now();
    let pb = queue.wait(b, None).await.expect("known");
    assert_eq!(start.elapsed(), 5 * S);
    assert_eq!(pb.status, Status::Failed);
    let err = pb.error.expect("failed has an error");
    assert_eq!(err.kind, FailureKind::Timeout);
    assert!(err.message.contains("queued"), "{}", err.message);
    assert_eq!(pb.started_at, None);
    // a was processing and also passes its 5 s deadline.
    let pa = queue.wait(a, None).await.expect("known");
    assert_eq!(pa.error.expect("timed out").kind, FailureKind::Timeout);
    assert_eq!(model.started.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn deadline_while_processing_stops_the_model() {
    let (queue, model) = queue(QueueConfig::default().deadline(Some(5 * S)));
    let p = queue.predict(Script::ok(10_000)).await.expect("admitted");
    assert_eq!(p.status, Status::Failed);
    let err = p.error.expect("failed has an error");
    assert_eq!(err.kind, FailureKind::Timeout);
    assert!(err.message.contains("processing"), "{}", err.message);
    assert_eq!(p.predict_time, Some(5 * S));
    assert_eq!(model.dropped_unfinished.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn finished_predictions_expire_after_the_ttl() {
    let (queue, _) = queue(QueueConfig::default().result_ttl(60 * S));
    let id = queue.submit(Script::ok(1000)).await.expect("admitted");
    queue.wait(id, None).await.expect("known");
    tokio::time::sleep(59 * S).await;
    assert_eq!(
        queue.get(id).await.expect("still retained").status,
        Status::Succeeded
    );
    tokio::time::sleep(2 * S).await;
    assert_eq!(
        queue.get(id).await.expect_err("expired"),
        Error::NotFound(id)
    );
    assert_eq!(queue.stats().await.retained, 0);
}

#[tokio::test(start_paused = true)]
async fn a_purge_larger_than_one_batch_removes_every_expired_prediction() {
    // More than the purge takes per lock (256): every batch is removed, and a
    // prediction that finished later is kept.
    let (queue, _) = queue(QueueConfig::default().result_ttl(60 * S).concurrency(1000));
    let ids: Vec<_> =
        futures_util::future::join_all((0..700).map(|_| queue.submit(Script::ok(1000))))
            .await
            .into_iter()
            .map(|id| id.expect("admitted"))
            .collect();
    for &id in &ids {
        queue.wait(id, None).await.expect("known");
    }
    tokio::time::sleep(30 * S).await;
    let late = queue.submit(Script::ok(1000)).await.expect("admitted");
    queue.wait(late, None).await.expect("known");
    tokio::time::sleep(35 * S).await;
    for &id in &ids {
        assert_eq!(
            queue.get(id).await.expect_err("expired"),
            Error::NotFound(id)
        );
    }
    assert_eq!(queue.stats().await.retained, 1);
    assert_eq!(
        queue.get(late).await.expect("still retained").status,
        Status::Succeeded
    );
}

#[tokio::test(start_paused = true)]
async fn unfinished_predictions_never_expire() {
    let (queue, _) = queue(QueueConfig::default().result_ttl(S));
    let id = queue.submit(Script::ok(100_000)).await.expect("admitted");
    tokio::time::sleep(50 * S).await;
    assert_eq!(
        queue.get(id).await.expect("running").status,
        Status::Processing
    );
}

#[tokio::test(start_paused = true)]
async fn max_retained_forgets_the_oldest_first() {
    let (queue, _) = queue(QueueConfig::default().max_retained(3).concurrency(1));
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = queue.submit(Script::ok(10)).await.expect("admitted");
        queue.wait(id, None).await.expect("known");
        ids.push(id);
    }
    for id in &ids[..2] {
        assert_eq!(
            queue.get(*id).await.expect_err("evicted"),
            Error::NotFound(*id)
        );
    }
    for id in &ids[2..] {
        assert!(queue.get(*id).await.is_ok());
    }
    assert_eq!(queue.stats().await.retained, 3);
}

/// A prediction that runs while many times `max_retained` others are admitted,
/// finished and evicted is still found, and so is every retained one.
#[tokio::test(start_paused = true)]
async fn a_long_prediction_outlives_many_laps_of_newer_ones() {
    let (queue, _) = queue(
        QueueConfig::default()
            .max_retained(100)
            .result_ttl(3 * 3600 * S)
            .concurrency(2)
            .capacity(10),
    );
    let long = queue.submit(Script::ok(3_600_000)).await.expect("admitted");
    let mut recent = std::collections::VecDeque::new();
    for _ in 0..20_000 {
        let id = queue.submit(Script::ok(0)).await.expect("admitted");
        queue.wait(id, None).await.expect("known");
        recent.push_back(id);
        if recent.len() > 100 {
            let gone = recent.pop_front().expect("some");
            assert_eq!(
                queue.get(gone).await.expect_err("evicted"),
                Error::NotFound(gone)
            );
        }
        assert_eq!(
            queue.get(long).await.expect("still known").status,
            Status::Processing
        );
    }
    for id in &recent {
        assert_eq!(
            queue.get(*id).await.expect("retained").status,
            Status::Succeeded
        );
    }
    let done = queue.wait(long, None).await.expect("known");
    assert_eq!(done.status, Status::Succeeded);
    assert_eq!(queue.stats().await.retained, 100);
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_running_predictions_and_refuses_new_ones() {
    let (queue, _) = queue(QueueConfig::default().concurrency(2));
    let ids: Vec<PredictionId> = futures_ids(&queue, 3, 10_000).await;
    let q = queue.clone();
    let report = tokio::spawn(async move { q.shutdown(60 * S).await });
    tokio::task::yield_now().await;
    assert_eq!(queue.submit(Script::ok(1)).await, Err(Error::ShuttingDown));
    assert!(!queue.is_ready().await);
    let report = report.await.expect("no panic");
    assert!(report.drained);
    assert_eq!(report.canceled, 0);
    for id in ids {
        assert_eq!(
            queue.get(id).await.expect("retained").status,
            Status::Succeeded
        );
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_what_outlasts_the_grace_period() {
    let (queue, model) = queue(QueueConfig::default().concurrency(2));
    let ids = futures_ids(&queue, 3, 100_000).await;
    let start = Instant::now();
    let report = queue.shutdown(5 * S).await;
    assert_eq!(start.elapsed(), 5 * S);
    assert!(!report.drained);
    assert_eq!(report.canceled, 3);
    for id in ids {
        assert_eq!(
            queue.get(id).await.expect("retained").status,
            Status::Canceled
        );
    }
    assert_eq!(
        model.dropped_unfinished.load(Ordering::SeqCst),
        2,
        "both running ones dropped"
    );
    let stats = queue.stats().await;
    assert_eq!(
        (stats.canceled_total, stats.queued, stats.processing),
        (3, 0, 0)
    );
}

async fn futures_ids(queue: &Q, n: usize, ms: u64) -> Vec<PredictionId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(queue.submit(Script::ok(ms)).await.expect("admitted"));
    }
    ids
}

#[tokio::test(start_paused = true)]
async fn a_panicking_model_fails_that_prediction_only() {
    let (queue, _) = queue(QueueConfig::default().concurrency(1));
    let bad = queue.predict(Script::panic(10)).await.expect("admitted");
    assert_eq!(bad.status, Status::Failed);
    let err = bad.error.expect("failed has an error");
    assert_eq!(err.kind, FailureKind::Panic);
    assert!(err.message.contains("scripted panic"), "{}", err.message);
    let good = queue
        .predict(Script::ok(10))
        .await
        .expect("queue still works");
    assert_eq!(good.status, Status::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_model_error_fails_the_prediction_with_its_message() {
    let (queue, _) = queue(QueueConfig::default());
    let p = queue.predict(Script::fail(10)).await.expect("admitted");
    assert_eq!(p.status, Status::Failed);
    let err = p.error.expect("failed has an error");
    assert_eq!(
        (err.kind, err.message.as_str()),
        (FailureKind::Model, "scripted failure")
    );
    assert_eq!(queue.stats().await.failed_total, 1);
}

#[tokio::test(start_paused = true)]
async fn wait_with_a_timeout_returns_the_unfinished_snapshot() {
    let (queue, _) = queue(QueueConfig::default());
    let id = queue.submit(Script::ok(10_000)).await.expect("admitted");
    let start = Instant::now();
    let p = queue.wait(id, Some(3 * S)).await.expect("known");
    assert_eq!(start.elapsed(), 3 * S);
    assert_eq!(p.status, Status::Processing);
    let p = queue.wait(id, Some(60 * S)).await.expect("known");
    assert_eq!(p.status, Status::Succeeded);
    assert_eq!(
        start.elapsed(),
        10 * S,
        "woken at completion, not at the timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_ids_are_not_found() {
    let (queue, _) = queue(QueueConfig::default());
    let id = PredictionId::new_v4();
    assert_eq!(
        queue.get(id).await.expect_err("unknown"),
        Error::NotFound(id)
    );
    assert_eq!(
        queue.cancel(id).await.expect_err("unknown"),
        Error::NotFound(id)
    );
    assert!(queue.subscribe(id).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn snapshots_carry_times_and_model_time() {
    let (queue, _) = queue(QueueConfig::default().concurrency(1));
    let _a = queue.submit(Script::ok(2000)).await.expect("admitted");
    let b = queue.submit(Script::ok(3000)).await.expect("admitted");
    let p = queue.wait(b, None).await.expect("known");
    assert_eq!(p.queue_time, Some(2 * S));
    assert_eq!(p.predict_time, Some(3 * S));
    let started = p.started_at.expect("started");
    let completed = p.completed_at.expect("completed");
    assert_eq!(
        started.duration_since(p.created_at).expect("ordered"),
        2 * S
    );
    assert_eq!(completed.duration_since(started).expect("ordered"), 3 * S);
}

#[tokio::test(start_paused = true)]
async fn a_busy_worker_starts_the_next_prediction_when_the_last_one_completes() {
    let (queue, _) = queue(QueueConfig::default().concurrency(1));
    let a = queue.submit(Script::ok(2000)).await.expect("admitted");
    tokio::time::sleep(S / 2).await;
    let b = queue.submit(Script::ok(1000)).await.expect("admitted");
    let pb = queue.wait(b, None).await.expect("known");
    let pa = queue.get(a).await.expect("known");
    assert_eq!(pb.started_at, pa.completed_at);
    assert_eq!(pb.queue_time, Some(S * 3 / 2));
    assert_eq!(pb.predict_time, Some(S));
    // Idle in between: the next prediction starts at its own reading.
    tokio::time::sleep(S).await;
    let c = queue.submit(Script::ok(1000)).await.expect("admitted");
    let pc = queue.wait(c, None).await.expect("known");
    assert_eq!(pc.started_at, Some(pc.created_at));
    assert_eq!(pc.queue_time, Some(Duration::ZERO));
    assert_eq!(
        pc.created_at
            .duration_since(pb.completed_at.expect("completed"))
            .expect("ordered"),
        S
    );
}

#[tokio::test(start_paused = true)]
async fn a_subscription_reports_every_status_in_order_then_ends() {
    let (queue, _) = queue(QueueConfig::default().concurrency(1));
    let _first = queue.submit(Script::ok(1000)).await.expect("admitted");
    let id = queue.submit(Script::ok(1000)).await.expect("admitted");
    let mut sub = queue.subscribe(id).await.expect("known");
    let mut seen = Vec::new();
    while let Some(p) = sub.next().await {
        seen.push(p.status);
    }
    assert_eq!(
        seen,
        [Status::Queued, Status::Processing, Status::Succeeded]
    );
}

#[tokio::test(start_paused = true)]
async fn a_late_subscription_still_reports_the_processing_step() {
    let (queue, _) = queue(QueueConfig::default());
    let id = queue.submit(Script::ok(1000)).await.expect("admitted");
    let mut sub = queue.subscribe(id).await.expect("known");
    assert_eq!(sub.next().await.map(|p| p.status), Some(Status::Queued));
    // Let it finish before looking again: the processing step happened unseen.
    tokio::time::sleep(5 * S).await;
    assert_eq!(sub.next().await.map(|p| p.status), Some(Status::Processing));
    let last = sub.next().await.expect("terminal event");
    assert_eq!(last.status, Status::Succeeded);
    assert_eq!(last.output.as_deref(), Some(&1000));
    assert!(sub.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn predictions_start_in_admission_order() {
    let (queue, _) = queue(QueueConfig::default().concurrency(1));
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(queue.submit(Script::ok(1000)).await.expect("admitted"));
    }
    let mut starts = Vec::new();
    for id in ids {
        starts.push(
            queue
                .wait(id, None)
                .await
                .expect("known")
                .started_at
                .expect("ran"),
        );
    }
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "FIFO: {starts:?}");
}

#[tokio::test(start_paused = true)]
async fn the_observer_hears_every_terminal_transition() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<Status>>>);
    impl mockpredict_core::Observer for Log {
        fn on_finish(&self, f: &mockpredict_core::store::Finished) {
            self.0.lock().expect("not poisoned").push(f.status);
        }
    }
    let log = Log::default();
    let queue = JobQueue::builder(Scripted::default())
        .observer(log.clone())
        .build()
        .expect("valid");
    queue.predict(Script::ok(1)).await.expect("admitted");
    queue.predict(Script::fail(1)).await.expect("admitted");
    let id = queue.submit(Script::ok(1000)).await.expect("admitted");
    queue.cancel(id).await.expect("known");
    assert_eq!(
        *log.0.lock().expect("not poisoned"),
        [Status::Succeeded, Status::Failed, Status::Canceled]
    );
}

#[tokio::test(start_paused = true)]
async fn idle_workers_are_woken_by_the_next_submits() {
    // `enqueue` wakes at most one idle worker per waiting prediction and none
    // beyond: a miscount would leave a prediction queued behind a sleeping worker.
    for concurrency in 1..=3 {
        let (queue, _) = queue(QueueConfig::default().concurrency(concurrency));
        for round in 1..=4 {
            let ids: Vec<_> =
                futures_util::future::join_all((0..round).map(|_| queue.submit(Script::ok(100))))
                    .await;
            for id in ids {
                let p = tokio::time::timeout(10 * S, queue.wait(id.expect("admitted"), None))
                    .await
                    .expect("a worker took it")
                    .expect("known");
                assert_eq!(p.status, Status::Succeeded);
            }
            // Every worker goes idle before the next round.
            tokio::time::sleep(S).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_from_many_tasks_never_strand_a_prediction() {
    // Workers go idle between bursts and are woken by the next one; `enqueue` skips
    // the wake-up when enough are already woken, so a lost wake-up would leave a
    // prediction queued forever and the wait below would time out.
    for concurrency in 1..=3 {
        bursts(queue(QueueConfig::default().concurrency(concurrency)).0).await;
    }
}

async fn bursts(queue: Q) {
    let mut tasks = Vec::new();
    for task in 0..4 {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            for burst in 0..100 {
                let ids: Vec<_> = futures_util::future::join_all(
                    (0..(burst + task) % 5 + 1).map(|_| queue.submit(Script::ok(0))),
                )
                .await;
                for id in ids {
                    let p = queue.wait(id.expect("admitted"), None).await;
                    assert_eq!(p.expect("known").status, Status::Succeeded);
                }
            }
        }));
    }
    tokio::time::timeout(60 * S, async {
        for t in tasks {
            t.await.expect("no panic");
        }
    })
    .await
    .expect("every prediction finished");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_stops_every_background_task() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let (queue, _) = queue(QueueConfig::default().deadline(Some(60 * S)).concurrency(4));
    for _ in 0..4 {
        queue.submit(Script::ok(10)).await.expect("admitted");
    }
    let id = queue.submit(Script::ok(10)).await.expect("admitted");
    queue.wait(id, None).await.expect("known");
    // Workers, the purge task and the deadline sweeper are alive now.
    assert!(
        metrics.num_alive_tasks() >= 3,
        "{} tasks",
        metrics.num_alive_tasks()
    );
    drop(queue);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        metrics.num_alive_tasks(),
        0,
        "a background task outlived the queue"
    );
}

#[tokio::test(start_paused = true)]
async fn durations_too_long_to_represent_mean_forever_and_never_panic() {
    let config = QueueConfig::default()
        .deadline(Some(Duration::MAX))
        .result_ttl(Duration::MAX);
    let (queue, _) = queue(config);
    let p = queue
        .predict(Script::ok(1000))
        .await
        .expect("a MAX deadline is no deadline");
    assert_eq!(p.status, Status::Succeeded);
    let id = queue.submit(Script::ok(1000)).await.expect("admitted");
    let p = queue
        .wait(id, Some(Duration::MAX))
        .await
        .expect("a MAX timeout is no timeout");
    assert_eq!(p.status, Status::Succeeded);
    tokio::time::sleep(3600 * S).await;
    assert!(queue.get(id).await.is_ok(), "a MAX ttl never expires");
}

#[derive(Debug, Clone)]
enum Op {
    Submit(u64, Action),
    Cancel(usize),
    Advance(u64),
    Shutdown(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..3_000, prop_oneof![6 => Just(Action::Answer), 1 => Just(Action::Fail), 1 => Just(Action::Panic)])
            .prop_map(|(ms, a)| Op::Submit(ms, a)),
        2 => (0usize..64).prop_map(Op::Cancel),
        3 => (0u64..2_000).prop_map(Op::Advance),
        1 => (0u64..2_000).prop_map(Op::Shutdown),
    ]
}

#[derive(Clone, Default)]
struct Terminals(Arc<Mutex<Vec<Finished>>>);

impl Observer for Terminals {
    fn on_finish(&self, f: &Finished) {
        self.0.lock().expect("not poisoned").push(*f);
    }
}

fn rank(s: Status) -> u8 {
    match s {
        Status::Queued => 0,
        Status::Processing => 1,
        _ => 2,
    }
}

fn check(ops: Vec<Op>, capacity: usize, concurrency: usize, deadline: Option<u64>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let terminals = Terminals::default();
        let config = QueueConfig::default()
            .capacity(capacity)
            .concurrency(concurrency)
            .deadline(deadline.map(Duration::from_millis));
        let queue = JobQueue::builder(Scripted::default())
            .store(make_store(&config))
            .config(config)
            .observer(terminals.clone())
            .build()
            .expect("valid");
        let mut ids: Vec<PredictionId> = Vec::new();
        let mut seen: HashMap<PredictionId, Status> = HashMap::new();
        let mut subs = Vec::new();
        let mut shutdown = None;
        for op in ops {
            match op {
                Op::Submit(ms, action) => {
                    match queue
                        .submit(Script {
                            latency: Duration::from_millis(ms),
                            action,
                        })
                        .await
                    {
                        Ok(id) => {
                            ids.push(id);
                            let mut sub = queue.subscribe(id).await.expect("just admitted");
                            subs.push(tokio::spawn(async move {
                                let mut statuses = Vec::new();
                                while let Some(p) = sub.next().await {
                                    statuses.push(p.status);
                                }
                                statuses
                            }));
                        }
                        Err(Error::QueueFull { .. } | Error::ShuttingDown) => {}
                        Err(e) => panic!("unexpected submit error {e}"),
                    }
                }
                Op::Cancel(i) if !ids.is_empty() => {
                    let id = ids[i % ids.len()];
                    let p = queue.cancel(id).await.expect("retained");
                    assert!(p.status.is_terminal(), "cancel left {id} {}", p.status);
                }
                Op::Cancel(_) => {}
                Op::Advance(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                Op::Shutdown(grace) if shutdown.is_none() => {
                    let q = queue.clone();
                    shutdown = Some(tokio::spawn(async move {
                        q.shutdown(Duration::from_millis(grace)).await
                    }));
                }
                Op::Shutdown(_) => {}
            }
            for id in &ids {
                let now = queue.get(*id).await.expect("retained").status;
                if let Some(before) = seen.insert(*id, now) {
                    assert!(rank(before) <= rank(now), "{id} went {before} -> {now}");
                    if before.is_terminal() {
                        assert_eq!(before, now, "{id} changed terminal status");
                    }
                }
            }
        }
        let report = match shutdown {
            Some(h) => h.await.expect("shutdown task"),
            None => queue.shutdown(Duration::from_secs(1)).await,
        };
        let _ = report;
        for id in &ids {
            assert!(
                queue.get(*id).await.expect("retained").status.is_terminal(),
                "{id} unfinished"
            );
        }
        for sub in subs {
            let statuses = sub.await.expect("subscriber");
            assert!(
                statuses.windows(2).all(|w| rank(w[0]) < rank(w[1])),
                "{statuses:?}"
            );
            assert!(
                statuses.last().is_some_and(|s| s.is_terminal()),
                "{statuses:?}"
            );
            assert_eq!(statuses.iter().filter(|s| s.is_terminal()).count(), 1);
        }
        let terminals = terminals.0.lock().expect("not poisoned").clone();
        assert_eq!(
            terminals.len(),
            ids.len(),
            "one terminal transition per admitted prediction"
        );
        let mut per_id: HashMap<PredictionId, usize> = HashMap::new();
        for f in &terminals {
            *per_id.entry(f.id).or_default() += 1;
            assert!(!f.previous.is_terminal());
            assert!(f.status.is_terminal());
        }
        assert!(per_id.values().all(|n| *n == 1));
        let stats = queue.stats().await;
        assert_eq!(
            stats.succeeded_total + stats.failed_total + stats.canceled_total,
            stats.submitted_total
        );
        assert_eq!(stats.submitted_total, ids.len() as u64);
        assert_eq!((stats.queued, stats.processing), (0, 0));
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn statuses_only_move_forward_and_end_exactly_once(
        ops in prop::collection::vec(op(), 1..60),
        capacity in 1usize..12,
        concurrency in 1usize..4,
        deadline in prop::option::of(100u64..4_000),
    ) {
        check(ops, capacity, concurrency, deadline);
    }
}

/// Admission is one atomic step in the store: submits racing on several threads
/// never overshoot the capacity, and refusals free nothing that was admitted.
#[test]
fn capacity_holds_exactly_under_concurrent_submits() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (queue, _) = queue(QueueConfig::default().capacity(100).concurrency(10));
        for round in 0..5 {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let queue = queue.clone();
                    tokio::spawn(async move {
                        let mut ids = Vec::new();
                        for _ in 0..50 {
                            match queue.submit(Script::ok(3_600_000)).await {
                                Ok(id) => ids.push(id),
                                Err(Error::QueueFull { .. }) => {}
                                Err(e) => panic!("unexpected {e}"),
                            }
                        }
                        ids
                    })
                })
                .collect();
            let mut admitted = Vec::new();
            for t in tasks {
                admitted.extend(t.await.expect("submitter"));
            }
            assert_eq!(admitted.len(), 100, "round {round}");
            let stats = queue.stats().await;
            assert_eq!(stats.queued + stats.processing, 100, "round {round}: {stats:?}");
            for id in admitted {
                queue.cancel(id).await.expect("known");
            }
            assert_eq!(queue.stats().await.queued + queue.stats().await.processing, 0);
        }
    });
}

/// The store's lease operations: a claim's token renews and releases it, a stale
/// token does neither, a released prediction is claimed again (first in line), and
/// of two terminal writes the first wins.
#[tokio::test(start_paused = true)]
async fn leases_renew_release_and_the_first_terminal_write_wins() {
    let store = make_store(&QueueConfig::default());
    let (a, b) = (PredictionId::new_v4(), PredictionId::new_v4());
    assert!(store.admit(a, Script::ok(1), 2).await.expect("store"));
    assert!(store.admit(b, Script::ok(1), 2).await.expect("store"));
    assert!(!store.admit(PredictionId::new_v4(), Script::ok(1), 2).await.expect("store"));
    let first = store.claim().await.expect("store").expect("queued");
    assert_eq!(first.id, a, "admission order");
    assert!(store.renew(a, &first.lease).await.expect("store"));
    assert!(store.release(a, &first.lease).await.expect("store"));
    assert_eq!(store.read(a).await.expect("store").expect("known").status, Status::Queued);
    assert!(!store.renew(a, &first.lease).await.expect("store"), "released");
    let again = store.claim().await.expect("store").expect("queued");
    assert_eq!(again.id, a, "a released prediction is first in line");
    assert_ne!(again.lease.token, first.lease.token);
    assert!(!store.release(a, &first.lease).await.expect("store"), "a stale token");
    let done = store.finish(a, Outcome::Succeeded(7)).await.expect("store");
    assert_eq!(done.map(|d| (d.previous, d.status)), Some((Status::Processing, Status::Succeeded)));
    assert!(store.finish(a, Outcome::Canceled).await.expect("store").is_none(), "first wins");
    assert!(!store.renew(a, &again.lease).await.expect("store"), "finished");
    let p = store.read(a).await.expect("store").expect("known");
    assert_eq!((p.status, p.output.as_deref()), (Status::Succeeded, Some(&7)));
    // Cancel from anywhere is a finish.
    let canceled = store.finish(b, Outcome::Canceled).await.expect("store").expect("applied");
    assert_eq!(canceled.previous, Status::Queued);
    assert!(store.claim().await.expect("store").is_none(), "a canceled one is never claimed");
    let counts = store.counts().await.expect("store");
    assert_eq!((counts.queued, counts.processing, counts.retained), (0, 0, 2));
}

/// A watch made before a change sees it, even when it starts waiting after it; an
/// unknown ID has no watch.
#[tokio::test(start_paused = true)]
async fn a_watch_never_misses_a_change() {
    let store = make_store(&QueueConfig::default());
    let id = PredictionId::new_v4();
    assert!(store.admit(id, Script::ok(1), 1).await.expect("store"));
    let mut watch = store.watch(id).await.expect("store").expect("known");
    store.finish(id, Outcome::Canceled).await.expect("store");
    tokio::time::timeout(S, watch.changed())
        .await
        .expect("the change before the wait is seen");
    assert!(
        tokio::time::timeout(S, watch.changed()).await.is_err(),
        "no change since"
    );
    assert!(store.watch(PredictionId::new_v4()).await.expect("store").is_none());
}

/// With `max_retained` 0 nothing is kept, but whoever waits for a prediction (sync,
/// long-poll, a subscription, the cancel itself) still gets its end.
#[tokio::test(start_paused = true)]
async fn waiters_see_results_that_are_not_kept() {
    let (queue, _) = queue(QueueConfig::default().max_retained(0).concurrency(1));
    let p = queue.predict(Script::ok(10)).await.expect("admitted");
    assert_eq!(p.status, Status::Succeeded);
    assert_eq!(p.output.as_deref(), Some(&10));
    let id = queue.submit(Script::ok(10)).await.expect("admitted");
    let mut changes = queue.subscribe(id).await.expect("known");
    let waited = queue.wait(id, None).await.expect("known");
    assert_eq!(waited.status, Status::Succeeded);
    let mut seen = Vec::new();
    while let Some(p) = changes.next().await {
        seen.push(p.status);
    }
    assert_eq!(seen.last(), Some(&Status::Succeeded), "{seen:?}");
    assert_eq!(queue.get(id).await.expect_err("not kept"), Error::NotFound(id));
    let long = queue.submit(Script::ok(10_000)).await.expect("admitted");
    assert_eq!(
        queue.cancel(long).await.expect("known when canceled").status,
        Status::Canceled
    );
    assert_eq!(queue.stats().await.retained, 0);
}

/// A submit that races the end of a shutdown is refused or canceled, never left
/// queued with no worker to run it.
#[test]
fn a_submit_racing_shutdown_is_never_stranded() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for _ in 0..50 {
            let (queue, _) = queue(QueueConfig::default().concurrency(1));
            queue.submit(Script::ok(3_600_000)).await.expect("admitted");
            let submitter = tokio::spawn({
                let queue = queue.clone();
                async move {
                    let mut ids = Vec::new();
                    while let Ok(id) = queue.submit(Script::ok(1)).await {
                        ids.push(id);
                        tokio::task::yield_now().await;
                    }
                    ids
                }
            });
            tokio::task::yield_now().await;
            queue.shutdown(Duration::ZERO).await;
            for id in submitter.await.expect("submitter") {
                let p = queue.get(id).await.expect("kept");
                assert!(p.is_finished(), "{id} left {}", p.status);
            }
        }
    });
}
