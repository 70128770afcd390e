//! Prediction vocabulary: [`PredictionId`], [`Status`], [`Outcome`] and the
//! [`Prediction`] snapshot that `get`, `wait` and `cancel` return.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::PredictionError;

/// A prediction's identifier: a random (v4) UUID, so the ID is an unguessable handle
/// and two IDs reveal nothing about each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PredictionId(uuid::Uuid);

impl PredictionId {
    /// A new random ID.
    pub fn new_v4() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl From<uuid::Uuid> for PredictionId {
    fn from(value: uuid::Uuid) -> Self {
        Self(value)
    }
}

impl fmt::Display for PredictionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// The error from parsing a [`PredictionId`] that is not a UUID.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not a prediction ID (expected a UUID such as 67e55044-10b1-426f-9247-bb680e5fe0c8): {0}")]
pub struct ParseIdError(#[from] uuid::Error);

impl FromStr for PredictionId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(uuid::Uuid::try_parse(s)?))
    }
}

/// Where a prediction is in its life: `queued → processing → succeeded | failed |
/// canceled`. It never moves backwards and reaches exactly one terminal status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Admitted, waiting for a free worker.
    Queued,
    /// The model is running it.
    Processing,
    /// Finished with an output.
    Succeeded,
    /// Finished with an error (model error, panic or deadline).
    Failed,
    /// Canceled before it finished.
    Canceled,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Processing,
        Status::Succeeded,
        Status::Failed,
        Status::Canceled,
    ];

    /// Whether this status is final.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Canceled)
    }

    /// The stable snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Processing => "processing",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a prediction finished.
#[derive(Debug, Clone)]
pub enum Outcome<O> {
    /// The model returned this output (the store keeps it, and snapshots share
    /// it through [`OutputRef`]).
    Succeeded(O),
    /// The prediction failed.
    Failed(PredictionError),
    /// The prediction was canceled.
    Canceled,
}

impl<O> Outcome<O> {
    /// The terminal status this outcome gives.
    pub fn status(&self) -> Status {
        match self {
            Outcome::Succeeded(_) => Status::Succeeded,
            Outcome::Failed(_) => Status::Failed,
            Outcome::Canceled => Status::Canceled,
        }
    }
}

/// Something that holds a prediction's input: the store's record of it, so that a
/// snapshot shares the input without a separate allocation.
pub trait HoldsInput<I>: Send + Sync {
    /// The input.
    fn input(&self) -> &I;
}

/// Something that holds a succeeded prediction's output: the store's record of it,
/// so that a snapshot shares the output without a separate allocation.
pub trait HoldsOutput<O>: Send + Sync {
    /// The output.
    fn output(&self) -> &O;
}

/// A plain owned input or output, for stores that do not keep it inside a record.
struct Owned<T>(T);

impl<I: Send + Sync> HoldsInput<I> for Owned<I> {
    fn input(&self) -> &I {
        &self.0
    }
}

impl<O: Send + Sync> HoldsOutput<O> for Owned<O> {
    fn output(&self) -> &O {
        &self.0
    }
}

/// What [`InputRef`] and [`OutputRef`] both are: a cheap clone, and the value they
/// point at for `Deref`, `AsRef`, `Debug`, `Display` and `==` (with another handle or
/// with a plain value: `assert_eq!(output, "SYNC".to_owned())`).
macro_rules! shared_ref_impls {
    ($handle:ident, $get:ident) => {
        impl<T> Clone for $handle<T> {
            fn clone(&self) -> Self {
                Self(Arc::clone(&self.0))
            }
        }

        impl<T> std::ops::Deref for $handle<T> {
            type Target = T;

            fn deref(&self) -> &T {
                self.0.$get()
            }
        }

        impl<T> AsRef<T> for $handle<T> {
            fn as_ref(&self) -> &T {
                self.0.$get()
            }
        }

        impl<T: fmt::Debug> fmt::Debug for $handle<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.0.$get(), f)
            }
        }

        impl<T: fmt::Display> fmt::Display for $handle<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self.0.$get(), f)
            }
        }

        impl<T: PartialEq> PartialEq for $handle<T> {
            fn eq(&self, other: &Self) -> bool {
                self.0.$get() == other.0.$get()
            }
        }

        impl<T: PartialEq> PartialEq<T> for $handle<T> {
            fn eq(&self, other: &T) -> bool {
                self.0.$get() == other
            }
        }
    };
}

/// A shared, read-only handle on a prediction's input: it derefs to the input, and
/// cloning it only bumps a reference count. The in-memory store points it into its
/// own record, so a prediction costs one allocation for record and input together.
pub struct InputRef<I: 'static>(Arc<dyn HoldsInput<I>>);

