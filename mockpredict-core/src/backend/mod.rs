//! The [`Backend`] trait: where a [`JobQueue`](crate::JobQueue) keeps prediction
//! state, and [`MemoryBackend`], the embedded default.
//!
//! The queue owns admission, concurrency, deadlines and the worker tasks; a backend
//! owns the records: it stores each prediction, applies status transitions atomically
//! (never backwards, exactly one terminal status), wakes waiters on every change, and
//! forgets finished predictions after their retention. A shared-state backend (Redis:
//! several processes, one queue) implements the same trait with serialized records and
//! pub/sub wake-ups; the in-memory one keeps `Arc`s and never serializes anything.

mod ids;
mod memory;

use std::future::Future;

use tokio::time::Instant;

pub use memory::{MemoryBackend, MemoryJob, MemoryStamp};

use crate::{InputRef, Outcome, Prediction, PredictionId, Result, Status};

/// What a start (`queued → processing`) reports back to the queue, for its
/// observers: how long the prediction waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// Which prediction started.
    pub id: PredictionId,
    /// Admission to start.
    pub queue_time: std::time::Duration,
}

/// What a successful terminal transition reports back to the queue, for its counters
/// and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Which prediction finished.
    pub id: PredictionId,
    /// The status the prediction left (`queued` or `processing`).
    pub previous: Status,
    /// The terminal status it reached.
    pub status: Status,
    /// Admission to start (or to the end, if it never started).
    pub queue_time: std::time::Duration,
    /// Start to end, if it started.
    pub predict_time: Option<std::time::Duration>,
}

/// Storage for a queue's predictions.
///
/// Every method may be called concurrently from many tasks. Transition methods are
/// atomic per prediction: of two racing `finish` calls exactly one applies.
pub trait Backend: Send + Sync + 'static {
    /// The model input type stored.
    type Input: Send + Sync + 'static;
    /// The model output type stored.
    type Output: Send + Sync + 'static;
    /// A cheap handle on one stored prediction, valid while it is retained.
    type Job: Clone + Send + Sync + 'static;
    /// An instant as this backend records it. The queue reads the clock once per
    /// event and converts the reading once, with [`stamp`](Backend::stamp); a worker
    /// that takes its next prediction straight after finishing one (no wait for
    /// work in between) starts it at that one's completion stamp.
    type Stamp: Copy + Send + Sync + 'static;

    /// Converts a clock reading (tokio's clock, so paused-clock tests hold) to a
    /// [`Stamp`](Backend::Stamp).
    fn stamp(&self, at: Instant) -> Self::Stamp;

    /// Stores a new `queued` prediction, admitted at `created`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn insert(
        &self,
        id: PredictionId,
        input: Self::Input,
        created: Self::Stamp,
    ) -> impl Future<Output = Result<Self::Job>> + Send;

    /// Finds a retained prediction.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn lookup(&self, id: PredictionId) -> impl Future<Output = Result<Option<Self::Job>>> + Send;

    /// The prediction's current state.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn snapshot(
        &self,
        job: &Self::Job,
    ) -> impl Future<Output = Result<Prediction<Self::Input, Self::Output>>> + Send;

    /// The prediction's current status (cheaper than a snapshot).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn status(&self, job: &Self::Job) -> impl Future<Output = Result<Status>> + Send;

    /// The prediction's input.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn input(&self, job: &Self::Job) -> impl Future<Output = Result<InputRef<Self::Input>>> + Send;

    /// Moves `queued → processing`, started `at` (recorded no earlier than its
    /// admission), and returns how long it waited. Returns `None` (and changes
    /// nothing) when the prediction is no longer queued, e.g. it was canceled
    /// meanwhile.
    ///
    /// `on_applied` runs exactly once when the transition applies, *before* the new
    /// status is visible to any reader, as [`finish`](Backend::finish)'s does: the
    /// queue counts the prediction as running there, so that a cancel (which
    /// uncounts it when it finds it `processing`) can never come first, whatever
    /// happens to this call afterwards. It must be quick and must not block.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn start<F>(
        &self,
        job: &Self::Job,
        at: Self::Stamp,
        on_applied: F,
    ) -> impl Future<Output = Result<Option<Started>>> + Send
    where
        F: FnOnce(&Started) + Send;

    /// Moves a `queued` or `processing` prediction to the outcome's terminal status,
    /// reached `at` (recorded no earlier than its start), and starts its retention.
    /// Returns `None` (and changes nothing) when it was already terminal.
    ///
    /// `on_applied` runs exactly once when the transition applies, *before* the new
    /// status is visible to any reader: the queue frees the prediction's capacity slot
    /// there, so a client that sees the result can submit again at once without a
    /// spurious `QueueFull`. It must be quick and must not block. `finish` does not
    /// wake waiters; the queue calls [`wake`](Backend::wake) after its bookkeeping.
    ///
    /// When a worker stops before its prediction ends (its runtime shut down, or this
    /// backend's code panicked on it), the queue ends the prediction from a destructor
    /// and polls this future only once there: the in-memory backend answers at the
    /// first poll; a backend that must wait for I/O leaves that prediction as it is.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn finish<F>(
        &self,
        job: &Self::Job,
        outcome: Outcome<Self::Output>,
        at: Self::Stamp,
        on_applied: F,
    ) -> impl Future<Output = Result<Option<Finished>>> + Send
    where
        F: FnOnce(&Finished) + Send;

    /// Wakes everything waiting on [`changed`](Backend::changed) for this prediction.
    fn wake(&self, job: &Self::Job);

    /// A future that resolves at the prediction's next status change. It is
    /// registered when this method returns, so a change between this call and the
    /// first poll is not lost: call it, then read the state, then await it.
    fn changed<'a>(&'a self, job: &'a Self::Job) -> impl Future<Output = ()> + Send + 'a;

    /// Forgets finished predictions whose retention has passed and returns when to
    /// call again.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn purge_expired(&self) -> impl Future<Output = Result<Instant>> + Send;

    /// How many finished predictions are retained.
    fn retained(&self) -> usize;

    /// How many bytes the retained predictions weigh, for a backend that bounds them
    /// by size ([`MemoryBackend::with_max_bytes`]); default: 0, for one that does not.
    fn retained_bytes(&self) -> u64 {
        0
    }

    /// Whether the store is reachable (readiness).
    fn is_ready(&self) -> impl Future<Output = bool> + Send;
}
