//! Error types: [`Error`] for queue operations, [`ModelError`] for what a model
//! returns, and [`PredictionError`] for why a finished prediction failed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::PredictionId;

/// The result type of every fallible queue operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a queue operation was refused.
///
/// Front-ends map each variant to one response (the HTTP server to a status code);
/// the enum is `#[non_exhaustive]` so that a new variant is a compile error there only
/// where a wildcard is missing, never a silent 500.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The queue holds `capacity` predictions (queued + processing) already.
    #[error(
        "queue is full ({capacity} {} queued or processing); retry after {}s",
        if *capacity == 1 { "prediction" } else { "predictions" },
        retry_after.as_secs().saturating_add(u64::from(retry_after.subsec_nanos() > 0))
    )]
    QueueFull {
        /// The configured capacity that was reached.
        capacity: usize,
        /// A hint for how long a client should wait before retrying.
        retry_after: Duration,
    },
    /// The queue is shutting down and admits nothing new.
    #[error("queue is shutting down and accepts no new predictions")]
    ShuttingDown,
    /// No prediction with this ID is known: it never existed or has expired.
    #[error("prediction {0} not found")]
    NotFound(PredictionId),
    /// The store that keeps queue state failed or is unreachable.
    #[error("queue store failed: {0}")]
    Backend(String),
    /// The queue's configuration is invalid.
    #[error("invalid queue configuration: {0}")]
    InvalidConfig(String),
}

/// The error a [`Model`](crate::Model) returns from `predict`: a message, which the
/// failed prediction carries.
///
/// `?` inside `predict` converts any error type (`std::error::Error + Send + Sync +
/// 'static`) into one, its message the error and its causes joined by `": "`, as
/// `anyhow` shows them with `{:#}`. A message of your own goes through
/// [`new`](Self::new): `String` and `&str` cannot also convert with `From`, beside the
/// conversion from every error type. Like `anyhow::Error`, and for the same reason (the conversion
/// from every error type), it is not itself a `std::error::Error`.
///
/// ```
/// use mockpredict_core::ModelError;
///
/// fn parse(text: &str) -> Result<u32, ModelError> {
///     let n: u32 = text.trim().parse()?; // ParseIntError
///     if n == 0 {
///         return Err(ModelError::new("zero is not a valid size"));
///     }
///     Ok(n)
/// }
/// assert_eq!(parse("7"), Ok(7));
/// assert_eq!(parse("x").unwrap_err().message(), "invalid digit found in string");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    message: String,
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ModelError {
    /// A model error with a human-readable message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message given at construction.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A model error from any error, its message the error and its causes joined by
    /// `": "`: what `?` does, for a borrowed or unsized error.
    pub fn from_error(err: &(dyn std::error::Error + 'static)) -> Self {
        let chain: Vec<String> = std::iter::successors(Some(err), |e| e.source())
            .map(ToString::to_string)
            .collect();
        Self::new(chain.join(": "))
    }
}

/// Outside `predict`, `?` takes a `ModelError` into `Box<dyn Error>` (as it takes an
/// `anyhow::Error`).
impl From<ModelError> for Box<dyn std::error::Error + Send + Sync + 'static> {
    fn from(err: ModelError) -> Self {
        Box::new(Message(err.message))
    }
}

impl From<ModelError> for Box<dyn std::error::Error + 'static> {
    fn from(err: ModelError) -> Self {
        Box::new(Message(err.message))
    }
}

/// A [`ModelError`]'s message as a `std::error::Error`, in a box.
#[derive(Debug)]
struct Message(String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// `?` on any error inside `predict` fails the prediction with its message and causes.
impl<E: std::error::Error + Send + Sync + 'static> From<E> for ModelError {
    fn from(err: E) -> Self {
        Self::from_error(&err)
    }
}

/// What class of fault ended a prediction `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The model returned an error.
    Model,
    /// The model panicked; the panic was caught and failed only this prediction.
    Panic,
    /// The prediction's deadline passed while it was queued or processing.
    Timeout,
    /// The queue's store failed while running it.
    Backend,
}

impl FailureKind {
    /// The stable snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Model => "model",
            FailureKind::Panic => "panic",
            FailureKind::Timeout => "timeout",
            FailureKind::Backend => "backend",
        }
    }
}

/// Why a finished prediction has status `failed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct PredictionError {
    /// The class of fault.
    pub kind: FailureKind,
    /// A human-readable message.
    pub message: String,
}

impl PredictionError {
    pub(crate) fn model(err: ModelError) -> Self {
        Self {
            kind: FailureKind::Model,
            message: err.message,
        }
    }

    pub(crate) fn panic(payload: &(dyn std::any::Any + Send)) -> Self {
        Self {
            kind: FailureKind::Panic,
            message: format!("model panicked: {}", panic_message(payload)),
        }
    }

    pub(crate) fn backend(err: &crate::Error) -> Self {
        Self {
            kind: FailureKind::Backend,
            message: err.to_string(),
        }
    }

    /// The worker running the prediction panicked outside the model's polls (in a
    /// store's code, say): the panic's message is in the log.
    pub(crate) fn worker_panicked() -> Self {
        Self {
            kind: FailureKind::Backend,
            message: "the worker running this prediction panicked; see the log".to_owned(),
        }
    }

    pub(crate) fn timeout(deadline: Duration, while_status: &str) -> Self {
        Self {
            kind: FailureKind::Timeout,
            message: format!(
                "prediction deadline of {} passed while {while_status}",
                humantime::format_duration(deadline)
            ),
        }
    }
}

/// A panic's message, when it is a string (as `panic!` makes it).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue-full message counts in words and rounds its wait up, as the
    /// server's `Retry-After` does.
    #[test]
    fn a_full_queue_says_how_full_and_for_how_long() {
        let full = |capacity, ms| Error::QueueFull {
            capacity,
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(
            full(1, 11_500).to_string(),
            "queue is full (1 prediction queued or processing); retry after 12s"
        );
        assert_eq!(
            full(10, 2_000).to_string(),
            "queue is full (10 predictions queued or processing); retry after 2s"
        );
        assert!(full(1, u64::MAX).to_string().ends_with("s"));
    }

    /// `?` on common errors inside `predict` gives a model error with the message and
    /// its causes.
    #[test]
    fn common_errors_become_model_errors_with_their_causes() {
        fn parse(text: &str) -> Result<u32, ModelError> {
            let n: serde_json::Value = serde_json::from_str(text)?;
            n.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| ModelError::new("not a small number"))
        }
        assert_eq!(parse("7"), Ok(7));
        let err = parse("{").expect_err("not JSON");
        assert!(err.message().contains("EOF while parsing"), "{err}");
        assert_eq!(parse("-1"), Err(ModelError::new("not a small number")));
        let io = std::io::Error::other("the cause");
        assert_eq!(ModelError::from(io).message(), "the cause");
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let chained = Outer(std::io::Error::other("inner"));
        assert_eq!(ModelError::from_error(&chained).message(), "outer: inner");
    }
}
