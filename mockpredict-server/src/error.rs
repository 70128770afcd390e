//! Errors: the crate's [`Error`] for setting up and running a server, and the HTTP
//! error responses (`ApiError`), each with its status code and stable `error_type`.

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};

use crate::app::{Body, full};
use crate::wire::{self, ErrorBody};

/// The result type of the server's fallible functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a server could not be built or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The queue refused its configuration.
    #[error("could not start the job queue")]
    Queue(#[from] mockpredict_core::Error),
    /// A socket operation failed.
    #[error("network I/O failed")]
    Io(#[from] std::io::Error),
    /// The server configuration cannot work as given (a CORS entry that is not an
    /// origin, say).
    #[error("invalid server configuration: {0}")]
    InvalidConfig(String),
}

/// An HTTP error answer. Every variant has one status and one `error_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// 400: the body is not JSON.
    MalformedJson(String),
    /// 400: the body could not be read (the connection broke mid-body, say).
    UnreadableBody(String),
    /// 415: a `Content-Type` other than JSON.
    UnsupportedMediaType(String),
    /// 415: two `Content-Type` headers (their values), so the body's type is unknown.
    TwoContentTypes(String),
    /// 415: a `Transfer-Encoding` other than `chunked`, which hyper would pass on
    /// undecoded.
    UnsupportedTransferCoding(String),
    /// 415: a `Content-Encoding` (gzip, say) the server does not decode; answered
    /// with `Accept-Encoding: identity`, as RFC 9110 §15.5.16 asks.
    UnsupportedEncoding(String),
    /// 422: JSON of the wrong shape, or a bad query parameter.
    Validation(String),
    /// 413: the body is over the limit.
    PayloadTooLarge { limit: usize },
    /// 408: the body did not arrive in time.
    RequestTimeout { after: Duration },
    /// 404: no such route.
    RouteNotFound,
    /// 404: unknown, expired or malformed prediction ID.
    PredictionNotFound,
    /// 405: the route exists with other methods.
    MethodNotAllowed { allow: &'static str },
    /// 401: missing or wrong bearer token.
    Unauthorized,
    /// 429: the queue is full.
    QueueFull {
        capacity: usize,
        retry_after: Duration,
    },
    /// 503: the server is shutting down.
    ShuttingDown,
    /// 503: `/readyz` while draining or with an unreachable backend.
    NotReady,
    /// 503: the queue's backend failed.
    BackendUnavailable(String),
    /// 500: a genuine internal fault.
    Internal(String),
}

impl From<mockpredict_core::Error> for ApiError {
    fn from(e: mockpredict_core::Error) -> Self {
        use mockpredict_core::Error as E;
        match e {
            E::QueueFull {
                capacity,
                retry_after,
            } => ApiError::QueueFull {
                capacity,
                retry_after,
            },
            E::ShuttingDown => ApiError::ShuttingDown,
            E::NotFound(_) => ApiError::PredictionNotFound,
            E::Backend(msg) => ApiError::BackendUnavailable(msg),
            // A queue is validated when it is built, so a request can only meet this
            // through a bug: an internal fault.
            E::InvalidConfig(msg) => ApiError::Internal(format!("invalid configuration: {msg}")),
            // `Error` is #[non_exhaustive], so a wildcard is required here. A variant
            // added to core after this server was written is one this server cannot
            // know how to classify: answering 500 (and logging it) is the honest
            // default until this match learns it.
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    /// The status code: one exhaustive match, no wildcard.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::UnreadableBody(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_)
            | ApiError::TwoContentTypes(_)
            | ApiError::UnsupportedTransferCoding(_)
            | ApiError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::RouteNotFound | ApiError::PredictionNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ShuttingDown | ApiError::NotReady | ApiError::BackendUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable snake_case tag.
    pub(crate) fn error_type(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::UnreadableBody(_) => "unreadable_body",
            ApiError::UnsupportedMediaType(_)
            | ApiError::TwoContentTypes(_)
            | ApiError::UnsupportedTransferCoding(_)
            | ApiError::UnsupportedEncoding(_) => "unsupported_media_type",
            ApiError::Validation(_) => "validation_error",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::RouteNotFound => "route_not_found",
            ApiError::PredictionNotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::QueueFull { .. } => "queue_full",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::NotReady => "not_ready",
            ApiError::BackendUnavailable(_) => "backend_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::MalformedJson(m) => format!("request body is not valid JSON: {m}"),
            ApiError::UnreadableBody(m) => format!("could not read the request body: {m}"),
            ApiError::UnsupportedMediaType(ct) => {
                format!("content type {ct:?} is not supported; send application/json")
            }
            ApiError::TwoContentTypes(values) => {
                format!("two Content-Type headers ({values}); send one: application/json")
            }
            ApiError::UnsupportedTransferCoding(coding) => format!(
                "transfer coding {coding:?} is not supported; send the body as it is, or chunked"
            ),
            ApiError::UnsupportedEncoding(coding) => {
                format!("content encoding {coding:?} is not supported; send the body uncompressed")
            }
            ApiError::Validation(m) => m.clone(),
            ApiError::PayloadTooLarge { limit } => {
                format!("request body is larger than the limit of {limit} bytes")
            }
            ApiError::RequestTimeout { after } => format!(
                "the request body did not arrive within {}",
                humantime::format_duration(*after)
            ),
            ApiError::RouteNotFound => "no such route".to_owned(),
            ApiError::PredictionNotFound => wire::NOT_FOUND_MESSAGE.to_owned(),
            ApiError::MethodNotAllowed { allow } => {
                format!("method not allowed on this route; allowed: {allow}")
            }
            ApiError::Unauthorized => {
                "missing or invalid bearer token (send Authorization: Bearer <token>)".to_owned()
            }
            ApiError::QueueFull {
                capacity,
                retry_after,
            } => format!(
                "queue is full ({capacity} {} queued or processing); retry after {}s",
                if *capacity == 1 {
                    "prediction"
                } else {
                    "predictions"
                },
                wire::retry_after_secs(*retry_after)
            ),
            ApiError::ShuttingDown => {
                "server is shutting down and accepts no new predictions".to_owned()
            }
            ApiError::NotReady => {
                "server is not ready (draining or backend unreachable)".to_owned()
            }
            // Backend and internal details go to the log, not to clients.
            ApiError::BackendUnavailable(_) => "the queue backend is unavailable".to_owned(),
            ApiError::Internal(_) => "internal server error".to_owned(),
        }
    }

    /// The JSON response, with `Allow`, `Retry-After`, `WWW-Authenticate` or
    /// `Accept-Encoding` as fits.
    pub(crate) fn into_response(self) -> Response<Body> {
        match &self {
            ApiError::BackendUnavailable(m) => tracing::error!(error = %m, "backend failure"),
            ApiError::Internal(m) => tracing::error!(error = %m, "internal error"),
            _ => {}
        }
        let body = ErrorBody {
            error: self.message(),
            error_type: self.error_type().to_owned(),
        };
        let bytes = serde_json::to_vec(&body)
            .map(Bytes::from)
            .unwrap_or_else(|_| {
                Bytes::from_static(
                    br#"{"error":"internal server error","error_type":"internal_error"}"#,
                )
            });
        let mut resp = Response::new(full(bytes));
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match &self {
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::UnsupportedEncoding(_) => {
                headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            }
            ApiError::QueueFull { retry_after, .. } => {
                headers.insert(
                    RETRY_AFTER,
                    HeaderValue::from(wire::retry_after_secs(*retry_after)),
                );
            }
            ApiError::ShuttingDown | ApiError::NotReady => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::Unauthorized => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="mockpredict""#),
                );
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mockpredict_core::PredictionId;

    #[test]
    fn core_errors_map_to_client_statuses() {
        let full = ApiError::from(mockpredict_core::Error::QueueFull {
            capacity: 3,
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(full.status(), StatusCode::TOO_MANY_REQUESTS);
        let resp = full.into_response();
        assert_eq!(resp.headers()[RETRY_AFTER], "2");
        assert_eq!(
            ApiError::from(mockpredict_core::Error::NotFound(PredictionId::new_v4())).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ApiError::from(mockpredict_core::Error::ShuttingDown).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::from(mockpredict_core::Error::InvalidConfig("x".into())).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn backend_failures_are_503_without_leaking_details() {
        let e = ApiError::from(mockpredict_core::Error::Backend(
            "redis://secret-host:6379 refused".into(),
        ));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.error_type(), "backend_unavailable");
        assert!(!e.message().contains("secret-host"));
    }
}
