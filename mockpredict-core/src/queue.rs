//! [`JobQueue`]: admits predictions up to a capacity, runs up to `concurrency` of them
//! at once on tokio tasks, enforces deadlines, and answers `get`, `wait`, `cancel` and
//! subscriptions by ID.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::backend::{Backend, Finished, MemoryBackend};
use crate::{Error, Model, Outcome, Prediction, PredictionError, PredictionId, Result, Status};

/// How a [`JobQueue`] admits, runs and retains predictions.
///
/// ```
/// use std::time::Duration;
/// use mockpredict_core::QueueConfig;
///
/// let config = QueueConfig::default()
///     .capacity(500)
///     .concurrency(8)
///     .deadline(Some(Duration::from_secs(60)));
/// assert_eq!(config.result_ttl, Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueConfig {
    /// Most predictions queued + processing at once; `submit` beyond it fails with
    /// [`Error::QueueFull`]. Default 10,000.
    pub capacity: usize,
    /// Most predictions running at once. Default 100.
    pub concurrency: usize,
    /// Longest a prediction may take from admission to its end; past it, it ends
    /// `failed` with a timeout error. Default none.
    pub deadline: Option<Duration>,
    /// How long finished predictions are kept. Default 1 hour.
    pub result_ttl: Duration,
    /// Most finished predictions kept, whatever their age (the oldest go first).
    /// Default 100,000.
    pub max_retained: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            concurrency: 100,
            deadline: None,
            result_ttl: Duration::from_secs(3600),
            max_retained: 100_000,
        }
    }
}

impl QueueConfig {
    /// Sets [`capacity`](Self::capacity).
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets [`concurrency`](Self::concurrency).
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets [`deadline`](Self::deadline).
    #[must_use]
    pub fn deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets [`result_ttl`](Self::result_ttl).
    #[must_use]
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = ttl;
        self
    }

    /// Sets [`max_retained`](Self::max_retained).
    #[must_use]
    pub fn max_retained(mut self, max: usize) -> Self {
        self.max_retained = max;
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when capacity or concurrency is zero, or
    /// concurrency exceeds tokio's semaphore limit.
    pub fn validate(&self) -> Result<()> {
        if self.capacity == 0 {
            return Err(Error::InvalidConfig("capacity must be at least 1".into()));
        }
        if self.concurrency == 0 || self.concurrency > Semaphore::MAX_PERMITS {
            return Err(Error::InvalidConfig(format!(
                "concurrency must be between 1 and {}",
                Semaphore::MAX_PERMITS
            )));
        }
        Ok(())
    }
}

/// Told of every prediction that reaches a terminal status (for metrics).
pub trait Observer: Send + Sync + 'static {
    /// A prediction finished with `finished.status`.
    fn on_finish(&self, finished: &Finished);
}

/// Counters for metrics and readiness, read without locking.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Admitted and waiting for a worker.
    pub queued: usize,
    /// Running now (in flight).
    pub processing: usize,
    /// Finished predictions still retained.
    pub retained: usize,
    /// The configured capacity.
    pub capacity: usize,
    /// The configured concurrency.
    pub concurrency: usize,
    /// Predictions admitted since start.
    pub submitted_total: u64,
    /// Submits refused with `QueueFull` since start.
    pub rejected_total: u64,
    /// Predictions that ended `succeeded` since start.
    pub succeeded_total: u64,
    /// Predictions that ended `failed` since start.
    pub failed_total: u64,
    /// Predictions that ended `canceled` since start.
    pub canceled_total: u64,
    /// Whether the queue is shutting down.
    pub shutting_down: bool,
}

/// What [`JobQueue::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every admitted prediction finished within the grace period.
    pub drained: bool,
    /// Predictions canceled because the grace period ran out.
    pub canceled: usize,
}

/// The async job queue: a cheap, cloneable handle over shared state.
///
/// Predictions move `queued → processing → succeeded | failed | canceled`. `submit`
/// returns an ID at once; `get`, `wait`, `cancel` and `subscribe` act on it;
/// `predict` is submit-and-wait. Background tasks stop when the last handle drops or
/// after [`shutdown`](Self::shutdown).
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
pub struct JobQueue<M: Model, B = MemoryBackend<<M as Model>::Input, <M as Model>::Output>>
where
    B: Backend<Input = M::Input, Output = M::Output>,
{
    shared: Arc<Shared<M, B>>,
    /// Stops the background purge when the last handle drops.
    _guard: Arc<DropGuard>,
}

