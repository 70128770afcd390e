//! The queue's tasks: the dispatcher, which waits for a free slot (a semaphore permit)
//! and for work, claims a prediction and spawns a worker for it; the workers, which run
//! the model under a watch for cancels, deadlines and shutdown, record the outcome and
//! claim the next while there is one; the deadline sweeper for queued predictions; and
//! the purge of expired results.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::Shared;
use crate::store::{Claimed, Lease, Started, Store, Watch};
use crate::{Model, Outcome, PredictContext, PredictionError, PredictionId};

/// How long the dispatcher waits before claiming again after the store failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// How long a worker with nothing to do waits for work before it exits.
const IDLE: Duration = Duration::from_secs(5);

/// Hands queued predictions to workers: one permit, one claim, one task, until the
/// queue stops.
pub(super) async fn dispatch<M: Model, S: Store<Input = M::Input, Output = M::Output>>(
    shared: Arc<Shared<M, S>>,
) {
    loop {
        let permit = tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            permit = Arc::clone(&shared.slots).acquire_owned() => {
                permit.expect("the queue never closes its semaphore")
            }
        };
        let claimed = loop {
            // Made before the claim, so that an admit between the two is not missed.
            let work = shared.store.work_available();
            // A store that panics must not take the dispatcher, and the queue, down.
            let claim = AssertUnwindSafe(shared.store.claim()).catch_unwind();
            match claim.await {
                Ok(Ok(Some(claimed))) => break Some(claimed),
                Ok(Ok(None)) => {}
                failed => {
                    match failed {
                        Ok(Err(e)) => tracing::warn!(error = %e, "could not claim work; retrying"),
                        _ => tracing::error!("the store panicked in a claim; retrying"),
                    }
                    tokio::select! {
                        () = shared.stop.cancelled() => break None,
                        () = tokio::time::sleep(STORE_RETRY) => continue,
                    }
                }
            }
            tokio::select! {
                biased;
                () = shared.stop.cancelled() => break None,
                () = work => {}
            }
        };
        let Some(claimed) = claimed else { break };
        shared
            .tasks
            .spawn(work(Arc::clone(&shared), permit, claimed));
    }
    // With no handle left, no one could read what is still queued: end it, so the
    // observers' counts add up.
    if shared.abort.is_cancelled() {
        match shared.store.cancel_queued().await {
            Ok(finished) => finished.iter().for_each(|done| shared.on_finished(done)),
            Err(e) => tracing::warn!(error = %e, "could not cancel the queued predictions"),
        }
    }
}

/// A worker: runs the prediction it was given, then the next while there is one, then
/// waits a while for more (so that a steady trickle of work does not spawn a task per
/// prediction), holding its permit throughout.
async fn work<M: Model, S: Store<Input = M::Input, Output = M::Output>>(
    shared: Arc<Shared<M, S>>,
    permit: OwnedSemaphorePermit,
    first: Claimed<M::Input, S::Watch>,
) {
    let mut claimed = first;
    loop {
        run(&shared, claimed).await;
        match next_work(&shared).await {
            Some(next) => claimed = next,
            None => break,
        }
    }
    drop(permit);
}

/// The next prediction for a worker that finished one: claimed now, or after waiting
/// a while for work; `None` when the worker should exit.
async fn next_work<M: Model, S: Store<Input = M::Input, Output = M::Output>>(
    shared: &Shared<M, S>,
) -> Option<Claimed<M::Input, S::Watch>> {
    loop {
        if shared.abort.is_cancelled() || shared.stop.is_cancelled() {
            return None;
        }
        // Made before the claim, so that an admit between the two is not missed.
        let work = shared.store.work_available();
        match shared.store.claim().await {
            Ok(Some(claimed)) => return Some(claimed),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not claim work");
                return None;
            }
        }
        // Idle: the store wakes the most recent waiter first, so a worker that just
        // went idle takes new work before the dispatcher spawns another, and those
        // idle longest time out.
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => return None,
            () = work => {}
            () = tokio::time::sleep(IDLE) => return None,
        }
    }
}

