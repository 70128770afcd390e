//! [`PredictContext`]: what a running prediction gives its model besides the input: an
//! owned handle on the input, a cancellation signal, and a way to run blocking work
//! that keeps the prediction's concurrency slot until it returns.

use std::sync::OnceLock;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{InputRef, PredictionId};

/// What [`Model::predict`](crate::Model::predict) gets besides its input.
///
/// - [`input`](Self::input): an owned, cheap handle on the input, to move into a
///   blocking call or another task.
/// - [`cancellation`](Self::cancellation): canceled when the prediction is canceled,
///   its deadline passes or the queue shuts down. The model's future is dropped then
///   too, so an `async` model needs nothing more; the token is for work that outlives
///   the future (a blocking call, a spawned task) and should stop early.
/// - [`blocking`](Self::blocking): runs CPU-bound or blocking code on tokio's blocking
///   pool *inside the prediction's concurrency slot*: a cancel or deadline ends the
///   prediction at once, but its worker takes no other prediction until the blocking
///   call returns, so [`concurrency`](crate::QueueConfig::concurrency) bounds the
///   blocking calls running as well as the predictions (one at a time per prediction:
///   a model that runs several at once, with `join!`, takes that many threads per
///   slot). A call that never returns keeps its slot until the queue stops.
///
/// ```
/// use mockpredict_core::{Model, ModelError, PredictContext};
///
/// /// Counts primes below the input, on the blocking pool.
/// struct Primes;
///
/// impl Model for Primes {
///     type Input = u64;
///     type Output = usize;
///     fn name(&self) -> &str { "primes" }
///     fn version(&self) -> &str { "1" }
///
///     async fn predict(&self, _: &u64, ctx: &PredictContext<u64>) -> Result<usize, ModelError> {
///         let n = ctx.input();
///         ctx.blocking(move |cancel| {
///             let mut count = 0;
///             for k in 2..*n {
///                 if cancel.is_cancelled() {
///                     return Err(ModelError::new("canceled"));
///                 }
///                 if (2..k).take_while(|d| d * d <= k).all(|d| k % d != 0) {
///                     count += 1;
///                 }
///             }
///             Ok(count)
///         })
///         .await
///     }
/// }
/// ```
pub struct PredictContext<I: 'static> {
    id: PredictionId,
    input: InputRef<I>,
    /// Made when the model first asks for it; the worker cancels it if it exists.
    cancel: OnceLock<CancellationToken>,
    /// Made by the first blocking call; the worker waits for it before its next
    /// prediction.
    blocking: OnceLock<TaskTracker>,
}

impl<I: Send + Sync + 'static> PredictContext<I> {
    /// A context for prediction `id` (the queue makes one per run; tests of a model
    /// can make their own).
    pub fn new(id: PredictionId, input: InputRef<I>) -> Self {
        Self {
            id,
            input,
            cancel: OnceLock::new(),
            blocking: OnceLock::new(),
        }
    }

    /// A context outside any queue, to call a model directly (in its tests, say): a
    /// new random ID, canceled only by [`cancel`](Self::cancel).
    pub fn standalone(input: I) -> Self {
        Self::new(PredictionId::new_v4(), InputRef::new(input))
    }

    /// The prediction's ID.
    pub fn id(&self) -> PredictionId {
        self.id
    }

    /// An owned handle on the input: cloning it only bumps a reference count, and it
    /// can move into a `'static` closure.
    pub fn input(&self) -> InputRef<I> {
        self.input.clone()
    }

    /// The prediction's cancellation: canceled when it is canceled, its deadline
    /// passes or the queue shuts down (and, for a context made by hand, when
    /// [`cancel`](Self::cancel) is called).
    pub fn cancellation(&self) -> CancellationToken {
        self.cancel.get_or_init(CancellationToken::new).clone()
    }

    /// Whether the prediction has been canceled (or timed out, or the queue stopped).
    pub fn is_cancelled(&self) -> bool {
        self.cancel
            .get()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// Runs `work` on tokio's blocking pool and returns what it returns. `work` gets
    /// the prediction's cancellation token, to stop early if it can. The prediction's
    /// concurrency slot stays taken until `work` returns, even if the prediction ends
    /// first (canceled, timed out): its worker waits for it before taking another. The
    /// queue's shutdown does not wait for it.
    ///
    /// # Panics
    ///
    /// Resumes a panic of `work`, which fails the prediction as a panic in `predict`
    /// does; panics outside a tokio runtime.
    pub async fn blocking<R, F>(&self, work: F) -> R
    where
        F: FnOnce(&CancellationToken) -> R + Send + 'static,
        R: Send + 'static,
    {
        let cancel = self.cancellation();
        let tracker = self.blocking.get_or_init(TaskTracker::new);
        let handle = tracker.spawn_blocking(move || work(&cancel));
        match handle.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down: this prediction is being dropped anyway.
            Err(_) => std::future::pending().await,
        }
    }

    /// Cancels the context's token (the queue does this when the prediction ends
    /// early).
    pub fn cancel(&self) {
        self.cancel.get_or_init(CancellationToken::new).cancel();
    }

    /// Cancels the token if the model asked for one (so nothing is made for a model
    /// that never did): the queue's call once the model's future is gone.
    pub(crate) fn end(&self) {
        if let Some(token) = self.cancel.get() {
            token.cancel();
        }
    }

    /// The input, borrowed (what the queue passes as `predict`'s first argument).
    pub(crate) fn input_ref(&self) -> &I {
        &self.input
    }

    /// Whether blocking calls made through this context are still running. Closes
    /// the tracker: the queue asks once the model's future is gone, when no more can
    /// start.
    pub(crate) fn blocking_running(&self) -> bool {
        self.blocking.get().is_some_and(|tracker| {
            tracker.close();
            !tracker.is_empty()
        })
    }

    /// Waits for the blocking calls made through this context to return.
    pub(crate) async fn blocking_done(&self) {
        if let Some(tracker) = self.blocking.get() {
            tracker.close();
            tracker.wait().await;
        }
    }
}

/// A context dropped with its prediction (the queue's runtime shut down, say) tells the
/// blocking work it started to stop.
impl<I> Drop for PredictContext<I> {
    fn drop(&mut self) {
        if let Some(token) = self.cancel.get() {
            token.cancel();
        }
    }
}

impl<I> std::fmt::Debug for PredictContext<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictContext")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
