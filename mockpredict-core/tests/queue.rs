//! The queue's API with the default store and the mock model, on tokio's paused
//! clock. The behaviour every store must show is in `store_suite/behaviour.rs`.

mod common;

use std::time::Duration;

use common::{Script, Scripted};
use mockpredict_core::{
    Error, JobQueue, MockModel, Model, ModelError, PredictContext, PredictionId, QueueConfig,
    Status,
};
use tokio::time::Instant;

const S: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn default_mock_latency_is_between_8_and_15_seconds() {
    let model = MockModel::new();
    for i in 0..200 {
        let start = Instant::now();
        let input = format!("input {i}");
        let out = model
            .predict(&input, &PredictContext::standalone(input.clone()))
            .await
            .expect("no failures by default");
        let took = start.elapsed();
        assert!(took >= 8 * S && took <= 15 * S, "latency {took:?}");
        let n: u32 = out.result.parse().expect("result is an integer");
        assert!((100..=10_000).contains(&n), "result {n}");
        assert_eq!(out.input, format!("input {i}"));
    }
}

#[tokio::test(start_paused = true)]
async fn thousand_predictions_at_concurrency_100_take_ten_rounds_of_virtual_time() {
    let model = MockModel::new().with_latency("10s".parse().expect("valid"));
    let queue = JobQueue::new(
        model,
        QueueConfig::default().concurrency(100).capacity(1000),
    )
    .expect("valid config");
    let start = Instant::now();
    let mut ids = Vec::new();
    for i in 0..1000 {
        ids.push(queue.submit(i.to_string()).await.expect("capacity 1000"));
    }
    for id in ids {
        let p = queue.wait(id, None).await.expect("known");
        assert_eq!(p.status, Status::Succeeded);
    }
    let took = start.elapsed();
    // 1000 / 100 = 10 rounds of exactly 10 s each.
    assert!(took >= 100 * S && took < 101 * S, "took {took:?}");
    let stats = queue.stats().await;
    assert_eq!(
        (stats.succeeded_total, stats.queued, stats.processing),
        (1000, 0, 0)
    );
}

/// Observers hear of each start with its queue time, when it starts: the second of
/// two 10 s predictions on one worker waited 10 s, and is reported before it ends.
#[tokio::test(start_paused = true)]
async fn observers_hear_of_each_start_with_its_queue_time() {
    use mockpredict_core::Observer;
    use mockpredict_core::store::{Finished, Started};
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Starts(Arc<Mutex<Vec<(PredictionId, Duration)>>>);
    impl Observer for Starts {
        fn on_start(&self, s: &Started) {
            self.0.lock().expect("lock").push((s.id, s.queue_time));
        }
        fn on_finish(&self, _: &Finished) {}
    }
    let starts = Starts::default();
    let model = MockModel::new().with_latency("10s".parse().expect("a latency"));
    let queue = JobQueue::builder(model)
        .config(QueueConfig::default().concurrency(1))
        .observer(starts.clone())
        .build()
        .expect("valid");
    let a = queue.submit("a".into()).await.expect("admitted");
    let b = queue.submit("b".into()).await.expect("admitted");
    tokio::time::sleep(15 * S).await;
    let seen = starts.0.lock().expect("lock").clone();
    assert_eq!(seen, [(a, Duration::ZERO), (b, 10 * S)]);
    assert_eq!(
        queue.get(b).await.expect("known").status,
        Status::Processing
    );
}

/// Before any prediction has finished, the `Retry-After` hint is the model's typical
/// latency (the mock's 8–15 s: 11.5 s), not the 1 s minimum; after, the measured
/// average per running prediction.
#[tokio::test(start_paused = true)]
async fn the_first_retry_hint_comes_from_the_model() {
    let config = QueueConfig::default().capacity(1).concurrency(1);
    let queue = JobQueue::new(MockModel::new(), config).expect("valid");
    let first = queue.submit("a".into()).await.expect("slot");
    let hint = |r: mockpredict_core::Result<PredictionId>| match r {
        Err(Error::QueueFull { retry_after, .. }) => retry_after,
        other => panic!("expected QueueFull, got {other:?}"),
    };
    let before = hint(queue.submit("b".into()).await);
    assert_eq!(before, Duration::from_millis(11_500));
    let done = queue.wait(first, None).await.expect("known");
    let took = done.predict_time.expect("ran");
    queue
        .submit("c".into())
        .await
        .expect("a slot is free again");
    assert_eq!(hint(queue.submit("d".into()).await), took);
}

/// A model whose outputs are clones of one `Arc`: its count tells how many outputs
/// are still in memory.
struct Tokens(std::sync::Arc<()>);

impl Model for Tokens {
    type Input = ();
    type Output = std::sync::Arc<()>;