impl<M: Model, B: Backend<Input = M::Input, Output = M::Output>> Clone for JobQueue<M, B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            _guard: Arc::clone(&self._guard),
        }
    }
}

impl<M: Model, B: Backend<Input = M::Input, Output = M::Output>> std::fmt::Debug
    for JobQueue<M, B>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueue")
            .field("model", &self.shared.model.name())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

struct Shared<M: Model, B> {
    model: Arc<M>,
    backend: B,
    config: QueueConfig,
    observer: Option<Arc<dyn Observer>>,
    /// Concurrency: a worker holds a permit while its model runs. Tokio's semaphore is
    /// FIFO, so predictions start in admission order.
    permits: Arc<Semaphore>,
    /// Queued + processing; `submit` reserves a slot with a CAS-free fetch_add.
    admitted: AtomicUsize,
    processing: AtomicUsize,
    submitted_total: AtomicU64,
    rejected_total: AtomicU64,
    finished_total: [AtomicU64; 3],
    /// Exponentially weighted model time in nanoseconds, for `Retry-After` hints.
    model_time_ewma: AtomicU64,
    closing: AtomicBool,
    /// Woken when `admitted` reaches zero (shutdown's drain).
    idle: Notify,
    /// Canceled when shutdown's grace period ends: every worker cancels its prediction.
    cancel_all: CancellationToken,
    /// Canceled when the last handle drops or shutdown completes: stops the purge task.
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// Builds a [`JobQueue`] with a non-default backend or an [`Observer`].
pub struct JobQueueBuilder<M: Model, B> {
    model: M,
    config: QueueConfig,
    backend: B,
    observer: Option<Arc<dyn Observer>>,
}

impl<M: Model> JobQueueBuilder<M, MemoryBackend<M::Input, M::Output>> {
    fn new(model: M) -> Self {
        let config = QueueConfig::default();
        Self {
            backend: MemoryBackend::new(config.result_ttl, config.max_retained),
            model,
            config,
            observer: None,
        }
    }

    /// Sets the configuration (and sizes the in-memory backend's retention from it).
    #[must_use]
    pub fn config(mut self, config: QueueConfig) -> Self {
        self.backend = MemoryBackend::new(config.result_ttl, config.max_retained);
        self.config = config;
        self
    }
}

impl<M: Model, B: Backend<Input = M::Input, Output = M::Output>> JobQueueBuilder<M, B> {
    /// Uses another backend; its own settings govern retention.
    pub fn backend<B2: Backend<Input = M::Input, Output = M::Output>>(
        self,
        backend: B2,
    ) -> JobQueueBuilder<M, B2> {
        JobQueueBuilder {
            model: self.model,
            config: self.config,
            backend,
            observer: self.observer,
        }
    }

    /// Tells `observer` of every finished prediction.
    #[must_use]
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Starts the queue.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the configuration does not
    /// [validate](QueueConfig::validate).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, because it spawns the purge task.
    pub fn build(self) -> Result<JobQueue<M, B>> {
        self.config.validate()?;
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            model: Arc::new(self.model),
            backend: self.backend,
            permits: Arc::new(Semaphore::new(self.config.concurrency)),
            config: self.config,
            observer: self.observer,
            admitted: AtomicUsize::new(0),
            processing: AtomicUsize::new(0),
            submitted_total: AtomicU64::new(0),
            rejected_total: AtomicU64::new(0),
            finished_total: Default::default(),
            model_time_ewma: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            idle: Notify::new(),
            cancel_all: CancellationToken::new(),
            stop: stop.clone(),
            tasks: TaskTracker::new(),
        });
        shared
            .tasks
            .spawn(purge_loop(Arc::downgrade(&shared), stop.clone()));
        Ok(JobQueue {
            shared,
            _guard: Arc::new(stop.drop_guard()),
        })
    }
}