/// Runs one claimed prediction to its end (or until it is no longer this worker's).
async fn run<M: Model, S: Store<Input = M::Input, Output = M::Output>>(
    shared: &Shared<M, S>,
    claimed: Claimed<M::Input, S::Watch>,
) {
    let Claimed {
        id,
        input,
        lease,
        queue_time,
        mut watch,
    } = claimed;
    // Until the prediction is terminal, a drop of this future (its runtime shut down)
    // or a panic (in a store's code) ends it on the way out, instead of leaving it
    // processing for good with its capacity slot.
    let mut unfinished = Unfinished {
        shared,
        id,
        armed: true,
    };
    shared.tell_observers(|o| o.on_start(&Started { id, queue_time }));
    let _running = Running::new(&shared.running);
    let ctx = PredictContext::new(id, input);
    let outcome = if shared.abort.is_cancelled() {
        Some(Outcome::Canceled)
    } else {
        // What is left of the deadline; one too long to represent is none.
        let deadline = shared
            .config
            .deadline
            .and_then(|d| Instant::now().checked_add(d.saturating_sub(queue_time)));
        let model = AssertUnwindSafe(shared.model.predict(ctx.input_ref(), &ctx)).catch_unwind();
        // Boxed, and not at all when there is nothing to wait for (a pending future
        // takes no allocation): a hundred thousand running predictions each carry
        // these.
        let deadline: Waiting = match deadline {
            Some(at) => Box::pin(tokio::time::sleep_until(at)),
            None => Box::pin(std::future::pending()),
        };
        let lease_lost: Waiting = match lease.ttl {
            Some(ttl) => Box::pin(hold(&shared.store, id, &lease, ttl)),
            None => Box::pin(std::future::pending()),
        };
        tokio::select! {
            biased;
            result = model => Some(model_outcome(result)),
            // Canceled, from anywhere: the model's future is dropped here.
            () = ended(&shared.store, id, &mut watch) => None,
            // Another worker took the prediction over: leave it to that one.
            () = lease_lost => None,
            () = shared.abort.cancelled() => Some(Outcome::Canceled),
            () = deadline => Some(Outcome::Failed(shared.timeout("processing"))),
        }
    };
    // The model's future is gone: blocking work it started (and did not wait for, if
    // it ended early) can stop too.
    ctx.end();
    if let Some(outcome) = outcome {
        if let Err(e) = shared.finish(id, outcome).await {
            tracing::error!(error = %e, prediction_id = %id, "could not record an outcome");
            // Record a failure instead, if the store can.
            let failed = Outcome::Failed(PredictionError::backend(&e));
            if let Err(e) = shared.finish(id, failed).await {
                tracing::error!(error = %e, prediction_id = %id, "could not record a failure");
            }
        }
    }
    unfinished.armed = false;
    // The prediction has ended; its slot stays taken while blocking work it started
    // still runs, so that `concurrency` bounds that work too. Not past the queue's
    // stop: a blocking call that never returns must not hold up shutdown.
    if ctx.blocking_running() {
        shared
            .totals
            .blocking_overrun
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(prediction_id = %id, "blocking work outlived its prediction");
        tokio::select! {
            () = ctx.blocking_done() => {}
            () = shared.stop.cancelled() => {}
        }
    }
}

/// Resolves once the prediction has reached a terminal status (or is gone).
async fn ended<S: Store>(store: &S, id: PredictionId, watch: &mut S::Watch) {
    loop {
        watch.changed().await;
        match store.read_watched(id, watch).await {
            Ok(Some(p)) if !p.is_finished() => {}
            Ok(_) => return,
            Err(e) => tracing::warn!(error = %e, "could not read a running prediction"),
        }
    }
}

