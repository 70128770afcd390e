//! The queue's configuration ([`QueueConfig`]), what it reports ([`Stats`],
//! [`ShutdownReport`]) and who it tells ([`Observer`]).

use std::time::Duration;

use tokio::sync::Semaphore;

use crate::store::{Finished, Started};
use crate::{Error, Result};

/// How a [`JobQueue`](crate::JobQueue) admits, runs and retains predictions.
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
    /// Most predictions this process runs at once, and so most calls to
    /// [`Model::predict`](crate::Model::predict) in progress, counting blocking work
    /// started through [`PredictContext::blocking`](crate::PredictContext::blocking)
    /// until it returns, even after its prediction was canceled or timed out. Blocking
    /// work a model starts by other means (its own `spawn_blocking`) is not bounded.
    /// Default 100.
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
/// `on_finish` is called on the task that made the terminal transition (a worker, a
/// cancel, the deadline sweeper) once the new status is visible; `on_start` on the
/// worker once `processing` is visible, before the model runs. Keep both short. A panic in either
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

/// The store's counts and this process's totals, for metrics and readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Admitted and waiting for a worker.
    pub queued: usize,
    /// Running now (in flight).
    pub processing: usize,
    /// Finished predictions still retained.
    pub retained: usize,
    /// Bytes the retained predictions weigh, for a store with a byte budget
    /// ([`MemoryStore::with_max_bytes`](crate::store::MemoryStore::with_max_bytes)); 0 otherwise.
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
    /// Predictions whose blocking work ([`PredictContext::blocking`](crate::PredictContext::blocking))
    /// was still running when they ended (canceled, timed out, shut down): their slots
    /// stayed taken until it returned.
    pub blocking_overrun_total: u64,
    /// Whether the queue is shutting down.
    pub shutting_down: bool,
}

/// What [`JobQueue::shutdown`](crate::JobQueue::shutdown) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every admitted prediction finished within the grace period.
    pub drained: bool,
    /// Predictions canceled because the grace period ran out.
    pub canceled: usize,
}
