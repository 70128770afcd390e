//! [`MemoryStore`]: one process's predictions in a `HashMap` under a mutex, the
//! pending order in a `VecDeque`, finished ones on a retention list.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

pub use super::record::MemoryWatch;
use super::record::{Anchor, Phase, Record, Stamp};
use super::{Claimed, Counts, Expired, Finished, Lease, Store};
use crate::sync::lock;
use crate::{
    HoldsInput, InputRef, Outcome, Prediction, PredictionError, PredictionId, Result, Status,
};

/// Most expired records a purge removes per lock, so that a large purge does not hold
/// up submits and finishes for long.
const PURGE_BATCH: usize = 256;

/// Predictions kept in this process's memory: the embedded default store.
///
/// Finished predictions are kept for `result_ttl`, and at most `max_retained` of them
/// (the oldest go first); with [`with_max_bytes`](Self::with_max_bytes), also no
/// more than a byte budget's worth. Every change takes one `std::sync::Mutex`
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
    records: HashMap<PredictionId, Arc<Record<I, O>>>,
    /// Admission order. Predictions canceled while queued stay here until a claim or
    /// a deadline sweep reaches them (or a compaction, should they pile up).
    pending: VecDeque<PredictionId>,
    /// Finished predictions in completion order: with one TTL for all, the front is
    /// always the next to expire.
    retained: VecDeque<Kept>,
    retained_bytes: u64,
    queued: usize,
    processing: usize,
}

/// A retained prediction: when it finished, its ID and its weight.
struct Kept {
    completed: Stamp,
    id: PredictionId,
    weight: u32,
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
            anchor: Anchor::new(),
            work: Notify::new(),
            inner: Mutex::new(Inner {
                records: HashMap::new(),
                pending: VecDeque::new(),
                retained: VecDeque::new(),
                retained_bytes: 0,
                queued: 0,
                processing: 0,
            }),
        }
    }

    /// Also forgets the oldest finished predictions while those retained weigh more
    /// than `max_bytes` in all, as `weigh` tells from a prediction's input and output
    /// (`None` unless it succeeded), called once as it finishes, under the store's
    /// lock (it must be quick and must not panic). The newest retained prediction is
    /// never evicted for its weight: one heavier than the whole budget stays until
    /// another finishes. Weights count up to 4 GiB each.
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
    fn evict_oldest(&mut self) -> Option<Arc<Record<I, O>>> {
        let kept = self.retained.pop_front()?;
        self.retained_bytes -= u64::from(kept.weight);
        self.records.remove(&kept.id)
    }
}

/// Records whose watchers to wake, and records to free, once the store's lock is
/// released (inputs and outputs may be large).
struct After<I, O> {
    wake: Vec<Arc<Record<I, O>>>,
    free: Vec<Arc<Record<I, O>>>,
}

impl<I, O> After<I, O> {
    fn new() -> Self {
        Self {
            wake: Vec::new(),
            free: Vec::new(),
        }
    }

    fn run(self) {
        for record in self.wake {
            record.changed.notify_waiters();
        }
        drop(self.free);
    }
}

