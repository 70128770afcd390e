//! [`JobQueue`]: the public API over a [`Store`] (submit, get, wait, cancel, subscribe,
//! predict, stats, shutdown) and the per-process work under it (workers bounded by a
//! semaphore, deadlines, draining).
//!
//! - `builder`: [`JobQueueBuilder`], which starts the background tasks.
//! - `config`: [`QueueConfig`], [`Stats`], [`ShutdownReport`], [`Observer`].
//! - `worker`: the dispatcher, the workers, the deadline sweeper and the purge.
//! - `subscription`: [`Subscription`], one prediction's status changes.

mod builder;
mod config;
mod subscription;
mod worker;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use builder::JobQueueBuilder;
pub use config::{Observer, QueueConfig, ShutdownReport, Stats};
pub use subscription::Subscription;

use crate::store::{Finished, MemoryStore, Store, Watch};
use crate::{Error, Model, Outcome, Prediction, PredictionError, PredictionId, Result, Status};

/// The async job queue: a cheap, cloneable handle over shared state.
///
/// Predictions move `queued → processing → succeeded | failed | canceled`. `submit`
/// returns an ID at once; `get`, `wait`, `cancel` and `subscribe` act on it;
/// `predict` is submit-and-wait. At most [`concurrency`](QueueConfig::concurrency)
/// predictions run at once in this process, each on a tokio task of its own.
///
/// Build a queue inside a tokio runtime: its background tasks (the dispatcher that
/// hands work to workers, the deadline sweeper, the purge of expired results) and its
/// workers run there. Methods may be called from any runtime or thread. Background
/// tasks stop after [`shutdown`](Self::shutdown) or when the last handle drops;
/// dropping the last handle also cancels what is running (the models' futures are
/// dropped), as no one could read its result.
///
/// A cancel changes the status at once; the running model's future is dropped by its
/// worker shortly after, not before [`cancel`](Self::cancel) returns. A model that
/// panics fails only that prediction.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> mockpredict_core::Result<()> {
/// use mockpredict_core::{JobQueue, MockModel, QueueConfig, Status};
///
/// let queue = JobQueue::new(MockModel::new(), QueueConfig::default())?;
/// let id = queue.submit("hello".to_owned()).await?;
/// let done = queue.wait(id, None).await?; // 8–15 s, instant on the paused clock
/// assert_eq!(done.status, Status::Succeeded);
/// # Ok(())
/// # }
/// ```
pub struct JobQueue<M: Model, S = MemoryStore<<M as Model>::Input, <M as Model>::Output>>
where
    S: Store<Input = M::Input, Output = M::Output>,
{
    shared: Arc<Shared<M, S>>,
    /// Stops the background tasks when the last handle drops.
    _guard: Arc<StopOnDrop>,
}

impl<M: Model, S: Store<Input = M::Input, Output = M::Output>> Clone for JobQueue<M, S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            _guard: Arc::clone(&self._guard),
        }
    }
}

impl<M: Model, S: Store<Input = M::Input, Output = M::Output>> std::fmt::Debug for JobQueue<M, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueue")
            .field("model", &self.shared.model.name())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Held by every handle: when the last one drops, running predictions are canceled
/// and the background tasks stop. Background tasks hold the shared state, never this.
struct StopOnDrop {
    abort: CancellationToken,
    stop: CancellationToken,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.abort.cancel();
        self.stop.cancel();
    }
}

/// What every handle and background task shares.
struct Shared<M: Model, S: Store> {
    model: M,
    store: S,
    config: QueueConfig,
    observers: Vec<Arc<dyn Observer>>,
    /// One permit per worker task: `concurrency` in all, so no more than that many
    /// predictions run at once.
    slots: Arc<Semaphore>,
    /// Predictions running in this process now.
    running: std::sync::atomic::AtomicUsize,
    /// Set by `shutdown`: submits are refused.
    closing: AtomicBool,
    /// Woken at every terminal transition, for shutdown's drain.
    idle: Notify,
    /// Canceled when shutdown's grace period ends or the last handle drops: running
    /// predictions end `canceled` and nothing new starts.
    abort: CancellationToken,
    /// Canceled when the queue stops: the background tasks exit.
    stop: CancellationToken,
    tasks: TaskTracker,
    totals: Totals,
}

/// This process's counters.
#[derive(Default)]
struct Totals {
    submitted: AtomicU64,
    rejected: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    canceled: AtomicU64,
    /// Predictions whose blocking work was still running when they ended.
    blocking_overrun: AtomicU64,
    /// Exponentially weighted model time in nanoseconds, for `Retry-After` hints.
    model_time_ewma: AtomicU64,
}

