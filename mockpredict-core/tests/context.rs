//! [`PredictContext`] on the real clock: blocking work started through it stays inside
//! the prediction's concurrency slot, however the prediction ends, and sees the
//! prediction's cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mockpredict_core::{
    JobQueue, Model, ModelError, PredictContext, PredictionId, QueueConfig, Status,
};

/// CPU-bound "inference": spins for the input's milliseconds on the blocking pool,
/// counting the calls running at once and the most ever seen. With `stop_early`, it
/// stops when the prediction is canceled; without, it runs to its end regardless.
#[derive(Clone, Default)]
struct Spinner {
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    stopped_early: Arc<AtomicUsize>,
    stop_early: bool,
}

impl Model for Spinner {
    type Input = u64;
    type Output = u64;

    fn name(&self) -> &str {
        "spinner"
    }

    fn version(&self) -> &str {
        "0"
    }

    async fn predict(&self, _: &u64, ctx: &PredictContext<u64>) -> Result<u64, ModelError> {
        let (input, me) = (ctx.input(), self.clone());
        ctx.blocking(move |cancel| {
            let now = me.running.fetch_add(1, Ordering::SeqCst) + 1;
            me.most.fetch_max(now, Ordering::SeqCst);
            let until = std::time::Instant::now() + Duration::from_millis(*input);
            while std::time::Instant::now() < until {
                if me.stop_early && cancel.is_cancelled() {
                    me.stopped_early.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                std::hint::spin_loop();
            }
            me.running.fetch_sub(1, Ordering::SeqCst);
            Ok(*input)
        })
        .await
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Submits `n` predictions of `ms` each and cancels each shortly after it starts.
async fn submit_and_cancel(queue: &JobQueue<Spinner>, n: usize, ms: u64) -> Vec<PredictionId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(queue.submit(ms).await.expect("admitted"));
    }
    for &id in &ids {
        let mut changes = queue.subscribe(id).await.expect("known");
        while let Some(p) = changes.next().await {
            if p.status == Status::Processing {
                tokio::time::sleep(Duration::from_millis(5)).await;
                queue.cancel(id).await.expect("known");
            }
        }
    }
    ids
}

/// Canceled mid-run, a prediction ends at once, but its slot stays taken until its
/// blocking call returns: at `concurrency(2)` no more than 2 blocking calls ever run.
#[test]
fn canceled_predictions_keep_their_slot_until_blocking_work_returns() {
    let model = Spinner::default();
    runtime().block_on(async {
        let config = QueueConfig::default().concurrency(2).capacity(100);
        let queue = JobQueue::new(model.clone(), config).expect("valid");
        let ids = submit_and_cancel(&queue, 10, 60).await;
        for id in ids {
            let p = queue.wait(id, None).await.expect("known");
            assert_eq!(p.status, Status::Canceled);
        }
        queue.shutdown(Duration::from_secs(10)).await;
        let stats = queue.stats().await;
        assert!(
            stats.blocking_overrun_total >= 5,
            "blocking work outlived its cancel: {stats:?}"
        );
    });
    assert_eq!(model.running.load(Ordering::SeqCst), 0);
    assert_eq!(
        model.most.load(Ordering::SeqCst),
        2,
        "no more than 2 blocking calls ran at once"
    );
}

/// The same bound when predictions time out instead.
#[test]
fn timed_out_predictions_keep_their_slot_until_blocking_work_returns() {
    let model = Spinner::default();
    runtime().block_on(async {
        let config = QueueConfig::default()
            .concurrency(2)
            .capacity(100)
            .deadline(Some(Duration::from_millis(20)));
        let queue = JobQueue::new(model.clone(), config).expect("valid");
        // A new prediction every 10 ms, each timing out 20 ms after admission with
        // 50 ms of blocking work: without the slot kept, four or five would spin at once.
        let mut ids = Vec::new();
        for _ in 0..12 {
            ids.push(queue.submit(50).await.expect("admitted"));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for id in ids {
            let p = queue.wait(id, None).await.expect("known");
            assert_eq!(p.status, Status::Failed, "{p:?}");
        }
        assert!(queue.stats().await.blocking_overrun_total >= 2);
        queue.shutdown(Duration::from_secs(10)).await;
    });
    assert_eq!(model.running.load(Ordering::SeqCst), 0);
    assert!(
        model.most.load(Ordering::SeqCst) <= 2,
        "{} blocking calls ran at once",
        model.most.load(Ordering::SeqCst)
    );
}

/// Blocking work sees the cancellation and can stop early, freeing the slot sooner.
#[test]
fn blocking_work_sees_the_cancel() {
    let model = Spinner {
        stop_early: true,
        ..Spinner::default()
    };
    runtime().block_on(async {
        let config = QueueConfig::default().concurrency(2).capacity(100);
        let queue = JobQueue::new(model.clone(), config).expect("valid");
        let start = tokio::time::Instant::now();
        // Ten 10 s spins, each canceled 5 ms in: done in well under a spin's time.
        submit_and_cancel(&queue, 10, 10_000).await;
        queue.shutdown(Duration::from_secs(30)).await;
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    });
    assert_eq!(model.stopped_early.load(Ordering::SeqCst), 10);
}

/// A panic in blocking work fails that prediction as a panic in `predict` does.
#[test]
fn a_panic_in_blocking_work_fails_the_prediction() {
    struct Panics;
    impl Model for Panics {
        type Input = ();
        type Output = ();
        fn name(&self) -> &str {
            "panics"
        }
        fn version(&self) -> &str {
            "0"
        }
        async fn predict(&self, (): &(), ctx: &PredictContext<()>) -> Result<(), ModelError> {
            ctx.blocking(|_| panic!("blocking inference panicked"))
                .await
        }
    }
    runtime().block_on(async {
        let queue = JobQueue::new(Panics, QueueConfig::default()).expect("valid");
        let p = queue.predict(()).await.expect("admitted");
        assert_eq!(p.status, Status::Failed);
        let error = p.error.expect("an error");
        assert!(
            error.message.contains("blocking inference panicked"),
            "{error}"
        );
    });
}

/// A blocking call that ignores its cancellation holds its slot, but not the queue's
/// shutdown: once the grace period is over, shutdown returns without it.
#[test]
fn blocking_work_that_never_returns_does_not_hold_up_shutdown() {
    let release = Arc::new(std::sync::Barrier::new(2));
    struct Stuck(Arc<std::sync::Barrier>);
    impl Model for Stuck {
        type Input = ();
        type Output = ();
        fn name(&self) -> &str {
            "stuck"
        }
        fn version(&self) -> &str {
            "0"
        }
        async fn predict(&self, (): &(), ctx: &PredictContext<()>) -> Result<(), ModelError> {
            let release = Arc::clone(&self.0);
            ctx.blocking(move |_| {
                release.wait();
                Ok(())
            })
            .await
        }
    }
    let rt = runtime();
    rt.block_on(async {
        let queue =
            JobQueue::new(Stuck(Arc::clone(&release)), QueueConfig::default()).expect("valid");
        let id = queue.submit(()).await.expect("admitted");
        while queue.get(id).await.expect("known").status != Status::Processing {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        queue.cancel(id).await.expect("known");
        let report = tokio::time::timeout(
            Duration::from_secs(5),
            queue.shutdown(Duration::from_millis(50)),
        )
        .await
        .expect("shutdown returned although the blocking call still runs");
        assert!(report.drained, "the canceled prediction had ended");
        assert_eq!(queue.stats().await.blocking_overrun_total, 1);
    });
    release.wait();
}
