//! [`MemoryStore`]: one process's predictions in a `HashMap` under a mutex, the
//! pending order in a `VecDeque`, finished ones on a retention list.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Claimed, Counts, Expired, Finished, Lease, Store, Watch};
use crate::sync::lock;
use crate::{
    HoldsInput, HoldsOutput, InputRef, Outcome, OutputRef, Prediction, PredictionError,
    PredictionId, Result, Status,
};

/// Most expired records a purge removes per lock, so that a large purge does not hold
/// up submits and finishes for long.
const PURGE_BATCH: usize = 256;

/// Predictions kept in this process's memory: the embedded default store.
///
/// Finished predictions are kept for `result_ttl`, and at most `max_retained` of them
/// (the oldest go first); with [`with_max_bytes`](Self::with_max_bytes), also no
/// more than a byte budget's worth. Every operation takes one `std::sync::Mutex`
/// (nothing awaits under it) over the map, the pending list and the counts.
pub struct MemoryStore<I, O> {
    result_ttl: Duration,
    max_retained: usize,
    budget: Option<Budget<I, O>>,
    anchor: Anchor,
    /// Signalled by admits and releases; awaited by the queue's dispatcher and idle
    /// workers.
    work: Notify,
    inner: Mutex<Inner<I, O>>,
}

/// A cap on the bytes retained, and how to weigh a finished prediction.
struct Budget<I, O> {
    max_bytes: u64,
    weigh: fn(&I, Option<&O>) -> usize,
}

struct Inner<I, O> {
    records: HashMap<PredictionId, Slot<I, O>>,
    /// Admission order. Predictions canceled while queued stay here until a claim or
    /// a deadline sweep reaches them (or a compaction, should they pile up).
    pending: VecDeque<PredictionId>,
    /// Finished predictions in completion order: with one TTL for all, the front is
    /// always the next to expire.
    retained: VecDeque<Kept>,
    retained_bytes: u64,
    queued: usize,
    processing: usize,
    next_token: u64,
}

/// A retained prediction: when it finished, its ID and its weight.
struct Kept {
    completed: Stamp,
    id: PredictionId,
    weight: u32,
}

/// One prediction's mutable state (under the store's lock) and its shared record.
struct Slot<I, O> {
    record: Arc<Record<I, O>>,
    phase: Phase,
    created: Stamp,
    /// [`Stamp::NONE`] until it starts, as `completed` until it ends.
    started: Stamp,
    completed: Stamp,
    /// The current lease's token (0 when not processing).
    token: u64,
}

/// What snapshots and watchers share with the store: the input, the output once it
/// exists, and the change notification. One allocation per prediction.
struct Record<I, O> {
    input: I,
    /// Set once, under the store's lock, just before the phase becomes `Succeeded`.
    output: OnceLock<O>,
    /// Bumped under the store's lock at every change; a watcher compares it with the
    /// value it last saw, so a change before it waits is not missed.
    version: AtomicU64,
    changed: Notify,
}

/// The status with the error folded in; a success's output is in the record.
enum Phase {
    Queued,
    Processing,
    Succeeded,
    Failed(Box<PredictionError>),
    Canceled,
}

impl Phase {
    fn status(&self) -> Status {
        match self {
            Phase::Queued => Status::Queued,
            Phase::Processing => Status::Processing,
            Phase::Succeeded => Status::Succeeded,
            Phase::Failed(_) => Status::Failed,
            Phase::Canceled => Status::Canceled,
        }
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

impl<I, O> Record<I, O> {
    /// Records a change; the caller wakes the watchers once the lock is released.
    fn bump(&self) {
        self.version.fetch_add(1, Ordering::Release);
    }
}

/// Tokio's clock and the wall clock, read together once: every wall time is the wall
/// reading plus a monotonic duration, consistent with durations and with tokio's
/// paused clock in tests.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    instant: Instant,
    wall: SystemTime,
}

/// An instant as nanoseconds since the store's [`Anchor`]: 8 bytes where an
/// `Option<Instant>` takes 16, in each of the hundreds of thousands of records a busy
/// store holds. 584 years of uptime fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp(u64);

impl Stamp {
    /// Not yet (a start or an end that has not happened).
    const NONE: Stamp = Stamp(u64::MAX);

