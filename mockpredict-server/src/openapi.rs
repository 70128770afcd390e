//! The OpenAPI 3.1 description of every route, served at `GET /openapi.json`. A test
//! checks its paths and methods against [`routes`](crate::routes()), so neither can
//! gain a route the other lacks.

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn id_param() -> Value {
    json!({
        "name": "prediction_id", "in": "path", "required": true,
        "description": "The prediction's ID (a UUID). Anything else answers 404.",
        "schema": {"type": "string", "format": "uuid"}
    })
}

fn prediction_content() -> Value {
    json!({"application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}})
}

/// The OpenAPI 3.1 document, as JSON.
pub fn document() -> Value {
    let unauthorized =
        error_response("Missing or wrong bearer token (only when the server has one).");
    let not_found = error_response(
        "Unknown, expired or malformed prediction ID (`\"Prediction ID not found.\"`).",
    );
    let bad_param = error_response("A query parameter has the wrong type.");
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "mockpredict",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Slow ML predictions, synchronously or through a background queue. \
                Compatible superset of the original FastAPI service. Every error is \
                `{\"error\", \"error_type\"}`; unknown routes answer 404 `route_not_found`, \
                wrong methods 405 `method_not_allowed` with `Allow`, `HEAD` is answered \
                wherever `GET` is, and `OPTIONS` on any route answers CORS preflights."
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/": {"get": {
                "operationId": "root",
                "summary": "The original liveness message, with version and model.",
                "security": [],
                "responses": {"200": {"description": "Running.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RootInfo"}}}}}
            }},
            "/healthz": {"get": {
                "operationId": "healthz", "summary": "Liveness: 200 while the process runs.",
                "security": [],
                "responses": {"200": {"description": "Alive.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}}
            }},
            "/readyz": {"get": {
                "operationId": "readyz", "summary": "Readiness: 503 while draining or when the backend is unreachable.",
                "security": [],
                "responses": {
                    "200": {"description": "Ready.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                    "503": error_response("Draining or backend unreachable (`not_ready`).")
                }
            }},
            "/metrics": {"get": {
                "operationId": "metrics", "summary": "Prometheus metrics: text format 0.0.4, or OpenMetrics when Accept asks for it.",
                "responses": {
                    "200": {"description": "Metrics.", "content": {"text/plain": {"schema": {"type": "string"}}, "application/openmetrics-text": {"schema": {"type": "string"}}}},
                    "401": unauthorized
                }
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document.",
                "responses": {"200": {"description": "OpenAPI 3.1.", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": unauthorized}
            }},
            "/predictions/predict": {"post": {
                "operationId": "predict",
                "summary": "Submit a prediction, async (default) or sync.",
                "description": "Mode: the `async_mode` query flag wins; otherwise RFC 7240 `Prefer`: `respond-async` answers at once, `wait=N` holds the request up to N s (capped by the server's sync limit, 60 s by default) and then answers 202. Without either: async.",
                "parameters": [
                    {"name": "async_mode", "in": "query", "required": false, "schema": {"type": "boolean", "default": true}, "description": "false: wait for the result."},
                    {"name": "Prefer", "in": "header", "required": false, "schema": {"type": "string"}, "example": "respond-async, wait=10"}
                ],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
                "responses": {
                    "200": {"description": "Sync: finished (a failed prediction is an answer: check `status`). The mock's output fields (`input`, `result`) are also at the top level, as the original sent them.",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncResult"}}}},
                    "202": {"description": "Async, or sync past its wait: poll `Location`.",
                            "headers": {"Location": {"schema": {"type": "string"}, "description": "/predictions/predict/{prediction_id}"}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                    "400": error_response("Body is not UTF-8 JSON (`malformed_json`)."),
                    "401": unauthorized,
                    "408": error_response("The body did not fully arrive within the header-read timeout, 10 s by default (`request_timeout`)."),
                    "413": error_response("Body over the limit, 1 MiB by default (`payload_too_large`)."),
                    "415": {"description": "Content-Type is not JSON, or the body has a Content-Encoding other than identity (`unsupported_media_type`); the latter answer carries `Accept-Encoding: identity`.",
                            "headers": {"Accept-Encoding": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                    "422": error_response("Missing or mistyped `input`, or a bad `async_mode` (`validation_error`)."),
                    "429": {"description": "Queue full (`queue_full`).", "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                    "503": error_response("Shutting down (`shutting_down`) or backend unavailable.")
                }
            }},
            "/predictions/predict/{prediction_id}": {"get": {
                "operationId": "getPrediction",
                "summary": "A prediction: 200 when finished, 202 while queued or processing.",
                "parameters": [
                    id_param(),
                    {"name": "wait", "in": "query", "required": false, "schema": {"type": "number", "minimum": 0},
                     "description": "Long-poll: hold the request up to this many seconds (capped by the server, 60 s by default) until the prediction finishes."}
                ],
                "responses": {
                    "200": {"description": "Finished: succeeded, failed or canceled.", "content": prediction_content()},
                    "202": {"description": "Still queued or processing.", "content": prediction_content()},
                    "401": unauthorized, "404": not_found, "422": bad_param
                }
            }},
            "/predictions/predict/{prediction_id}/cancel": {"post": {
                "operationId": "cancelPrediction",
                "summary": "Cancel a queued or running prediction.",
                "parameters": [id_param()],
                "responses": {
                    "200": {"description": "The prediction after the cancel: `canceled`, or the terminal status it had already reached.", "content": prediction_content()},
                    "401": unauthorized, "404": not_found
                }
            }},
            "/predictions/predict/{prediction_id}/events": {"get": {
                "operationId": "predictionEvents",
                "summary": "Server-Sent Events: one `id: <status>` / `event: <status>` per status change, `data` the prediction; ends after the terminal event. A prediction the server cannot write ends the stream with `event: server_error`, `data` an Error.",
                "parameters": [id_param(), {
                    "name": "Last-Event-ID", "in": "header", "required": false,
                    "description": "The last event ID a reconnecting client had (EventSource sends it by itself). A terminal status (succeeded, failed, canceled) gets 204: the client has had the end.",
                    "schema": {"type": "string"}
                }],
                "responses": {
                    "200": {"description": "An event stream.", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                    "204": {"description": "The client has had the terminal event (its Last-Event-ID): nothing more to stream."},
                    "401": unauthorized, "404": not_found
                }
            }}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "Required on every route but /, /healthz and /readyz when the server has --api-token."}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "error_type"], "properties": {
                    "error": {"type": "string"},
                    "error_type": {"type": "string", "enum": [
                        "malformed_json", "unreadable_body", "unsupported_media_type", "validation_error",
                        "payload_too_large", "request_timeout", "route_not_found", "not_found", "method_not_allowed",
                        "unauthorized", "queue_full", "shutting_down", "not_ready",
                        "backend_unavailable", "internal_error"]}
                }},
                "RootInfo": {"type": "object", "required": ["message", "status"], "properties": {
                    "message": {"const": "Application is Running!"}, "status": {"const": "success"},
                    "version": {"type": "string"},
                    "model": {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"}}}
                }},
                "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok", "ready"]}}},
                "PredictRequest": {"type": "object", "required": ["input"], "properties": {"input": {"description": "The model input (a string for the mock)."}}},
                "Status": {"type": "string", "enum": ["queued", "processing", "succeeded", "failed", "canceled"]},
                "Accepted": {"type": "object", "required": ["message", "prediction_id", "status"], "properties": {
                    "message": {"type": "string", "examples": ["Request received. Processing asynchronously."]},
                    "prediction_id": {"type": "string", "format": "uuid"},
                    "status": {"$ref": "#/components/schemas/Status"}
                }},
                "PredictionError": {"type": "object", "required": ["kind", "message"], "properties": {
                    "kind": {"type": "string", "enum": ["model", "panic", "timeout", "backend"]},
                    "message": {"type": "string"}
                }},
                "Prediction": {"type": "object",
                    "required": ["prediction_id", "status", "input", "output", "error", "created_at", "started_at", "completed_at", "metrics"],
                    "properties": {
                        "prediction_id": {"type": "string", "format": "uuid"},
                        "status": {"$ref": "#/components/schemas/Status"},
                        "message": {"type": "string", "description": "Present while queued or processing."},
                        "input": {"description": "The input it was submitted with."},
                        "output": {"description": "The model output once succeeded; for the mock `{\"input\", \"result\"}`.", "examples": [{"input": "hello", "result": "4821"}]},
                        "error": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/PredictionError"}]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "started_at": {"type": ["string", "null"], "format": "date-time"},
                        "completed_at": {"type": ["string", "null"], "format": "date-time"},
                        "metrics": {"type": "object", "properties": {
                            "predict_time": {"type": ["number", "null"], "description": "Model time, seconds."},
                            "queue_time": {"type": ["number", "null"], "description": "Queue wait, seconds."}
                        }}
                    }},
                "SyncResult": {"allOf": [{"$ref": "#/components/schemas/Prediction"}, {"type": "object", "properties": {
                    "result": {"description": "The mock's result (an integer 100..=10000 as a string), spread from `output`."}
                }}]}
            }
        }
    })
}

/// The document, serialized once.
pub(crate) fn document_bytes() -> Bytes {
    static DOC: OnceLock<Bytes> = OnceLock::new();
    DOC.get_or_init(|| Bytes::from(document().to_string()))
        .clone()
}