    fn name(&self) -> &str {
        "tokens"
    }

    fn version(&self) -> &str {
        "0"
    }

    async fn predict(
        &self,
        (): &(),
        _: &PredictContext<()>,
    ) -> Result<std::sync::Arc<()>, ModelError> {
        Ok(std::sync::Arc::clone(&self.0))
    }
}

/// An evicted prediction is gone at once, its output freed with it; expired ones go
/// at the purge when they are due.
#[tokio::test(start_paused = true)]
async fn evicted_predictions_are_freed_at_once_and_expired_ones_at_the_purge() {
    let token = std::sync::Arc::new(());
    let queue = JobQueue::new(
        Tokens(std::sync::Arc::clone(&token)),
        QueueConfig::default()
            .max_retained(1024)
            .result_ttl(60 * S)
            .concurrency(4),
    )
    .expect("valid config");
    // Less this test's handle and the model's.
    let in_memory = || std::sync::Arc::strong_count(&token) - 2;
    tokio::time::advance(S).await;
    let mut first = None;
    for _ in 0..5_000 {
        let id = queue.submit(()).await.expect("admitted");
        first.get_or_insert(id);
        queue.wait(id, None).await.expect("known");
        let retained = queue.stats().await.retained;
        assert_eq!(retained, 1024.min(in_memory()));
        assert_eq!(in_memory(), retained, "evicted outputs still in memory");
    }
    let first = first.expect("submitted");
    assert_eq!(
        queue.get(first).await.expect_err("evicted"),
        Error::NotFound(first)
    );
    tokio::time::sleep(Duration::from_millis(59_500)).await;
    assert_eq!(queue.stats().await.retained, 1024);
    assert_eq!(in_memory(), 1024);
    // All finished within the same virtual instant: all expire at the next purge.
    tokio::time::sleep(S).await;
    assert_eq!(queue.stats().await.retained, 0);
    assert_eq!(in_memory(), 0);
}

#[tokio::test(start_paused = true)]
async fn invalid_configs_are_refused() {
    let model = Scripted::default();
    let err = JobQueue::new(model.clone(), QueueConfig::default().capacity(0))
        .expect_err("zero capacity");
    assert!(matches!(err, Error::InvalidConfig(_)));
    let err =
        JobQueue::new(model, QueueConfig::default().concurrency(0)).expect_err("zero concurrency");
    assert!(matches!(err, Error::InvalidConfig(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_woken_by_its_result_can_submit_again_at_once() {
    // Capacity 1 and back-to-back sync predictions: if the slot were freed after the
    // waiter woke, a submit would sometimes see the queue still full.
    let queue =
        JobQueue::new(Scripted::default(), QueueConfig::default().capacity(1)).expect("valid");
    for _ in 0..1_000 {
        let p = queue
            .predict(Script::ok(0))
            .await
            .expect("the slot is free again");
        assert_eq!(p.status, Status::Succeeded);
    }
    // The same through polling: seeing a terminal status means the slot is free.
    for _ in 0..1_000 {
        let id = queue
            .submit(Script::ok(0))
            .await
            .expect("the slot is free again");
        while !queue.get(id).await.expect("retained").is_finished() {
            tokio::task::yield_now().await;
        }
    }
}

/// A finished prediction converts to a `Result` of its output, or of why it has none.
#[tokio::test(start_paused = true)]
async fn a_prediction_converts_to_a_result() {
    use common::{Script, Scripted};
    use mockpredict_core::{FailureKind, NoOutput};
    let queue =
        JobQueue::new(Scripted::default(), QueueConfig::default().concurrency(1)).expect("valid");
    let ok = queue.predict(Script::ok(10)).await.expect("admitted");
    assert_eq!(*ok.into_result().expect("succeeded"), 10);
    let failed = queue.predict(Script::fail(10)).await.expect("admitted");
    match failed.into_result() {
        Err(NoOutput::Failed(e)) => {
            assert_eq!(
                (e.kind, e.message.as_str()),
                (FailureKind::Model, "scripted failure")
            );
        }
        other => panic!("{other:?}"),
    }
    let running = queue.submit(Script::ok(10_000)).await.expect("admitted");
    let queued = queue.submit(Script::ok(10)).await.expect("admitted");
    let unfinished = queue.get(queued).await.expect("known").into_result();
    assert_eq!(
        unfinished.expect_err("queued"),
        NoOutput::Unfinished(Status::Queued)
    );
    let canceled = queue.cancel(running).await.expect("known").into_result();
    let err = canceled.expect_err("canceled");
    assert_eq!(err, NoOutput::Canceled);
    assert_eq!(err.to_string(), "prediction was canceled");
}
