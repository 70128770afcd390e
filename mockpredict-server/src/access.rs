//! The access log: one [`AccessRecord`] per answered request, handed to an
//! [`AccessLog`]. The default, [`TracingAccessLog`], emits it as a `tracing` event
//! (`info`, target [`ACCESS_TARGET`]), so the binary's subscriber decides its format
//! and filter like any other line. A program that writes its own log format can take
//! the record directly instead ([`ServerConfig::access_log_sink`](crate::ServerConfig::access_log_sink)),
//! which skips the event's generic field machinery: the `mockpredict-server` binary
//! does this for its default text format, because a per-request event cost more than
//! routing, metrics and the JSON body together (BENCHMARKS.md, "HTTP load").

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use mockpredict_core::PredictionId;

/// The `tracing` target of the access event.
pub const ACCESS_TARGET: &str = "mockpredict_server::access";

/// What the access log knows of one request, once it is answered.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AccessRecord<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The route template that answered (`/predictions/predict/{id}`), or
    /// `unmatched`.
    pub route: &'static str,
    /// The response status.
    pub status: StatusCode,
    /// From the request's arrival at the handler to its response head (a streamed
    /// body, such as an event stream, goes on after this).
    pub duration: Duration,
    /// The prediction the request named (the `{id}` routes, whatever their answer:
    /// a 404 for an unknown ID logs the ID asked for) or created (a submission).
    pub prediction_id: Option<PredictionId>,
}

impl<'a> AccessRecord<'a> {
    /// A record without a prediction.
    pub fn new(
        method: &'a Method,
        route: &'static str,
        status: StatusCode,
        duration: Duration,
    ) -> Self {
        Self {
            method,
            route,
            status,
            duration,
            prediction_id: None,
        }
    }

    /// Sets [`prediction_id`](Self::prediction_id).
    #[must_use]
    pub fn with_prediction_id(mut self, id: Option<PredictionId>) -> Self {
        self.prediction_id = id;
        self
    }

    /// The duration in milliseconds, as the `duration_ms` field carries it. From
    /// nanoseconds, so a value prints as its decimal (0.005919, not
    /// 0.005919000000000001 as `as_secs_f64() * 1e3` gives).
    pub fn duration_ms(&self) -> f64 {
        self.duration.as_nanos() as f64 / 1e6
    }
}

/// Where [`App`](crate::App) sends its [`AccessRecord`]s. Called on the request's
/// task, so it must not block for long.
pub trait AccessLog: Send + Sync + 'static {
    /// Logs one answered request.
    fn record(&self, record: &AccessRecord<'_>);
}

/// The default [`AccessLog`]: an `info` event with target [`ACCESS_TARGET`], message
/// `request`, and the fields `method`, `route`, `status`, `duration_ms` and
/// `prediction_id` (absent when none).
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingAccessLog;

impl TracingAccessLog {
    /// Whether the current subscriber would take this log's events: the same target,
    /// level and field names, so a filter on fields (`RUST_LOG='[{error}]=info'`)
    /// answers as it would for the event itself. A program writing its own access
    /// lines in the events' stead asks this to honour the filter.
    pub fn is_enabled() -> bool {
        tracing::event_enabled!(
            target: "mockpredict_server::access",
            tracing::Level::INFO,
            message,
            method,
            route,
            status,
            duration_ms,
            prediction_id
        )
    }
}

impl AccessLog for TracingAccessLog {
    fn record(&self, r: &AccessRecord<'_>) {
        tracing::info!(
            target: "mockpredict_server::access",
            // A `str` field, not a format string: a formatter can write it without the
            // escaping pass a formatted message needs. First, as a format string's
            // message would be.
            message = "request",
            method = %r.method,
            route = r.route,
            status = r.status.as_u16(),
            duration_ms = r.duration_ms(),
            prediction_id = r.prediction_id.map(tracing::field::display),
        );
    }
}

/// An [`AccessLog`] in a [`ServerConfig`](crate::ServerConfig): a shared handle,
/// printed without its contents.
#[derive(Clone)]
pub struct AccessLogSink(pub(crate) Arc<dyn AccessLog>);

impl AccessLogSink {
    /// Wraps `log`.
    pub fn new(log: impl AccessLog) -> Self {
        Self(Arc::new(log))
    }
}

impl Default for AccessLogSink {
    fn default() -> Self {
        Self::new(TracingAccessLog)
    }
}

impl fmt::Debug for AccessLogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessLogSink(..)")
    }
}
