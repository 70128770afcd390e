//! The [`Model`] trait: what the queue runs.

use std::future::Future;

use crate::{ModelError, PredictContext};

/// A model that turns an input into an output, slowly.
///
/// The queue calls [`predict`](Model::predict) on a worker task, with the input and a
/// [`PredictContext`]. Dropping the returned future cancels the work: that is how
/// [`JobQueue::cancel`](crate::JobQueue::cancel), deadlines and shutdown stop a running
/// prediction, so a model should hold no state that a drop at any `.await` would
/// corrupt. Work that a drop cannot stop (CPU-bound or blocking code) belongs in
/// [`PredictContext::blocking`], which keeps the prediction's concurrency slot until it
/// returns and hands it the cancellation token. A model that needs neither ignores the
/// context. A `predict` that panics fails only that prediction (with
/// [`FailureKind::Panic`](crate::FailureKind::Panic)); an `Err` fails it with the
/// error's message, and `?` converts any error type (see [`ModelError`]).
///
/// # Example
///
/// ```
/// use mockpredict_core::{Model, ModelError, PredictContext};
///
/// /// Scores text by its length.
/// struct LengthScorer;
///
/// impl Model for LengthScorer {
///     type Input = String;
///     type Output = usize;
///
///     fn name(&self) -> &str { "length-scorer" }
///     fn version(&self) -> &str { "1.0.0" }
///
///     async fn predict(&self, input: &String, _: &PredictContext<String>) -> Result<usize, ModelError> {
///         if input.is_empty() {
///             return Err(ModelError::new("empty input"));
///         }
///         Ok(input.len())
///     }
/// }
/// ```
pub trait Model: Send + Sync + 'static {
    /// What a prediction takes.
    type Input: Send + Sync + 'static;
    /// What a successful prediction returns.
    type Output: Send + Sync + 'static;

    /// The model's name, for metadata (the server's `GET /` and OpenAPI title).
    fn name(&self) -> &str;

    /// The model's version, for metadata.
    fn version(&self) -> &str;

    /// How long a prediction typically takes, if known before any has run. The queue's
    /// `Retry-After` hint (in [`Error::QueueFull`](crate::Error::QueueFull), and the
    /// server's 429) starts from it until finished predictions give a measured
    /// average; without it, the hint is the 1 s minimum until then. Default `None`.
    fn typical_latency(&self) -> Option<std::time::Duration> {
        None
    }

    /// Runs one prediction.
    ///
    /// # Errors
    ///
    /// A [`ModelError`] ends the prediction `failed` with that message.
    fn predict(
        &self,
        input: &Self::Input,
        ctx: &PredictContext<Self::Input>,
    ) -> impl Future<Output = Result<Self::Output, ModelError>> + Send;
}
