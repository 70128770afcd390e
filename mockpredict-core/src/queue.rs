//! [`JobQueue`]: admits predictions up to a capacity, runs up to `concurrency` of them
//! at once on tokio tasks, enforces deadlines, and answers `get`, `wait`, `cancel` and
//! subscriptions by ID.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use futures_util::FutureExt;
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{Backend, Finished, MemoryBackend, Started};
use crate::sync::lock;
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

/// Told of every prediction that starts and of every one that reaches a terminal
/// status (for metrics).
///
/// `on_finish` is called on the worker that finished the prediction (or the task
/// that canceled it), before its waiters are woken; `on_start` on its worker once
/// `processing` is visible, before the model runs. Keep both short. A panic in either
/// is caught and logged: the prediction, its waiters and the worker are unaffected.
pub trait Observer: Send + Sync + 'static {
    /// A prediction started running, after `started.queue_time` in the queue. Called
    /// on its worker before the model is; default: nothing.
    fn on_start(&self, started: &Started) {
        let _ = started;
    }

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
    /// Bytes the retained predictions weigh, for a backend with a byte budget
    /// ([`Backend::retained_bytes`]); 0 otherwise.
    pub retained_bytes: u64,
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
/// after [`shutdown`](Self::shutdown); dropping the last handle also cancels what is
/// queued or running (running models' futures are dropped), as no one could read it.
/// A cancel, like that, drops a running model's future on its worker shortly after
/// the `canceled` status is set, not before [`cancel`](Self::cancel) returns.
///
/// **Runtimes.** Build a queue inside a tokio runtime: its purge (and its deadline
/// sweeper) run there. Workers start when predictions need them, on the runtime of
/// the submit that needs one. A submit made outside any runtime (from a plain
/// thread) starts its worker on the queue's own runtime, which must be running: a
/// multi-thread runtime, or a `current_thread` one that some thread is driving
/// (`block_on`); on an idle `current_thread` runtime that worker, and the queue with
/// it, waits until the runtime runs again. When the runtime a worker runs on shuts
/// down, the prediction it was running ends `canceled` and frees its capacity slot
/// (with a backend that records it at once, as the in-memory one does); queued
/// predictions wait for a submit from a live runtime to start a worker. A panic in a
/// backend's code on a worker's task fails the prediction it hit
/// ([`FailureKind::Backend`](crate::FailureKind::Backend)), and a new worker takes
/// the next.
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
    _guard: Arc<StopOnDrop<M, B>>,
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

/// Held by every handle: when the last one drops, the background tasks stop (the
/// purge and the sweeper watch `stop`), idle workers are woken to exit, and what is
/// queued or running is canceled (running models' futures are dropped): with no
/// handle left, no one could read their results, and a model that never ends would
/// otherwise keep its worker forever.
struct StopOnDrop<M: Model, B: Backend> {
    stop: CancellationToken,
    shared: std::sync::Weak<Shared<M, B>>,
}

impl<M: Model, B: Backend> Drop for StopOnDrop<M, B> {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(shared) = self.shared.upgrade() {
            shared.grace_over.store(true, Ordering::Release);
            shared.cancel_all.cancel();
            stop_workers(&shared.pending);
        }
    }
}

struct Shared<M: Model, B: Backend> {
    model: M,
    backend: B,
    config: QueueConfig,
    observers: Vec<Arc<dyn Observer>>,
    // Cache lines: what submitting and running write on every prediction sits on
    // lines of its own (`CachePadded`), apart from each other and from the
    // read-mostly fields, so the submitting thread and a worker's thread do not
    // pass lines back and forth for writes the other never reads.
    /// Predictions waiting for a worker, and the workers waiting for predictions. A
    /// std mutex: nothing awaits under it.
    pending: CachePadded<Mutex<WorkQueue<B::Job>>>,
    /// Wakes the deadline sweeper when the pending queue stops being empty.
    sweeper_wake: Notify,
    /// Written by submits.
    submits: CachePadded<SubmitCounters>,
    /// Written by workers (and cancels).
    runs: CachePadded<RunCounters>,
    closing: AtomicBool,
    /// Woken, once `closing` is set, whenever a capacity slot is freed or a refused
    /// submit gives its slot back (shutdown's drain).
    idle: Notify,
    /// Canceled when shutdown's grace period ends: running predictions are canceled.
    cancel_all: CancellationToken,
    /// Set just before `cancel_all` is canceled: what a worker checks before each
    /// prediction (one atomic load; the token's own check takes a lock).
    grace_over: AtomicBool,
    /// Canceled when the last handle drops or shutdown completes: idle workers, the
    /// purge and the sweeper exit.
    stop: CancellationToken,
    tasks: TaskTracker,
    /// The runtime the queue was built in: where a submit made outside any runtime
    /// spawns its worker.
    runtime: tokio::runtime::Handle,
}

/// Counters that submits write.
struct SubmitCounters {
    /// The next admission's number, the end of its ID. From a random start, so that
    /// one ID does not tell how many predictions this process has admitted (two IDs
    /// do tell how many were admitted between them).
    sequence: AtomicU32,
    /// Capacity slots ever taken (less refusals). Queued + processing is this less
    /// [`RunCounters::slots_freed`]: two counters, each written on one side, so that a
    /// submit and a worker's terminal transition do not pass one line back and forth.
    slots_taken: AtomicUsize,
    /// A recent reading of [`RunCounters::slots_freed`] (never more than it): a
    /// submit reads the workers' line only when this says the queue may be full.
    slots_freed_seen: AtomicUsize,
    submitted_total: AtomicU64,
    rejected_total: AtomicU64,
}

/// Counters that running predictions write.
#[derive(Default)]
struct RunCounters {
    /// Capacity slots freed by terminal transitions (and failed inserts).
    slots_freed: AtomicUsize,
    processing: AtomicUsize,
    /// Succeeded, failed, canceled.
    finished_total: [AtomicU64; 3],
    /// Exponentially weighted model time in nanoseconds, for `Retry-After` hints.
    model_time_ewma: AtomicU64,
}

/// Admitted predictions waiting for a worker, and the idle workers, under one lock:
/// a push finds an idle worker to wake in the same critical section, and a worker
/// finds work or registers as idle in one.
///
/// Workers are spawned on demand, at most `concurrency`, and live until the queue
/// stops, so a busy queue spawns no task per prediction. This replaces a `Notify`
/// (whose waiter list costs ~600 instructions per idle-and-wake cycle on the submit
/// path) with a stack of wakers.
///
/// At most one worker is *searching* at a time (woken or spawned, and not yet back at
/// the queue): a push made while one is on its way wakes nobody, and the searching
/// worker, on taking a prediction and seeing more behind it, hands the search on to
/// the next (as tokio's scheduler does with its searching workers). A burst of pushes
/// then costs one wake-up per worker it needs, not one per push: with a fast model,
/// most pushes are taken by workers already running long before a woken one arrives.
struct WorkQueue<J> {
    /// In admission order (so, with one deadline for all, in deadline order too).
    items: VecDeque<Pending<J>>,
    /// Idle workers' wakers, by worker number; the most recently idle is last and is
    /// woken first: its task and stack are the likeliest still in cache, and the
    /// others stay asleep.
    idle: Vec<(usize, Waker)>,
    /// Whether each worker (by number) is in `idle`: a worker polled again before
    /// its waker was taken (woken by something else) must not be listed twice.
    listed: Vec<bool>,
    /// Whether each worker (by number) is searching: woken off `idle` or just
    /// spawned, and not yet back at the queue.
    woken: Vec<bool>,
    /// Workers searching (`woken` set): 0 or 1, but for a worker hired by hand in
    /// tests.
    searching: usize,
    /// Numbers of workers that have exited, for reuse: numbers stay unique among
    /// live workers, and `listed` no longer than the most that ever lived at once.
    free: Vec<usize>,
    /// Workers alive.
    workers: usize,
    /// Set when workers must exit: shutdown, or the last handle dropped.
    stopping: bool,
}

