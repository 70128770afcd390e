//! The [`Store`] seam: everything a queue keeps that several processes sharing one
//! queue must share, and [`MemoryStore`], the embedded default.
//!
//! A [`JobQueue`](crate::JobQueue) does the per-process work (its workers, their
//! deadlines, shutdown, the public API); a store owns the records, the pending order,
//! the capacity, the leases on running predictions, the first-wins terminal write,
//! change notifications and expiry. The trait is shaped by two implementations: the
//! in-memory one here, and a Redis one (several server processes, one queue). Each
//! method's documentation says how each of them does it.
//!
//! # A Redis store, method by method
//!
//! Keys under a prefix `P` (`{mp}` as a hash tag, so a cluster keeps them on one slot):
//! `P:p:{id}` a hash per prediction (status, input, output, error, times, lease token
//! and node), `P:pending` a list in admission order, `P:running` a sorted set of
//! `id → lease expiry`, `P:done` a sorted set of `id → completion time` (retention),
//! `P:events:{id}` pub/sub channels, `P:work` a pub/sub channel. Every write is one Lua
//! script that checks before it writes and takes its time from Redis (`TIME`), so no
//! node's clock matters and no two nodes can both apply a transition.

mod memory;
mod record;

use std::future::Future;
use std::time::Duration;

pub use memory::{MemoryStore, MemoryWatch};

use crate::{InputRef, Outcome, Prediction, PredictionId, Result, Status};

/// A prediction a worker has claimed (`queued → processing`): what it needs to run it.
#[derive(Debug)]
pub struct Claimed<I: 'static, W> {
    /// Which prediction.
    pub id: PredictionId,
    /// Its input.
    pub input: InputRef<I>,
    /// The claim's lease: the worker renews it while the model runs.
    pub lease: Lease,
    /// Admission to start: how much of a deadline is already spent.
    pub queue_time: Duration,
    /// Its change notifications, registered at the claim: a cancel from anywhere
    /// wakes it.
    pub watch: W,
}

/// A running prediction's claim by one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Identifies this claim: renewing or releasing with another token does nothing.
    pub token: u64,
    /// How long the claim holds unless renewed; `None`: until the prediction ends
    /// (the in-memory store, where the worker cannot die without its store).
    pub ttl: Option<Duration>,
}

/// What a start (`queued → processing`) reports to the queue's observers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// Which prediction started.
    pub id: PredictionId,
    /// Admission to start.
    pub queue_time: Duration,
}

/// What a terminal transition reports to the queue's counters and observers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Which prediction finished.
    pub id: PredictionId,
    /// The status it left (`queued` or `processing`).
    pub previous: Status,
    /// The terminal status it reached.
    pub status: Status,
    /// Admission to start (or to the end, if it never started).
    pub queue_time: Duration,
    /// Start to end, if it started.
    pub predict_time: Option<Duration>,
}

/// How many predictions a store holds, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Admitted, waiting for a worker.
    pub queued: usize,
    /// Claimed by a worker.
    pub processing: usize,
    /// Finished and still kept.
    pub retained: usize,
    /// What the retained predictions weigh, for a store with a byte budget; else 0.
    pub retained_bytes: u64,
}

impl Counts {
    /// Queued plus processing: what counts against the capacity.
    pub fn in_flight(&self) -> usize {
        self.queued + self.processing
    }
}

/// What [`Store::expire_queued`] did.
#[derive(Debug, Default)]
pub struct Expired {
    /// The predictions it failed.
    pub finished: Vec<Finished>,
    /// When the next queued prediction's deadline passes, if one is queued.
    pub next_in: Option<Duration>,
}

/// One prediction's change notifications, from [`Store::watch`] or a claim.
///
/// It is registered when made: a change after that, even one made before the first
/// call to [`changed`](Watch::changed), is not missed. So: watch, then read the
/// state, then await a change, then read again.
pub trait Watch: Send + Sync + 'static {
    /// Resolves at the prediction's next change since the watch was made or this
    /// last resolved. It may also resolve without a change (a store that lost its
    /// connection wakes everyone, so that they read again); callers re-read.
    fn changed(&mut self) -> impl Future<Output = ()> + Send + '_;
}

