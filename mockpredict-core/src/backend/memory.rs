//! [`MemoryBackend`]: prediction records in one process's memory, as `Arc`s, never
//! serialized.

use std::collections::VecDeque;

use crossbeam_utils::CachePadded;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::ids::{IdIndex, Keyed};
use super::{Backend, Finished, Started};
use crate::sync::lock;
use crate::{
    HoldsInput, HoldsOutput, InputRef, Outcome, OutputRef, Prediction, PredictionError,
    PredictionId, Result, Status,
};

/// A handle on one prediction held by a [`MemoryBackend`].
pub struct MemoryJob<I, O>(Arc<Entry<I, O>>);

impl<I, O> Clone for MemoryJob<I, O> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<I, O> std::fmt::Debug for MemoryJob<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MemoryJob").field(&self.0.id).finish()
    }
}

/// One prediction's record, with its input and output: one allocation per
/// prediction. Kept at 104 bytes for `u64` input and output (120 with the `Arc`'s
/// counts), so that glibc serves and frees it from its fast bins rather than sorting
/// and coalescing it: see `record_fits_the_fast_bins` below.
struct Entry<I, O> {
    id: PredictionId,
    input: I,
    /// Set once, under the state lock, just before the phase becomes `Succeeded`;
    /// outside the lock so that snapshots can share it ([`OutputRef`]).
    output: OnceLock<O>,
    created: MemoryStamp,
    /// Woken (`notify_waiters`) on every status change; waiters register before they
    /// read the state, so no change is missed. Made by the first waiter: most
    /// predictions are never waited on while they run, and then a status change
    /// wakes nobody and costs nothing.
    notify: OnceLock<Box<Notify>>,
    /// A std mutex: nothing awaits while holding it.
    state: Mutex<State>,
}

struct State {
    phase: Phase,
    /// Start and end, or [`MemoryStamp::NONE`] until then: 8 bytes each instead of
    /// a 16-byte `Option<Instant>`, and durations and wall times without clock
    /// arithmetic.
    started: MemoryStamp,
    completed: MemoryStamp,
}

/// The status with the error folded in: 16 bytes, where a `Status` beside an
/// `Option<PredictionError>` takes 40. The error is boxed because failures are rare;
/// a success's output is in [`Entry::output`].
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

/// An instant as a [`MemoryBackend`] stores it (its [`Backend::Stamp`]): nanoseconds
/// since the backend was made, so that durations are integer subtractions and wall
/// times one addition. 584 years of uptime fit in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemoryStamp(u64);

impl MemoryStamp {
    /// Not yet (a start or end that has not happened).
    const NONE: MemoryStamp = MemoryStamp(u64::MAX);

    fn get(self) -> Option<MemoryStamp> {
        (self != Self::NONE).then_some(self)
    }