    fn get(self) -> Option<Stamp> {
        (self != Self::NONE).then_some(self)
    }

    /// The time from `earlier` to this stamp (zero if `earlier` is later).
    fn since(self, earlier: Stamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Anchor {
    fn now(&self) -> Stamp {
        let nanos = Instant::now().saturating_duration_since(self.instant).as_nanos();
        Stamp(u64::try_from(nanos).unwrap_or(u64::MAX - 1).min(u64::MAX - 1))
    }

    fn wall(&self, at: Stamp) -> SystemTime {
        self.wall + Duration::from_nanos(at.0)
    }

    /// How long from `now` until `later` after `at` (zero if that has passed; `None`
    /// if it is too far ahead to represent).
    fn until(&self, now: Stamp, at: Stamp, later: Duration) -> Option<Duration> {
        let due = Duration::from_nanos(at.0).checked_add(later)?;
        Some(due.saturating_sub(Duration::from_nanos(now.0)))
    }
}

/// [`MemoryStore`]'s [`Watch`]: the record's version last seen, and its `Notify`.
pub struct MemoryWatch<I, O> {
    record: Arc<Record<I, O>>,
    seen: u64,
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
            // Registered before the version is read: a bump after the read comes with
            // a `notify_waiters` that reaches this waiter.
            notified.as_mut().enable();
            let now = self.record.version.load(Ordering::Acquire);
            if now != self.seen {
                self.seen = now;
                return;
            }
            notified.await;
        }
    }
}

impl<I, O> std::fmt::Debug for MemoryStore<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = lock(&self.inner);
        f.debug_struct("MemoryStore")
            .field("result_ttl", &self.result_ttl)
            .field("max_retained", &self.max_retained)
            .field("queued", &inner.queued)
            .field("processing", &inner.processing)
            .field("pending", &inner.pending.len())
            .field("retained", &inner.retained.len())
            .finish_non_exhaustive()
    }
}

impl<I, O> MemoryStore<I, O> {
    /// A store that keeps finished predictions for `result_ttl`, and at most
    /// `max_retained` of them.
    pub fn new(result_ttl: Duration, max_retained: usize) -> Self {
        Self {
            result_ttl,
            max_retained,
            budget: None,
            anchor: Anchor {
                instant: Instant::now(),
                wall: SystemTime::now(),
            },
            work: Notify::new(),
            inner: Mutex::new(Inner {
                records: HashMap::new(),
                pending: VecDeque::new(),
                retained: VecDeque::new(),
                retained_bytes: 0,
                queued: 0,
                processing: 0,
                next_token: 1,
            }),
        }
    }

    /// Also forgets the oldest finished predictions while those retained weigh more
    /// than `max_bytes` in all, as `weigh` tells from a prediction's input and output
    /// (`None` unless it succeeded), called once as it finishes, under the store's
    /// lock (it must be quick and must not panic). The newest retained prediction is
    /// never evicted for its weight: one heavier than the whole budget stays until
    /// another finishes.
    ///
    /// For inputs and outputs whose size varies (strings, JSON), so that memory has a
    /// bound whatever clients send: `max_retained` alone bounds the count.
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: usize, weigh: fn(&I, Option<&O>) -> usize) -> Self {
        self.budget = Some(Budget {
            max_bytes: max_bytes as u64,
            weigh,
        });
        self
    }
}

