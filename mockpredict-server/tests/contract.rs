//! The original FastAPI service's contract, followed step by step as an old client
//! would use it: the same requests, checking only what the original promised.

mod common;

use std::time::Duration;

use common::{get, mock, post_json, send, start_with};
use http::{Method, StatusCode};
use mockpredict_core::QueueConfig;
use mockpredict_server::ServerConfig;
use tokio::time::Instant;

#[tokio::test]
async fn an_old_client_walks_through_the_original_api() {
    let s = start_with(
        mock("50ms"),
        QueueConfig::default(),
        ServerConfig::default(),
    )
    .await;

    // 1. Is it up?
    let r = get(&s.url("/")).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["message"], "Application is Running!");
    assert_eq!(body["status"], "success");

    // 2. Submit with no query: async by default, 202 with the original message and ID.
    let r = post_json(
        &s.url("/predictions/predict"),
        r#"{"input": "a photo of a cat"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let body = r.json();
    assert_eq!(
        body["message"],
        "Request received. Processing asynchronously."
    );
    let id = body["prediction_id"]
        .as_str()
        .expect("prediction_id")
        .to_owned();

    // 3. Poll until 200, as the old client did (it treats anything else as "not yet").
    let deadline = Instant::now() + Duration::from_secs(5);
    let done = loop {
        let r = get(&s.url(&format!("/predictions/predict/{id}"))).await;
        if r.status == StatusCode::OK {
            break r.json();
        }
        assert_eq!(
            r.status,
            StatusCode::ACCEPTED,
            "pending is 202 (the original said 400)"
        );
        assert!(Instant::now() < deadline, "never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done["prediction_id"], id.as_str());
    assert_eq!(done["output"]["input"], "a photo of a cat");
    let result: u32 = done["output"]["result"]
        .as_str()
        .expect("result is a string, as before")
        .parse()
        .expect("an integer");
    assert!((100..=10_000).contains(&result));

    // 4. Sync mode: the original body, {"input", "result"}.
    let r = post_json(
        &s.url("/predictions/predict?async_mode=false"),
        r#"{"input": "hello"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["input"], "hello");
    assert!(
        body["result"]
            .as_str()
            .is_some_and(|r| r.parse::<u32>().is_ok())
    );

    // 5. Unknown ID: 404 with the original message.
    let r = get(&s.url("/predictions/predict/00000000-0000-4000-8000-000000000000")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "Prediction ID not found.");

    // 6. Validation failure: 422, as FastAPI answered.
    let r = post_json(&s.url("/predictions/predict"), r#"{}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // 7. A trailing slash: FastAPI (Starlette) redirected it with 307, so a client
    //    that follows redirects repeats the POST, body and all, on the route.
    let r = post_json(
        &s.url("/predictions/predict/?async_mode=false"),
        r#"{"input": "slash"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        r.header("location"),
        Some("/predictions/predict?async_mode=false")
    );
    let r = get(&s.url("/nope/")).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "only known routes redirect"
    );

    // 8. CORS from any origin.
    let r = send(
        Method::GET,
        &s.url("/"),
        &[("origin", "http://localhost:3000")],
        None,
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}
