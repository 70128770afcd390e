//! The "ceiling" server of issue 5: what serving mockpredict's API costs when nothing
//! but the unavoidable is done, to measure `mockpredict-server` against in the same run.
//!
//! hyper 1 with hyper-util's auto builder (HTTP/1.1 keep-alive and HTTP/2 cleartext),
//! on the same multi-threaded tokio runtime the real binary uses. It accepts the same
//! requests, reads and parses the JSON body, makes a UUID v4 and answers the same JSON
//! shapes, status codes and headers (`Location`, the CORS headers the real server
//! always adds), and nothing more: no queue, no model, no store, no metrics, no logs.
//!
//! - `POST /predictions/predict` → 202 `{"message", "prediction_id", "status"}` with
//!   `Location`; with `async_mode=false`, 200 with the real server's sync body (the
//!   finished prediction plus the output's `input` and `result` at the top level).
//! - `GET /predictions/predict/{id}` → any UUID is a finished prediction: 200 with the
//!   same body shape as the real server; not a UUID: 404.
//! - `GET /healthz` → 200 `{"status": "ok"}`; anything else 404.
//!
//! Timestamps are fixed at start-up and `result` comes from the UUID's random bits:
//! an implementation could cache the former, and it already pays for the latter.
//!
//! Run: `cargo run --release -p benches --bin ceiling -- --bind 127.0.0.1:8001`; it prints
//! `listening on http://ADDR`. The load tools start it themselves.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, CONTENT_TYPE, HeaderValue, LOCATION,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The reference server: the least any implementation of the API must do.
#[derive(Debug, Parser)]
#[command(name = "ceiling")]
struct Flags {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: String,
}

const MAX_BODY: usize = 1 << 20;
const PREFIX: &str = "/predictions/predict";

#[derive(Deserialize)]
struct PredictRequest {
    input: String,
}

#[derive(Serialize)]
struct Accepted<'a> {
    message: &'a str,
    prediction_id: Uuid,
    status: &'a str,
}

#[derive(Serialize)]
struct Output<'a> {
    input: &'a str,
    result: &'a str,
}

#[derive(Serialize)]
struct Timings {
    predict_time: f64,
    queue_time: f64,
}

/// A finished prediction, field for field as the real server writes it.
#[derive(Serialize)]
struct Finished<'a> {
    prediction_id: Uuid,
    status: &'a str,
    input: &'a str,
    output: Output<'a>,
    error: Option<()>,
    created_at: &'a str,
    started_at: &'a str,
    completed_at: &'a str,
    metrics: Timings,
    /// Only in the sync answer: the output's `result`, spread to the top level.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a str>,
}

struct State {
    /// One RFC 3339 timestamp for every prediction (see the module docs).
    stamp: String,
}

/// Where a poll's `input` comes from: the ceiling stores nothing, so every finished
/// prediction carries the input the load tools submit.
const POLLED_INPUT: &str = "benchmark input";

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(flags))
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&flags.bind)
        .await
        .with_context(|| format!("cannot listen on {}", flags.bind))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    let state = Arc::new(State {
        stamp: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let mut resp = if req.method() == Method::POST && path == PREFIX {
        predict(state, req).await
    } else if req.method() == Method::GET && path == "/healthz" {
        json(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
    } else if let Some(id) = path
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|_| req.method() == Method::GET)
    {
        match id.parse::<Uuid>() {
            Ok(id) => finished(state, StatusCode::OK, id, POLLED_INPUT, None),
            Err(_) => not_found(),
        }
    } else {
        not_found()
    };
    let h = resp.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("location, retry-after, preference-applied"),
    );
    resp
}

async fn predict(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let sync = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "async_mode=false"));
    let Ok(body) = Limited::new(req.into_body(), MAX_BODY).collect().await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body too large",
            "payload_too_large",
        );
    };
    let Ok(PredictRequest { input }) = serde_json::from_slice(&body.to_bytes()) else {
        return error(StatusCode::BAD_REQUEST, "malformed JSON", "malformed_json");
    };
    let id = Uuid::new_v4();
    if sync {
        // 100..=10000 from bits the UUID already drew.
        let result = (100 + id.as_u128() % 9901).to_string();
        return finished(state, StatusCode::OK, id, &input, Some(&result));
    }
    let body = serde_json::to_vec(&Accepted {
        message: "Request received. Processing asynchronously.",
        prediction_id: id,
        status: "queued",
    })
    .expect("serializing plain fields cannot fail");
    let mut resp = json(StatusCode::ACCEPTED, body);
    let location =
        HeaderValue::from_str(&format!("{PREFIX}/{id}")).expect("a UUID path is a valid header");
    resp.headers_mut().insert(LOCATION, location);
    resp
}

fn finished(
    state: &State,
    status: StatusCode,
    id: Uuid,
    input: &str,
    sync_result: Option<&str>,
) -> Response<Full<Bytes>> {
    let polled_result = (100 + id.as_u128() % 9901).to_string();
    let result = sync_result.unwrap_or(&polled_result);
    let body = serde_json::to_vec(&Finished {
        prediction_id: id,
        status: "succeeded",
        input,
        output: Output { input, result },
        error: None,
        created_at: &state.stamp,
        started_at: &state.stamp,
        completed_at: &state.stamp,
        metrics: Timings {
            predict_time: 0.0,
            queue_time: 0.0,
        },
        result: sync_result,
    })
    .expect("serializing plain fields cannot fail");
    json(status, body)
}

fn not_found() -> Response<Full<Bytes>> {
    error(
        StatusCode::NOT_FOUND,
        "Prediction ID not found.",
        "not_found",
    )
}

fn error(status: StatusCode, message: &str, kind: &str) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&serde_json::json!({ "error": message, "error_type": kind }))
        .expect("serializing plain fields cannot fail");
    json(status, body)
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