impl<I, O> MemoryStore<I, O>
where
    I: Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    /// The terminal transition, under the store's lock: `None` when the prediction is
    /// unknown or already terminal.
    fn finish_locked(
        &self,
        inner: &mut Inner<I, O>,
        id: PredictionId,
        outcome: Outcome<O>,
        now: Stamp,
        after: &mut After<I, O>,
    ) -> Option<Finished> {
        let record = Arc::clone(inner.records.get(&id)?);
        let mut st = record.state();
        let previous = st.phase.status();
        if previous.is_terminal() {
            return None;
        }
        // Weighed before anything changes: a `weigh` that panicked after would leave
        // the counts changed and the phase not.
        let weight = self.budget.as_ref().map_or(0, |b| {
            let output = match &outcome {
                Outcome::Succeeded(output) => Some(output),
                Outcome::Failed(_) | Outcome::Canceled => None,
            };
            u32::try_from((b.weigh)(&record.input, output)).unwrap_or(u32::MAX)
        });
        if previous == Status::Queued {
            inner.queued -= 1;
        } else {
            inner.processing -= 1;
        }
        let status = outcome.status();
        st.phase = match outcome {
            Outcome::Succeeded(output) => {
                // The first and only terminal transition sets it.
                let _ = record.output.set(output);
                Phase::Succeeded
            }
            Outcome::Failed(e) => Phase::Failed(Box::new(e)),
            Outcome::Canceled => Phase::Canceled,
        };
        st.completed = now;
        st.version += 1;
        let done = Finished {
            id,
            previous,
            status,
            queue_time: st.started.get().unwrap_or(now).since(st.created),
            predict_time: st.started.get().map(|s| now.since(s)),
        };
        drop(st);
        after.wake.push(record);
        inner.retained.push_back(Kept {
            completed: now,
            id,
            weight,
        });
        inner.retained_bytes += u64::from(weight);
        while inner.over(self.max_retained, self.budget.as_ref()) {
            after.free.extend(inner.evict_oldest());
        }
        Some(done)
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
        let record = Arc::new(Record::new(input, self.anchor.now()));
        {
            let mut inner = lock(&self.inner);
            if inner.queued + inner.processing >= capacity {
                return Ok(false);
            }
            match inner.records.entry(id) {
                std::collections::hash_map::Entry::Vacant(slot) => slot.insert(record),
                std::collections::hash_map::Entry::Occupied(_) => {
                    return Err(crate::Error::Backend(format!(
                        "prediction {id} already exists"
                    )));
                }
            };
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
                        .is_some_and(|r| matches!(r.state().phase, Phase::Queued))
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
                let Some(record) = inner.records.get(&id) else {
                    continue;
                };
                let record = Arc::clone(record);
                let mut st = record.state();
                if !matches!(st.phase, Phase::Queued) {
                    continue;
                }
                st.phase = Phase::Processing;
                st.started = now;
                st.version += 1;
                let (token, queue_time) = (st.version, now.since(st.created));
                drop(st);
                inner.queued -= 1;
                inner.processing += 1;
                break Claimed {
                    id,
                    input: InputRef::from_holder(Arc::clone(&record) as Arc<dyn HoldsInput<I>>),
                    lease: Lease { token, ttl: None },
                    queue_time,
                    watch: MemoryWatch::new(record, token),
                };
            }
        };
        claimed.watch.record().changed.notify_waiters();
        Ok(Some(claimed))
    }

    async fn renew(&self, id: PredictionId, lease: &Lease) -> Result<bool> {
        let inner = lock(&self.inner);
        Ok(inner.records.get(&id).is_some_and(|r| {
            let st = r.state();
            matches!(st.phase, Phase::Processing) && st.version == lease.token
        }))
    }

    async fn release(&self, id: PredictionId, lease: &Lease) -> Result<bool> {
        let record = {
            let mut inner = lock(&self.inner);
            let Some(record) = inner.records.get(&id).map(Arc::clone) else {
                return Ok(false);
            };
            let mut st = record.state();
            if !matches!(st.phase, Phase::Processing) || st.version != lease.token {
                return Ok(false);
            }
            st.phase = Phase::Queued;
            st.started = Stamp::NONE;
            st.version += 1;
            drop(st);
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
        let mut after = After::new();
        let done = {
            let mut inner = lock(&self.inner);
            self.finish_locked(&mut inner, id, outcome, now, &mut after)
        };
        after.run();
        Ok(done)
    }

    async fn read(&self, id: PredictionId) -> Result<Option<Prediction<I, O>>> {
        let record = lock(&self.inner).records.get(&id).map(Arc::clone);
        Ok(record.map(|record| self.anchor.snapshot(id, &record)))
    }

    async fn read_watched(
        &self,
        id: PredictionId,
        watch: &Self::Watch,
    ) -> Result<Option<Prediction<I, O>>> {
        Ok(Some(self.anchor.snapshot(id, watch.record())))
    }

    async fn watch(&self, id: PredictionId) -> Result<Option<Self::Watch>> {
        let record = lock(&self.inner).records.get(&id).map(Arc::clone);
        Ok(record.map(|record| {
            let seen = record.state().version;
            MemoryWatch::new(record, seen)
        }))
    }

    fn work_available(&self) -> impl Future<Output = ()> + Send + '_ {
        self.work.notified()
    }

    async fn expire_queued(&self, deadline: Duration) -> Result<Expired> {
        let now = self.anchor.now();
        let mut expired = Expired::default();
        let mut after = After::new();
        {
            let mut inner = lock(&self.inner);
            while let Some(&id) = inner.pending.front() {
                let queued_since = inner.records.get(&id).and_then(|r| {
                    let st = r.state();
                    matches!(st.phase, Phase::Queued).then_some(st.created)
                });
                let Some(created) = queued_since else {
                    // Canceled while queued, or gone: nothing to expire.
                    inner.pending.pop_front();
                    continue;
                };
                // A deadline too far ahead to represent never passes.
                let left = self.anchor.until(now, created, deadline);
                if left != Some(Duration::ZERO) {
                    expired.next_in = left;
                    break;
                }
                inner.pending.pop_front();
                let failed = Outcome::Failed(PredictionError::timeout(deadline, "queued"));
                expired
                    .finished
                    .extend(self.finish_locked(&mut inner, id, failed, now, &mut after));
            }
        }
        after.run();
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
                        // Whatever finishes from now on expires a TTL from now or later
                        // (looked at no more often than once a second).
                        break Some(self.result_ttl.max(Duration::from_secs(1)));
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
        let mut after = After::new();
        {
            let mut inner = lock(&self.inner);
            while let Some(id) = inner.pending.pop_front() {
                finished.extend(self.finish_locked(
                    &mut inner,
                    id,
                    Outcome::Canceled,
                    now,
                    &mut after,
                ));
            }
        }
        after.run();
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
