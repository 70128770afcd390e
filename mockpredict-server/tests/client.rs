//! The typed client against a real server: every method and every error variant.

mod common;

use std::error::Error as _;
use std::time::Duration;

use common::{mock, start, start_with};
use mockpredict_core::{PredictionId, QueueConfig, Status};
use mockpredict_server::ServerConfig;
use mockpredict_server::client::{Client, Error, SyncOutcome};

#[tokio::test]
async fn info_health_and_ready() {
    let s = start().await;
    let c = Client::new(&s.url("")).expect("client");
    let info = c.info().await.expect("info");
    assert_eq!(info.message, "Application is Running!");
    assert_eq!(info.model.name, "mock");
    assert_eq!(c.health().await.expect("health").status, "ok");
    assert!(c.ready().await.expect("ready"));
    s.app.drain();
    assert!(!c.ready().await.expect("ready answers while draining"));
}

#[tokio::test]
async fn predict_sync_returns_the_finished_prediction() {
    let s = start().await;
    let c = Client::new(&s.url("/")).expect("client");
    let SyncOutcome::Finished(p) = c.predict_sync(&"hi".to_owned(), None).await.expect("sync")
    else {
        panic!("expected a finished prediction");
    };
    assert_eq!(p.status, Status::Succeeded);
    assert_eq!(p.input, "hi");
    let out = p.output.expect("output");
    assert!((100..=10_000).contains(&out.result.parse::<u32>().expect("int")));
    assert!(p.completed_at.is_some());
}

#[tokio::test]
async fn predict_sync_past_its_wait_is_pending_with_the_id() {
    let config = ServerConfig::default().sync_timeout(Duration::from_millis(50));
    let s = start_with(mock("2s"), QueueConfig::default(), config).await;
    let c = Client::new(&s.url("")).expect("client");
    match c
        .predict_sync(&"x".to_owned(), Some(Duration::from_secs(1)))
        .await
        .expect("sync")
    {
        SyncOutcome::Pending(a) => {
            assert!(!a.status.is_terminal());
            assert!(c.get(a.prediction_id).await.is_ok());
        }
        SyncOutcome::Finished(p) => panic!("finished too early: {p:?}"),
    }
}

#[tokio::test]
async fn async_then_wait_then_cancel() {
    let s = start_with(
        mock("100ms"),
        QueueConfig::default(),
        ServerConfig::default(),
    )
    .await;
    let c = Client::new(&s.url("")).expect("client");
    let id = c.predict_async(&"x".to_owned()).await.expect("submit");
    let pending = c.get(id).await.expect("get");
    assert!(!pending.is_finished());
    let done = c
        .wait(id, Some(Duration::from_secs(5)))
        .await
        .expect("wait");
    assert_eq!(done.status, Status::Succeeded);
    // Canceling a finished prediction keeps its status.
    assert_eq!(
        c.cancel(id).await.expect("cancel").status,
        Status::Succeeded
    );
}

