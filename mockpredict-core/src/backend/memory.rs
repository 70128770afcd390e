//! [`MemoryBackend`]: prediction records in one process's memory, as `Arc`s, never
//! serialized.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Backend, Finished};
use crate::{Outcome, Prediction, PredictionId, Result, Status};

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

struct Entry<I, O> {
    id: PredictionId,
    input: Arc<I>,
    created: Instant,
    created_wall: SystemTime,
    /// Woken (`notify_waiters`) on every status change; waiters register before they
    /// read the state, so no change is missed.
    notify: Notify,
    /// A std mutex: nothing awaits while holding it.
    state: Mutex<State<O>>,
}

struct State<O> {
    status: Status,
    started: Option<Instant>,
    completed: Option<Instant>,
    outcome: Option<Outcome<O>>,
}

impl<I, O> Entry<I, O> {
    fn state(&self) -> MutexGuard<'_, State<O>> {
        // A poisoned lock means a panic while a transition was half-applied; no code
        // path panics under this lock, so recovering the guard is sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wall(&self, at: Instant) -> SystemTime {
        // Wall times derive from the monotonic clock, so they stay consistent with
        // durations (and with tokio's paused clock in tests).
        self.created_wall + at.saturating_duration_since(self.created)
    }
}

/// Predictions kept in this process's memory: the embedded default backend.
///
/// Finished predictions are kept for `result_ttl` and at most `max_retained` of them
/// (the oldest go first).
pub struct MemoryBackend<I, O> {
    result_ttl: Duration,
    max_retained: usize,
    inner: Mutex<Inner<I, O>>,
}

struct Inner<I, O> {
    jobs: HashMap<PredictionId, Arc<Entry<I, O>>>,
    /// Finished predictions in completion order. The TTL is the same for all, so
    /// completion order is expiry order and the front is always the next to expire.
    finished: VecDeque<Arc<Entry<I, O>>>,
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
            inner: Mutex::new(Inner {
                jobs: HashMap::new(),
                finished: VecDeque::new(),
            }),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner<I, O>> {
        // See `Entry::state`: nothing panics under this lock.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn retained_now(&self) -> usize {
        self.inner().finished.len()
    }

    fn snapshot_of(entry: &Entry<I, O>) -> Prediction<I, O> {
        let st = entry.state();
        let (output, error) = match &st.outcome {
            Some(Outcome::Succeeded(o)) => (Some(Arc::clone(o)), None),
            Some(Outcome::Failed(e)) => (None, Some(e.clone())),
            Some(Outcome::Canceled) | None => (None, None),
        };
        let queue_end = st.started.or(st.completed);
        Prediction {
            id: entry.id,
            status: st.status,
            input: Arc::clone(&entry.input),
            output,
            error,
            created_at: entry.created_wall,
            started_at: st.started.map(|t| entry.wall(t)),
            completed_at: st.completed.map(|t| entry.wall(t)),
            queue_time: queue_end.map(|t| t.saturating_duration_since(entry.created)),
            predict_time: st
                .started
                .zip(st.completed)
                .map(|(s, c)| c.saturating_duration_since(s)),
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

    async fn insert(&self, id: PredictionId, input: Arc<I>) -> Result<Self::Job> {
        let entry = Arc::new(Entry {
            id,
            input,
            created: Instant::now(),
            created_wall: SystemTime::now(),
            notify: Notify::new(),
            state: Mutex::new(State {
                status: Status::Queued,
                started: None,
                completed: None,
                outcome: None,
            }),
        });
        self.inner().jobs.insert(id, Arc::clone(&entry));
        Ok(MemoryJob(entry))
    }

    async fn lookup(&self, id: PredictionId) -> Result<Option<Self::Job>> {
        Ok(self.inner().jobs.get(&id).cloned().map(MemoryJob))
    }

    async fn snapshot(&self, job: &Self::Job) -> Result<Prediction<I, O>> {
        Ok(Self::snapshot_of(&job.0))
    }

    async fn status(&self, job: &Self::Job) -> Result<Status> {
        Ok(job.0.state().status)
    }

    async fn input(&self, job: &Self::Job) -> Result<Arc<I>> {
        Ok(Arc::clone(&job.0.input))
    }

    async fn start(&self, job: &Self::Job) -> Result<bool> {
        {
            let mut st = job.0.state();
            if st.status != Status::Queued {
                return Ok(false);
            }
            st.status = Status::Processing;
            st.started = Some(Instant::now());
        }
        job.0.notify.notify_waiters();
        Ok(true)
    }

    async fn finish(&self, job: &Self::Job, outcome: Outcome<O>) -> Result<Option<Finished>> {
        let entry = &job.0;
        let finished = {
            let mut st = entry.state();
            if st.status.is_terminal() {
                return Ok(None);
            }
            let now = Instant::now();
            let previous = st.status;
            let status = outcome.status();
            st.status = status;
            st.completed = Some(now);
            st.outcome = Some(outcome);
            Finished {
                id: entry.id,
                previous,
                status,
                queue_time: st
                    .started
                    .unwrap_or(now)
                    .saturating_duration_since(entry.created),
                predict_time: st.started.map(|s| now.saturating_duration_since(s)),
            }
        };
        {
            let mut inner = self.inner();
            inner.finished.push_back(Arc::clone(entry));
            while inner.finished.len() > self.max_retained {
                if let Some(old) = inner.finished.pop_front() {
                    inner.jobs.remove(&old.id);
                }
            }
        }
        entry.notify.notify_waiters();
        Ok(Some(finished))
    }

    fn changed<'a>(&'a self, job: &'a Self::Job) -> impl Future<Output = ()> + Send + 'a {
        // `Notified` receives `notify_waiters` from the moment it is created.
        job.0.notify.notified()
    }

    async fn purge_expired(&self) -> Result<Instant> {
        let now = Instant::now();
        let mut inner = self.inner();
        while let Some(front) = inner.finished.front() {
            let completed = front.state().completed.unwrap_or(now);
            let expires = completed + self.result_ttl;
            if expires > now {
                return Ok(expires);
            }
            if let Some(old) = inner.finished.pop_front() {
                inner.jobs.remove(&old.id);
            }
        }
        // Nothing finished: anything that finishes from now on expires at
        // `now + result_ttl` or later, so waking then is never late.
        Ok(now + self.result_ttl)
    }

    fn retained(&self) -> usize {
        self.retained_now()
    }

    async fn is_ready(&self) -> bool {
        true
    }
}
