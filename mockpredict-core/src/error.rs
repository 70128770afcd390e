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
    #[error("queue is full ({capacity} predictions queued or processing); retry after {}s", retry_after.as_secs())]
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
    /// The backend that stores queue state failed or is unreachable.
    #[error("queue backend failed: {0}")]
    Backend(String),
    /// The queue's configuration is invalid.
    #[error("invalid queue configuration: {0}")]
    InvalidConfig(String),
}

/// The error a [`Model`](crate::Model) returns from `predict`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct ModelError {
    message: String,
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
    /// The queue's backend failed while running it.
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
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        Self {
            kind: FailureKind::Panic,
            message: format!("model panicked: {detail}"),
        }
    }

    pub(crate) fn backend(err: &crate::Error) -> Self {
        Self {
            kind: FailureKind::Backend,
            message: err.to_string(),
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