#[tokio::test]
async fn wait_uses_long_polls_across_several_requests_and_honours_its_timeout() {
    let s = start_with(
        mock("400ms"),
        QueueConfig::default(),
        ServerConfig::default(),
    )
    .await;
    let c = Client::new(&s.url(""))
        .expect("client")
        .with_long_poll(Duration::from_millis(100));
    let id = c.predict_async(&"x".to_owned()).await.expect("submit");
    let early = c
        .wait(id, Some(Duration::from_millis(150)))
        .await
        .expect("wait");
    assert!(!early.is_finished(), "timed out before the model finished");
    let done = c.wait(id, None).await.expect("wait");
    assert!(done.is_finished());
    let m = common::get(&s.url("/metrics")).await.text();
    let polls: u64 = m
        .lines()
        .find(|l| l.contains(r#"route="/predictions/predict/{id}",code="202""#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("202 polls counted");
    assert!(
        (2..=10).contains(&polls),
        "long-polls, not a tight loop: {polls}"
    );
}

#[tokio::test]
async fn cancel_a_running_prediction() {
    let s = start_with(mock("5s"), QueueConfig::default(), ServerConfig::default()).await;
    let c = Client::new(&s.url("")).expect("client");
    let id = c.predict_async(&"x".to_owned()).await.expect("submit");
    assert_eq!(c.cancel(id).await.expect("cancel").status, Status::Canceled);
}

#[tokio::test]
async fn errors_are_typed() {
    let config = ServerConfig::default().api_token(Some("tok".into()));
    let queue = QueueConfig::default().capacity(1);
    let s = start_with(mock("2s"), queue, config).await;
    let anon = Client::new(&s.url("")).expect("client");
    assert!(matches!(
        anon.predict_async(&"x".to_owned()).await,
        Err(Error::Unauthorized { error_type: Some(t), .. }) if t == "unauthorized"
    ));
    let c = anon.clone().with_token("tok");
    assert!(matches!(
        c.get(PredictionId::new_v4()).await,
        Err(Error::NotFound { message, error_type: Some(t), .. })
            if message == "Prediction ID not found." && t == "not_found"
    ));
    let wrong_prefix = Client::new(&s.url("/api"))
        .expect("client")
        .with_token("tok");
    assert!(matches!(
        wrong_prefix.get(PredictionId::new_v4()).await,
        Err(Error::NotFound { error_type: Some(t), .. }) if t == "route_not_found"
    ));
    c.predict_async(&"a".to_owned()).await.expect("first fits");
    match c.predict_async(&"b".to_owned()).await {
        Err(Error::QueueFull { retry_after, .. }) => {
            assert!(retry_after.is_some_and(|d| d >= Duration::from_secs(1)))
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    s.app.drain();
    match c.predict_async(&"c".to_owned()).await {
        Err(Error::Status {
            status: 503,
            error_type,
            ..
        }) => assert_eq!(error_type.as_deref(), Some("shutting_down")),
        other => panic!("expected 503, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_connect_error_with_its_cause() {
    // Bind then drop, so nothing listens on the port.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let c = Client::new(&format!("http://{addr}")).expect("client");
    let err = c.health().await.expect_err("nothing listens");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()));
    let mut chain = Vec::new();
    let mut cause = err.source();
    while let Some(c) = cause {
        chain.push(c.to_string());
        cause = c.source();
    }
    assert!(
        chain.iter().any(|c| c.to_lowercase().contains("refused")),
        "{chain:?}"
    );
}

#[tokio::test]
async fn submit_returns_the_whole_202_answer() {
    let s = start_with(mock("5s"), QueueConfig::default(), ServerConfig::default()).await;
    let c = Client::new(&s.url("")).expect("client");
    let accepted = c.submit(&"x".to_owned()).await.expect("submit");
    assert_eq!(accepted.status, Status::Queued);
    assert_eq!(
        accepted.message,
        "Request received. Processing asynchronously."
    );
    assert_eq!(
        c.get(accepted.prediction_id).await.expect("get").input,
        "x",
        "the ID is the prediction's"
    );
}

#[tokio::test]
async fn events_follow_a_prediction_to_its_result_then_end() {
    let s = start_with(
        mock("200ms"),
        QueueConfig::default(),
        ServerConfig::default(),
    )
    .await;
    let c = Client::new(&s.url("")).expect("client");
    let id = c.predict_async(&"x".to_owned()).await.expect("submit");
    let mut events = c.events(id).await.expect("open the stream");
    let mut statuses = Vec::new();
    let last = loop {
        let p = events
            .next()
            .await
            .expect("an event")
            .expect("not ended yet");
        assert_eq!(p.prediction_id, id);
        statuses.push(p.status);
        if p.is_finished() {
            break p;
        }
    };
    assert!(
        statuses == [Status::Queued, Status::Processing, Status::Succeeded]
            || statuses == [Status::Processing, Status::Succeeded],
        "{statuses:?}"
    );
    assert!(last.output.is_some_and(|o| o.input == "x"));
    assert!(events.next().await.expect("ended").is_none());
    assert!(events.next().await.expect("still ended").is_none());

    // A finished prediction's stream is its one terminal event.
    let mut again = c.events(id).await.expect("open again");
    let only = again.next().await.expect("event").expect("one event");
    assert_eq!(only.status, Status::Succeeded);
    assert!(again.next().await.expect("ended").is_none());
}

#[tokio::test]
async fn events_report_a_cancel_as_the_terminal_event() {
    let s = start_with(mock("10s"), QueueConfig::default(), ServerConfig::default()).await;
    let c = Client::new(&s.url("")).expect("client");
    let id = c.predict_async(&"x".to_owned()).await.expect("submit");
    let mut events = c.events(id).await.expect("open the stream");
    let first = events.next().await.expect("event").expect("first");
    assert!(!first.is_finished());
    c.cancel(id).await.expect("cancel");
    let last = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let p = events.next().await.expect("event").expect("not ended yet");
            if p.is_finished() {
                break p;
            }
        }
    })
    .await
    .expect("the cancel arrives at once");
    assert_eq!(last.status, Status::Canceled);
}

#[tokio::test]
async fn events_of_an_unknown_id_are_not_found() {
    let s = start().await;
    let c = Client::new(&s.url("")).expect("client");
    let err = c.events(PredictionId::new_v4()).await.expect_err("unknown");
    assert!(
        matches!(&err, Error::NotFound { error_type: Some(t), .. } if t == "not_found"),
        "{err:?}"
    );
}

#[tokio::test]
async fn dropping_an_event_stream_closes_it_on_the_server() {
    let s = start_with(mock("10s"), QueueConfig::default(), ServerConfig::default()).await;
    let c = Client::new(&s.url("")).expect("client");
    let id = c.predict_async(&"x".to_owned()).await.expect("submit");
    let mut events = c.events(id).await.expect("open the stream");
    events.next().await.expect("event").expect("first");
    let open = || async { common::get(&s.url("/metrics")).await.text() };
    assert!(open().await.contains("mockpredict_event_streams 1"));
    drop(events);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !open().await.contains("mockpredict_event_streams 0") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server still streams to a dropped client"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_silent_event_stream_times_out_instead_of_hanging() {
    // The server's keep-alive is far longer than the client's patience.
    let config = ServerConfig::default().sse_keep_alive(Duration::from_secs(60));
    let s = start_with(mock("10s"), QueueConfig::default(), config).await;
    let c = Client::new(&s.url(""))
        .expect("client")
        .with_timeout(Duration::from_millis(300));
    let id = c.predict_async(&"x".to_owned()).await.expect("submit");
    let mut events = c.events(id).await.expect("open the stream");
    // `queued` and `processing` come at once; then nothing for 10 s.
    let err = loop {
        match events.next().await {
            Ok(Some(p)) => assert!(!p.is_finished(), "{p:?}"),
            Ok(None) => panic!("the stream ended"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn a_timeout_of_forever_is_no_limit_not_a_panic() {
    let s = start().await;
    let c = Client::new(&s.url("")).expect("client");
    let id = c.predict_async(&"x".to_owned()).await.expect("submit");
    let done = c.wait(id, Some(Duration::MAX)).await.expect("wait");
    assert!(done.is_finished());
    let sync = c
        .predict_sync(&"y".to_owned(), Some(Duration::MAX))
        .await
        .expect("sync");
    assert!(matches!(sync, SyncOutcome::Finished(_)), "{sync:?}");
}

#[tokio::test]
async fn wait_under_a_lower_server_cap_polls_again_at_once() {
    // The server cuts each long-poll to 300 ms; the client asks for 10 s at a time.
    let config = ServerConfig::default().max_wait(Duration::from_millis(300));
    let s = start_with(mock("3100ms"), QueueConfig::default(), config).await;
    let c = Client::new(&s.url(""))
        .expect("client")
        .with_long_poll(Duration::from_secs(10));
    let id = c.predict_async(&"x".to_owned()).await.expect("submit");
    let started = tokio::time::Instant::now();
    let done = c.wait(id, None).await.expect("wait");
    let took = started.elapsed();
    assert!(done.is_finished());
    // Backing off between capped long-polls (pauses of 100 ms, 200 ms, ... 1.6 s)
    // would sleep through the result and see it at about 4.6 s.
    assert!(took < Duration::from_millis(3_900), "{took:?}");
}

/// Without a wait of its own, a sync request still asks for one (the server's
/// default, 60 s), so that it is bounded on both sides: a server that never
/// answers cannot hold it forever.
#[tokio::test]
async fn predict_sync_without_a_wait_asks_for_the_default_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.expect("read");
            assert!(n > 0, "the request ended early");
            head.extend_from_slice(&buf[..n]);
        }
        let body = format!(
            r#"{{"message":"m","prediction_id":"{}","status":"processing"}}"#,
            uuid::Uuid::new_v4()
        );
        let answer = format!(
            "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(answer.as_bytes()).await.expect("write");
        String::from_utf8_lossy(&head).to_lowercase()
    });
    let c = Client::new(&format!("http://{addr}")).expect("client");
    let sync = c.predict_sync(&"x".to_owned(), None).await.expect("sync");
    assert!(matches!(sync, SyncOutcome::Pending(_)), "{sync:?}");
    let head = server.await.expect("server task");
    assert!(head.contains("prefer: wait=60\r\n"), "{head}");
}

/// A server of the mock at `latency`, and a prediction submitted to it.
async fn server_with_a_prediction(latency: &str) -> (common::TestServer, PredictionId) {
    let s = start_with(
        mock(latency),
        QueueConfig::default(),
        ServerConfig::default(),
    )
    .await;
    let id = Client::new(&s.url(""))
        .expect("client")
        .predict_async(&"x".to_owned())
        .await
        .expect("submit");
    (s, id)
}

/// What the scripted gateway does with one request.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Passes it to the server and its answer back.
    Forward,
    /// Answers this status itself, with a JSON error body.
    Answer(u16),
    /// Closes the connection without an answer.
    Drop,
}

/// A gateway on a port of its own in front of the server at `upstream`: the n-th
/// request it receives gets `script[n]`, and every request past the script is
/// forwarded. Returns its base URL and the count of requests it received.
async fn gateway(
    upstream: String,
    script: Vec<Step>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let received = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let (upstream, script, count) = (upstream.clone(), script.clone(), Arc::clone(&count));
            tokio::spawn(async move {
                // GETs only (no bodies), one after another on a keep-alive connection.
                let mut buf = Vec::new();
                loop {
                    let end = loop {
                        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        let mut chunk = [0u8; 1024];
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    let path = head.split(' ').nth(1).expect("a request line").to_owned();
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = match script.get(n).copied().unwrap_or(Step::Forward) {
                        Step::Forward => {
                            let r = common::get(&format!("{upstream}{path}")).await;
                            (r.status.as_u16(), r.text())
                        }
                        Step::Answer(status) => (
                            status,
                            r#"{"error":"upstream unavailable","error_type":"gateway"}"#.to_owned(),
                        ),
                        Step::Drop => return,
                    };
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tcp.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, received)
}

/// A wait rides out what a gateway or a network does while a server restarts: 502,
/// 503, 504 and connections dropped without an answer, between answers.
#[tokio::test]
async fn wait_retries_transient_failures_between_answers() {
    let (s, id) = server_with_a_prediction("600ms").await;
    use Step::{Answer, Drop, Forward};
    let script = vec![Forward, Answer(503), Drop, Answer(502), Answer(504), Drop];
    let (url, received) = gateway(s.url(""), script).await;
    // Long-polls of 100 ms: the script is played out (its pauses add up to ~3 s), and
    // only then is the finished prediction passed through.
    let c = Client::new(&url)
        .expect("client")
        .with_long_poll(Duration::from_millis(100));
    let done = c
        .wait(id, Some(Duration::from_secs(20)))
        .await
        .expect("wait");
    assert_eq!(done.status, Status::Succeeded);
    assert!(received.load(std::sync::atomic::Ordering::SeqCst) >= 7);
}

/// Failures go on past the retry window: the last one is the answer.
#[tokio::test]
async fn wait_gives_up_when_failures_outlast_the_retry_window() {
    let (s, id) = server_with_a_prediction("60s").await;
    let script = [vec![Step::Forward], vec![Step::Answer(503); 100]].concat();
    let (url, received) = gateway(s.url(""), script).await;
    let c = Client::new(&url)
        .expect("client")
        .with_long_poll(Duration::from_millis(100))
        .with_retry_window(Duration::from_millis(700));
    let started = tokio::time::Instant::now();
    let err = c
        .wait(id, None)
        .await
        .expect_err("the gateway keeps failing");
    let took = started.elapsed();
    assert!(matches!(err, Error::Status { status: 503, .. }), "{err:?}");
    // Pauses of 100, 200 and 400 ms fill the window: 1 answer, then 4 failures.
    assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// What no retry can cure is answered at once: nothing listening at the address
/// before any answer (a wrong address), or an ID the server does not know (one a
/// restarted in-memory server has forgotten).
#[tokio::test]
async fn wait_fails_at_once_on_a_wrong_address_or_a_forgotten_id() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let id: PredictionId = uuid::Uuid::new_v4().to_string().parse().expect("an ID");
    let c = Client::new(&format!("http://{addr}")).expect("client");
    let started = tokio::time::Instant::now();
    let err = c.wait(id, None).await.expect_err("nothing listens");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let s = start().await;
    let c = Client::new(&s.url("")).expect("client");
    let started = tokio::time::Instant::now();
    let err = c.wait(id, None).await.expect_err("unknown");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A client that has heard from the server before (here a `get`) takes a dropped
/// connection at the start of a `wait` for a server going away, and retries it.
#[tokio::test]
async fn a_wait_by_a_client_that_was_answered_before_retries_at_once() {
    let (s, id) = server_with_a_prediction("300ms").await;
    let (url, received) = gateway(s.url(""), vec![Step::Forward, Step::Drop]).await;
    let c = Client::new(&url).expect("client");
    c.get(id).await.expect("answered");
    let done = c
        .wait(id, Some(Duration::from_secs(20)))
        .await
        .expect("wait");
    assert_eq!(done.status, Status::Succeeded);
    assert!(received.load(std::sync::atomic::Ordering::SeqCst) >= 3);
}