impl<J> WorkQueue<J> {
    fn new() -> Self {
        Self {
            items: VecDeque::new(),
            idle: Vec::new(),
            listed: Vec::new(),
            woken: Vec::new(),
            searching: 0,
            free: Vec::new(),
            workers: 0,
            stopping: false,
        }
    }

    /// Sends a worker to the queue unless one is already on its way: the most
    /// recently idle one, or a new one while fewer than `concurrency` exist (its
    /// number, for the caller to spawn). `None` when one is searching already, or
    /// none is idle and the cap is reached (the busy ones will come back).
    fn call_worker(&mut self, concurrency: usize) -> Option<Call> {
        if self.searching > 0 {
            return None;
        }
        if let Some((n, waker)) = self.idle.pop() {
            self.listed[n] = false;
            self.search(n);
            return Some(Call::Wake(waker));
        }
        (self.workers < concurrency).then(|| Call::Spawn(self.hire()))
    }

    /// Counts worker `number` as searching.
    fn search(&mut self, number: usize) {
        self.woken[number] = true;
        self.searching += 1;
    }

    /// Worker `number` is at the queue: no longer searching. Returns whether it was.
    fn arrived(&mut self, number: usize) -> bool {
        let was = std::mem::take(&mut self.woken[number]);
        if was {
            self.searching -= 1;
        }
        was
    }

    /// A number for a new worker, counted as alive and searching.
    fn hire(&mut self) -> usize {
        self.workers += 1;
        let number = self.free.pop().unwrap_or_else(|| {
            self.listed.push(false);
            self.woken.push(false);
            self.listed.len() - 1
        });
        self.search(number);
        number
    }

    /// Worker `number` exits: not listed, not searching, not counted, its number free.
    fn retire(&mut self, number: usize) {
        if self.listed[number] {
            self.unlist(number);
        }
        self.arrived(number);
        self.workers -= 1;
        self.free.push(number);
    }

    /// Takes worker `number` off the idle list (a rare path: a scan).
    fn unlist(&mut self, number: usize) {
        if let Some(at) = self.idle.iter().position(|(n, _)| *n == number) {
            self.idle.remove(at);
        }
        self.listed[number] = false;
    }

    /// Keeps worker `number`'s entry, with `waker` if the listed one would not wake
    /// the same task (a rare path: a scan).
    fn relist(&mut self, number: usize, waker: &Waker) {
        if let Some((_, listed)) = self.idle.iter_mut().find(|(n, _)| *n == number) {
            if !listed.will_wake(waker) {
                listed.clone_from(waker);
            }
        }
    }
}

/// A worker sent to the queue ([`WorkQueue::call_worker`]).
enum Call {
    /// An idle worker's waker.
    Wake(Waker),
    /// The number of a worker to spawn.
    Spawn(usize),
}

/// One admitted prediction waiting for a worker.
struct Pending<J> {
    job: J,
    /// When it must have finished, if the queue has a deadline.
    deadline: Option<Instant>,
}

/// Builds a [`JobQueue`] with a non-default backend or [`Observer`]s.
pub struct JobQueueBuilder<M: Model, B = MemoryBackend<<M as Model>::Input, <M as Model>::Output>> {
    model: M,
    config: QueueConfig,
    backend: B,
    observers: Vec<Arc<dyn Observer>>,
}