impl<M: Model> JobQueue<M> {
    /// A queue over `model` with the in-memory backend.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `config` does not [validate](QueueConfig::validate).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, because it spawns the purge task.
    pub fn new(model: M, config: QueueConfig) -> Result<Self> {
        Self::builder(model).config(config).build()
    }

    /// A builder, for a custom backend or an [`Observer`].
    pub fn builder(model: M) -> JobQueueBuilder<M, MemoryBackend<M::Input, M::Output>> {
        JobQueueBuilder::new(model)
    }
}

impl<M: Model, B: Backend<Input = M::Input, Output = M::Output>> JobQueue<M, B> {
    /// The model this queue runs.
    pub fn model(&self) -> &M {
        &self.shared.model
    }

    /// The configuration.
    pub fn config(&self) -> &QueueConfig {
        &self.shared.config
    }

    /// Admits a prediction and returns its ID at once; the model runs it in the
    /// background.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] when `capacity` predictions are queued or processing,
    /// [`Error::ShuttingDown`] after [`shutdown`](Self::shutdown) began,
    /// [`Error::Backend`] when the backend fails.
    pub async fn submit(&self, input: M::Input) -> Result<PredictionId> {
        self.submit_job(input).await.map(|(id, _)| id)
    }

    async fn submit_job(&self, input: M::Input) -> Result<(PredictionId, B::Job)> {
        let shared = &self.shared;
        if shared.closing.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        let capacity = shared.config.capacity;
        if shared.admitted.fetch_add(1, Ordering::AcqRel) >= capacity {
            shared.release_slot();
            shared.rejected_total.fetch_add(1, Ordering::Relaxed);
            return Err(Error::QueueFull {
                capacity,
                retry_after: shared.retry_after(),
            });
        }
        let id = PredictionId::new_v4();
        let job = match shared.backend.insert(id, Arc::new(input)).await {
            Ok(job) => job,
            Err(e) => {
                shared.release_slot();
                return Err(e);
            }
        };
        shared.submitted_total.fetch_add(1, Ordering::Relaxed);
        let deadline = shared.config.deadline.map(|d| (Instant::now() + d, d));
        shared
            .tasks
            .spawn(run(Arc::clone(shared), job.clone(), deadline));
        tracing::trace!(prediction_id = %id, "admitted");
        Ok((id, job))
    }

    async fn job(&self, id: PredictionId) -> Result<B::Job> {
        self.shared
            .backend
            .lookup(id)
            .await?
            .ok_or(Error::NotFound(id))
    }

    /// A snapshot of the prediction.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the ID is unknown or expired, [`Error::Backend`]
    /// when the backend fails.
    pub async fn get(&self, id: PredictionId) -> Result<Prediction<M::Input, M::Output>> {
        let job = self.job(id).await?;
        self.shared.backend.snapshot(&job).await
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
        let job = self.job(id).await?;
        self.wait_job(&job, timeout).await
    }

    async fn wait_job(
        &self,
        job: &B::Job,
        timeout: Option<Duration>,
    ) -> Result<Prediction<M::Input, M::Output>> {
        let backend = &self.shared.backend;
        let until = timeout.map(|t| Instant::now() + t);
        loop {
            let changed = backend.changed(job);
            let snap = backend.snapshot(job).await?;
            if snap.is_finished() {
                return Ok(snap);
            }
            match until {
                Some(until) => {
                    if tokio::time::timeout_at(until, changed).await.is_err() {
                        return backend.snapshot(job).await;
                    }
                }
                None => changed.await,
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
        let (_, job) = self.submit_job(input).await?;
        self.wait_job(&job, None).await
    }

    /// Cancels the prediction: a queued one never runs; a processing one is stopped by
    /// dropping its model future. Returns the snapshot after the cancel: `canceled`,
    /// or the terminal status it had already reached.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn cancel(&self, id: PredictionId) -> Result<Prediction<M::Input, M::Output>> {
        let job = self.job(id).await?;
        self.shared.finish(&job, Outcome::Canceled).await?;
        self.shared.backend.snapshot(&job).await
    }

    /// Follows one prediction's status changes (for server-sent events).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn subscribe(&self, id: PredictionId) -> Result<Subscription<M, B>> {
        let job = self.job(id).await?;
        Ok(Subscription {
            queue: self.clone(),
            job,
            last: None,
        })
    }