/// Something the running model is raced against.
type Waiting<'a> = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Renews the lease every third of its TTL while the model runs; resolves when it is
/// lost.
async fn hold<S: Store>(store: &S, id: PredictionId, lease: &Lease, ttl: Duration) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        match store.renew(id, lease).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(prediction_id = %id, "lease lost: another worker took over");
                return;
            }
            Err(e) => tracing::warn!(error = %e, prediction_id = %id, "could not renew a lease"),
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

/// Ends a worker's prediction if the worker stops before it is terminal: its future
/// dropped (its runtime shut down) makes it `canceled`; an unwind (a panic outside the
/// model's polls, say in a store's code) makes it `failed`, kind `backend`. The store's
/// `finish` must complete at its first poll (the in-memory one does); otherwise this is
/// logged and the prediction left as it is (a shared store's lease then lapses).
struct Unfinished<'a, M: Model, S: Store<Input = M::Input, Output = M::Output>> {
    shared: &'a Shared<M, S>,
    id: PredictionId,
    armed: bool,
}

impl<M: Model, S: Store<Input = M::Input, Output = M::Output>> Drop for Unfinished<'_, M, S> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let unwinding = std::thread::panicking();
        // Everything in here runs inside `catch_unwind`: a panic escaping a
        // destructor during an unwind would abort the process.
        let ended = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let (outcome, why) = if unwinding {
                let err = PredictionError::worker_panicked();
                (Outcome::Failed(err), "its worker panicked")
            } else {
                (Outcome::Canceled, "its worker stopped")
            };
            match self.shared.finish(self.id, outcome).now_or_never() {
                Some(Ok(true)) => tracing::warn!("a prediction ended early: {why}"),
                Some(Ok(false)) => {}
                Some(Err(e)) => {
                    tracing::error!(error = %e, "could not end a prediction early ({why})");
                }
                None => tracing::error!(
                    "could not end a prediction early ({why}): the store did not answer at once"
                ),
            }
        }));
        drop(ended);
    }
}

/// Fails queued predictions whose deadline passes before a worker takes them, waking
/// when the oldest one's is due (with none queued, a deadline from now: nothing
/// admitted later is due sooner).
pub(super) async fn sweep<M: Model, S: Store<Input = M::Input, Output = M::Output>>(
    shared: Arc<Shared<M, S>>,
    deadline: Duration,
) {
    loop {
        let next = match shared.store.expire_queued(deadline).await {
            Ok(expired) => {
                expired
                    .finished
                    .iter()
                    .for_each(|done| shared.on_finished(done));
                // With nothing queued, nothing is due before a deadline from now (and
                // a zero deadline needs no sweeping: workers time such work out).
                expired
                    .next_in
                    .unwrap_or(deadline.max(Duration::from_secs(1)))
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not expire queued predictions");
                STORE_RETRY
            }
        };
        tokio::select! {
            () = shared.stop.cancelled() => return,
            () = tokio::time::sleep_until(crate::time::after(Instant::now(), next)) => {}
        }
    }
}

/// Forgets expired results, waking when the next one is due.
pub(super) async fn purge<M: Model, S: Store<Input = M::Input, Output = M::Output>>(
    shared: Arc<Shared<M, S>>,
) {
    loop {
        let next = shared.store.purge_expired().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not purge expired predictions");
            STORE_RETRY
        });
        tokio::select! {
            () = shared.stop.cancelled() => return,
            () = tokio::time::sleep_until(crate::time::after(Instant::now(), next)) => {}
        }
    }
}

impl<M: Model, S: Store<Input = M::Input, Output = M::Output>> Shared<M, S> {
    fn timeout(&self, while_status: &str) -> PredictionError {
        PredictionError::timeout(self.config.deadline.unwrap_or_default(), while_status)
    }
}

/// Counts a running prediction for as long as it lives.
struct Running<'a>(&'a AtomicUsize);

impl<'a> Running<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