/// Where a queue's state lives.
///
/// Every method may be called concurrently from many tasks and, for a shared store,
/// from many processes. Transitions are atomic: of two racing `finish` calls on one
/// prediction exactly one applies, and statuses never move backwards except through
/// [`release`](Store::release), which hands a running prediction back to the queue.
pub trait Store: Send + Sync + 'static {
    /// The model input stored.
    type Input: Send + Sync + 'static;
    /// The model output stored.
    type Output: Send + Sync + 'static;
    /// One prediction's change notifications.
    type Watch: Watch;

    /// Stores a new `queued` prediction at the back of the pending order, unless
    /// `capacity` predictions are already queued or processing (then `Ok(false)`,
    /// nothing stored). The check and the insert are one step, so concurrent admits
    /// never overshoot; work is signalled to idle workers.
    ///
    /// Memory: one lock over the map, the pending list and the counts. Redis: a script
    /// that compares `LLEN pending + ZCARD running` with the capacity, then `HSET`s the
    /// record, `RPUSH`es the ID and `PUBLISH`es on the work channel.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn admit(
        &self,
        id: PredictionId,
        input: Self::Input,
        capacity: usize,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Hands the oldest queued prediction to a worker (`queued → processing`) with a
    /// new lease, or `None` when nothing is queued.
    ///
    /// Memory: pops the pending list, skipping what was canceled while queued. Redis:
    /// a script that `LPOP`s until it finds a queued record, sets it `processing` with
    /// a random token, and `ZADD`s it to `running` at `TIME` + lease TTL.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn claim(
        &self,
    ) -> impl Future<Output = Result<Option<Claimed<Self::Input, Self::Watch>>>> + Send;

    /// Extends a lease; `false` when the claim is no longer this worker's (the
    /// prediction ended, or the lease lapsed and another worker took it over).
    ///
    /// Memory: leases never lapse, so `true` while the prediction is processing.
    /// Redis: a script that checks the token and `ZADD XX`es the new expiry.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn renew(&self, id: PredictionId, lease: &Lease) -> impl Future<Output = Result<bool>> + Send;

    /// Hands a running prediction back to the front of the queue (`processing →
    /// queued`), for another worker; `false` when the claim is no longer this
    /// worker's. A node that stops gracefully does this with the work it holds.
    ///
    /// Memory: pushes it back on the front of the pending list. Redis: a script that
    /// checks the token, `ZREM`s it from `running` and `LPUSH`es it.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn release(&self, id: PredictionId, lease: &Lease)
    -> impl Future<Output = Result<bool>> + Send;

    /// Moves a queued or processing prediction to the outcome's terminal status and
    /// starts its retention: the first terminal write wins, and `None` says this one
    /// did not (already terminal, or unknown). A cancel is a finish with
    /// [`Outcome::Canceled`] from anywhere. The capacity slot is free before the new
    /// status is visible, so a client that sees its result can submit again at once.
    /// Watchers are woken.
    ///
    /// Memory: one lock. Redis: a script that checks the status, writes the outcome
    /// and completion `TIME`, `ZREM`s from `running`, `ZADD`s to `done`, trims
    /// `done` to the count cap, and `PUBLISH`es on the prediction's channel.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn finish(
        &self,
        id: PredictionId,
        outcome: Outcome<Self::Output>,
    ) -> impl Future<Output = Result<Option<Finished>>> + Send;

    /// One prediction as it is now, or `None` when unknown or expired.
    ///
    /// Memory: one lock, one map lookup; input and output are shared, not copied.
    /// Redis: `HGETALL` and deserialization.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    #[allow(clippy::type_complexity)]
    fn read(
        &self,
        id: PredictionId,
    ) -> impl Future<Output = Result<Option<Prediction<Self::Input, Self::Output>>>> + Send;

    /// The prediction a watch follows, as it is now: what a waiter reads when woken.
    /// `None` when it is gone, but a store that can still reach the record through the
    /// watch answers even after the prediction was evicted (a `max_retained` of 0
    /// keeps no result, yet its waiters see it).
    ///
    /// Memory: a snapshot of the record the watch holds. Redis: [`read`](Store::read).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    #[allow(clippy::type_complexity)]
    fn read_watched(
        &self,
        id: PredictionId,
        watch: &Self::Watch,
    ) -> impl Future<Output = Result<Option<Prediction<Self::Input, Self::Output>>>> + Send;

    /// Watches one prediction's changes, or `None` when it is unknown. Registered
    /// before it returns (see [`Watch`]): watch, then read.
    ///
    /// Memory: a version counter and a `Notify` in the record. Redis: one pub/sub
    /// connection per node, subscribed to the prediction's channel while anyone on
    /// the node watches it; a reconnect wakes every watcher to read again.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn watch(&self, id: PredictionId) -> impl Future<Output = Result<Option<Self::Watch>>> + Send;

    /// Resolves when work may be available to [`claim`](Store::claim): after an
    /// admit or a release since it was first polled (or, if no one was waiting, since
    /// the last one resolved). The queue's idle workers and its dispatcher wait on it;
    /// one of them is woken per signal, the most recent waiter first, so an idle
    /// worker takes new work before the dispatcher spawns another.
    ///
    /// Memory: `Notify::notified`, signalled with `notify_last` (which leaves a permit
    /// when no one waits). Redis: a message on the work channel, or a short timer as a
    /// fallback (a lease that lapsed on a dead node sends no message).
    fn work_available(&self) -> impl Future<Output = ()> + Send + '_;

    /// Fails queued predictions admitted longer than `deadline` ago, with a timeout
    /// error, and says when the next one's deadline passes.
    ///
    /// Memory: pops the front of the pending list, oldest first (one deadline for
    /// all: the oldest is always the next to expire). Redis: a script over the head of
    /// `pending`, comparing with `TIME`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn expire_queued(&self, deadline: Duration) -> impl Future<Output = Result<Expired>> + Send;

    /// Forgets finished predictions past their retention (TTL, count and byte caps)
    /// and says when to call again.
    ///
    /// Memory: pops the retention list, in completion order. Redis: `ZRANGEBYSCORE`
    /// on `done` and `DEL` (or plain key TTLs, with `done` trimmed to match).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn purge_expired(&self) -> impl Future<Output = Result<Duration>> + Send;

    /// Cancels every queued prediction (a queue that stops for good). Returns the
    /// transitions made.
    ///
    /// Memory: drains the pending list. Redis: nothing, its queue outlives any node.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn cancel_queued(&self) -> impl Future<Output = Result<Vec<Finished>>> + Send;

    /// How many predictions are queued, processing and retained.
    ///
    /// Memory: counters kept under its lock. Redis: `LLEN`, `ZCARD` and `ZCARD` in
    /// one `MULTI`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](crate::Error::Backend) when the store is unreachable.
    fn counts(&self) -> impl Future<Output = Result<Counts>> + Send;

    /// Whether the store is reachable (readiness).
    fn is_ready(&self) -> impl Future<Output = bool> + Send;
}