impl<I, O> Inner<I, O> {
    /// Whether the retained predictions are over the count cap, or over the byte
    /// budget with more than the newest one kept.
    fn over(&self, max_retained: usize, budget: Option<&Budget<I, O>>) -> bool {
        self.retained.len() > max_retained
            || budget.is_some_and(|b| self.retained_bytes > b.max_bytes && self.retained.len() > 1)
    }

    /// Takes the oldest retained prediction off the list and out of the map.
    fn evict_oldest(&mut self) -> Option<Slot<I, O>> {
        let kept = self.retained.pop_front()?;
        self.retained_bytes -= u64::from(kept.weight);
        self.records.remove(&kept.id)
    }
}

impl<I, O> MemoryStore<I, O>
where
    I: Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    fn snapshot(&self, id: PredictionId, slot: &Slot<I, O>) -> Prediction<I, O> {
        let (output, error) = match &slot.phase {
            Phase::Succeeded => (
                Some(OutputRef::from_holder(
                    Arc::clone(&slot.record) as Arc<dyn HoldsOutput<O>>
                )),
                None,
            ),
            Phase::Failed(e) => (None, Some(PredictionError::clone(e))),
            Phase::Queued | Phase::Processing | Phase::Canceled => (None, None),
        };
        Prediction {
            id,
            status: slot.phase.status(),
            input: InputRef::from_holder(Arc::clone(&slot.record) as Arc<dyn HoldsInput<I>>),
            output,
            error,
            created_at: self.anchor.wall(slot.created),
            started_at: slot.started.get().map(|at| self.anchor.wall(at)),
            completed_at: slot.completed.get().map(|at| self.anchor.wall(at)),
            queue_time: (slot.started.get())
                .or(slot.completed.get())
                .map(|at| at.since(slot.created)),
            predict_time: (slot.started.get())
                .zip(slot.completed.get())
                .map(|(s, c)| c.since(s)),
        }
    }

    /// The terminal transition, under the lock. Returns what it did, the record (to
    /// wake its watchers once the lock is released) and what it evicted (to free
    /// after the lock too).
    #[allow(clippy::type_complexity)]
    fn finish_locked(
        &self,
        inner: &mut Inner<I, O>,
        id: PredictionId,
        outcome: Outcome<O>,
        now: Stamp,
        evicted: &mut Vec<Slot<I, O>>,
    ) -> Option<(Finished, Arc<Record<I, O>>)> {
        let slot = inner.records.get_mut(&id)?;
        let previous = slot.phase.status();
        match previous {
            Status::Queued => inner.queued -= 1,
            Status::Processing => inner.processing -= 1,
            Status::Succeeded | Status::Failed | Status::Canceled => return None,
        }
        let weight = self.budget.as_ref().map_or(0, |b| {
            let output = match &outcome {
                Outcome::Succeeded(output) => Some(output),
                Outcome::Failed(_) | Outcome::Canceled => None,
            };
            u32::try_from((b.weigh)(&slot.record.input, output)).unwrap_or(u32::MAX)
        });
        let status = outcome.status();
        slot.phase = match outcome {
            Outcome::Succeeded(output) => {
                // The first and only terminal transition sets it.
                let _ = slot.record.output.set(output);
                Phase::Succeeded
            }
            Outcome::Failed(e) => Phase::Failed(Box::new(e)),
            Outcome::Canceled => Phase::Canceled,
        };
        slot.completed = now;
        slot.token = 0;
        slot.record.bump();
        let done = Finished {
            id,
            previous,
            status,
            queue_time: slot.started.get().unwrap_or(now).since(slot.created),
            predict_time: slot.started.get().map(|s| now.since(s)),
        };
        let record = Arc::clone(&slot.record);
        inner.retained.push_back(Kept {
            completed: now,
            id,
            weight,
        });
        inner.retained_bytes += u64::from(weight);
        while inner.over(self.max_retained, self.budget.as_ref()) {
            evicted.extend(inner.evict_oldest());
        }
        Some((done, record))
    }
}