impl<M: Model> JobQueueBuilder<M, MemoryBackend<M::Input, M::Output>> {
    fn new(model: M) -> Self {
        let config = QueueConfig::default();
        Self {
            backend: MemoryBackend::new(config.result_ttl, config.max_retained),
            model,
            config,
            observers: Vec::new(),
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
    /// Uses another backend; its own settings govern retention. Call
    /// [`config`](JobQueueBuilder::config) before this: it belongs to the in-memory
    /// builder.
    pub fn backend<B2: Backend<Input = M::Input, Output = M::Output>>(
        self,
        backend: B2,
    ) -> JobQueueBuilder<M, B2> {
        JobQueueBuilder {
            model: self.model,
            config: self.config,
            backend,
            observers: self.observers,
        }
    }

    /// Tells `observer` of every finished prediction, after the observers added
    /// before it (a server's metrics and one of your own, say).
    #[must_use]
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observers.push(Arc::new(observer));
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
            model: self.model,
            backend: self.backend,
            config: self.config,
            pending: CachePadded::new(Mutex::new(WorkQueue::new())),
            sweeper_wake: Notify::new(),
            observers: self.observers,
            submits: CachePadded::new(SubmitCounters {
                sequence: AtomicU32::new(rand::random()),
                slots_taken: AtomicUsize::new(0),
                slots_freed_seen: AtomicUsize::new(0),
                submitted_total: AtomicU64::new(0),
                rejected_total: AtomicU64::new(0),
            }),
            runs: CachePadded::default(),
            closing: AtomicBool::new(false),
            idle: Notify::new(),
            cancel_all: CancellationToken::new(),
            grace_over: AtomicBool::new(false),
            stop: stop.clone(),
            tasks: TaskTracker::new(),
            runtime: tokio::runtime::Handle::current(),
        });
        shared
            .tasks
            .spawn(purge_loop(Arc::downgrade(&shared), stop.clone()));
        if shared.config.deadline.is_some() {
            shared
                .tasks
                .spawn(deadline_sweeper(Arc::clone(&shared), stop.clone()));
        }
        let guard = StopOnDrop {
            stop,
            shared: Arc::downgrade(&shared),
        };
        Ok(JobQueue {
            shared,
            _guard: Arc::new(guard),
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
        let (id, item) = self.admit(input).await?;
        // The job handle moves to the queue: no reference-count traffic on the record.
        self.shared.enqueue(item);
        Ok(id)
    }

    /// Admits a prediction: a capacity slot and a record in the backend. The caller
    /// queues it.
    async fn admit(&self, input: M::Input) -> Result<(PredictionId, Pending<B::Job>)> {
        let shared = &self.shared;
        if shared.closing.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        let capacity = shared.config.capacity;
        if !shared.take_slot() {
            shared
                .submits
                .rejected_total
                .fetch_add(1, Ordering::Relaxed);
            return Err(Error::QueueFull {
                capacity,
                retry_after: shared.retry_after(),
            });
        }
        // Numbered in admission order: see `PredictionId::sequenced`.
        let id = PredictionId::sequenced(shared.submits.sequence.fetch_add(1, Ordering::Relaxed));
        // One clock read for admission and deadline.
        let now = Instant::now();
        let created = shared.backend.stamp(now);
        let job = match shared.backend.insert(id, input, created).await {
            Ok(job) => job,
            Err(e) => {
                shared.release_slot();
                return Err(e);
            }
        };
        shared
            .submits
            .submitted_total
            .fetch_add(1, Ordering::Relaxed);
        // A deadline too long to represent is no deadline.
        let deadline = shared.config.deadline.and_then(|d| now.checked_add(d));
        tracing::trace!(prediction_id = %id, "admitted");
        Ok((id, Pending { job, deadline }))
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
        // Looked up and, if already finished (the common case for a poll), answered
        // here: fewer futures for the snapshot to be moved through.
        let backend = &self.shared.backend;
        let job = backend.lookup(id).await?.ok_or(Error::NotFound(id))?;
        if backend.status(&job).await?.is_terminal() {
            return backend.snapshot(&job).await;
        }
        self.wait_job(&job, timeout).await
    }

    async fn wait_job(
        &self,
        job: &B::Job,
        timeout: Option<Duration>,
    ) -> Result<Prediction<M::Input, M::Output>> {
        let backend = &self.shared.backend;
        // Already finished (the common case for a poll): no waiter to register.
        if backend.status(job).await?.is_terminal() {
            return backend.snapshot(job).await;
        }
        // A timeout too long to represent (say `Duration::MAX`) is no timeout.
        let until = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let changed = backend.changed(job);
            if backend.status(job).await?.is_terminal() {
                return backend.snapshot(job).await;
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
        let (_, item) = self.admit(input).await?;
        let job = item.job.clone();
        self.shared.enqueue(item);
        self.wait_job(&job, None).await
    }

    /// Cancels the prediction: a queued one never runs; a processing one is stopped by
    /// dropping its model future. Returns the snapshot after the cancel: `canceled`,
    /// or the terminal status it had already reached. The status changes here; the
    /// model's future is dropped by its worker shortly after (so a `Drop` that frees a
    /// model's resources runs after this returns, not before).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn cancel(&self, id: PredictionId) -> Result<Prediction<M::Input, M::Output>> {
        let job = self.job(id).await?;
        let now = self.shared.stamp_now();
        self.shared.finish(&job, Outcome::Canceled, now).await?;
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
        let admitted = s.in_flight().min(s.config.capacity);
        let processing = s.runs.processing.load(Ordering::Acquire);
        Stats {
            queued: admitted.saturating_sub(processing),
            processing,
            retained: s.backend.retained(),
            retained_bytes: s.backend.retained_bytes(),
            capacity: s.config.capacity,
            concurrency: s.config.concurrency,
            submitted_total: s.submits.submitted_total.load(Ordering::Relaxed),
            rejected_total: s.submits.rejected_total.load(Ordering::Relaxed),
            succeeded_total: s.runs.finished_total[0].load(Ordering::Relaxed),
            failed_total: s.runs.finished_total[1].load(Ordering::Relaxed),
            canceled_total: s.runs.finished_total[2].load(Ordering::Relaxed),
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
        // SeqCst, as in `release_slot`: either this drain sees a slot freed, or that
        // release sees `closing` and wakes it.
        s.closing.store(true, Ordering::SeqCst);
        let drained = tokio::time::timeout(grace, async {
            loop {
                let idle = s.idle.notified();
                if s.in_flight() == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await
        .is_ok();
        let left = s.in_flight();
        s.grace_over.store(true, Ordering::Release);
        s.cancel_all.cancel();
        s.stop.cancel();
        s.stop_workers();
        let queued: Vec<_> = lock(&s.pending).items.drain(..).collect();
        let now = s.stamp_now();
        for p in queued {
            if let Err(e) = s.finish(&p.job, Outcome::Canceled, now).await {
                tracing::warn!(error = %e, "could not cancel a queued prediction");
            }
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

/// Slots in use from a reading of the two counters, which wrap (after 2^32
/// predictions where `usize` is 32 bits): 0 when `freed` is ahead, as it can be for a
/// moment when it counts a slot taken after the reading of `taken`.
fn in_use(taken: usize, freed: usize) -> usize {
    let d = taken.wrapping_sub(freed);
    if d > isize::MAX as usize { 0 } else { d }
}

impl<M: Model, B: Backend<Input = M::Input, Output = M::Output>> Shared<M, B> {
    /// Takes a capacity slot; `false` (and nothing taken) when all are taken.
    fn take_slot(&self) -> bool {
        let capacity = self.config.capacity;
        let taken = self.submits.slots_taken.fetch_add(1, Ordering::AcqRel);
        // A stale reading only overstates what is in flight: look again before
        // refusing.
        let seen = self.submits.slots_freed_seen.load(Ordering::Relaxed);
        if in_use(taken, seen) < capacity {
            return true;
        }
        let freed = self.runs.slots_freed.load(Ordering::Acquire);
        // A racing submit may store an older reading: that only overstates again.
        self.submits
            .slots_freed_seen
            .store(freed, Ordering::Relaxed);
        // Freed may count a slot taken after this one (and freed since): that slot
        // is free, so the difference is still what is in flight.
        if in_use(taken, freed) < capacity {
            return true;
        }
        self.give_back_slot();
        false
    }

    /// Gives back a slot taken by a submit that is refused, and wakes shutdown's drain
    /// if it is waiting (it may have counted this slot), as `release_slot` does.
    fn give_back_slot(&self) {
        self.submits.slots_taken.fetch_sub(1, Ordering::SeqCst);
        self.wake_drain();
    }

    /// Frees a capacity slot, and wakes shutdown's drain if it is waiting.
    fn release_slot(&self) {
        self.runs.slots_freed.fetch_add(1, Ordering::SeqCst);
        self.wake_drain();
    }

    /// After a slot counter changed (SeqCst): wakes shutdown's drain if it has begun.
    /// Either the drain's count sees the change, or this sees `closing` (also SeqCst).
    fn wake_drain(&self) {
        if self.closing.load(Ordering::SeqCst) {
            self.idle.notify_waiters();
        }
    }

    /// Queued + processing: slots taken less slots freed.
    fn in_flight(&self) -> usize {
        // Freed first: every slot freed was taken before.
        let freed = self.runs.slots_freed.load(Ordering::SeqCst);
        let taken = self.submits.slots_taken.load(Ordering::SeqCst);
        in_use(taken, freed)
    }

    fn retry_after(&self) -> Duration {
        // One slot frees roughly every (model time / running) on average; before any
        // prediction has finished, the model's own estimate stands in for the average.
        let ewma = match self.runs.model_time_ewma.load(Ordering::Relaxed) {
            0 => self.model.typical_latency().unwrap_or_default(),
            nanos => Duration::from_nanos(nanos),
        };
        let running = self.runs.processing.load(Ordering::Relaxed).max(1) as u32;
        // Between 1 s and an hour, whatever a model says of itself.
        (ewma / running).clamp(Duration::from_secs(1), Duration::from_secs(3600))
    }

    /// The clock read now, as the backend records it.
    fn stamp_now(&self) -> B::Stamp {
        self.backend.stamp(Instant::now())
    }

    /// Applies a terminal outcome, reached `at`, once; returns whether this call
    /// applied it.
    async fn finish(
        &self,
        job: &B::Job,
        outcome: Outcome<M::Output>,
        at: B::Stamp,
    ) -> Result<bool> {
        let applied = self
            .backend
            .finish(job, outcome, at, |done| self.on_applied(done));
        let Some(done) = applied.await? else {
            return Ok(false);
        };
        self.on_finished(job, &done);
        Ok(true)
    }

    /// A start's bookkeeping, before anyone can see the prediction `processing` (see
    /// `Backend::start`): counted as running, so that a terminal transition from
    /// `processing` always finds it counted.
    fn on_start_applied(&self) {
        self.runs.processing.fetch_add(1, Ordering::AcqRel);
    }

    /// A terminal transition's bookkeeping that must happen before anyone can see
    /// the terminal status (see `Backend::finish`): counters and the capacity slot.
    fn on_applied(&self, done: &Finished) {
        if done.previous == Status::Processing {
            self.runs.processing.fetch_sub(1, Ordering::AcqRel);
        }
        let idx = match done.status {
            Status::Succeeded => 0,
            Status::Failed => 1,
            _ => 2,
        };
        self.runs.finished_total[idx].fetch_add(1, Ordering::Relaxed);
        self.release_slot();
    }

    /// Tells the observers of a start.
    fn on_started(&self, start: &Started) {
        self.tell_observers(|o| o.on_start(start));
    }

    /// Tells every observer, in the order added. One that panics must not keep the
    /// waiters asleep, keep the others from being told, or take the worker down.
    fn tell_observers(&self, tell: impl Fn(&dyn Observer)) {
        for observer in &self.observers {
            let told = std::panic::catch_unwind(AssertUnwindSafe(|| tell(observer.as_ref())));
            if let Err(panic) = told {
                let err = PredictionError::panic(&*panic);
                tracing::error!(error = %err, "an observer panicked");
            }
        }
    }

    /// The rest, once the transition is visible: model-time average, observer,
    /// waiters.
    fn on_finished(&self, job: &B::Job, done: &Finished) {
        if let Some(t) = done.predict_time {
            let old = self.runs.model_time_ewma.load(Ordering::Relaxed);
            let new = if old == 0 {
                t.as_nanos() as u64
            } else {
                (old / 8) * 7 + (t.as_nanos() as u64) / 8
            };
            self.runs.model_time_ewma.store(new, Ordering::Relaxed);
        }
        self.tell_observers(|o| o.on_finish(done));
        self.backend.wake(job);
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

impl<M: Model, B: Backend<Input = M::Input, Output = M::Output>> Shared<M, B> {
    /// Queues a prediction and makes sure a worker will take it: unless a worker is
    /// already searching, wakes the most recently idle one, or spawns one while
    /// fewer than `concurrency` exist (see [`WorkQueue`]). A worker takes
    /// predictions until the queue is empty, so with none idle and the cap reached,
    /// the busy ones will come to this one.
    fn enqueue(self: &Arc<Self>, item: Pending<B::Job>) {
        let (waiting, call) = {
            let mut q = lock(&self.pending);
            q.items.push_back(item);
            let call = q.call_worker(self.config.concurrency);
            (q.items.len(), call)
        };
        if waiting == 1 && self.config.deadline.is_some() {
            self.sweeper_wake.notify_one();
        }
        self.answer(call);
    }

    /// Wakes or spawns the worker called.
    #[inline]
    fn answer(self: &Arc<Self>, call: Option<Call>) {
        match call {
            Some(Call::Wake(waker)) => waker.wake(),
            Some(Call::Spawn(number)) => self.spawn_worker(number),
            None => {}
        }
    }

    /// Spawns worker `number`: on the submitting runtime, if there is one, so that a
    /// queue shared between runtimes keeps running while any of them does; outside any
    /// runtime (a submit from a blocking thread), on the queue's own. A runtime
    /// already shut down drops the future, and the [`Hired`] in it gives the worker's
    /// place back.
    #[inline(never)]
    fn spawn_worker(self: &Arc<Self>, number: usize) {
        let hired = Hired {
            shared: Arc::clone(self),
            number,
            retired: false,
            ran: false,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(current) => self.tasks.spawn_on(worker(hired), &current),
            Err(_) => self.tasks.spawn_on(worker(hired), &self.runtime),
        };
    }

    /// Worker `number` takes the next prediction, if any. A searching worker that
    /// takes one and leaves more behind hands the search on; the `bool` says whether
    /// it called a worker (see [`worker`]: it then yields before running its own).
    fn pop(self: &Arc<Self>, number: usize) -> (Option<Pending<B::Job>>, bool) {
        let (item, call) = {
            let mut q = lock(&self.pending);
            let searching = q.arrived(number);
            let item = q.items.pop_front();
            let call = if searching && !q.items.is_empty() {
                q.call_worker(self.config.concurrency)
            } else {
                None
            };
            (item, call)
        };
        let called = call.is_some();
        self.answer(call);
        (item, called)
    }

    /// The next prediction for worker `number`, or `None` when it should exit (its
    /// slot given back in the same critical section that found the queue empty, so
    /// a push can never count on a worker that is leaving). An idle worker sleeps on
    /// the idle list until a push takes its waker.
    /// Also says whether it called a worker, as [`pop`](Self::pop) does.
    async fn next_job(self: &Arc<Self>, number: usize) -> Option<(Pending<B::Job>, bool)> {
        std::future::poll_fn(|cx| {
            let mut q = lock(&self.pending);
            let searching = q.arrived(number);
            if let Some(item) = q.items.pop_front() {
                if q.listed[number] {
                    // Polled by something other than a push, and found work: off the
                    // idle list, or a push would wake this busy worker instead of
                    // another.
                    q.unlist(number);
                }
                let call = if searching && !q.items.is_empty() {
                    q.call_worker(self.config.concurrency)
                } else {
                    None
                };
                drop(q);
                let called = call.is_some();
                self.answer(call);
                return Poll::Ready(Some((item, called)));
            }
            if q.stopping {
                q.retire(number);
                return Poll::Ready(None);
            }
            if q.listed[number] {
                // Still listed (polled by something other than a push): keep one
                // entry, with the current waker.
                q.relist(number, cx.waker());
            } else {
                q.listed[number] = true;
                q.idle.push((number, cx.waker().clone()));
            }
            Poll::Pending
        })
        .await
    }

    /// Makes every worker exit once the queue is empty, waking the idle ones.
    fn stop_workers(&self) {
        stop_workers(&self.pending);
    }

    /// Runs a model call that did not answer at its first poll to its end, or until
    /// the prediction is canceled (`None`), shutdown's grace period ends, or its
    /// deadline passes.
    async fn watch_model<F>(
        &self,
        job: &B::Job,
        model: std::pin::Pin<&mut F>,
        deadline: Option<Instant>,
    ) -> Option<Outcome<M::Output>>
    where
        F: Future<Output = std::thread::Result<std::result::Result<M::Output, crate::ModelError>>>,
    {
        // Biased, model first.
        tokio::select! {
            biased;
            result = model => Some(model_outcome(result)),
            // Canceled: the model future is dropped when this select returns.
            () = self.ended(job) => None,
            () = self.cancel_all.cancelled() => Some(Outcome::Canceled),
            () = sleep_until(deadline) => Some(Outcome::Failed(self.timeout("processing"))),
        }
    }

    fn timeout(&self, while_status: &str) -> PredictionError {
        PredictionError::timeout(self.config.deadline.unwrap_or_default(), while_status)
    }

    async fn finish_logged(&self, job: &B::Job, outcome: Outcome<M::Output>, at: B::Stamp) {
        if let Err(e) = self.finish(job, outcome, at).await {
            tracing::error!(error = %e, "could not record a prediction's outcome");
        }
    }
}

/// What a finished (or panicked) model call becomes.
fn model_outcome<O>(
    result: std::thread::Result<std::result::Result<O, crate::ModelError>>,
) -> Outcome<O> {
    match result {
        Ok(Ok(output)) => Outcome::Succeeded(output),
        Ok(Err(e)) => Outcome::Failed(PredictionError::model(e)),
        Err(panic) => {
            let err = PredictionError::panic(&*panic);
            tracing::warn!(error = %err, "model panicked; failing that prediction");
            Outcome::Failed(err)
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A worker: takes predictions in admission order and runs them, one at a time.
///
/// A prediction taken straight after another finished, with no wait for work in
/// between, starts at that one's completion stamp: the two are the same moment up to
/// the bookkeeping of recording the outcome (well under a microsecond in memory), and
/// a busy worker reads and converts the clock once per prediction instead of twice.
async fn worker<M: Model, B: Backend<Input = M::Input, Output = M::Output>>(
    mut hired: Hired<M, B>,
) {
    hired.ran = true;
    let shared = Arc::clone(&hired.shared);
    let number = hired.number;
    // Whether other threads could run what this one yields to (not on a
    // `current_thread` runtime, where a yield would only reorder the same work).
    let parallel = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread);
    // A stamp still current: the last prediction's completion, if this worker has
    // not waited for work since.
    let mut now = None;
    // Each pass runs one prediction to its terminal status (unless it already has
    // one), in this loop rather than in a future of its own.
    loop {
        let (item, called) = match shared.pop(number) {
            (Some(item), called) => (item, called),
            (None, _) => match shared.next_job(number).await {
                Some(taken) => {
                    now = None;
                    taken
                }
                None => {
                    // `next_job` retired it, in the critical section that found the
                    // queue empty.
                    hired.retired = true;
                    break;
                }
            },
        };
        // Until the prediction reaches a terminal status, a drop of this future (its
        // runtime shut down) or a panic (in a backend's code) ends it on the way out,
        // instead of leaving it queued or processing for good with its capacity slot.
        let mut unfinished = Unfinished {
            shared: &shared,
            job: &item.job,
            armed: true,
        };
        'run: {
            if called && parallel {
                // The worker called is in this thread's next-to-run slot, which other
                // threads cannot take: without a yield it would wait for this model's first
                // poll (synchronous work, say tokenizing), and in a burst every model would
                // start on this thread after the one before. Yielding lets it take the next
                // prediction (and hand the search on) first, while this worker, at the back
                // of the run queue, can be taken by an idle thread. Before the start, not
                // after: the wait counts as queue time, and start and first poll stay in
                // one step (a cancel or the end of shutdown's grace comes before both or
                // after both). Starts stay in admission order but for those two workers'
                // race to `start`.
                tokio::task::yield_now().await;
                // The last completion is no longer now.
                now = None;
            }
            let job = &item.job;
            if shared.grace_over.load(Ordering::Acquire) {
                // Shutdown's grace period is over: nothing new starts.
                shared
                    .finish_logged(job, Outcome::Canceled, shared.stamp_now())
                    .await;
                now = None;
                break 'run;
            }
            let started = now.unwrap_or_else(|| shared.stamp_now());
            let applied = shared
                .backend
                .start(job, started, |_| shared.on_start_applied());
            match applied.await {
                Ok(Some(start)) => shared.on_started(&start),
                // Canceled or timed out while queued.
                Ok(None) => {
                    now = None;
                    break 'run;
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not start a prediction");
                    let failed = Outcome::Failed(PredictionError::backend(&e));
                    shared.finish_logged(job, failed, shared.stamp_now()).await;
                    now = None;
                    break 'run;
                }
            }
            let input = match shared.backend.input(job).await {
                Ok(input) => input,
                Err(e) => {
                    let failed = Outcome::Failed(PredictionError::backend(&e));
                    shared.finish_logged(job, failed, shared.stamp_now()).await;
                    now = None;
                    break 'run;
                }
            };
            let mut model =
                std::pin::pin!(AssertUnwindSafe(shared.model.predict(&input)).catch_unwind());
            // One poll first, here rather than in another future: a model that answers at
            // once never pays for building the cancel, shutdown and deadline watchers.
            let first = std::future::poll_fn(|cx| Poll::Ready(model.as_mut().poll(cx))).await;
            let outcome = match first {
                Poll::Ready(result) => model_outcome(result),
                Poll::Pending => match shared.watch_model(job, model, item.deadline).await {
                    Some(outcome) => outcome,
                    None => {
                        now = None;
                        break 'run;
                    }
                },
            };
            let completed = shared.stamp_now();
            // `finish_logged`, written out: two futures fewer on every prediction's path.
            let applied = shared
                .backend
                .finish(job, outcome, completed, |done| shared.on_applied(done));
            match applied.await {
                Ok(Some(done)) => shared.on_finished(job, &done),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "could not record a prediction's outcome");
                    // Record a failure instead, if the backend can.
                    let failed = Outcome::Failed(PredictionError::backend(&e));
                    shared.finish_logged(job, failed, shared.stamp_now()).await;
                }
            }
            now = Some(completed);
        }
        unfinished.armed = false;
    }
}

/// Ends the prediction a worker took if the worker stops before the prediction is
/// terminal: its future dropped (its runtime shut down) makes it `canceled`, as at the
/// end of shutdown's grace period; an unwind (a panic outside the model's polls, say
/// in a backend's code) makes it `failed`, kind `backend`. A runtime dropped while its
/// thread unwinds from another panic counts as the second.
/// The transition must complete at its first poll (the in-memory backend's does);
/// otherwise it is logged and the prediction left as it is.
struct Unfinished<'a, M: Model, B: Backend<Input = M::Input, Output = M::Output>> {
    shared: &'a Shared<M, B>,
    job: &'a B::Job,
    /// Cleared once the prediction is terminal (or no longer this worker's).
    armed: bool,
}

impl<M: Model, B: Backend<Input = M::Input, Output = M::Output>> Drop for Unfinished<'_, M, B> {
    // Inlined: the worker drops one of these for every prediction, nearly always
    // disarmed.
    #[inline]
    fn drop(&mut self) {
        if self.armed {
            self.end();
        }
    }
}

impl<M: Model, B: Backend<Input = M::Input, Output = M::Output>> Unfinished<'_, M, B> {
    #[cold]
    #[inline(never)]
    fn end(&self) {
        let unwinding = std::thread::panicking();
        let (shared, job) = (self.shared, self.job);
        // Everything in here, logging included, runs inside `catch_unwind`: a panic
        // escaping a destructor during an unwind would abort the process.
        let ended = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let (outcome, why) = if unwinding {
                let err = PredictionError::worker_panicked();
                (Outcome::Failed(err), "its worker panicked")
            } else {
                (Outcome::Canceled, "its worker's runtime shut down")
            };
            let end = shared.finish(job, outcome, shared.stamp_now());
            match end.now_or_never() {
                Some(Ok(true)) => tracing::warn!("a prediction ended early: {why}"),
                Some(Ok(false)) => {}
                Some(Err(e)) => {
                    tracing::error!(error = %e, "could not end a prediction early ({why})");
                }
                None => tracing::error!(
                    "could not end a prediction early ({why}): the backend did not answer at once"
                ),
            }
        }));
        drop(ended);
    }
}

/// Makes every worker exit once the queue is empty, waking the idle ones.
fn stop_workers<J>(pending: &Mutex<WorkQueue<J>>) {
    let idle = {
        let mut q = lock(pending);
        q.stopping = true;
        q.listed.fill(false);
        std::mem::take(&mut q.idle)
    };
    for (_, waker) in idle {
        waker.wake();
    }
}

/// A worker's place in the pool (its number, its count among the workers, and its
/// search if it was called to one), owned by the worker's future from before it is
/// spawned. A normal exit gives the place back in `next_job`; this gives it back
/// however else the worker ends: a panic (in a backend's code), or its future dropped
/// before or while it runs (its runtime shut down). Otherwise a search that never
/// arrives would leave every later push waiting for it, and the queue would run
/// nothing more. A worker that panicked also calls another for what is still queued,
/// which would otherwise wait for the next push.
struct Hired<M: Model, B: Backend<Input = M::Input, Output = M::Output>> {
    shared: Arc<Shared<M, B>>,
    number: usize,
    /// Set when `next_job` has retired the worker.
    retired: bool,
    /// Set when the worker first runs. One dropped before that (spawned on a runtime
    /// already shut down) calls no other: that one would only be dropped the same way.
    ran: bool,
}

impl<M: Model, B: Backend<Input = M::Input, Output = M::Output>> Drop for Hired<M, B> {
    fn drop(&mut self) {
        if self.retired {
            return;
        }
        let call = {
            let mut q = lock(&self.shared.pending);
            q.retire(self.number);
            let panicked = self.ran && std::thread::panicking();
            (panicked && !q.stopping && !q.items.is_empty())
                .then(|| q.call_worker(self.shared.config.concurrency))
                .flatten()
        };
        self.shared.answer(call);
    }
}

/// Fails queued predictions whose deadline passes before a worker takes them. One
/// deadline applies to all, so the oldest queued prediction is always the next to
/// expire: the sweeper sleeps until the front's deadline, never scanning.
async fn deadline_sweeper<M: Model, B: Backend<Input = M::Input, Output = M::Output>>(
    shared: Arc<Shared<M, B>>,
    stop: CancellationToken,
) {
    loop {
        let now = Instant::now();
        let mut expired = Vec::new();
        let next = {
            let mut pending = lock(&shared.pending);
            loop {
                match pending.items.front().and_then(|p| p.deadline) {
                    Some(at) if at <= now => expired.extend(pending.items.pop_front()),
                    other => break other,
                }
            }
        };
        let at = shared.backend.stamp(now);
        for p in &expired {
            let failed = Outcome::Failed(shared.timeout("queued"));
            shared.finish_logged(&p.job, failed, at).await;
        }
        // `notify_one` leaves a permit when nobody waits, so a push that lands
        // between the look above and this wait is not missed.
        tokio::select! {
            () = stop.cancelled() => return,
            () = sleep_until(next) => {}
            () = shared.sweeper_wake.notified(), if next.is_none() => {}
        }
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
pub struct Subscription<
    M: Model,
    B: Backend<Input = M::Input, Output = M::Output> = MemoryBackend<
        <M as Model>::Input,
        <M as Model>::Output,
    >,
> {
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

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Waker};

    use super::*;
    use crate::MockModel;

    fn idle_numbers<M: Model, B: Backend<Input = M::Input, Output = M::Output>>(
        queue: &JobQueue<M, B>,
    ) -> Vec<usize> {
        lock(&queue.shared.pending)
            .idle
            .iter()
            .map(|(n, _)| *n)
            .collect()
    }

    /// Numbers for two workers (driven by hand in these tests).
    fn hire_two<M: Model, B: Backend<Input = M::Input, Output = M::Output>>(
        queue: &JobQueue<M, B>,
    ) -> (usize, usize) {
        let mut q = lock(&queue.shared.pending);
        (q.hire(), q.hire())
    }

    /// A worker polled again while still on the idle list (woken by something other
    /// than a push, say a stale wake-up from its last prediction) is not listed
    /// twice: a second entry would later take a push's wake-up to a busy worker.
    #[tokio::test]
    async fn a_worker_polled_twice_while_idle_is_listed_once() {
        let queue = JobQueue::new(MockModel::new(), QueueConfig::default()).expect("valid");
        let number = lock(&queue.shared.pending).hire();
        let mut next = pin!(queue.shared.next_job(number));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(next.as_mut().poll(&mut cx).is_pending());
        assert!(next.as_mut().poll(&mut cx).is_pending());
        assert_eq!(idle_numbers(&queue), [number]);
    }

    /// The most recently idle worker is woken first; its waker leaves the list, so
    /// the next push wakes another.
    #[tokio::test]
    async fn the_most_recently_idle_worker_is_woken_first() {
        let queue = JobQueue::new(MockModel::new(), QueueConfig::default()).expect("valid");
        let mut cx = Context::from_waker(Waker::noop());
        let (a, b) = hire_two(&queue);
        assert_eq!((a, b), (0, 1));
        let mut first = pin!(queue.shared.next_job(0));
        let mut second = pin!(queue.shared.next_job(1));
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert_eq!(idle_numbers(&queue), [0, 1]);
        queue.submit("x".to_owned()).await.expect("admitted");
        assert_eq!(idle_numbers(&queue), [0]);
        // The woken one finds the prediction; the other would find nothing.
        assert!(second.as_mut().poll(&mut cx).is_ready());
        queue.submit("y".to_owned()).await.expect("admitted");
        assert_eq!(idle_numbers(&queue), Vec::<usize>::new());
    }

    /// A burst of pushes wakes one worker, not one per push: the pushes made while a
    /// woken worker is on its way wake nobody, and that worker, on taking a
    /// prediction with more behind it, wakes the next.
    #[tokio::test]
    async fn a_burst_wakes_one_worker_who_hands_the_search_on() {
        let queue = JobQueue::new(MockModel::new(), QueueConfig::default()).expect("valid");
        let mut cx = Context::from_waker(Waker::noop());
        let (a, b) = hire_two(&queue);
        let c = lock(&queue.shared.pending).hire();
        let mut first = pin!(queue.shared.next_job(a));
        let mut second = pin!(queue.shared.next_job(b));
        let mut third = pin!(queue.shared.next_job(c));
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert!(third.as_mut().poll(&mut cx).is_pending());
        assert_eq!(lock(&queue.shared.pending).searching, 0);
        for input in ["x", "y", "z"] {
            queue.submit(input.to_owned()).await.expect("admitted");
        }
        // Only the most recently idle worker was woken.
        assert_eq!(idle_numbers(&queue), [a, b]);
        assert_eq!(lock(&queue.shared.pending).searching, 1);
        // It takes one and, seeing two more, wakes the next.
        assert!(third.as_mut().poll(&mut cx).is_ready());
        assert_eq!(idle_numbers(&queue), [a]);
        assert!(second.as_mut().poll(&mut cx).is_ready());
        // That one leaves the last prediction for the last worker, whom it woke.
        assert_eq!(idle_numbers(&queue), Vec::<usize>::new());
        assert!(first.as_mut().poll(&mut cx).is_ready());
        let q = lock(&queue.shared.pending);
        assert_eq!((q.searching, q.items.len()), (0, 0));
    }

    /// A listed worker that is polled by something other than a push and finds work
    /// leaves the idle list: the next push must not take the busy worker's waker.
    #[tokio::test]
    async fn a_listed_worker_that_finds_work_leaves_the_idle_list() {
        let queue = JobQueue::new(MockModel::new(), QueueConfig::default()).expect("valid");
        let mut cx = Context::from_waker(Waker::noop());
        let (a, b) = hire_two(&queue);
        let mut first = pin!(queue.shared.next_job(a));
        let mut second = pin!(queue.shared.next_job(b));
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        // The push wakes `b`, but `a` runs first and takes the prediction.
        queue.submit("x".to_owned()).await.expect("admitted");
        assert!(first.as_mut().poll(&mut cx).is_ready());
        assert_eq!(idle_numbers(&queue), Vec::<usize>::new());
        assert!(!lock(&queue.shared.pending).listed[a]);
    }

    /// A worker that leaves gives its slot back in the same critical section that
    /// found the queue empty: a push right after is not left waiting for it.
    #[tokio::test(start_paused = true)]
    async fn a_push_after_the_workers_left_is_still_run() {
        let queue =
            JobQueue::new(MockModel::new(), QueueConfig::default().concurrency(1)).expect("valid");
        let mut cx = Context::from_waker(Waker::noop());
        let number = lock(&queue.shared.pending).hire();
        let mut next = pin!(queue.shared.next_job(number));
        queue.shared.stop_workers();
        assert!(matches!(next.as_mut().poll(&mut cx), Poll::Ready(None)));
        let id = queue.submit("late".to_owned()).await.expect("admitted");
        let done = tokio::time::timeout(Duration::from_secs(60), queue.wait(id, None))
            .await
            .expect("a worker ran it")
            .expect("known");
        assert_eq!(done.status, Status::Succeeded);
    }

    /// A submit refused for want of capacity gives back the slot it took. Shutdown's
    /// drain may have counted that slot, so the give-back must wake it. The test plays
    /// the interleaving by hand: R passes the `closing` check and takes a slot, reads
    /// the freed count before P finishes, and decides to refuse; shutdown starts; P
    /// finishes (the drain wakes and counts 1 in flight, R's); R gives its slot back.
    #[tokio::test(start_paused = true)]
    async fn a_refusal_during_the_drain_wakes_it() {
        let queue =
            JobQueue::new(MockModel::new(), QueueConfig::default().capacity(1)).expect("valid");
        let p = queue.submit("p".to_owned()).await.expect("admitted");
        // R: fetch_add in take_slot (it read freed = 0: it will refuse).
        queue
            .shared
            .submits
            .slots_taken
            .fetch_add(1, Ordering::AcqRel);
        let q2 = queue.clone();
        let start = Instant::now();
        let shutdown = tokio::spawn(async move { q2.shutdown(Duration::from_secs(3600)).await });
        tokio::task::yield_now().await;
        queue.wait(p, None).await.expect("known");
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // R: the refusal's fetch_sub. Nothing in flight now.
        queue.shared.give_back_slot();
        assert_eq!(queue.shared.in_flight(), 0);
        let report = shutdown.await.expect("joined");
        let waited = start.elapsed();
        assert!(
            report.drained && waited < Duration::from_secs(60),
            "drain not woken: {report:?} after {waited:?}"
        );
    }

    /// The slot counters only grow, and wrap where `usize` is 32 bits (after 2^32
    /// predictions): capacity still holds across the wrap.
    #[tokio::test(start_paused = true)]
    async fn capacity_holds_when_the_slot_counters_wrap() {
        let queue =
            JobQueue::new(MockModel::new(), QueueConfig::default().capacity(1)).expect("valid");
        let s = &queue.shared;
        // As after usize::MAX admissions, all finished.
        s.submits.slots_taken.store(usize::MAX, Ordering::SeqCst);
        s.runs.slots_freed.store(usize::MAX, Ordering::SeqCst);
        s.submits
            .slots_freed_seen
            .store(usize::MAX, Ordering::SeqCst);
        queue.submit("a".to_owned()).await.expect("admitted");
        let second = queue.submit("b".to_owned()).await;
        assert!(
            matches!(second, Err(Error::QueueFull { .. })),
            "capacity 1 admitted two: {second:?}; stats {:?}",
            queue.stats()
        );
        let stats = queue.stats();
        assert_eq!(stats.queued + stats.processing, 1, "{stats:?}");
    }

    /// The IDs a queue makes are v4 UUIDs numbered in admission order (their last
    /// 32 bits), from a start that differs between queues.
    #[tokio::test(start_paused = true)]
    async fn ids_are_v4_and_numbered_in_admission_order() {
        let config = QueueConfig::default();
        let a = JobQueue::new(MockModel::new(), config.clone()).expect("valid");
        let b = JobQueue::new(MockModel::new(), config).expect("valid");
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(a.submit(format!("{i}")).await.expect("admitted"));
        }
        for id in &ids {
            assert_eq!(id.as_uuid().get_version_num(), 4, "{id}");
            assert_eq!(id.as_uuid().get_variant(), uuid::Variant::RFC4122, "{id}");
        }
        let first = ids[0].sequence();
        assert_eq!(ids[1].sequence(), first.wrapping_add(1));
        assert_eq!(ids[2].sequence(), first.wrapping_add(2));
        // The random bits differ from one ID to the next.
        assert_ne!(
            ids[0].as_uuid().as_u64_pair().0,
            ids[1].as_uuid().as_u64_pair().0
        );
        let other = b.submit("x".to_owned()).await.expect("admitted");
        // 1 in 2^32 to fail by chance.
        assert_ne!(
            other.sequence(),
            first,
            "two queues started at the same number"
        );
    }

    /// An observer that panics neither keeps the waiters asleep nor takes the
    /// worker down: with a concurrency of one, the next prediction still runs.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_observer_loses_nothing() {
        struct PanicsOnce(AtomicBool);
        impl Observer for PanicsOnce {
            fn on_finish(&self, _: &Finished) {
                if !self.0.swap(true, Ordering::Relaxed) {
                    panic!("observer panics (on purpose, in a test)");
                }
            }
        }
        let queue = JobQueue::builder(MockModel::new())
            .config(QueueConfig::default().concurrency(1))
            .observer(PanicsOnce(AtomicBool::new(false)))
            .build()
            .expect("valid");
        for input in ["first", "second"] {
            let id = queue.submit(input.to_owned()).await.expect("admitted");
            let done = tokio::time::timeout(Duration::from_secs(60), queue.wait(id, None))
                .await
                .expect("a worker ran it")
                .expect("known");
            assert_eq!(done.status, Status::Succeeded, "{input}");
        }
        assert_eq!(lock(&queue.shared.pending).workers, 1);
    }

    /// Every observer is told, in the order added, even after one panics.
    #[tokio::test(start_paused = true)]
    async fn every_observer_is_told() {
        struct Counts(Arc<AtomicUsize>, bool);
        impl Observer for Counts {
            fn on_finish(&self, _: &Finished) {
                self.0.fetch_add(1, Ordering::Relaxed);
                assert!(!self.1, "observer panics (on purpose, in a test)");
            }
        }
        let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let queue = JobQueue::builder(MockModel::new())
            .observer(Counts(Arc::clone(&a), true))
            .observer(Counts(Arc::clone(&b), false))
            .build()
            .expect("valid");
        for input in ["first", "second"] {
            let done = queue.predict(input.to_owned()).await.expect("admitted");
            assert_eq!(done.status, Status::Succeeded);
        }
        assert_eq!(
            (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed)),
            (2, 2)
        );
    }

    /// Dropping the last handle cancels what runs (its model future is dropped) and
    /// what waits, so that a model that never ends does not keep its worker forever.
    #[tokio::test(start_paused = true)]
    async fn dropping_the_last_handle_cancels_what_runs_and_what_waits() {
        struct Forever(Arc<AtomicUsize>);
        struct Dropped(Arc<AtomicUsize>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        impl Model for Forever {
            type Input = u32;
            type Output = u32;
            fn name(&self) -> &str {
                "forever"
            }
            fn version(&self) -> &str {
                "0"
            }
            async fn predict(&self, _: &u32) -> std::result::Result<u32, crate::ModelError> {
                let _guard = Dropped(Arc::clone(&self.0));
                std::future::pending().await
            }
        }
        let dropped = Arc::new(AtomicUsize::new(0));
        let queue = JobQueue::new(
            Forever(Arc::clone(&dropped)),
            QueueConfig::default().concurrency(1),
        )
        .expect("valid");
        let shared = Arc::downgrade(&queue.shared);
        let (running, queued) = (queue.submit(1).await, queue.submit(2).await);
        let (running, queued) = (running.expect("admitted"), queued.expect("admitted"));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(queue.stats().processing, 1);
        let statuses = async |q: &JobQueue<Forever>| {
            let r = q.get(running).await.expect("known").status;
            let w = q.get(queued).await.expect("known").status;
            (r, w)
        };
        assert_eq!(statuses(&queue).await, (Status::Processing, Status::Queued));
        drop(queue);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            dropped.load(Ordering::Relaxed),
            1,
            "the model future was dropped"
        );
        // The worker has exited and let go of the queue's state.
        assert!(
            shared.upgrade().is_none(),
            "the worker still holds the queue"
        );
    }

    /// A worker that panics anyway (in a backend's code) gives its slot, its
    /// number and its search back.
    #[tokio::test]
    async fn a_panicking_worker_gives_its_slot_back() {
        let queue = JobQueue::new(MockModel::new(), QueueConfig::default()).expect("valid");
        let number = lock(&queue.shared.pending).hire();
        let shared = Arc::clone(&queue.shared);
        let unwound = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let _hired = Hired {
                shared,
                number,
                retired: false,
                ran: true,
            };
            panic!("a backend panics (on purpose, in a test)");
        }));
        assert!(unwound.is_err());
        let q = lock(&queue.shared.pending);
        assert_eq!(
            (q.workers, q.free.as_slice(), q.searching),
            (0, [number].as_slice(), 0)
        );
    }

    /// A queue made on a paused `current_thread` runtime of its own, for tests that
    /// use it from another runtime or thread too.
    fn queue_on_its_runtime() -> (tokio::runtime::Runtime, JobQueue<MockModel>) {
        let main = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        let queue = main
            .block_on(async { JobQueue::new(MockModel::new(), QueueConfig::default()) })
            .expect("valid");
        (main, queue)
    }

    /// A prediction submitted now, on `main`, runs to its end.
    fn assert_a_new_prediction_runs(main: &tokio::runtime::Runtime, queue: &JobQueue<MockModel>) {
        main.block_on(async {
            let id = queue.submit("y".to_owned()).await.expect("admitted");
            let done = tokio::time::timeout(Duration::from_secs(600), queue.wait(id, None)).await;
            assert!(done.is_ok(), "the second prediction never ran");
        });
    }

    /// A worker spawned on a runtime that is dropped before it runs (a queue shared
    /// by short-lived runtimes) gives its place back: the next push calls another,
    /// where a search that never arrived would have left it waiting for good.
    #[test]
    fn a_push_after_a_worker_lost_with_its_runtime_is_still_run() {
        let (main, queue) = queue_on_its_runtime();
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        other
            .block_on(queue.submit("x".to_owned()))
            .expect("admitted");
        // Its worker task is dropped unpolled.
        drop(other);
        assert_a_new_prediction_runs(&main, &queue);
    }

    /// Stopping wakes every idle worker, and they then exit (`None`).
    #[tokio::test]
    async fn stopping_releases_idle_workers() {
        let queue = JobQueue::new(MockModel::new(), QueueConfig::default()).expect("valid");
        let mut cx = Context::from_waker(Waker::noop());
        let number = lock(&queue.shared.pending).hire();
        let mut next = pin!(queue.shared.next_job(number));
        assert!(next.as_mut().poll(&mut cx).is_pending());
        queue.shared.stop_workers();
        assert_eq!(idle_numbers(&queue), Vec::<usize>::new());
        assert!(matches!(next.as_mut().poll(&mut cx), Poll::Ready(None)));
        let q = lock(&queue.shared.pending);
        assert_eq!((q.workers, q.free.as_slice()), (0, [number].as_slice()));
    }

    type Hook = Arc<Mutex<Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>>>;

    /// Records each first poll (input, and whether 1 was canceled by then); input
    /// 2's first poll runs `hook`.
    struct Counting {
        polled: Arc<Mutex<Vec<(u32, bool)>>>,
        hook: Hook,
        canceled: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Model for Counting {
        type Input = u32;
        type Output = u32;
        fn name(&self) -> &str {
            "counting"
        }
        fn version(&self) -> &str {
            "0"
        }
        async fn predict(&self, input: &u32) -> std::result::Result<u32, crate::ModelError> {
            lock(&self.polled).push((*input, self.canceled.load(Ordering::SeqCst)));
            if *input == 2 {
                let hook = lock(&self.hook).take();
                if let Some(hook) = hook {
                    hook.await;
                }
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(*input)
        }
    }

    /// A worker's start and its model's first poll are one step: a prediction
    /// canceled after it was taken (here by another prediction's model, while
    /// workers hand the search on) is never polled (a review found a yield between
    /// the two).
    #[tokio::test(start_paused = true)]
    async fn a_prediction_canceled_in_a_burst_is_never_polled_after_its_cancel() {
        let polled = Arc::new(Mutex::new(Vec::new()));
        let hook: Hook = Arc::new(Mutex::new(None));
        let canceled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let queue = JobQueue::new(
            Counting {
                polled: Arc::clone(&polled),
                hook: Arc::clone(&hook),
                canceled: Arc::clone(&canceled),
            },
            QueueConfig::default(),
        )
        .expect("valid");
        let one = queue.submit(1).await.expect("admitted");
        let _two = queue.submit(2).await.expect("admitted");
        let q = queue.clone();
        let c = Arc::clone(&canceled);
        *lock(&hook) = Some(Box::pin(async move {
            let p = q.cancel(one).await.expect("known");
            c.store(p.status == Status::Canceled, Ordering::SeqCst);
        }));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            canceled.load(Ordering::SeqCst),
            "1 was canceled while processing"
        );
        assert!(
            !lock(&polled).contains(&(1, true)),
            "model 1 first polled after its cancel: {:?}",
            lock(&polled)
        );
    }
}