impl<M: Model> JobQueue<M> {
    /// A queue over `model` with the in-memory store.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `config` does not validate.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn new(model: M, config: QueueConfig) -> Result<Self> {
        Self::builder(model).config(config).build()
    }

    /// A builder, for another store or observers.
    pub fn builder(model: M) -> JobQueueBuilder<M, MemoryStore<M::Input, M::Output>> {
        JobQueueBuilder::new(model)
    }
}

impl<M: Model, S: Store<Input = M::Input, Output = M::Output>> JobQueue<M, S> {
    /// The model this queue runs.
    pub fn model(&self) -> &M {
        &self.shared.model
    }

    /// The configuration.
    pub fn config(&self) -> &QueueConfig {
        &self.shared.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// Admits a prediction and returns its ID at once; the model runs it in the
    /// background.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] when `capacity` predictions are queued or processing,
    /// [`Error::ShuttingDown`] after [`shutdown`](Self::shutdown) began,
    /// [`Error::Backend`] when the store fails.
    pub async fn submit(&self, input: M::Input) -> Result<PredictionId> {
        let s = &self.shared;
        if s.closing.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        let id = PredictionId::new_v4();
        if !s.store.admit(id, input, s.config.capacity).await? {
            s.totals.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(Error::QueueFull {
                capacity: s.config.capacity,
                retry_after: s.retry_after(),
            });
        }
        if s.stop.is_cancelled() {
            // Shutdown began after the check above and may have canceled what was
            // queued before this admit: nothing would ever run this one.
            s.finish(id, Outcome::Canceled).await?;
            return Err(Error::ShuttingDown);
        }
        s.totals.submitted.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(prediction_id = %id, "admitted");
        Ok(id)
    }

    /// A snapshot of the prediction.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the ID is unknown or expired, [`Error::Backend`] when
    /// the store fails.
    pub async fn get(&self, id: PredictionId) -> Result<Prediction<M::Input, M::Output>> {
        self.shared.store.read(id).await?.ok_or(Error::NotFound(id))
    }

    /// Waits until the prediction finishes or `timeout` passes (`None`: no limit), and
    /// returns its snapshot then; check [`Prediction::is_finished`]. Nothing polls:
    /// the waiter sleeps until a status change wakes it.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn wait(
        &self,
        id: PredictionId,
        timeout: Option<Duration>,
    ) -> Result<Prediction<M::Input, M::Output>> {
        // Already finished (the common case for a poll): no watch to register.
        let now = self.get(id).await?;
        if now.is_finished() {
            return Ok(now);
        }
        // A timeout too long to represent (say `Duration::MAX`) is no timeout.
        let until = timeout.and_then(|t| Instant::now().checked_add(t));
        let store = &self.shared.store;
        let mut watch = store.watch(id).await?.ok_or(Error::NotFound(id))?;
        let read = async |watch: &S::Watch| {
            store
                .read_watched(id, watch)
                .await?
                .ok_or(Error::NotFound(id))
        };
        loop {
            let now = read(&watch).await?;
            if now.is_finished() {
                return Ok(now);
            }
            match until {
                Some(until) => {
                    if tokio::time::timeout_at(until, watch.changed())
                        .await
                        .is_err()
                    {
                        return read(&watch).await;
                    }
                }
                None => watch.changed().await,
            }
        }
    }

    /// Submits and waits for the result: the synchronous mode.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit). A prediction that fails or is canceled is not an
    /// error here: it is a snapshot with that status.
    pub async fn predict(&self, input: M::Input) -> Result<Prediction<M::Input, M::Output>> {
        let id = self.submit(input).await?;
        self.wait(id, None).await
    }

