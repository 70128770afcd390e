//! Every route, mode and error of the HTTP API, over real TCP with millisecond latencies.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{get, mock, post_json, send, start, start_with, submit_id};
use http::{Method, StatusCode};
use mockpredict_core::{Model, ModelError, PredictContext, QueueConfig};
use mockpredict_server::{AccessLog, AccessRecord, Cors, ServerConfig};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

const PREDICT: &str = "/predictions/predict";

#[tokio::test]
async fn root_keeps_the_original_message_and_adds_version_and_model() {
    let s = start().await;
    let r = get(&s.url("/")).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["message"], "Application is Running!");
    assert_eq!(body["status"], "success");
    assert_eq!(body["model"]["name"], "mock");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn health_is_ok_and_readiness_turns_503_when_draining() {
    let s = start().await;
    assert_eq!(get(&s.url("/healthz")).await.json()["status"], "ok");
    let ready = get(&s.url("/readyz")).await;
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (StatusCode::OK, "ready".into())
    );
    s.app.drain();
    let draining = get(&s.url("/readyz")).await;
    assert_eq!(draining.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(draining.error_type(), "not_ready");
    assert_eq!(
        get(&s.url("/healthz")).await.status,
        StatusCode::OK,
        "still alive"
    );
}

#[tokio::test]
async fn draining_server_refuses_new_predictions_with_503() {
    let s = start().await;
    s.app.drain();
    let r = post_json(&s.url(PREDICT), r#"{"input":"x"}"#).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.error_type(), "shutting_down");
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn async_is_the_default_and_answers_202_with_location() {
    let s = start().await;
    let r = post_json(&s.url(PREDICT), r#"{"input":"hello"}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let body = r.json();
    assert_eq!(
        body["message"],
        "Request received. Processing asynchronously."
    );
    assert_eq!(body["status"], "queued");
    let id = body["prediction_id"].as_str().expect("id");
    assert!(uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 4));
    assert_eq!(
        r.header("location"),
        Some(format!("{PREDICT}/{id}").as_str())
    );
}

#[tokio::test]
async fn sync_mode_answers_200_with_input_and_result() {
    let s = start().await;
    let r = post_json(
        &s.url(&format!("{PREDICT}?async_mode=false")),
        r#"{"input":"hello"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["input"], "hello");
    let result: u32 = body["result"]
        .as_str()
        .expect("result is a string")
        .parse()
        .expect("int");
    assert!((100..=10_000).contains(&result));
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["output"]["result"], body["result"]);
    assert!(
        body["metrics"]["predict_time"]
            .as_f64()
            .is_some_and(|t| t >= 0.015)
    );
    // The original's two keys come first.
    assert!(
        r.text().starts_with(r#"{"input":"hello","result":"#),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn a_failed_sync_prediction_is_a_200_carrying_its_error() {
    let model = mock("5ms").with_failure_rate(1.0).expect("valid rate");
    let s = start_with(model, QueueConfig::default(), ServerConfig::default()).await;
    let r = post_json(
        &s.url(&format!("{PREDICT}?async_mode=false")),
        r#"{"input":"x"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["status"], "failed");
    assert_eq!(body["error"]["kind"], "model");
    assert!(body["output"].is_null());
}

#[tokio::test]
async fn sync_past_its_wait_limit_answers_202_with_location() {
    let config = ServerConfig::default().sync_timeout(Duration::from_millis(50));
    let s = start_with(mock("3s"), QueueConfig::default(), config).await;
    let started = Instant::now();
    let r = post_json(
        &s.url(&format!("{PREDICT}?async_mode=false")),
        r#"{"input":"x"}"#,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "did not wait for the model"
    );
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let body = r.json();
    assert_eq!(body["status"], "processing");
    let id = body["prediction_id"].as_str().expect("id");
    assert_eq!(
        r.header("location"),
        Some(format!("{PREDICT}/{id}").as_str())
    );
}

#[tokio::test]
async fn prefer_header_selects_the_mode() {
    let s = start().await;
    let url = s.url(PREDICT);
    let ct = ("content-type", "application/json");
    let wait = send(
        Method::POST,
        &url,
        &[ct, ("prefer", "wait=5")],
        Some(r#"{"input":"a"}"#),
    )
    .await;
    assert_eq!(
        wait.status,
        StatusCode::OK,
        "wait=N without async_mode waits"
    );
    assert_eq!(wait.header("preference-applied"), Some("wait=5"));
    assert!(wait.json()["result"].is_string());
    let ra = send(
        Method::POST,
        &url,
        &[ct, ("prefer", "respond-async")],
        Some(r#"{"input":"a"}"#),
    )
    .await;
    assert_eq!(ra.status, StatusCode::ACCEPTED);
    assert_eq!(ra.header("preference-applied"), Some("respond-async"));
    let query_wins = send(
        Method::POST,
        &format!("{url}?async_mode=true"),
        &[ct, ("prefer", "wait=5")],
        Some(r#"{"input":"a"}"#),
    )
    .await;
    assert_eq!(query_wins.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn poll_is_202_while_pending_and_200_with_every_field_when_done() {
    let s = start_with(
        mock("300ms"),
        QueueConfig::default(),
        ServerConfig::default(),
    )
    .await;
    let id = submit_id(&s.url(PREDICT), "hi").await;
    let pending = get(&s.url(&format!("{PREDICT}/{id}"))).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED);
    let body = pending.json();
    assert!(["queued", "processing"].contains(&body["status"].as_str().expect("status")));
    assert_eq!(body["message"], "Prediction is still being processed.");
    assert!(body["completed_at"].is_null());

    let done = get(&s.url(&format!("{PREDICT}/{id}?wait=10"))).await;
    assert_eq!(done.status, StatusCode::OK);
    let body = done.json();
    assert_eq!(body["prediction_id"], id.as_str());
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["output"]["input"], "hi");
    assert!(body["output"]["result"].is_string());
    assert!(body["error"].is_null());
    for field in ["created_at", "started_at", "completed_at"] {
        let t = body[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} missing"));
        assert!(humantime::parse_rfc3339(t).is_ok(), "{field}={t}");
    }
    assert!(
        body["metrics"]["predict_time"]
            .as_f64()
            .is_some_and(|t| t >= 0.25)
    );
    assert!(body.get("message").is_none());
}

#[tokio::test]
async fn long_poll_returns_when_the_prediction_finishes_not_when_the_wait_ends() {
    let s = start_with(
        mock("100ms"),
        QueueConfig::default(),
        ServerConfig::default(),
    )
    .await;
    let id = submit_id(&s.url(PREDICT), "x").await;
    let started = Instant::now();
    let r = get(&s.url(&format!("{PREDICT}/{id}?wait=10"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "succeeded");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "returned at completion"
    );
}

#[tokio::test]
async fn long_poll_gives_up_with_202_when_the_wait_ends() {
    let s = start_with(mock("2s"), QueueConfig::default(), ServerConfig::default()).await;
    let id = submit_id(&s.url(PREDICT), "x").await;
    let started = Instant::now();
    let r = get(&s.url(&format!("{PREDICT}/{id}?wait=0.1"))).await;
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(
        took >= Duration::from_millis(90) && took < Duration::from_secs(1),
        "{took:?}"
    );
}

#[tokio::test]
async fn long_poll_is_capped_by_the_server_maximum() {
    let config = ServerConfig::default().max_wait(Duration::from_millis(100));
    let s = start_with(mock("5s"), QueueConfig::default(), config).await;
    let id = submit_id(&s.url(PREDICT), "x").await;
    let started = Instant::now();
    let r = get(&s.url(&format!("{PREDICT}/{id}?wait=60"))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn cancel_stops_a_running_prediction_and_leaves_finished_ones_alone() {
    let s = start_with(mock("5s"), QueueConfig::default(), ServerConfig::default()).await;
    let id = submit_id(&s.url(PREDICT), "x").await;
    let r = send(
        Method::POST,
        &s.url(&format!("{PREDICT}/{id}/cancel")),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "canceled");
    let after = get(&s.url(&format!("{PREDICT}/{id}"))).await;
    assert_eq!(
        (after.status, after.json()["status"].clone()),
        (StatusCode::OK, "canceled".into())
    );

    let fast = start().await;
    let done = post_json(
        &fast.url(&format!("{PREDICT}?async_mode=false")),
        r#"{"input":"y"}"#,
    )
    .await;
    let id = done.json()["prediction_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = send(
        Method::POST,
        &fast.url(&format!("{PREDICT}/{id}/cancel")),
        &[],
        None,
    )
    .await;
    assert_eq!(r.json()["status"], "succeeded", "already finished: kept");
}

#[tokio::test]
async fn unknown_and_malformed_ids_answer_the_original_404() {
    let s = start().await;
    for path in [
        format!("{PREDICT}/{}", uuid::Uuid::new_v4()),
        format!("{PREDICT}/not-a-uuid"),
        format!("{PREDICT}/{}/events", uuid::Uuid::new_v4()),
    ] {
        let r = get(&s.url(&path)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.json()["error"], "Prediction ID not found.");
        assert_eq!(r.error_type(), "not_found");
    }
    let cancel = send(
        Method::POST,
        &s.url(&format!("{PREDICT}/{}/cancel", uuid::Uuid::new_v4())),
        &[],
        None,
    )
    .await;
    assert_eq!(cancel.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn request_errors_have_their_status_and_error_type() {
    let s = start().await;
    let url = s.url(PREDICT);
    let cases: Vec<(common::Resp, StatusCode, &str)> = vec![
        (
            post_json(&url, r#"{"input": "#).await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            post_json(&url, "").await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            send(
                Method::POST,
                &url,
                &[("content-type", "text/plain")],
                Some(r#"{"input":"x"}"#),
            )
            .await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            // A wrong type before a syntax error: still not JSON.
            post_json(&url, r#"{"input":5 garbage"#).await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            post_json(&url, r#"{"text":"x"}"#).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            post_json(&url, r#"{"input":5}"#).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            // serde would read `["x"]` as {"input": "x"}; the original wanted an object.
            post_json(&url, r#"["x"]"#).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            post_json(&format!("{url}?async_mode=maybe"), r#"{"input":"x"}"#).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            get(&s.url(&format!("{PREDICT}/{}?wait=soon", uuid::Uuid::new_v4()))).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        ),
        (
            get(&s.url("/nope")).await,
            StatusCode::NOT_FOUND,
            "route_not_found",
        ),
    ];
    for (resp, status, error_type) in cases {
        assert_eq!(resp.status, status, "{}", resp.text());
        assert_eq!(resp.error_type(), error_type);
        assert_eq!(resp.header("content-type"), Some("application/json"));
    }
}

/// The server decodes no content coding: a compressed body is refused with 415 and
/// `Accept-Encoding: identity` (RFC 9110 §15.5.16), not misread as bad JSON, and a
/// coded body that happens to be JSON text is not taken at face value.
#[tokio::test]
async fn a_content_coded_body_is_415_with_accept_encoding() {
    let s = start().await;
    for coding in ["gzip", "br"] {
        let r = send(
            Method::POST,
            &s.url(PREDICT),
            &[
                ("content-type", "application/json"),
                ("content-encoding", coding),
            ],
            Some(r#"{"input":"x"}"#),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.text());
        assert_eq!(r.error_type(), "unsupported_media_type");
        assert_eq!(r.header("accept-encoding"), Some("identity"));
        assert!(
            r.json()["error"]
                .as_str()
                .is_some_and(|m| m.contains(coding))
        );
    }
    let r = send(
        Method::POST,
        &s.url(PREDICT),
        &[("content-encoding", "identity")],
        Some(r#"{"input":"x"}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "identity is no coding");
}

#[tokio::test]
async fn a_body_without_content_type_is_read_as_json_like_the_original() {
    let s = start().await;
    let r = send(Method::POST, &s.url(PREDICT), &[], Some(r#"{"input":"x"}"#)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let s = start().await;
    let r = get(&s.url(PREDICT)).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    assert_eq!(r.error_type(), "method_not_allowed");
    let r = send(Method::DELETE, &s.url("/"), &[], None).await;
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_413_before_reading() {
    let config = ServerConfig::default().max_body(1024);
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    let big = format!(r#"{{"input":"{}"}}"#, "x".repeat(2048));
    let r = post_json(&s.url(PREDICT), &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_type(), "payload_too_large");
    let small = post_json(&s.url(PREDICT), r#"{"input":"ok"}"#).await;
    assert_eq!(
        small.status,
        StatusCode::ACCEPTED,
        "the limit is not too tight"
    );
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_cut_off_with_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = ServerConfig::default().max_body(1024);
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    let mut tcp = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    // No Content-Length: the limit must be enforced while reading.
    let chunk = "x".repeat(600);
    let req = format!(
        "POST {PREDICT} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
         {:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len(),
        chunk.len()
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("answered")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
}

/// hyper decodes only `chunked`: a body under another transfer coding would reach
/// the JSON parser still coded, so it is refused as a content-coded one is.
#[tokio::test]
async fn a_transfer_coding_other_than_chunked_gets_415() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start_with(mock("5ms"), QueueConfig::default(), ServerConfig::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    let body = r#"{"input":"x"}"#;
    let req = format!(
        "POST {PREDICT} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
         transfer-encoding: gzip, chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut text))
        .await
        .expect("answered")
        .expect("read");
    assert!(text.starts_with("HTTP/1.1 415"), "{text}");
    assert!(text.contains("unsupported_media_type"), "{text}");
    assert!(text.contains("gzip, chunked"), "{text}");
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let queue = QueueConfig::default().capacity(1);
    let s = start_with(mock("2s"), queue, ServerConfig::default()).await;
    assert_eq!(
        post_json(&s.url(PREDICT), r#"{"input":"a"}"#).await.status,
        StatusCode::ACCEPTED
    );
    let r = post_json(&s.url(PREDICT), r#"{"input":"b"}"#).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error_type(), "queue_full");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry >= 1);
    let metrics = get(&s.url("/metrics")).await.text();
    assert!(
        metrics.contains("mockpredict_predictions_rejected_total 1"),
        "{metrics}"
    );
    // The refused one was not admitted.
    assert!(
        metrics.contains("mockpredict_predictions_submitted_total 1\n"),
        "{metrics}"
    );
    // The mock runs no blocking work.
    assert!(
        metrics.contains("mockpredict_predictions_blocking_overrun_total 0\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bearer_token_guards_every_route_but_root_and_probes() {
    let config = ServerConfig::default().api_token(Some("s3cret".into()));
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    for open in ["/", "/healthz", "/readyz"] {
        assert_eq!(get(&s.url(open)).await.status, StatusCode::OK, "{open}");
    }
    let missing = get(&s.url("/metrics")).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.error_type(), "unauthorized");
    assert!(
        missing
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer"))
    );
    let wrong = send(
        Method::POST,
        &s.url(PREDICT),
        &[("authorization", "Bearer s3creT")],
        Some(r#"{"input":"x"}"#),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let prefix = send(
        Method::POST,
        &s.url(PREDICT),
        &[("authorization", "Bearer s3cre")],
        Some(r#"{"input":"x"}"#),
    )
    .await;
    assert_eq!(prefix.status, StatusCode::UNAUTHORIZED);
    let basic = send(
        Method::GET,
        &s.url("/openapi.json"),
        &[("authorization", "Basic s3cret")],
        None,
    )
    .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
    let right = send(
        Method::POST,
        &s.url(PREDICT),
        &[("authorization", "bearer s3cret")],
        Some(r#"{"input":"x"}"#),
    )
    .await;
    assert_eq!(right.status, StatusCode::ACCEPTED);
    let id = right.json()["prediction_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let poll = get(&s.url(&format!("{PREDICT}/{id}"))).await;
    assert_eq!(
        poll.status,
        StatusCode::UNAUTHORIZED,
        "polling needs the token too"
    );
}

#[tokio::test]
async fn cors_allows_any_origin_by_default_and_answers_preflight() {
    let s = start().await;
    let r = send(
        Method::GET,
        &s.url("/"),
        &[("origin", "https://app.example")],
        None,
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let pre = send(
        Method::OPTIONS,
        &s.url(PREDICT),
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type, authorization",
            ),
        ],
        None,
    )
    .await;
    assert_eq!(pre.status, StatusCode::NO_CONTENT);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    assert!(
        pre.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST"))
    );
    assert_eq!(
        pre.header("access-control-allow-headers"),
        Some("content-type, authorization")
    );
    assert!(pre.header("access-control-max-age").is_some());
    let unknown = send(Method::OPTIONS, &s.url("/nope"), &[], None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    for path in ["/nope/", "//"] {
        let r = send(Method::OPTIONS, &s.url(path), &[], None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
}

/// A trailing slash on a known route redirects (307) every method but `OPTIONS`: a
/// browser's preflight cannot follow a redirect, so it is answered as the route's.
#[tokio::test]
async fn a_preflight_on_a_trailing_slash_is_answered_as_the_route() {
    let s = start().await;
    let pre = send(
        Method::OPTIONS,
        &s.url(&format!("{PREDICT}/")),
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
        ],
        None,
    )
    .await;
    assert_eq!(pre.status, StatusCode::NO_CONTENT);
    assert_eq!(pre.header("allow"), Some("POST, OPTIONS"));
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    let post = send(
        Method::POST,
        &s.url(&format!("{PREDICT}/")),
        &[("origin", "https://app.example")],
        Some(r#"{"input":"x"}"#),
    )
    .await;
    assert_eq!(post.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(post.header("location"), Some(PREDICT));
    assert_eq!(
        post.header("access-control-allow-origin"),
        Some("*"),
        "a browser follows a cross-origin redirect only with CORS headers on it"
    );
}

#[tokio::test]
async fn preflight_needs_no_token() {
    let config = ServerConfig::default().api_token(Some("t".into()));
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    let pre = send(
        Method::OPTIONS,
        &s.url(PREDICT),
        &[
            ("origin", "https://a.example"),
            ("access-control-request-method", "POST"),
        ],
        None,
    )
    .await;
    assert_eq!(pre.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn cors_origin_list_echoes_only_listed_origins_and_off_sends_nothing() {
    let config = ServerConfig::default().cors(Cors::Origins(vec!["https://ok.example".into()]));
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    let ok = send(
        Method::GET,
        &s.url("/"),
        &[("origin", "https://ok.example")],
        None,
    )
    .await;
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://ok.example")
    );
    assert_eq!(ok.header("vary"), Some("origin"));
    let other = send(
        Method::GET,
        &s.url("/"),
        &[("origin", "https://evil.example")],
        None,
    )
    .await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    // A listed origin's preflight gets the preflight headers; its HEAD, the same
    // origin headers as its GET.
    let preflight = send(
        Method::OPTIONS,
        &s.url(PREDICT),
        &[
            ("origin", "https://ok.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type, x-trace"),
        ],
        None,
    )
    .await;
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://ok.example")
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET, POST, OPTIONS")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("content-type, x-trace")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));
    assert_eq!(preflight.header("vary"), Some("origin"));
    let head = send(
        Method::HEAD,
        &s.url("/healthz"),
        &[("origin", "https://ok.example")],
        None,
    )
    .await;
    assert_eq!(
        head.header("access-control-allow-origin"),
        Some("https://ok.example")
    );
    assert_eq!(head.header("vary"), Some("origin"));
    assert!(head.text().is_empty());

    let off = start_with(
        mock("5ms"),
        QueueConfig::default(),
        ServerConfig::default().cors(Cors::Off),
    )
    .await;
    let r = send(
        Method::GET,
        &off.url("/"),
        &[("origin", "https://ok.example")],
        None,
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn metrics_count_predictions_requests_and_timings() {
    let s = start().await;
    let r = post_json(
        &s.url(&format!("{PREDICT}?async_mode=false")),
        r#"{"input":"x"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let m = get(&s.url("/metrics")).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.header("content-type").is_some_and(|c| c.contains("text")));
    let text = m.text();
    for needle in [
        r#"mockpredict_predictions_total{status="succeeded"} 1"#,
        "mockpredict_predictions_submitted_total 1\n",
        "mockpredict_queue_depth 0",
        "mockpredict_in_flight 0",
        "mockpredict_queue_capacity 10000",
        "mockpredict_predict_seconds_count 1",
        "mockpredict_queue_wait_seconds_count 1",
        r#"mockpredict_http_requests_total{method="POST",route="/predictions/predict",code="200"} 1"#,
        r#"mockpredict_http_request_duration_seconds_count{route="/predictions/predict"} 1"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    // At least the scrape's own connection is open.
    let open: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("mockpredict_connections "))
        .expect("a connections gauge")
        .parse()
        .expect("a number");
    assert!(open >= 1, "{text}");
}

/// The queue-wait histogram counts a prediction when it starts, not one model time
/// later when it ends, so that an autoscaler reading it sees the queue as it is.
#[tokio::test]
async fn queue_wait_is_observed_when_a_prediction_starts() {
    let s = start_with(mock("30s"), QueueConfig::default(), ServerConfig::default()).await;
    submit_id(&s.url(PREDICT), "x").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = get(&s.url("/metrics")).await.text();
        if m.contains("mockpredict_queue_wait_seconds_count 1\n") {
            assert!(m.contains("mockpredict_in_flight 1\n"), "{m}");
            assert!(m.contains("mockpredict_predict_seconds_count 0\n"), "{m}");
            break;
        }
        assert!(Instant::now() < deadline, "not observed at the start:\n{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Prometheus asks for OpenMetrics and gets it; a client that names no format gets
/// the classic text format (0.0.4), in which each counter's `# TYPE` names its
/// `_total` series, so that a 0.0.4 parser types every sample.
#[tokio::test]
async fn metrics_speak_openmetrics_to_who_asks_and_prometheus_text_otherwise() {
    let s = start().await;
    let prometheus_accept = "application/openmetrics-text;version=1.0.0;q=0.75,\
                             text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let om = send(
        Method::GET,
        &s.url("/metrics"),
        &[("accept", prometheus_accept)],
        None,
    )
    .await;
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let om = om.text();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.contains("# TYPE mockpredict_predictions counter\n"),
        "{om}"
    );

    let text = get(&s.url("/metrics")).await;
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = text.text();
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    // Every sample belongs to a family that a `# TYPE` line declares by its own name
    // (a histogram's by the name before `_bucket`, `_sum` or `_count`).
    let declared: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(declared.contains("mockpredict_predictions_total"), "{text}");
    for sample in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = sample.split(['{', ' ']).next().expect("a name");
        let family = ["_bucket", "_sum", "_count"]
            .into_iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| declared.contains(f)))
            .unwrap_or(name);
        assert!(
            declared.contains(family),
            "{sample} has no # TYPE in\n{text}"
        );
    }
}

#[tokio::test]
async fn openapi_document_and_router_agree() {
    let s = start().await;
    let doc = get(&s.url("/openapi.json")).await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .map(move |m| (m.to_uppercase(), path.replace("{prediction_id}", "{id}")))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = mockpredict_server::routes()
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    assert_eq!(documented, routed);
    // And the table is what the router really serves: no route answers 404/405.
    let id = uuid::Uuid::new_v4();
    for (method, template) in mockpredict_server::routes() {
        let path = template.replace("{id}", &id.to_string());
        let method: Method = method.parse().expect("method");
        let r = send(method.clone(), &s.url(&path), &[], Some(r#"{"input":"x"}"#)).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if r.status == StatusCode::NOT_FOUND {
            assert_eq!(r.error_type(), "not_found", "{method} {path} is not routed");
        }
    }
}

/// A small non-mock model: counts words, with a struct input.
struct WordCounter;

#[derive(Serialize, Deserialize)]
struct Text {
    text: String,
}

impl Model for WordCounter {
    type Input = Text;
    type Output = usize;

    fn name(&self) -> &str {
        "word-counter"
    }

    fn version(&self) -> &str {
        "1"
    }

    async fn predict(&self, input: &Text, _: &PredictContext<Text>) -> Result<usize, ModelError> {
        Ok(input.text.split_whitespace().count())
    }
}

#[tokio::test]
async fn any_serde_model_is_served_on_the_same_routes() {
    let s = start_with(WordCounter, QueueConfig::default(), ServerConfig::default()).await;
    let r = post_json(
        &s.url(&format!("{PREDICT}?async_mode=false")),
        r#"{"input":{"text":"one two three"}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["result"], 3, "a non-object output is spread as result");
    assert_eq!(body["output"], 3);
    assert_eq!(body["input"]["text"], "one two three");
    let bad = post_json(&s.url(PREDICT), r#"{"input":"not an object"}"#).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        get(&s.url("/")).await.json()["model"]["name"],
        "word-counter"
    );
}

#[tokio::test]
async fn head_is_answered_wherever_get_is_without_a_body() {
    let s = start().await;
    for path in ["/", "/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let r = send(Method::HEAD, &s.url(path), &[], None).await;
        assert_eq!(r.status, StatusCode::OK, "HEAD {path}");
        assert!(r.body.is_empty(), "HEAD {path} sent a body");
    }
    let unknown = send(
        Method::HEAD,
        &s.url(&format!("{PREDICT}/{}", uuid::Uuid::new_v4())),
        &[],
        None,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let options = send(Method::OPTIONS, &s.url("/healthz"), &[], None).await;
    assert_eq!(options.header("allow"), Some("GET, HEAD, OPTIONS"));
    let post_only = send(Method::HEAD, &s.url(PREDICT), &[], None).await;
    assert_eq!(post_only.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn percent_encoded_query_parameters_mean_the_same() {
    let s = start().await;
    let r = post_json(
        &s.url(&format!("{PREDICT}?async%5Fmode=%66alse")),
        r#"{"input":"x"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "sync, as asked: {}", r.text());
    assert_eq!(r.json()["status"], "succeeded");
}

#[tokio::test]
async fn a_huge_wait_is_capped_not_refused() {
    let config = ServerConfig::default().max_wait(Duration::from_millis(100));
    let s = start_with(mock("5s"), QueueConfig::default(), config).await;
    let id = submit_id(&s.url(PREDICT), "x").await;
    for wait in ["1e300", "inf"] {
        let started = Instant::now();
        let r = get(&s.url(&format!("{PREDICT}/{id}?wait={wait}"))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "wait={wait}: {}", r.text());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    let prefer = send(
        Method::POST,
        &s.url(PREDICT),
        &[
            ("content-type", "application/json"),
            ("prefer", "wait=99999999999999999999999"),
        ],
        Some(r#"{"input":"x"}"#),
    )
    .await;
    assert_eq!(
        prefer.header("preference-applied"),
        Some("wait=60"),
        "a sync wait, cut to the server's limit"
    );
}

#[tokio::test]
async fn limits_of_forever_do_not_panic_the_handlers() {
    // Configured "forever": timers must not overflow `Instant + Duration`.
    let config = ServerConfig::default()
        .max_wait(Duration::MAX)
        .sync_timeout(Duration::MAX)
        .sse_keep_alive(Duration::MAX);
    let s = start_with(mock("20ms"), QueueConfig::default(), config).await;
    let sync = post_json(
        &s.url(&format!("{PREDICT}?async_mode=false")),
        r#"{"input":"x"}"#,
    )
    .await;
    assert_eq!(sync.status, StatusCode::OK, "{}", sync.text());
    let id = submit_id(&s.url(PREDICT), "x").await;
    let polled = get(&s.url(&format!("{PREDICT}/{id}?wait=inf"))).await;
    assert_eq!(polled.status, StatusCode::OK, "{}", polled.text());
    let events = get(&s.url(&format!("{PREDICT}/{id}/events"))).await;
    assert!(
        events.text().contains("event: succeeded"),
        "{}",
        events.text()
    );
}

/// One access record as the test keeps it: method, route, status, prediction ID.
type Record = (String, &'static str, u16, Option<String>);

/// Access records as a custom [`AccessLog`] receives them.
#[derive(Clone, Default)]
struct Records(Arc<Mutex<Vec<Record>>>);

impl AccessLog for Records {
    fn record(&self, r: &AccessRecord<'_>) {
        self.0.lock().expect("lock").push((
            r.method.to_string(),
            r.route,
            r.status.as_u16(),
            r.prediction_id.map(|id| id.to_string()),
        ));
    }
}

#[tokio::test]
async fn a_custom_access_log_gets_one_record_per_request_with_its_prediction() {
    let records = Records::default();
    let config = ServerConfig::default().access_log_sink(records.clone());
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    let id = submit_id(&s.url(PREDICT), "x").await;
    let unknown = "0b4e3c1a-8f0e-4d6c-9a51-3c2f7d9e8a10";
    assert_eq!(get(&s.url("/healthz")).await.status, StatusCode::OK);
    let poll = format!("{PREDICT}/{unknown}");
    assert_eq!(get(&s.url(&poll)).await.status, StatusCode::NOT_FOUND);
    let malformed = format!("{PREDICT}/not-an-id");
    assert_eq!(get(&s.url(&malformed)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&s.url("/nope")).await.status, StatusCode::NOT_FOUND);
    let got = records.0.lock().expect("lock").clone();
    let id_route = "/predictions/predict/{id}";
    assert_eq!(
        got,
        vec![
            // The submission logs the ID it created.
            ("POST".to_owned(), PREDICT, 202, Some(id)),
            ("GET".to_owned(), "/healthz", 200, None),
            // An `{id}` route logs the ID asked for, even when it is unknown...
            ("GET".to_owned(), id_route, 404, Some(unknown.to_owned())),
            // ...but not one that is not an ID at all.
            ("GET".to_owned(), id_route, 404, None),
            ("GET".to_owned(), "unmatched", 404, None),
        ]
    );
}

/// A client that hangs up before its answer (a gateway's timeout on a sync request or
/// a long-poll) is recorded as 499 in the access log and `/metrics`, with the route
/// and the prediction ID of its path.
#[tokio::test]
async fn a_request_whose_client_hangs_up_is_recorded_as_499() {
    use tokio::io::AsyncWriteExt;
    let records = Records::default();
    let config = ServerConfig::default().access_log_sink(records.clone());
    let s = start_with(mock("10s"), QueueConfig::default(), config).await;
    let id = submit_id(&s.url(PREDICT), "x").await;
    let body = r#"{"input":"gone"}"#;
    let requests = [
        format!(
            "POST {PREDICT}?async_mode=false HTTP/1.1\r\nhost: x\r\ncontent-type: \
             application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
        format!("GET {PREDICT}/{id}?wait=30 HTTP/1.1\r\nhost: x\r\n\r\n"),
    ];
    for request in requests {
        let mut tcp = tokio::net::TcpStream::connect(s.addr)
            .await
            .expect("connect");
        tcp.write_all(request.as_bytes()).await.expect("write");
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(tcp);
    }
    let sync_id = |got: &[Record]| {
        got.iter()
            .find(|r| r.0 == "POST" && r.2 == 499)
            .and_then(|r| r.3.clone())
    };
    let wanted = [
        ("POST".to_owned(), PREDICT, 499, None),
        (
            "GET".to_owned(),
            "/predictions/predict/{id}",
            499,
            Some(id.clone()),
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut got = records.0.lock().expect("lock").clone();
        // The sync submission's record names the prediction it was waiting on.
        let waited_on = sync_id(&got);
        for r in &mut got {
            if r.0 == "POST" && r.2 == 499 {
                r.3 = None;
            }
        }
        if wanted.iter().all(|w| got.contains(w)) {
            assert!(
                waited_on.as_ref().is_some_and(|w| *w != id),
                "the sync 499 names its own prediction: {waited_on:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no 499 records: {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = get(&s.url("/metrics")).await.text();
    for route in [PREDICT, "/predictions/predict/{id}"] {
        let method = if route == PREDICT { "POST" } else { "GET" };
        let line = format!(
            r#"mockpredict_http_requests_total{{method="{method}",route="{route}",code="499"}} 1"#
        );
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }
}

/// An output its own `Serialize` refuses.
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this output refuses to be serialized",
        ))
    }
}

/// Answers with an output that cannot be written.
struct Refuser;

impl Model for Refuser {
    type Input = String;
    type Output = Unserializable;
    fn name(&self) -> &str {
        "refuser"
    }
    fn version(&self) -> &str {
        "0"
    }
    async fn predict(
        &self,
        _: &String,
        _: &PredictContext<String>,
    ) -> Result<Unserializable, ModelError> {
        Ok(Unserializable)
    }
}

/// A result that cannot be serialized is a 500 `internal_error` where it would be
/// shown, and its event stream says so in a `server_error` event rather than end
/// silently.
#[tokio::test]
async fn an_output_that_cannot_be_serialized_is_an_error_where_it_would_show() {
    let s = start_with(Refuser, QueueConfig::default(), ServerConfig::default()).await;
    let id = submit_id(&s.url(PREDICT), "x").await;
    let stream = get(&s.url(&format!("{PREDICT}/{id}/events"))).await.text();
    assert!(stream.contains("event: server_error\n"), "{stream}");
    assert!(
        stream.contains(r#""error_type":"internal_error""#),
        "{stream}"
    );
    // The typed client reports it as the server's 500.
    let client =
        mockpredict_server::client::Client::<String, serde_json::Value>::for_model(&s.url(""))
            .expect("client");
    let mut events = client
        .events(id.parse().expect("an ID"))
        .await
        .expect("opened");
    let err = loop {
        match events.next().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without the error"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            &err,
            mockpredict_server::client::Error::Status { status: 500, error_type: Some(t), .. }
                if t == "internal_error"
        ),
        "{err:?}"
    );
    let poll = get(&s.url(&format!("{PREDICT}/{id}"))).await;
    assert_eq!(poll.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(poll.error_type(), "internal_error");
}