    /// The time from `earlier` to this stamp (zero if `earlier` is later).
    fn since(self, earlier: MemoryStamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl<I: Send + Sync, O: Send + Sync> HoldsInput<I> for Entry<I, O> {
    fn input(&self) -> &I {
        &self.input
    }
}

impl<I: Send + Sync, O: Send + Sync> HoldsOutput<O> for Entry<I, O> {
    fn output(&self) -> &O {
        // Only reached through an `OutputRef`, made for a `Succeeded` phase, which
        // is set after the output.
        self.output
            .get()
            .expect("a succeeded prediction has its output")
    }
}

impl<I, O> Keyed for Entry<I, O> {
    fn id(&self) -> &PredictionId {
        &self.id
    }
}

impl<I, O> Entry<I, O> {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Wakes the waiters, if anyone ever waited.
    fn wake(&self) {
        if let Some(notify) = self.notify.get() {
            notify.notify_waiters();
        }
    }
}

/// One reading of both clocks, taken when the backend was made: every timestamp is a
/// [`MemoryStamp`] from it, and its wall-clock time is one addition, consistent with
/// durations (and with tokio's paused clock).
#[derive(Debug, Clone, Copy)]
struct Anchor {
    instant: Instant,
    wall: SystemTime,
}

impl Anchor {
    fn now() -> Self {
        Self {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// `at` as a stamp. An instant before the anchor (not seen in practice: the
    /// anchor is read when the backend is made) counts as the anchor itself.
    fn stamp(&self, at: Instant) -> MemoryStamp {
        let since = at.saturating_duration_since(self.instant);
        let nanos = since
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(since.subsec_nanos()));
        MemoryStamp(nanos.min(u64::MAX - 1))
    }

    /// The wall-clock time of a stamp.
    fn wall(&self, at: MemoryStamp) -> SystemTime {
        self.wall + Duration::from_nanos(at.0)
    }

    /// The monotonic instant `later` after a stamp, if representable.
    fn instant_after(&self, at: MemoryStamp, later: Duration) -> Option<Instant> {
        self.instant
            .checked_add(Duration::from_nanos(at.0).checked_add(later)?)
    }
}

/// Most expired records a purge takes off the retention list per lock.
const PURGE_BATCH: usize = 256;

/// Finished records in completion order, each with its ID's
/// [`sequence`](PredictionId::sequence) and weight (in the padding beside it): evicting
/// the oldest then reads nothing from its record, long out of cache by then.
struct Retained<I, O> {
    list: VecDeque<Kept<I, O>>,
    /// The weights' sum (0 without a [`Budget`]); a `u64`, so that it cannot wrap
    /// where `usize` is 32 bits.
    bytes: u64,
}

impl<I, O> Retained<I, O> {
    /// Takes the oldest off the list, with its weight.
    fn pop_front(&mut self) -> Option<(u32, Arc<Entry<I, O>>)> {
        let (sequence, weight, record) = self.list.pop_front()?;
        self.bytes -= u64::from(weight);
        Some((sequence, record))
    }
}

/// A retained record: its ID's sequence, its weight, and the record.
type Kept<I, O> = (u32, u32, Arc<Entry<I, O>>);

/// A cap on the bytes retained, and how to weigh a finished prediction.
struct Budget<I, O> {
    max_bytes: usize,
    weigh: fn(&I, Option<&O>) -> usize,
}

/// Predictions kept in this process's memory: the embedded default backend.
///
/// Finished predictions are kept for `result_ttl` and at most `max_retained` of them
/// (the oldest go first).
///
/// A prediction evicted over `max_retained` is gone from lookups at once, but its
/// record (input and output included) may be freed a little later: by a later submit
/// into the same ID shard, on the submitting thread, whose allocator then reuses the
/// memory; or else by the next purge, at most `result_ttl` after the eviction while
/// the queue runs. At most an eighth of `max_retained`, and 128, wait this way (none
/// if `max_retained` is under 256). So the `Drop` of an input or output runs on a
/// worker, in a submit or in the purge task; it must not panic or block.
///
/// With [`with_max_bytes`](Self::with_max_bytes), the oldest also go while the
/// retained predictions weigh more than a budget.
///
/// Records are found by ID in slots direct-mapped by the admission number that ends
/// the IDs a [`JobQueue`](crate::JobQueue) makes, so that consecutive predictions sit
/// side by side. Any other unique IDs work too, at the cost of a hash table lookup for
/// those that collide.
pub struct MemoryBackend<I, O> {
    result_ttl: Duration,
    max_retained: usize,
    anchor: Anchor,
    /// Every prediction held (in flight or retained) by ID, sharded so that submits
    /// and lookups on different threads rarely meet on one lock.
    ids: IdIndex<Entry<I, O>>,
    /// Finished predictions in completion order. The TTL is the same for all, so
    /// completion order is expiry order and the front is always the next to expire.
    /// Never held together with an ID shard's lock.
    finished: CachePadded<Mutex<Retained<I, O>>>,
    budget: Option<Budget<I, O>>,
}

impl<I, O> std::fmt::Debug for MemoryBackend<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("result_ttl", &self.result_ttl)
            .field("max_retained", &self.max_retained)
            .field("retained", &self.retained_now())
            .finish()
    }
}

impl<I, O> MemoryBackend<I, O> {
    /// A backend that keeps finished predictions for `result_ttl`, and at most
    /// `max_retained` of them.
    pub fn new(result_ttl: Duration, max_retained: usize) -> Self {
        Self {
            result_ttl,
            max_retained,
            anchor: Anchor::now(),
            ids: IdIndex::new(max_retained),
            finished: CachePadded::new(Mutex::new(Retained {
                list: VecDeque::new(),
                bytes: 0,
            })),
            budget: None,
        }
    }