    /// Counters for metrics.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        let admitted = s.admitted.load(Ordering::Acquire).min(s.config.capacity);
        let processing = s.processing.load(Ordering::Acquire);
        Stats {
            queued: admitted.saturating_sub(processing),
            processing,
            retained: s.backend.retained(),
            capacity: s.config.capacity,
            concurrency: s.config.concurrency,
            submitted_total: s.submitted_total.load(Ordering::Relaxed),
            rejected_total: s.rejected_total.load(Ordering::Relaxed),
            succeeded_total: s.finished_total[0].load(Ordering::Relaxed),
            failed_total: s.finished_total[1].load(Ordering::Relaxed),
            canceled_total: s.finished_total[2].load(Ordering::Relaxed),
            shutting_down: s.closing.load(Ordering::Acquire),
        }
    }

    /// Whether the queue admits predictions and its backend is reachable.
    pub async fn is_ready(&self) -> bool {
        !self.shared.closing.load(Ordering::Acquire) && self.shared.backend.is_ready().await
    }

    /// Stops admitting ([`Error::ShuttingDown`]), lets admitted predictions finish for
    /// up to `grace`, cancels what is left, and joins every background task.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let s = &self.shared;
        s.closing.store(true, Ordering::Release);
        let drained = tokio::time::timeout(grace, async {
            loop {
                let idle = s.idle.notified();
                if s.admitted.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await
        .is_ok();
        let left = s.admitted.load(Ordering::Acquire);
        s.cancel_all.cancel();
        s.stop.cancel();
        s.tasks.close();
        s.tasks.wait().await;
        tracing::info!(drained, canceled = left, "queue shut down");
        ShutdownReport {
            drained,
            canceled: if drained { 0 } else { left },
        }
    }
}

impl<M: Model, B: Backend<Input = M::Input, Output = M::Output>> Shared<M, B> {
    fn release_slot(&self) {
        if self.admitted.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn retry_after(&self) -> Duration {
        // One slot frees roughly every (model time / running) on average.
        let ewma = Duration::from_nanos(self.model_time_ewma.load(Ordering::Relaxed));
        let running = self.processing.load(Ordering::Relaxed).max(1) as u32;
        (ewma / running).max(Duration::from_secs(1))
    }

    /// Applies a terminal outcome once; returns whether this call applied it.
    async fn finish(&self, job: &B::Job, outcome: Outcome<M::Output>) -> Result<bool> {
        let Some(done) = self.backend.finish(job, outcome).await? else {
            return Ok(false);
        };
        if done.previous == Status::Processing {
            self.processing.fetch_sub(1, Ordering::AcqRel);
        }
        let idx = match done.status {
            Status::Succeeded => 0,
            Status::Failed => 1,
            _ => 2,
        };
        self.finished_total[idx].fetch_add(1, Ordering::Relaxed);
        if let Some(t) = done.predict_time {
            let old = self.model_time_ewma.load(Ordering::Relaxed);
            let new = if old == 0 {
                t.as_nanos() as u64
            } else {
                (old / 8) * 7 + (t.as_nanos() as u64) / 8
            };
            self.model_time_ewma.store(new, Ordering::Relaxed);
        }
        if let Some(observer) = &self.observer {
            observer.on_finish(&done);
        }
        self.release_slot();
        Ok(true)
    }

    /// Resolves when the prediction has reached a terminal status (e.g. canceled).
    async fn ended(&self, job: &B::Job) {
        loop {
            let changed = self.backend.changed(job);
            match self.backend.status(job).await {
                Ok(status) if status.is_terminal() => return,
                Ok(_) => changed.await,
                Err(e) => {
                    tracing::warn!(error = %e, "backend failed while watching a prediction");
                    changed.await;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<(Instant, Duration)>) -> Duration {
    match deadline {
        Some((at, d)) => {
            tokio::time::sleep_until(at).await;
            d
        }
        None => std::future::pending().await,
    }
}

/// One prediction's worker: waits for a permit, runs the model, records the outcome.
async fn run<M: Model, B: Backend<Input = M::Input, Output = M::Output>>(
    shared: Arc<Shared<M, B>>,
    job: B::Job,
    deadline: Option<(Instant, Duration)>,
) {
    let outcome = run_inner(&shared, &job, deadline).await;
    if let Some(outcome) = outcome {
        if let Err(e) = shared.finish(&job, outcome).await {
            tracing::error!(error = %e, "could not record a prediction's outcome");
        }
    }
}

async fn run_inner<M: Model, B: Backend<Input = M::Input, Output = M::Output>>(
    shared: &Shared<M, B>,
    job: &B::Job,
    deadline: Option<(Instant, Duration)>,
) -> Option<Outcome<M::Output>> {
    let _permit = tokio::select! {
        biased;
        () = shared.ended(job) => return None,
        () = shared.cancel_all.cancelled() => return Some(Outcome::Canceled),
        d = sleep_until(deadline) => {
            return Some(Outcome::Failed(PredictionError::timeout(d, "queued")));
        }
        permit = shared.permits.acquire() => permit.ok()?,
    };
    match shared.backend.start(job).await {
        Ok(true) => {
            shared.processing.fetch_add(1, Ordering::AcqRel);
        }
        Ok(false) => return None,
        Err(e) => {
            tracing::error!(error = %e, "could not start a prediction");
            return Some(Outcome::Failed(PredictionError::backend(&e)));
        }
    }
    let input = match shared.backend.input(job).await {
        Ok(input) => input,
        Err(e) => return Some(Outcome::Failed(PredictionError::backend(&e))),
    };
    let model = AssertUnwindSafe(shared.model.predict(&input)).catch_unwind();
    tokio::select! {
        biased;
        () = shared.ended(job) => None,
        () = shared.cancel_all.cancelled() => Some(Outcome::Canceled),
        d = sleep_until(deadline) => {
            Some(Outcome::Failed(PredictionError::timeout(d, "processing")))
        }
        result = model => Some(match result {
            Ok(Ok(output)) => Outcome::Succeeded(Arc::new(output)),
            Ok(Err(e)) => Outcome::Failed(PredictionError::model(e)),
            Err(panic) => {
                let err = PredictionError::panic(&*panic);
                tracing::warn!(message = %err, "model panicked; failing that prediction");
                Outcome::Failed(err)
            }
        }),
    }
}

async fn purge_loop<M: Model, B: Backend<Input = M::Input, Output = M::Output>>(
    shared: std::sync::Weak<Shared<M, B>>,
    stop: CancellationToken,
) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            match shared.backend.purge_expired().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "purging expired predictions failed");
                    Instant::now() + Duration::from_secs(1)
                }
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
        }
    }
}

/// A stream of one prediction's status changes, from [`JobQueue::subscribe`].
pub struct Subscription<M: Model, B: Backend<Input = M::Input, Output = M::Output>> {
    queue: JobQueue<M, B>,
    job: B::Job,
    last: Option<Status>,
}

impl<M: Model, B: Backend<Input = M::Input, Output = M::Output>> Subscription<M, B> {
    /// The next status change: first the current state, then one snapshot per status
    /// it moves through (a `processing` step that happened between two looks is still
    /// reported), ending with the terminal one; then `None`.
    pub async fn next(&mut self) -> Option<Prediction<M::Input, M::Output>> {
        if self.last.is_some_and(Status::is_terminal) {
            return None;
        }
        let backend = &self.queue.shared.backend;
        loop {
            let changed = backend.changed(&self.job);
            let snap = match backend.snapshot(&self.job).await {
                Ok(snap) => snap,
                Err(e) => {
                    tracing::warn!(error = %e, "subscription ended: backend failed");
                    return None;
                }
            };
            if Some(snap.status) != self.last {
                let skipped_processing = self.last == Some(Status::Queued)
                    && snap.status.is_terminal()
                    && snap.started_at.is_some();
                if skipped_processing {
                    self.last = Some(Status::Processing);
                    return Some(Prediction {
                        status: Status::Processing,
                        output: None,
                        error: None,
                        completed_at: None,
                        predict_time: None,
                        ..snap
                    });
                }
                self.last = Some(snap.status);
                return Some(snap);
            }
            changed.await;
        }
    }
}
