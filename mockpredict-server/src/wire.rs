//! The HTTP API's JSON bodies, shared by the server (which writes them) and the
//! [`client`](crate::client) (which reads them), so the protocol is defined once.
//!
//! Bodies are generic over the model's input `I` and output `O`. The server serializes
//! borrowed views (`PredictionBody<&I, &O>`); a client deserializes owned values. For
//! the built-in mock, `I = String` and `O = MockOutput` (`{"input", "result"}`), which
//! keeps the original service's shapes.

use std::time::{Duration, SystemTime};

use mockpredict_core::{Prediction, PredictionError, PredictionId, Status};
use serde::{Deserialize, Serialize};

/// The original service's answer to an unknown prediction ID, kept word for word.
pub const NOT_FOUND_MESSAGE: &str = "Prediction ID not found.";
/// The original service's answer to an async submission, kept word for word.
pub const ASYNC_MESSAGE: &str = "Request received. Processing asynchronously.";
/// The message on a prediction that is not finished yet (the original's 400 text).
pub const PENDING_MESSAGE: &str = "Prediction is still being processed.";
/// The original service's `GET /` message, kept word for word.
pub const ROOT_MESSAGE: &str = "Application is Running!";

/// `GET /`: the original's liveness message, plus the server and model versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootInfo {
    /// Always [`ROOT_MESSAGE`].
    pub message: String,
    /// Always `"success"`.
    pub status: String,
    /// The `mockpredict-server` version.
    #[serde(default)]
    pub version: String,
    /// The model being served.
    #[serde(default)]
    pub model: ModelInfo,
}

/// A model's name and version, as served.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// [`Model::name`](mockpredict_core::Model::name).
    pub name: String,
    /// [`Model::version`](mockpredict_core::Model::version).
    pub version: String,
}

/// `GET /healthz` and a ready `GET /readyz`: `{"status": "ok"}` / `{"status": "ready"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `"ok"` for liveness, `"ready"` for readiness.
    pub status: String,
}

/// `POST /predictions/predict` request body: `{"input": ...}`. Unknown fields are
/// ignored, as the original (FastAPI) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredictRequest<I> {
    /// The model input.
    pub input: I,
}

/// 202 answer to an async submission, or to a sync one that outlasted its wait:
/// `{"message", "prediction_id", "status"}`, with a `Location` header to poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// [`ASYNC_MESSAGE`] for async submissions; an explanation for a sync timeout.
    pub message: String,
    /// The handle to poll, wait on or cancel.
    pub prediction_id: PredictionId,
    /// The status when the answer was written (`queued` or `processing`).
    pub status: Status,
}

/// Timings of one prediction, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// How long the model ran, once it has finished.
    pub predict_time: Option<f64>,
    /// How long the prediction waited for a worker, once that wait is over.
    #[serde(default)]
    pub queue_time: Option<f64>,
}

/// One prediction, as `GET /predictions/predict/{id}` (200 finished, 202 pending), the
/// cancel route and the event stream describe it.
///
/// `output` and `error` are always present, `null` when not applicable: `output` once
/// it `succeeded`, `error` once it `failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionBody<I, O> {
    /// Its ID.
    pub prediction_id: PredictionId,
    /// Its status now.
    pub status: Status,
    /// [`PENDING_MESSAGE`] while queued or processing; absent once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The input it was submitted with.
    pub input: I,
    /// The model's output, when it succeeded.
    pub output: Option<O>,
    /// Why it failed, when it failed.
    pub error: Option<PredictionError>,
    /// When it was admitted.
    #[serde(with = "rfc3339")]
    pub created_at: SystemTime,
    /// When the model started on it.
    #[serde(with = "opt_rfc3339", default)]
    pub started_at: Option<SystemTime>,
    /// When it reached its terminal status.
    #[serde(with = "opt_rfc3339", default)]
    pub completed_at: Option<SystemTime>,
    /// Queue and model time.
    #[serde(default)]
    pub metrics: Timings,
}

impl<I, O> PredictionBody<I, O> {
    /// Whether the prediction has reached a terminal status.
    pub fn is_finished(&self) -> bool {
        self.status.is_terminal()
    }
}

impl<'a, I, O> From<&'a Prediction<I, O>> for PredictionBody<&'a I, &'a O> {
    fn from(p: &'a Prediction<I, O>) -> Self {
        PredictionBody {
            prediction_id: p.id,
            status: p.status,
            message: (!p.is_finished()).then(|| PENDING_MESSAGE.to_owned()),
            input: &*p.input,
            output: p.output.as_deref(),
            error: p.error.clone(),
            created_at: p.created_at,
            started_at: p.started_at,
            completed_at: p.completed_at,
            metrics: Timings {
                predict_time: p.predict_time.map(|d| d.as_secs_f64()),
                queue_time: p.queue_time.map(|d| d.as_secs_f64()),
            },
        }
    }
}

/// Every error response: `{"error": "<human message>", "error_type": "<snake_case>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A human-readable message.
    pub error: String,
    /// A stable snake_case tag (`queue_full`, `not_found`, ...), for programs.
    #[serde(default)]
    pub error_type: String,
}

/// The `Location` path of a prediction: `/predictions/predict/{id}`.
pub fn prediction_path(id: PredictionId) -> String {
    format!("/predictions/predict/{id}")
}

/// Formats a duration as whole seconds for `Retry-After`, rounding up, at least 1.
pub fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    secs.max(1)
}

/// A timestamp as the bodies write it ([`PredictionBody::created_at`] and the
/// others): RFC 3339, `null` when absent. For bodies written field by field.
pub(crate) struct Timestamp(pub(crate) Option<SystemTime>);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        opt_rfc3339::serialize(&self.0, s)
    }
}

/// RFC 3339 timestamps (UTC, milliseconds), as `2026-01-02T03:04:05.678Z`.
mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom)
    }
}

/// Optional RFC 3339 timestamps; `null` when absent.
mod opt_rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(&humantime::format_rfc3339_millis(*t)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2500)), 3);
        assert_eq!(retry_after_secs(Duration::from_secs(4)), 4);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn prediction_body_round_trips_timestamps() {
        let created = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let body: PredictionBody<String, String> = PredictionBody {
            prediction_id: PredictionId::new_v4(),
            status: Status::Succeeded,
            message: None,
            input: "x".into(),
            output: Some("y".into()),
            error: None,
            created_at: created,
            started_at: Some(created),
            completed_at: None,
            metrics: Timings {
                predict_time: Some(0.5),
                queue_time: Some(0.0),
            },
        };
        let json = serde_json::to_value(&body).expect("serializes");
        assert_eq!(json["created_at"], "2023-11-14T22:13:20.123Z");
        assert!(json["completed_at"].is_null());
        assert!(json.get("message").is_none());
        let back: PredictionBody<String, String> =
            serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, body);
    }
}