impl<I: Send + Sync + 'static> InputRef<I> {
    /// Wraps an owned input.
    pub fn new(input: I) -> Self {
        Self(Arc::new(Owned(input)))
    }

    /// Points at the input inside a shared record.
    pub fn from_holder(holder: Arc<dyn HoldsInput<I>>) -> Self {
        Self(holder)
    }
}

shared_ref_impls!(InputRef, input);

/// A shared, read-only handle on a succeeded prediction's output: it derefs to the
/// output, and cloning it only bumps a reference count. The in-memory store points
/// it into its own record.
pub struct OutputRef<O>(Arc<dyn HoldsOutput<O>>);

impl<O: Send + Sync + 'static> OutputRef<O> {
    /// Wraps an owned output.
    pub fn new(output: O) -> Self {
        Self(Arc::new(Owned(output)))
    }

    /// Points at the output inside a shared record.
    pub fn from_holder(holder: Arc<dyn HoldsOutput<O>>) -> Self {
        Self(holder)
    }
}

shared_ref_impls!(OutputRef, output);

/// A snapshot of one prediction, as `get`, `wait` and `cancel` return it.
///
/// Input and output are shared ([`InputRef`], [`OutputRef`]), so a snapshot is cheap
/// and never copies or serializes them.
#[derive(Debug)]
pub struct Prediction<I: 'static, O> {
    /// The prediction's ID.
    pub id: PredictionId,
    /// Its status when the snapshot was taken.
    pub status: Status,
    /// The input it was submitted with.
    pub input: InputRef<I>,
    /// The output, when it succeeded.
    pub output: Option<OutputRef<O>>,
    /// The error, when it failed.
    pub error: Option<PredictionError>,
    /// When it was admitted (wall clock).
    pub created_at: SystemTime,
    /// When the model started on it, if it did.
    pub started_at: Option<SystemTime>,
    /// When it reached its terminal status, if it has.
    pub completed_at: Option<SystemTime>,
    /// How long it waited in the queue (admission to start, or to its end if it
    /// never started), if that wait has ended.
    pub queue_time: Option<Duration>,
    /// How long the model ran (start to completion), if it started and finished.
    pub predict_time: Option<Duration>,
}

impl<I, O> Clone for Prediction<I, O> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            status: self.status,
            input: self.input.clone(),
            output: self.output.clone(),
            error: self.error.clone(),
            created_at: self.created_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
            queue_time: self.queue_time,
            predict_time: self.predict_time,
        }
    }
}

impl<I, O> Prediction<I, O> {
    /// Whether the prediction has reached its terminal status.
    pub fn is_finished(&self) -> bool {
        self.status.is_terminal()
    }

    /// Its output if it succeeded; otherwise why it has none, as an error (for `?`).
    ///
    /// # Errors
    ///
    /// [`NoOutput::Failed`] with the prediction's error, [`NoOutput::Canceled`], or
    /// [`NoOutput::Unfinished`] while it is queued or processing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use mockpredict_core::{JobQueue, MockModel, QueueConfig};
    ///
    /// let queue = JobQueue::new(MockModel::new(), QueueConfig::default())?;
    /// let output = queue.predict("hello".to_owned()).await?.into_result()?;
    /// assert_eq!(output.input, "hello");
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_result(self) -> Result<OutputRef<O>, NoOutput> {
        match (self.status, self.output, self.error) {
            (Status::Succeeded, Some(output), _) => Ok(output),
            (Status::Failed, _, Some(error)) => Err(NoOutput::Failed(error)),
            (Status::Canceled, _, _) => Err(NoOutput::Canceled),
            (status, _, _) => Err(NoOutput::Unfinished(status)),
        }
    }
}

/// Why a [`Prediction`] has no output, from [`Prediction::into_result`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoOutput {
    /// It failed, with this error.
    #[error("prediction failed ({}): {}", .0.kind.as_str(), .0.message)]
    Failed(PredictionError),
    /// It was canceled.
    #[error("prediction was canceled")]
    Canceled,
    /// It has not finished: it is still queued or processing.
    #[error("prediction is still {0}")]
    Unfinished(Status),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_handles_print_and_compare_as_their_values() {
        let output = OutputRef::new("SYNC".to_owned());
        assert_eq!(output.to_string(), "SYNC");
        assert_eq!(format!("{output:?}"), "\"SYNC\"");
        assert_eq!(output, "SYNC".to_owned());
        assert_eq!(output, output.clone());
        assert_ne!(output, OutputRef::new("other".to_owned()));
        let input = InputRef::new(7_u64);
        assert_eq!(input.to_string(), "7");
        assert_eq!(input, 7);
        assert_eq!(*input + 1, 8);
    }
}