impl<I, O> Store for MemoryStore<I, O>
where
    I: Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    type Input = I;
    type Output = O;
    type Watch = MemoryWatch<I, O>;

    async fn admit(&self, id: PredictionId, input: I, capacity: usize) -> Result<bool> {
        let record = Arc::new(Record {
            input,
            output: OnceLock::new(),
            version: AtomicU64::new(0),
            changed: Notify::new(),
        });
        {
            let mut inner = lock(&self.inner);
            if inner.queued + inner.processing >= capacity {
                return Ok(false);
            }
            let slot = Slot {
                record,
                phase: Phase::Queued,
                created: self.anchor.now(),
                started: Stamp::NONE,
                completed: Stamp::NONE,
                token: 0,
            };
            inner.records.insert(id, slot);
            inner.pending.push_back(id);
            inner.queued += 1;
            // Entries canceled while queued wait in `pending` for a claim; should
            // they pile up (every worker busy, clients cancelling), drop them.
            if inner.pending.len() > 2 * inner.queued + 1024 {
                let Inner {
                    pending, records, ..
                } = &mut *inner;
                pending.retain(|id| {
                    records
                        .get(id)
                        .is_some_and(|s| matches!(s.phase, Phase::Queued))
                });
            }
        }
        self.work.notify_last();
        Ok(true)
    }

    async fn claim(&self) -> Result<Option<Claimed<I, Self::Watch>>> {
        let now = self.anchor.now();
        let claimed = {
            let mut inner = lock(&self.inner);
            loop {
                let Some(id) = inner.pending.pop_front() else {
                    return Ok(None);
                };
                let token = inner.next_token;
                let Some(slot) = inner.records.get_mut(&id) else {
                    continue;
                };
                if !matches!(slot.phase, Phase::Queued) {
                    continue;
                }
                slot.phase = Phase::Processing;
                slot.started = now;
                slot.token = token;
                slot.record.bump();
                let record = Arc::clone(&slot.record);
                let queue_time = now.since(slot.created);
                inner.next_token += 1;
                inner.queued -= 1;
                inner.processing += 1;
                let seen = record.version.load(Ordering::Relaxed);
                break Claimed {
                    id,
                    input: InputRef::from_holder(Arc::clone(&record) as Arc<dyn HoldsInput<I>>),
                    lease: Lease { token, ttl: None },
                    queue_time,
                    watch: MemoryWatch { record, seen },
                };
            }
        };
        claimed.watch.record.changed.notify_waiters();
        Ok(Some(claimed))
    }

    async fn renew(&self, id: PredictionId, lease: &Lease) -> Result<bool> {
        let inner = lock(&self.inner);
        Ok(inner
            .records
            .get(&id)
            .is_some_and(|s| matches!(s.phase, Phase::Processing) && s.token == lease.token))
    }

    async fn release(&self, id: PredictionId, lease: &Lease) -> Result<bool> {
        let record = {
            let mut inner = lock(&self.inner);
            let Some(slot) = inner.records.get_mut(&id) else {
                return Ok(false);
            };
            if !matches!(slot.phase, Phase::Processing) || slot.token != lease.token {
                return Ok(false);
            }
            slot.phase = Phase::Queued;
            slot.started = Stamp::NONE;
            slot.token = 0;
            slot.record.bump();
            let record = Arc::clone(&slot.record);
            inner.processing -= 1;
            inner.queued += 1;
            inner.pending.push_front(id);
            record
        };
        record.changed.notify_waiters();
        self.work.notify_last();
        Ok(true)
    }

    async fn finish(&self, id: PredictionId, outcome: Outcome<O>) -> Result<Option<Finished>> {
        let now = self.anchor.now();
        let mut evicted = Vec::new();
        let done = {
            let mut inner = lock(&self.inner);
            self.finish_locked(&mut inner, id, outcome, now, &mut evicted)
        };
        // Freed outside the lock: inputs and outputs may be large.
        drop(evicted);
        Ok(done.map(|(done, record)| {
            record.changed.notify_waiters();
            done
        }))
    }

    async fn read(&self, id: PredictionId) -> Result<Option<Prediction<I, O>>> {
        let inner = lock(&self.inner);
        Ok(inner.records.get(&id).map(|slot| self.snapshot(id, slot)))
    }

    async fn watch(&self, id: PredictionId) -> Result<Option<Self::Watch>> {
        let inner = lock(&self.inner);
        Ok(inner.records.get(&id).map(|slot| MemoryWatch {
            record: Arc::clone(&slot.record),
            seen: slot.record.version.load(Ordering::Relaxed),
        }))
    }

    fn work_available(&self) -> impl Future<Output = ()> + Send + '_ {
        self.work.notified()
    }

    async fn expire_queued(&self, deadline: Duration) -> Result<Expired> {
        let now = self.anchor.now();
        let mut expired = Expired::default();
        let mut evicted = Vec::new();
        let mut woken = Vec::new();
        {
            let mut inner = lock(&self.inner);
            while let Some(&id) = inner.pending.front() {
                let created = match inner.records.get(&id) {
                    Some(slot) if matches!(slot.phase, Phase::Queued) => slot.created,
                    // Canceled while queued, or gone: nothing to expire.
                    _ => {
                        inner.pending.pop_front();
                        continue;
                    }
                };
                // A deadline too far ahead to represent never passes.
                let left = self.anchor.until(now, created, deadline);
                if left != Some(Duration::ZERO) {
                    expired.next_in = left;
                    break;
                }
                inner.pending.pop_front();
                let failed = Outcome::Failed(PredictionError::timeout(deadline, "queued"));
                if let Some((done, record)) =
                    self.finish_locked(&mut inner, id, failed, now, &mut evicted)
                {
                    expired.finished.push(done);
                    woken.push(record);
                }
            }
        }
        drop(evicted);
        for record in woken {
            record.changed.notify_waiters();
        }
        Ok(expired)
    }

    async fn purge_expired(&self) -> Result<Duration> {
        let now = self.anchor.now();
        loop {
            let mut expired = Vec::new();
            let next = {
                let mut inner = lock(&self.inner);
                loop {
                    let Some(front) = inner.retained.front() else {
                        // Whatever finishes from now on expires a TTL from now or later.
                        break Some(self.result_ttl);
                    };
                    // A TTL too long to represent never ends: look again a TTL on.
                    match self.anchor.until(now, front.completed, self.result_ttl) {
                        Some(Duration::ZERO) => {}
                        Some(left) => break Some(left),
                        None => break Some(self.result_ttl),
                    }
                    if expired.len() == PURGE_BATCH {
                        break None;
                    }
                    expired.extend(inner.evict_oldest());
                }
            };
            drop(expired);
            if let Some(next) = next {
                return Ok(next);
            }
        }
    }

    async fn cancel_queued(&self) -> Result<Vec<Finished>> {
        let now = self.anchor.now();
        let mut finished = Vec::new();
        let mut evicted = Vec::new();
        let mut woken = Vec::new();
        {
            let mut inner = lock(&self.inner);
            while let Some(id) = inner.pending.pop_front() {
                if let Some((done, record)) =
                    self.finish_locked(&mut inner, id, Outcome::Canceled, now, &mut evicted)
                {
                    finished.push(done);
                    woken.push(record);
                }
            }
        }
        drop(evicted);
        for record in woken {
            record.changed.notify_waiters();
        }
        Ok(finished)
    }

    async fn counts(&self) -> Result<Counts> {
        let inner = lock(&self.inner);
        Ok(Counts {
            queued: inner.queued,
            processing: inner.processing,
            retained: inner.retained.len(),
            retained_bytes: inner.retained_bytes,
        })
    }

    async fn is_ready(&self) -> bool {
        true
    }
}
