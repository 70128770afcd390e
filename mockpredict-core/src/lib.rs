//! # mockpredict-core
//!
//! The library under mockpredict: a [`Model`] trait for slow predictions, a
//! realistic [`MockModel`] (8–15 s by default, seeded or random, with injectable
//! failures), and [`JobQueue`], a bounded async job queue that runs any `Model` with
//! sync and async modes, cancellation, deadlines, result retention and graceful
//! shutdown. The HTTP server and the CLI are thin front-ends over it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use mockpredict_core::{JobQueue, MockModel, QueueConfig, Status};
//!
//! let model = MockModel::new().with_seed(7); // latency 8–15 s, reproducible
//! let queue = JobQueue::new(model, QueueConfig::default().concurrency(4))?;
//!
//! // Async mode: an ID at once, the result later.
//! let id = queue.submit("a photo of a cat".to_owned()).await?;
//! assert_eq!(queue.get(id).await?.status, Status::Queued);
//! let done = queue.wait(id, Some(Duration::from_secs(60))).await?;
//! assert_eq!(done.status, Status::Succeeded);
//! println!("result {}", done.output.expect("succeeded").result);
//!
//! // Sync mode: submit and wait in one call.
//! let p = queue.predict("another".to_owned()).await?;
//! assert!(p.is_finished());
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`model`](crate::Model): the `Model` trait; `context`: the [`PredictContext`] a
//!   prediction runs with (cancellation, blocking work inside the slot).
//! - `mock`: [`MockModel`], its output and configuration.
//! - `latency`: [`Latency`] distributions and their parser.
//! - `prediction`: [`PredictionId`], [`Status`], [`Outcome`], [`Prediction`] and the
//!   [`InputRef`] / [`OutputRef`] handles it shares input and output through.
//! - `queue`: [`JobQueue`], [`QueueConfig`], [`Stats`], [`Subscription`], and the
//!   workers under them.
//! - [`store`]: the [`Store`](store::Store) seam (what several processes sharing one
//!   queue share) and [`MemoryStore`](store::MemoryStore), the in-memory default.
//! - `error`: [`Error`], [`ModelError`], [`PredictionError`].
//! - `rng`: the deterministic random stream behind seeded mode.
//! - `sync`: locking a std mutex; `time`: instant arithmetic that cannot overflow.

mod context;
mod error;
mod latency;
mod mock;
mod model;
mod prediction;
mod queue;
mod rng;
pub mod store;
mod sync;
mod time;

pub use context::PredictContext;
pub use error::{Error, FailureKind, ModelError, PredictionError, Result};
pub use latency::{Latency, ParseLatencyError};
pub use mock::{MockConfigError, MockDraw, MockModel, MockOutput};
pub use model::Model;
pub use prediction::{
    HoldsInput, HoldsOutput, InputRef, NoOutput, Outcome, OutputRef, ParseIdError, Prediction,
    PredictionId, Status,
};
pub use queue::{
    JobQueue, JobQueueBuilder, Observer, QueueConfig, ShutdownReport, Stats, Subscription,
};