    /// Also evicts the oldest finished predictions while those retained weigh more
    /// than `max_bytes` in all, as `weigh` tells from a prediction's input and output
    /// (`None` unless it succeeded), called once as it finishes. The newest retained
    /// prediction is never evicted for its weight: one heavier than the whole budget
    /// stays until another finishes. Weights count up to 4 GiB each.
    ///
    /// For inputs and outputs whose size varies (strings, JSON), so that memory has a
    /// bound whatever clients send: `max_retained` alone bounds the count. Records
    /// evicted for their weight are freed at once (those evicted by count may wait
    /// for a later submit to free them; see the type's docs). `weigh` runs on the
    /// finishing worker before the prediction's status changes; it must not panic.
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: usize, weigh: fn(&I, Option<&O>) -> usize) -> Self {
        self.budget = Some(Budget { max_bytes, weigh });
        self
    }

    fn retained_now(&self) -> usize {
        lock(&self.finished).list.len()
    }

    /// Whether the retained predictions weigh more than the budget, and the newest
    /// (never evicted for its weight) is not alone.
    fn over_budget(&self, finished: &Retained<I, O>) -> bool {
        self.budget
            .as_ref()
            .is_some_and(|b| finished.bytes > b.max_bytes as u64 && finished.list.len() > 1)
    }

    /// Evicts the oldest, one per lock, until the rest fit the budget. Each is freed
    /// here, not retired for a later submit to free: heavy records waiting would be
    /// memory beyond the budget.
    #[cold]
    #[inline(never)]
    fn evict_over_budget(&self) {
        loop {
            let evicted = {
                let mut finished = lock(&self.finished);
                if !self.over_budget(&finished) {
                    return;
                }
                finished.pop_front()
            };
            if let Some((_, old)) = evicted {
                let index_handle = self.ids.remove(&old);
                drop((index_handle, old));
            }
        }
    }
}

impl<I, O> MemoryBackend<I, O>
where
    I: Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    // Always inlined: the snapshot is then built where `snapshot` returns it, one
    // move of its 176 bytes fewer.
    #[inline(always)]
    fn snapshot_of(&self, entry: &Arc<Entry<I, O>>) -> Prediction<I, O> {
        let st = entry.state();
        let (output, error) = match &st.phase {
            Phase::Succeeded => (
                Some(OutputRef::from_holder(
                    Arc::clone(entry) as Arc<dyn HoldsOutput<O>>
                )),
                None,
            ),
            Phase::Failed(e) => (None, Some(PredictionError::clone(e))),
            Phase::Queued | Phase::Processing | Phase::Canceled => (None, None),
        };
        let (started, completed) = (st.started.get(), st.completed.get());
        let created = entry.created;
        Prediction {
            id: entry.id,
            status: st.phase.status(),
            input: InputRef::from_holder(Arc::clone(entry) as Arc<dyn HoldsInput<I>>),
            output,
            error,
            created_at: self.anchor.wall(created),
            started_at: started.map(|at| self.anchor.wall(at)),
            completed_at: completed.map(|at| self.anchor.wall(at)),
            queue_time: started.or(completed).map(|at| at.since(created)),
            predict_time: started.zip(completed).map(|(s, c)| c.since(s)),
        }
    }
}

