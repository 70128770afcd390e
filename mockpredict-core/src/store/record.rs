//! One prediction as [`MemoryStore`](super::MemoryStore) keeps it: a [`Record`] (input,
//! output, state, change notification) in one allocation, the [`Stamp`]s its times are
//! kept as, and the [`MemoryWatch`] on its changes.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Watch;
use crate::sync::lock;
use crate::{
    HoldsInput, HoldsOutput, InputRef, OutputRef, Prediction, PredictionError, PredictionId, Status,
};

/// One prediction: what snapshots and watchers share with the store. The map holds an
/// `Arc` of it, so that a map slot stays small (the map doubles as it grows, and a
/// slot exists for every bucket).
pub(super) struct Record<I, O> {
    pub(super) input: I,
    /// Set once, under the state lock, just before the phase becomes `Succeeded`.
    pub(super) output: OnceLock<O>,
    /// Locked only with the store's lock held (or on its own, to read): the store's
    /// lock makes each transition atomic with the counts and lists it changes.
    state: Mutex<State>,
    /// Woken (`notify_waiters`) after every change, once the locks are released.
    pub(super) changed: Notify,
}

/// A record's mutable part.
pub(super) struct State {
    pub(super) phase: Phase,
    pub(super) created: Stamp,
    /// [`Stamp::NONE`] until it starts, as `completed` until it ends.
    pub(super) started: Stamp,
    pub(super) completed: Stamp,
    /// Bumped at every change: a watcher compares it with the value it last saw, so
    /// a change before it waits is not missed. Also the lease token of a claim (the
    /// version the claim made).
    pub(super) version: u64,
}

/// The status with the error folded in; a success's output is in the record.
pub(super) enum Phase {
    Queued,
    Processing,
    Succeeded,
    Failed(Box<PredictionError>),
    Canceled,
}

impl Phase {
    pub(super) fn status(&self) -> Status {
        match self {
            Phase::Queued => Status::Queued,
            Phase::Processing => Status::Processing,
            Phase::Succeeded => Status::Succeeded,
            Phase::Failed(_) => Status::Failed,
            Phase::Canceled => Status::Canceled,
        }
    }
}

impl<I, O> Record<I, O> {
    pub(super) fn new(input: I, created: Stamp) -> Self {
        Self {
            input,
            output: OnceLock::new(),
            state: Mutex::new(State {
                phase: Phase::Queued,
                created,
                started: Stamp::NONE,
                completed: Stamp::NONE,
                version: 0,
            }),
            changed: Notify::new(),
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl<I: Send + Sync, O: Send + Sync> HoldsInput<I> for Record<I, O> {
    fn input(&self) -> &I {
        &self.input
    }
}

impl<I: Send + Sync, O: Send + Sync> HoldsOutput<O> for Record<I, O> {
    fn output(&self) -> &O {
        // Only reached through an `OutputRef`, made for a `Succeeded` phase, which is
        // set after the output.
        self.output
            .get()
            .expect("a succeeded prediction has its output")
    }
}

/// An instant as nanoseconds since the store's [`Anchor`]: 8 bytes where an
/// `Option<Instant>` takes 16. 584 years of uptime fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Stamp(u64);

impl Stamp {
    /// Not yet (a start or an end that has not happened).
    pub(super) const NONE: Stamp = Stamp(u64::MAX);

    pub(super) fn get(self) -> Option<Stamp> {
        (self != Self::NONE).then_some(self)
    }

    /// The time from `earlier` to this stamp (zero if `earlier` is later).
    pub(super) fn since(self, earlier: Stamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// Tokio's clock and the wall clock, read together once: every wall time is the wall
/// reading plus a monotonic duration, consistent with durations and with tokio's
/// paused clock in tests.
#[derive(Debug, Clone, Copy)]
pub(super) struct Anchor {
    instant: Instant,
    wall: SystemTime,
}

impl Anchor {
    pub(super) fn new() -> Self {
        Self {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    pub(super) fn now(&self) -> Stamp {
        let nanos = Instant::now()
            .saturating_duration_since(self.instant)
            .as_nanos();
        Stamp(u64::try_from(nanos).unwrap_or(u64::MAX).min(u64::MAX - 1))
    }

    pub(super) fn wall(&self, at: Stamp) -> SystemTime {
        self.wall + Duration::from_nanos(at.0)
    }

    /// How long from `now` until `later` after `at`: zero if that has passed, `None`
    /// if it is too far ahead to represent.
    pub(super) fn until(&self, now: Stamp, at: Stamp, later: Duration) -> Option<Duration> {
        let due = Duration::from_nanos(at.0).checked_add(later)?;
        Some(due.saturating_sub(Duration::from_nanos(now.0)))
    }

    /// The prediction as it is now.
    pub(super) fn snapshot<I, O>(
        &self,
        id: PredictionId,
        record: &std::sync::Arc<Record<I, O>>,
    ) -> Prediction<I, O>
    where
        I: Send + Sync + 'static,
        O: Send + Sync + 'static,
    {
        let st = record.state();
        let (output, error) = match &st.phase {
            Phase::Succeeded => (
                Some(OutputRef::from_holder(
                    std::sync::Arc::clone(record) as std::sync::Arc<dyn HoldsOutput<O>>
                )),
                None,
            ),
            Phase::Failed(e) => (None, Some(PredictionError::clone(e))),
            Phase::Queued | Phase::Processing | Phase::Canceled => (None, None),
        };
        let (started, completed) = (st.started.get(), st.completed.get());
        Prediction {
            id,
            status: st.phase.status(),
            input: InputRef::from_holder(
                std::sync::Arc::clone(record) as std::sync::Arc<dyn HoldsInput<I>>
            ),
            output,
            error,
            created_at: self.wall(st.created),
            started_at: started.map(|at| self.wall(at)),
            completed_at: completed.map(|at| self.wall(at)),
            queue_time: started.or(completed).map(|at| at.since(st.created)),
            predict_time: started.zip(completed).map(|(s, c)| c.since(s)),
        }
    }
}

/// [`MemoryStore`](super::MemoryStore)'s [`Watch`]: the record's version last seen,
/// and its `Notify`.
pub struct MemoryWatch<I, O> {
    record: std::sync::Arc<Record<I, O>>,
    seen: u64,
}

impl<I, O> MemoryWatch<I, O> {
    pub(super) fn new(record: std::sync::Arc<Record<I, O>>, seen: u64) -> Self {
        Self { record, seen }
    }

    pub(super) fn record(&self) -> &std::sync::Arc<Record<I, O>> {
        &self.record
    }
}

impl<I, O> std::fmt::Debug for MemoryWatch<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryWatch")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl<I: Send + Sync + 'static, O: Send + Sync + 'static> Watch for MemoryWatch<I, O> {
    async fn changed(&mut self) {
        loop {
            let notified = self.record.changed.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the version is read: a change after the read comes
            // with a `notify_waiters` that reaches this waiter.
            notified.as_mut().enable();
            let now = self.record.state().version;
            if now != self.seen {
                self.seen = now;
                return;
            }
            notified.await;
        }
    }
}