    /// Cancels the prediction: a queued one never runs; a processing one is stopped by
    /// dropping its model future. Returns the snapshot after the cancel: `canceled`,
    /// or the terminal status it had already reached. The status changes here; the
    /// model's future is dropped by its worker shortly after.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn cancel(&self, id: PredictionId) -> Result<Prediction<M::Input, M::Output>> {
        let store = &self.shared.store;
        // Watched first: the canceled prediction is answered even if it is evicted at
        // once (`max_retained` 0).
        let watch = store.watch(id).await?.ok_or(Error::NotFound(id))?;
        self.shared.finish(id, Outcome::Canceled).await?;
        store
            .read_watched(id, &watch)
            .await?
            .ok_or(Error::NotFound(id))
    }

    /// Follows one prediction's status changes (for server-sent events).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn subscribe(&self, id: PredictionId) -> Result<Subscription<M, S>> {
        let watch = self
            .shared
            .store
            .watch(id)
            .await?
            .ok_or(Error::NotFound(id))?;
        Ok(Subscription::new(self.clone(), id, watch))
    }

    /// The store's counts and this process's totals. A store that cannot be reached
    /// counts zero (and the failure is logged): readiness reports it.
    pub async fn stats(&self) -> Stats {
        let s = &self.shared;
        let counts = s.store.counts().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read the store's counts");
            crate::store::Counts::default()
        });
        let t = &s.totals;
        Stats {
            queued: counts.queued,
            processing: counts.processing,
            retained: counts.retained,
            retained_bytes: counts.retained_bytes,
            capacity: s.config.capacity,
            concurrency: s.config.concurrency,
            submitted_total: t.submitted.load(Ordering::Relaxed),
            rejected_total: t.rejected.load(Ordering::Relaxed),
            succeeded_total: t.succeeded.load(Ordering::Relaxed),
            failed_total: t.failed.load(Ordering::Relaxed),
            canceled_total: t.canceled.load(Ordering::Relaxed),
            blocking_overrun_total: t.blocking_overrun.load(Ordering::Relaxed),
            shutting_down: s.closing.load(Ordering::Acquire),
        }
    }

    /// Whether the queue admits predictions and its store is reachable.
    pub async fn is_ready(&self) -> bool {
        !self.shared.closing.load(Ordering::Acquire) && self.shared.store.is_ready().await
    }

    /// Stops admitting ([`Error::ShuttingDown`]), lets admitted predictions finish for
    /// up to `grace`, cancels what is left, and joins every background task.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let s = &self.shared;
        s.closing.store(true, Ordering::SeqCst);
        let in_flight = || async {
            match s.store.counts().await {
                Ok(counts) => counts.in_flight(),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the store's counts");
                    0
                }
            }
        };
        let drained = tokio::time::timeout(grace, async {
            loop {
                let idle = s.idle.notified();
                let mut idle = std::pin::pin!(idle);
                idle.as_mut().enable();
                if in_flight().await == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await
        .is_ok();
        let left = in_flight().await;
        s.abort.cancel();
        s.stop.cancel();
        match s.store.cancel_queued().await {
            Ok(finished) => finished.iter().for_each(|done| s.on_finished(done)),
            Err(e) => tracing::warn!(error = %e, "could not cancel the queued predictions"),
        }
        s.tasks.close();
        s.tasks.wait().await;
        tracing::info!(drained, canceled = left, "queue shut down");
        ShutdownReport {
            drained,
            canceled: if drained { 0 } else { left },
        }
    }
}

impl<M: Model, S: Store<Input = M::Input, Output = M::Output>> Shared<M, S> {
    /// Applies a terminal outcome once; the bookkeeping follows if this call applied
    /// it.
    async fn finish(&self, id: PredictionId, outcome: Outcome<M::Output>) -> Result<bool> {
        match self.store.finish(id, outcome).await? {
            Some(done) => {
                self.on_finished(&done);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// A terminal transition's bookkeeping: totals, the model-time average, the
    /// observers, shutdown's drain.
    fn on_finished(&self, done: &Finished) {
        let t = &self.totals;
        let total = match done.status {
            Status::Succeeded => &t.succeeded,
            Status::Failed => &t.failed,
            _ => &t.canceled,
        };
        total.fetch_add(1, Ordering::Relaxed);
        if let Some(took) = done.predict_time {
            let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            let old = t.model_time_ewma.load(Ordering::Relaxed);
            let new = if old == 0 {
                took
            } else {
                (old / 8) * 7 + took / 8
            };
            t.model_time_ewma.store(new, Ordering::Relaxed);
        }
        self.tell_observers(|o| o.on_finish(done));
        self.idle.notify_waiters();
    }

    /// Tells every observer, in the order added. One that panics must not keep the
    /// others from being told or take the worker down.
    fn tell_observers(&self, tell: impl Fn(&dyn Observer)) {
        for observer in &self.observers {
            let told = std::panic::catch_unwind(AssertUnwindSafe(|| tell(observer.as_ref())));
            if let Err(panic) = told {
                let err = PredictionError::panic(&*panic);
                tracing::error!(error = %err, "an observer panicked");
            }
        }
    }

    /// How long a refused client should wait: one slot frees roughly every (model time
    /// / running) on average; before any prediction has finished, the model's own
    /// estimate stands in for the average. Between 1 s and an hour.
    fn retry_after(&self) -> Duration {
        let ewma = match self.totals.model_time_ewma.load(Ordering::Relaxed) {
            0 => self.model.typical_latency().unwrap_or_default(),
            nanos => Duration::from_nanos(nanos),
        };
        let running = self.running.load(Ordering::Relaxed).max(1);
        let running = u32::try_from(running).unwrap_or(u32::MAX);
        (ewma / running).clamp(Duration::from_secs(1), Duration::from_secs(3600))
    }
}