impl<I, O> Backend for MemoryBackend<I, O>
where
    I: Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    type Input = I;
    type Output = O;
    type Job = MemoryJob<I, O>;
    type Stamp = MemoryStamp;

    fn stamp(&self, at: Instant) -> MemoryStamp {
        self.anchor.stamp(at)
    }

    async fn insert(&self, id: PredictionId, input: I, created: MemoryStamp) -> Result<Self::Job> {
        let entry = Arc::new(Entry {
            id,
            input,
            output: OnceLock::new(),
            created,
            notify: OnceLock::new(),
            state: Mutex::new(State {
                phase: Phase::Queued,
                started: MemoryStamp::NONE,
                completed: MemoryStamp::NONE,
            }),
        });
        self.ids.insert(Arc::clone(&entry));
        Ok(MemoryJob(entry))
    }

    async fn lookup(&self, id: PredictionId) -> Result<Option<Self::Job>> {
        Ok(self.ids.find(&id).map(MemoryJob))
    }

    async fn snapshot(&self, job: &Self::Job) -> Result<Prediction<I, O>> {
        Ok(self.snapshot_of(&job.0))
    }

    async fn status(&self, job: &Self::Job) -> Result<Status> {
        Ok(job.0.state().phase.status())
    }

    async fn input(&self, job: &Self::Job) -> Result<InputRef<I>> {
        Ok(InputRef::from_holder(
            Arc::clone(&job.0) as Arc<dyn HoldsInput<I>>
        ))
    }

    async fn start<F>(
        &self,
        job: &Self::Job,
        at: MemoryStamp,
        on_applied: F,
    ) -> Result<Option<Started>>
    where
        F: FnOnce(&Started) + Send,
    {
        let started = {
            let mut st = job.0.state();
            if !matches!(st.phase, Phase::Queued) {
                return Ok(None);
            }
            st.phase = Phase::Processing;
            // Never before its admission, whatever stamp the worker reused.
            st.started = at.max(job.0.created);
            let started = Started {
                id: job.0.id,
                queue_time: st.started.since(job.0.created),
            };
            // Under the lock: no reader sees `processing` before it runs.
            on_applied(&started);
            started
        };
        job.0.wake();
        Ok(Some(started))
    }

    async fn finish<F>(
        &self,
        job: &Self::Job,
        outcome: Outcome<O>,
        at: MemoryStamp,
        on_applied: F,
    ) -> Result<Option<Finished>>
    where
        F: FnOnce(&Finished) + Send,
    {
        let entry = &job.0;
        // Weighed before the status changes, with no lock held: a `weigh` that
        // panicked after would leave a finished prediction out of the retention list.
        let weight = self.budget.as_ref().map_or(0, |b| {
            let output = match &outcome {
                Outcome::Succeeded(output) => Some(output),
                Outcome::Failed(_) | Outcome::Canceled => None,
            };
            u32::try_from((b.weigh)(&entry.input, output)).unwrap_or(u32::MAX)
        });
        let finished = {
            let mut st = entry.state();
            let previous = st.phase.status();
            if previous.is_terminal() {
                return Ok(None);
            }
            let started = st.started.get();
            // Never before its start (or admission), whatever stamp the caller took.
            let completed = at.max(started.unwrap_or(entry.created));
            let status = outcome.status();
            st.phase = match outcome {
                Outcome::Succeeded(output) => {
                    // The first and only terminal transition sets it.
                    let _ = entry.output.set(output);
                    Phase::Succeeded
                }
                Outcome::Failed(e) => Phase::Failed(Box::new(e)),
                Outcome::Canceled => Phase::Canceled,
            };
            st.completed = completed;
            let finished = Finished {
                id: entry.id,
                previous,
                status,
                queue_time: started.unwrap_or(completed).since(entry.created),
                predict_time: started.map(|s| completed.since(s)),
            };
            // Still under the entry's lock: nobody can read the new status yet.
            on_applied(&finished);
            finished
        };
        let (evicted, over_budget) = {
            let mut finished = lock(&self.finished);
            finished.bytes += u64::from(weight);
            finished
                .list
                .push_back((entry.id.sequence(), weight, Arc::clone(entry)));
            // Every finish pushes one and trims here, under the same lock, so at most
            // one is ever over the count.
            let evicted = (finished.list.len() > self.max_retained)
                .then(|| finished.pop_front())
                .flatten();
            (evicted, self.over_budget(&finished))
        };
        // Outside the `finished` lock: an evicted entry is cold in cache, and removing
        // it should not hold up other finishes. It is retired, not freed: the next
        // submits into its ID shard free it, on the thread that allocates records.
        if let Some((sequence, old)) = evicted {
            self.ids.retire(sequence, old);
        }
        if over_budget {
            self.evict_over_budget();
        }
        Ok(Some(finished))
    }

    fn wake(&self, job: &Self::Job) {
        job.0.wake();
    }

    fn changed<'a>(&'a self, job: &'a Self::Job) -> impl Future<Output = ()> + Send + 'a {
        // `Notified` receives `notify_waiters` from the moment it is created. A change
        // made before the `Notify` existed is seen by the caller's next read of the
        // state: the transition and that read take the entry's lock, and this
        // `Notify` is published before the read's lock.
        job.0
            .notify
            .get_or_init(|| Box::new(Notify::new()))
            .notified()
    }

    async fn purge_expired(&self) -> Result<Instant> {
        let now = Instant::now();
        // In batches: expired records are taken off the retention list under its
        // lock, then removed from the ID table and freed after it, so that a large
        // purge does not hold up finishing predictions.
        let mut expired = Vec::new();
        loop {
            let next = {
                let mut finished = lock(&self.finished);
                loop {
                    let Some((_, _, front)) = finished.list.front() else {
                        // Nothing finished: anything that finishes from now on
                        // expires at `now + result_ttl` or later, so waking then is
                        // never late.
                        break Some(crate::time::after(now, self.result_ttl));
                    };
                    let completed = front.state().completed;
                    // A TTL too long to represent means "never expires".
                    let Some(expires) = self.anchor.instant_after(completed, self.result_ttl)
                    else {
                        break Some(crate::time::far_future(now));
                    };
                    if expires > now {
                        break Some(expires);
                    }
                    if expired.len() == PURGE_BATCH {
                        break None;
                    }
                    expired.extend(finished.pop_front().map(|(_, old)| old));
                }
            };
            for old in expired.drain(..) {
                self.ids.remove(&old);
            }
            if let Some(next) = next {
                // Evicted records not yet freed by a submit: freed now, so that
                // none waits more than a TTL once submits stop (while the queue
                // runs; a TTL too long to represent leaves them to submits).
                self.ids.free_retired();
                return Ok(next);
            }
        }
    }

    fn retained(&self) -> usize {
        self.retained_now()
    }

    /// The retained predictions' weight in all (0 without a budget).
    fn retained_bytes(&self) -> u64 {
        lock(&self.finished).bytes
    }

    async fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc keeps freed chunks of up to 128 bytes (120 requested: an 8-byte header,
    /// rounded up to 16) in fast bins: no sorting, no coalescing. A record just above
    /// that costs ~100 more instructions to allocate and free.
    #[test]
    fn record_fits_the_fast_bins() {
        let with_counts = std::mem::size_of::<Entry<u64, u64>>() + 2 * std::mem::size_of::<usize>();
        assert!(
            with_counts <= 120,
            "Arc<Entry<u64, u64>> is {with_counts} bytes"
        );
    }

    /// Inserts, starts and finishes a prediction of input `input` (the weight the
    /// tests' weigher gives it), succeeded or canceled; returns its ID.
    async fn run_one(backend: &MemoryBackend<u64, u64>, input: u64, succeed: bool) -> PredictionId {
        let id = PredictionId::new_v4();
        let at = backend.stamp(Instant::now());
        let job = backend.insert(id, input, at).await.expect("stored");
        backend.start(&job, at, |_| {}).await.expect("started");
        let outcome = if succeed {
            Outcome::Succeeded(input)
        } else {
            Outcome::Canceled
        };
        backend
            .finish(&job, outcome, at, |_| {})
            .await
            .expect("finished")
            .expect("applied");
        id
    }

    async fn kept(backend: &MemoryBackend<u64, u64>, id: PredictionId) -> bool {
        backend.lookup(id).await.expect("looked up").is_some()
    }

    /// Over the byte budget the oldest go, one or several, until the rest fit; the
    /// newest stays even when it alone is over; the count cap still applies; expiry
    /// takes weights off too.
    #[tokio::test(start_paused = true)]
    async fn a_byte_budget_evicts_the_oldest_until_the_rest_fit() {
        fn weigh(input: &u64, output: Option<&u64>) -> usize {
            // The output counts too, so the `None` of a canceled one shows.
            (*input + output.copied().unwrap_or(0)) as usize
        }
        let backend =
            MemoryBackend::<u64, u64>::new(Duration::from_secs(60), 4).with_max_bytes(100, weigh);
        let a = run_one(&backend, 20, true).await; // 40
        let b = run_one(&backend, 20, true).await; // 40
        assert_eq!(backend.retained_bytes(), 80);
        let c = run_one(&backend, 15, false).await; // 15: canceled, no output
        assert_eq!((backend.retained(), backend.retained_bytes()), (3, 95));
        let d = run_one(&backend, 10, true).await; // 20: 115 > 100, `a` goes
        assert_eq!((backend.retained(), backend.retained_bytes()), (3, 75));
        assert!(!kept(&backend, a).await);
        assert!(kept(&backend, b).await && kept(&backend, c).await && kept(&backend, d).await);
        // One heavier than the whole budget evicts all the others, and stays.
        let heavy = run_one(&backend, 100, true).await; // 200
        assert_eq!((backend.retained(), backend.retained_bytes()), (1, 200));
        assert!(kept(&backend, heavy).await);
        // Until the next finishes.
        let e = run_one(&backend, 1, true).await; // 2
        assert_eq!((backend.retained(), backend.retained_bytes()), (1, 2));
        assert!(!kept(&backend, heavy).await && kept(&backend, e).await);
        // The count cap (4) still holds with light ones.
        for _ in 0..5 {
            run_one(&backend, 0, true).await;
        }
        assert_eq!((backend.retained(), backend.retained_bytes()), (4, 0));
        // Expiry takes the weights off with the records.
        run_one(&backend, 5, true).await;
        assert_eq!(backend.retained_bytes(), 10);
        tokio::time::advance(Duration::from_secs(61)).await;
        backend.purge_expired().await.expect("purged");
        assert_eq!((backend.retained(), backend.retained_bytes()), (0, 0));
    }

    /// Records evicted for their weight are freed at once, not parked for a later
    /// submit to free (a backend this large parks records evicted by count): their
    /// outputs' handles are gone as soon as the finish that evicted them returns.
    #[tokio::test(start_paused = true)]
    async fn records_evicted_for_weight_are_freed_at_once() {
        fn weigh(input: &u64, _: Option<&Arc<()>>) -> usize {
            *input as usize
        }
        let backend = MemoryBackend::<u64, Arc<()>>::new(Duration::from_secs(60), 100_000)
            .with_max_bytes(10, weigh);
        assert!(
            backend.ids.retired_max() > 0,
            "this backend parks evictions by count"
        );
        let marker = Arc::new(());
        for round in 1..=20 {
            let at = backend.stamp(Instant::now());
            let job = backend
                .insert(PredictionId::new_v4(), 4, at)
                .await
                .expect("stored");
            backend
                .finish(&job, Outcome::Succeeded(Arc::clone(&marker)), at, |_| {})
                .await
                .expect("finished")
                .expect("applied");
            drop(job);
            // At most 10 bytes kept: two records of 4.
            let kept = round.min(2);
            assert_eq!(backend.retained(), kept);
            assert_eq!(
                Arc::strong_count(&marker),
                1 + kept,
                "evicted outputs freed"
            );
        }
    }

    /// Without a budget nothing is weighed: the count cap alone applies.
    #[tokio::test(start_paused = true)]
    async fn without_a_budget_only_the_count_applies() {
        let backend = MemoryBackend::<u64, u64>::new(Duration::from_secs(60), 2);
        let first = run_one(&backend, u64::MAX, true).await;
        run_one(&backend, u64::MAX, true).await;
        assert_eq!((backend.retained(), backend.retained_bytes()), (2, 0));
        assert!(kept(&backend, first).await);
        run_one(&backend, 1, true).await;
        assert!(!kept(&backend, first).await);
    }

    /// A worker may pass a stamp read before a prediction was admitted (it reuses the
    /// completion of the previous one, and another thread may have admitted this one
    /// in between): the record never starts or ends before its admission.
    #[tokio::test(start_paused = true)]
    async fn an_early_stamp_never_puts_start_or_end_before_admission() {
        let backend = MemoryBackend::<u64, u64>::new(Duration::from_secs(60), 10);
        let early = backend.stamp(Instant::now());
        tokio::time::advance(Duration::from_millis(5)).await;
        let created = backend.stamp(Instant::now());
        let job = backend
            .insert(PredictionId::new_v4(), 1, created)
            .await
            .expect("stored");
        let started = backend.start(&job, early, |_| {}).await.expect("started");
        assert_eq!(started.map(|s| s.queue_time), Some(Duration::ZERO));
        let done = backend
            .finish(&job, Outcome::Succeeded(3), early, |_| {})
            .await
            .expect("finished")
            .expect("applied");
        assert_eq!(done.queue_time, Duration::ZERO);
        assert_eq!(done.predict_time, Some(Duration::ZERO));
        let snap = backend.snapshot(&job).await.expect("retained");
        assert_eq!(snap.started_at, Some(snap.created_at));
        assert_eq!(snap.completed_at, Some(snap.created_at));
        assert_eq!(snap.queue_time, Some(Duration::ZERO));
    }
}
