//! Connection-level behaviour: HTTP/2 cleartext, the header-read timeout, the
//! connection cap, server-sent events, and graceful shutdown (in-process and of the
//! real binary on SIGTERM).

mod common;

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::{TestServer, get, mock, post_json, send, start, start_with, submit_id};
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mockpredict_core::{MockModel, QueueConfig};
use mockpredict_server::ServerConfig;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::ChildStderr;
use tokio::time::{Instant, timeout};

const PREDICT: &str = "/predictions/predict";

#[tokio::test]
async fn http2_with_prior_knowledge_is_served_on_the_same_port() {
    let s = start().await;
    let tcp = TcpStream::connect(s.addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::get(format!("http://{}/", s.addr))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("Application is Running!"));
    // HEAD over HTTP/2: headers only; a DATA frame would be a protocol error.
    let head = Request::head(format!("http://{}/openapi.json", s.addr))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(head).await.expect("HEAD response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().contains_key("content-length"));
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("a clean end of stream");
    assert!(body.to_bytes().is_empty());
}

/// A connection to a server whose idle limit is 200 ms (and the server, kept alive).
/// A keep-alive HTTP/1.1 connection that has made one request (`/healthz`, 200) and
/// is now idle.
async fn idle_http1_connection(addr: std::net::SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    healthz_over(&mut tcp).await;
    tcp
}

/// One `GET /healthz` on a kept-alive HTTP/1.1 connection, answered 200.
async fn healthz_over(tcp: &mut TcpStream) {
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = tcp.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

/// An HTTP/2 connection that has made one request (`/healthz`, 200) and is now idle
/// (its pings are answered); the task ends when the server closes it.
async fn idle_http2_connection(
    addr: std::net::SocketAddr,
) -> tokio::task::JoinHandle<Result<(), hyper::Error>> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    let h2 = tokio::spawn(conn);
    let req = Request::get(format!("http://{addr}/healthz"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    h2
}

/// A connection to a server whose header-read timeout is 200 ms, and whose keep-alive
/// timeout is 60 s: only the header rule can close it within a test's seconds.
async fn connect_with_a_200ms_header_limit() -> (TestServer<MockModel>, TcpStream) {
    connect_with_limits(Duration::from_millis(200), Duration::from_secs(60)).await
}

async fn connect_with_limits(
    header: Duration,
    keep_alive: Duration,
) -> (TestServer<MockModel>, TcpStream) {
    let config = ServerConfig::default()
        .header_read_timeout(header)
        .keep_alive_timeout(keep_alive);
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    let tcp = TcpStream::connect(s.addr).await.expect("connect");
    (s, tcp)
}

/// What the server sent until it closed `tcp`, which it must do within 3 s of `since`.
async fn read_until_closed(tcp: &mut TcpStream, since: Instant) -> Vec<u8> {
    let mut buf = Vec::new();
    let read = timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(
        since.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        since.elapsed()
    );
    buf
}

#[tokio::test]
async fn a_connection_that_stalls_mid_headers_is_closed() {
    let (_s, mut tcp) = connect_with_a_200ms_header_limit().await;
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let buf = read_until_closed(&mut tcp, Instant::now()).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

/// After a request, a next head that stalls is idle time: the keep-alive timeout
/// closes the connection (here 200 ms, the header one 60 s).
#[tokio::test]
async fn a_kept_alive_connection_that_stalls_mid_headers_is_closed_as_idle() {
    let (_s, mut tcp) =
        connect_with_limits(Duration::from_secs(60), Duration::from_millis(200)).await;
    healthz_over(&mut tcp).await;
    // The next request's headers trickle in and never end.
    let started = Instant::now();
    for _ in 0..30 {
        if tcp.write_all(b"x").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    read_until_closed(&mut tcp, started).await;
}

#[tokio::test]
async fn a_body_that_stalls_gets_408() {
    let (_s, mut tcp) = connect_with_a_200ms_header_limit().await;
    tcp.write_all(
        b"POST /predictions/predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 40\r\n\r\n{\"input\":",
    )
    .await
    .expect("write");
    let answer = read_until_closed(&mut tcp, Instant::now()).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#""error_type":"request_timeout""#),
        "{answer}"
    );
}

/// Sends `head`, then each of `pieces` after `gap`; the first read of the answer.
async fn send_in_pieces(
    addr: std::net::SocketAddr,
    head: &str,
    pieces: &[&str],
    gap: Duration,
) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(head.as_bytes()).await.expect("write");
    for piece in pieces {
        tokio::time::sleep(gap).await;
        tcp.write_all(piece.as_bytes()).await.expect("write");
    }
    let mut buf = vec![0u8; 8192];
    let n = timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("an answer within 5 s")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A body that comes after its headers, in pieces, is read whole while it arrives
/// within the header-read limit, with a length or chunked; one still arriving when
/// the limit ends gets 408.
#[tokio::test]
async fn a_body_that_arrives_in_pieces_within_the_limit_is_read() {
    let config = ServerConfig::default()
        .max_body(1024)
        .header_read_timeout(Duration::from_millis(800));
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    let body = r#"{"input":"abcdefghij"}"#;
    let (a, rest) = body.split_at(8);
    let (b, c) = rest.split_at(6);
    let gap = Duration::from_millis(150);
    let sized = format!(
        "POST {PREDICT}?async_mode=false HTTP/1.1\r\nhost: x\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let answer = send_in_pieces(s.addr, &sized, &[a, b, c], gap).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("abcdefghij"), "{answer}");

    let chunked = format!(
        "POST {PREDICT}?async_mode=false HTTP/1.1\r\nhost: x\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let chunks: Vec<String> = [a, b, c]
        .iter()
        .map(|p| format!("{:x}\r\n{p}\r\n", p.len()))
        .chain(["0\r\n\r\n".to_owned()])
        .collect();
    let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let answer = send_in_pieces(s.addr, &chunked, &chunks, gap).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("abcdefghij"), "{answer}");

    // Each gap within the limit, the whole body not.
    let answer = send_in_pieces(s.addr, &sized, &[a, b], Duration::from_millis(500)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let (_s, mut tcp) = connect_with_a_200ms_header_limit().await;
    let buf = read_until_closed(&mut tcp, Instant::now()).await;
    assert!(buf.is_empty());
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let config = ServerConfig::default().max_connections(1);
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    let request = format!("GET /healthz HTTP/1.1\r\nhost: {}\r\n\r\n", s.addr);
    // A holds the only slot with a kept-alive connection.
    let mut a = TcpStream::connect(s.addr).await.expect("connect a");
    a.write_all(request.as_bytes()).await.expect("write a");
    let mut buf = [0u8; 512];
    let n = a.read(&mut buf).await.expect("read a");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // B connects (the kernel backlog accepts it) but is not served while A is open.
    let mut b = TcpStream::connect(s.addr).await.expect("connect b");
    b.write_all(request.as_bytes()).await.expect("write b");
    assert!(
        timeout(Duration::from_millis(300), b.read(&mut buf))
            .await
            .is_err(),
        "B must wait"
    );
    drop(a);
    let n = timeout(Duration::from_secs(5), b.read(&mut buf))
        .await
        .expect("B served once A left")
        .expect("read b");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

/// Parses `event:` names and `data:` JSON out of an event-stream text.
fn events(text: &str) -> Vec<(String, serde_json::Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).ok();
                }
            }
            Some((event?, data?))
        })
        .collect()
}

/// Reads prediction `id`'s whole event stream; its last event must be `succeeded`.
async fn assert_stream_ends_succeeded(s: &TestServer<MockModel>, id: &str) {
    let r = get(&s.url(&format!("{PREDICT}/{id}/events"))).await;
    let names: Vec<String> = events(&r.text()).into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        names.last().map(String::as_str),
        Some("succeeded"),
        "{names:?}"
    );
}

#[tokio::test]
async fn events_stream_each_status_change_and_end_after_the_result() {
    let s = start_with(
        mock("300ms"),
        QueueConfig::default(),
        ServerConfig::default(),
    )
    .await;
    let id = submit_id(&s.url(PREDICT), "x").await;
    let r = get(&s.url(&format!("{PREDICT}/{id}/events"))).await; // reads to the end
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let evs = events(&r.text());
    let names: Vec<&str> = evs.iter().map(|(e, _)| e.as_str()).collect();
    assert!(
        names == ["queued", "processing", "succeeded"] || names == ["processing", "succeeded"],
        "{names:?}"
    );
    let (_, last) = evs.last().expect("a final event");
    assert_eq!(last["prediction_id"], id.as_str());
    assert!(last["output"]["result"].is_string());
}

/// Each event's ID is its status. A browser's `EventSource` reconnects by itself when
/// a stream ends, sending the last ID it had: one that had the terminal event gets
/// 204, which stops it, instead of the last event again (and again); one cut off
/// mid-way gets the stream, and so the result.
#[tokio::test]
async fn a_reconnect_after_the_last_event_is_told_to_stop() {
    let s = start_with(mock("1s"), QueueConfig::default(), ServerConfig::default()).await;
    let id = submit_id(&s.url(PREDICT), "x").await;
    let events_url = s.url(&format!("{PREDICT}/{id}/events"));
    // Cut off while processing, it reconnects: streamed to the end.
    let resumed = send(
        Method::GET,
        &events_url,
        &[("last-event-id", "processing")],
        None,
    )
    .await;
    assert_eq!(resumed.status, StatusCode::OK);
    let text = resumed.text();
    assert!(text.contains("id: succeeded\nevent: succeeded\n"), "{text}");
    // Finished now: a client cut off before the end still gets the result...
    let late = send(
        Method::GET,
        &events_url,
        &[("last-event-id", "processing")],
        None,
    )
    .await;
    assert_eq!(late.status, StatusCode::OK);
    assert!(late.text().contains("event: succeeded\n"));
    // ...and one that had the end is told to stop.
    let again = send(
        Method::GET,
        &events_url,
        &[("last-event-id", "succeeded")],
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    assert!(again.body.is_empty());
    // An unknown prediction is still unknown.
    let unknown = s.url(&format!("{PREDICT}/{}/events", uuid::Uuid::new_v4()));
    let r = send(
        Method::GET,
        &unknown,
        &[("last-event-id", "succeeded")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_zero_keep_alive_set_through_the_field_does_not_break_event_streams() {
    let mut config = ServerConfig::default();
    config.sse_keep_alive = Duration::ZERO;
    let s = start_with(mock("50ms"), QueueConfig::default(), config).await;
    let id = submit_id(&s.url(PREDICT), "x").await;
    assert_stream_ends_succeeded(&s, &id).await;
}

#[tokio::test]
async fn a_disconnected_event_stream_leaks_nothing() {
    let s = start_with(mock("10s"), QueueConfig::default(), ServerConfig::default()).await;
    let id = submit_id(&s.url(PREDICT), "x").await;
    let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
    let req = format!("GET {PREDICT}/{id}/events HTTP/1.1\r\nhost: x\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 2048];
    let n = tcp.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let open = |m: &str| m.contains("mockpredict_event_streams 1");
    assert!(
        open(&get(&s.url("/metrics")).await.text()),
        "stream counted as open"
    );
    drop(tcp);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let m = get(&s.url("/metrics")).await.text();
        if m.contains("mockpredict_event_streams 0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream task outlived its client:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_an_in_flight_sync_prediction() {
    let mut s = start_with(
        mock("300ms"),
        QueueConfig::default(),
        ServerConfig::default(),
    )
    .await;
    let url = s.url(&format!("{PREDICT}?async_mode=false"));
    let in_flight = tokio::spawn(async move { post_json(&url, r#"{"input":"x"}"#).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(s.addr).await.is_err(), "listener closed");
    let r = in_flight.await.expect("task");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "succeeded");
    let report = s.shutdown().await;
    assert!(report.drained);
}

/// With a drain delay, shutdown first takes the server out of rotation (`/readyz`
/// 503) while it keeps accepting and serving, predictions included; then the
/// listener closes.
#[tokio::test]
async fn a_drain_delay_serves_on_with_readyz_503_then_closes_the_listener() {
    let config = ServerConfig::default().drain_delay(Duration::from_millis(600));
    let mut s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    assert_eq!(get(&s.url("/readyz")).await.status, StatusCode::OK);
    let began = Instant::now();
    s.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // New connections, during the delay.
    assert_eq!(
        get(&s.url("/readyz")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(&s.url("/healthz")).await.status, StatusCode::OK);
    let r = post_json(
        &s.url(&format!("{PREDICT}?async_mode=false")),
        r#"{"input":"x"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        began.elapsed() < Duration::from_millis(600),
        "test too slow"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(TcpStream::connect(s.addr).await.is_err(), "listener closed");
    let report = timeout(Duration::from_secs(5), s.shutdown())
        .await
        .expect("shut down after the delay");
    assert!(report.drained);
}

#[tokio::test]
async fn the_drain_closes_idle_connections_at_once() {
    // Idle limit 30 s: only the drain can close these within the test's seconds.
    let config = ServerConfig::default().header_read_timeout(Duration::from_secs(30));
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    // An HTTP/1.1 keep-alive connection, idle after one request.
    let mut h1 = idle_http1_connection(s.addr).await;
    let mut buf = [0u8; 512];
    // An HTTP/2 connection, idle after one request.
    let h2 = idle_http2_connection(s.addr).await;
    let began = Instant::now();
    let report = timeout(Duration::from_secs(5), s.shutdown())
        .await
        .expect("the drain did not wait for idle connections");
    assert!(report.drained);
    let closed = timeout(Duration::from_secs(5), h1.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0))), "HTTP/1.1: {closed:?}");
    assert!(
        timeout(Duration::from_secs(5), h2).await.is_ok(),
        "HTTP/2: the connection was closed"
    );
    assert!(began.elapsed() < Duration::from_secs(10));
}

/// A connection that has sent nothing yet (a load balancer's pre-opened one) does
/// not hold up the drain until its idle limit.
#[tokio::test]
async fn a_silent_connection_does_not_hold_up_the_drain() {
    let config = ServerConfig::default().header_read_timeout(Duration::from_secs(30));
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    let mut silent = TcpStream::connect(s.addr).await.expect("connect");
    // Accepted and waiting for its first byte.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = timeout(Duration::from_secs(5), s.shutdown())
        .await
        .expect("the drain waited for a silent connection");
    assert!(report.drained);
    let mut buf = [0u8; 16];
    let closed = timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
}

#[tokio::test]
async fn a_shutdown_timeout_of_forever_still_shuts_down() {
    let config = ServerConfig::default().shutdown_timeout(Duration::MAX);
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    assert_eq!(get(&s.url("/healthz")).await.status, StatusCode::OK);
    let report = timeout(Duration::from_secs(5), s.shutdown())
        .await
        .expect("shut down at once: nothing was in flight");
    assert!(report.drained);
}

#[tokio::test]
async fn binary_takes_durations_of_forever_without_panicking() {
    let forever = "500000000000y";
    let mut args = vec!["--bind", "127.0.0.1:0", "--latency", "5ms"];
    for flag in [
        "--result-ttl",
        "--deadline",
        "--sync-timeout",
        "--max-wait",
        "--shutdown-timeout",
        "--header-read-timeout",
        "--keep-alive-timeout",
    ] {
        args.extend([flag, forever]);
    }
    let mut server = spawn_server(&args, &[]).await;
    let log = server.drain_log();
    let url = format!("http://{}{PREDICT}?async_mode=false", server.addr);
    let r = post_json(&url, r#"{"input":"x"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    server.stop("INT").await;
    let log = log.await.expect("log task");
    assert!(!log.iter().any(|l| l.contains("panicked")), "{log:#?}");
}

/// Waits until the server at `addr` runs one prediction, so a signal sent next
/// really lands while it is in flight.
async fn wait_in_flight(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get(&format!("http://{addr}/metrics"))
        .await
        .text()
        .contains("mockpredict_in_flight 1")
    {
        assert!(Instant::now() < deadline, "the prediction never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn binary_finishes_a_sync_prediction_on_sigterm_and_exits_0() {
    let mut server = spawn_server(
        &[
            "--bind",
            "127.0.0.1:0",
            "--latency",
            "1s",
            "--log-format",
            "text",
        ],
        &[],
    )
    .await;
    let log = server.drain_log();
    let addr = server.addr.clone();

    let url = format!("http://{addr}{PREDICT}?async_mode=false");
    let in_flight = tokio::spawn(async move { post_json(&url, r#"{"input":"x"}"#).await });
    wait_in_flight(&addr).await;
    server.signal("TERM");

    let r = in_flight.await.expect("task");
    assert_eq!(r.status, StatusCode::OK, "the in-flight request completed");
    assert!(r.json()["result"].is_string());
    server.exited_0().await;
    let log = log.await.expect("log task");
    assert!(log.iter().any(|l| l.contains("SIGTERM")), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains(r#"route="/predictions/predict""#) && l.contains("status=200")),
        "access log: {log:#?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_does_not_hold_its_slot_forever() {
    let config = ServerConfig::default()
        .keep_alive_timeout(Duration::from_millis(200))
        .max_connections(1);
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    let mut tcp = idle_http1_connection(s.addr).await;
    let mut buf = [0u8; 512];
    // Now idle: the server must close it, freeing the only slot.
    let closed = timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    assert_eq!(get(&s.url("/healthz")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_idle_http2_connection_does_not_hold_its_slot_forever() {
    let config = ServerConfig::default()
        .keep_alive_timeout(Duration::from_millis(300))
        .max_connections(1);
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    // An HTTP/2 client takes the only slot, makes one request, then idles (its pings
    // are answered, so only an idle limit can free the slot).
    let h2 = idle_http2_connection(s.addr).await;
    // A second client is served once the idle one is let go.
    let r = timeout(Duration::from_secs(5), get(&s.url("/healthz"))).await;
    assert!(
        r.is_ok_and(|r| r.status == StatusCode::OK),
        "the idle HTTP/2 connection kept the only slot"
    );
    assert!(
        timeout(Duration::from_secs(5), h2).await.is_ok(),
        "the idle connection was closed"
    );
}

/// An idle HTTP/2 connection is closed with a GOAWAY frame first (RFC 9113 §9.1), so
/// that a client knows no request of its was lost in the close.
#[tokio::test]
async fn an_idle_http2_connection_gets_goaway_before_the_close() {
    // It never makes a request: the header-read timeout closes it.
    let (_s, mut tcp) =
        connect_with_limits(Duration::from_millis(200), Duration::from_secs(60)).await;
    // The client preface and an empty SETTINGS frame, then nothing.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface");
    let sent = read_until_closed(&mut tcp, Instant::now()).await;
    // Frames: a 3-byte length, a type, flags, a 4-byte stream ID, the payload.
    let mut types = Vec::new();
    let mut rest = &sent[..];
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        types.push(rest[3]);
        rest = &rest[(9 + len).min(rest.len())..];
    }
    assert!(
        types.contains(&0x7),
        "no GOAWAY before the close: frame types {types:?}"
    );
}

/// The keep-alive timeout, not the header-read one, decides when an idle HTTP/1.1
/// connection closes: a proxy in front can keep reusing it.
#[tokio::test]
async fn an_idle_keep_alive_connection_lives_until_the_keep_alive_timeout() {
    let (_s, mut tcp) =
        connect_with_limits(Duration::from_millis(200), Duration::from_millis(1500)).await;
    healthz_over(&mut tcp).await;
    let mut buf = [0u8; 64];
    // Idle for over three header-read timeouts: still open.
    let early = timeout(Duration::from_millis(700), tcp.read(&mut buf)).await;
    assert!(early.is_err(), "closed early: {early:?}");
    healthz_over(&mut tcp).await;
    let idle_from = Instant::now();
    let closed = timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    let after = idle_from.elapsed();
    assert!(
        // The header rule would have closed it after 200 ms.
        after >= Duration::from_millis(1000),
        "closed after {after:?}"
    );
}

/// A keep-alive timeout of zero closes a connection after each answer, and says so
/// (`connection: close`), so that no client sends another request on it; a request
/// that takes a while is answered all the same.
#[tokio::test]
async fn a_zero_keep_alive_timeout_closes_after_each_answer() {
    let config = ServerConfig::default().keep_alive_timeout(Duration::ZERO);
    let s = start_with(mock("700ms"), QueueConfig::default(), config).await;
    let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
    let body = r#"{"input":"x"}"#;
    let request = format!(
        "POST {PREDICT}?async_mode=false HTTP/1.1\r\nhost: x\r\ncontent-type: \
         application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut tcp, Instant::now()).await;
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert!(answer.contains(r#""status":"succeeded""#), "{answer}");
}

/// An HTTP/2 client that has made a request and pings its idle connection every
/// 50 ms keeps it until the keep-alive timeout, not the header-read one.
#[tokio::test]
async fn an_http2_client_that_pings_is_idle_not_stalled() {
    let config = ServerConfig::default()
        .header_read_timeout(Duration::from_millis(200))
        .keep_alive_timeout(Duration::from_millis(1500));
    let s = start_with(mock("5ms"), QueueConfig::default(), config).await;
    let tcp = TcpStream::connect(s.addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(50))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(tcp))
        .await
        .expect("h2 handshake");
    let h2 = tokio::spawn(conn);
    let req = Request::get(format!("http://{}/healthz", s.addr))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let idle_from = Instant::now();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !h2.is_finished(),
        "closed while pinging, before the keep-alive timeout"
    );
    let ended = timeout(Duration::from_secs(5), h2).await;
    assert!(ended.is_ok(), "the idle connection was closed");
    assert!(idle_from.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test]
async fn a_slow_event_stream_is_not_idle() {
    // Nothing is sent for longer than the idle limits, but a request is in flight.
    let config = ServerConfig::default()
        .header_read_timeout(Duration::from_millis(200))
        .keep_alive_timeout(Duration::from_millis(200))
        .sse_keep_alive(Duration::from_secs(60));
    let s = start_with(mock("800ms"), QueueConfig::default(), config).await;
    let id = submit_id(&s.url(PREDICT), "x").await;
    assert_stream_ends_succeeded(&s, &id).await;
    let polled = get(&s.url(&format!("{PREDICT}/{id}?wait=1"))).await;
    assert_eq!(polled.status, StatusCode::OK);
}

#[tokio::test]
async fn binary_reads_env_flags_logs_json_and_exits_0_on_sigint() {
    let mut server = spawn_server(
        &[],
        &[
            ("MOCKPREDICT_BIND", "127.0.0.1:0"),
            ("MOCKPREDICT_LATENCY", "5ms"),
            ("MOCKPREDICT_LOG_FORMAT", "json"),
            ("MOCKPREDICT_API_TOKEN", "env-token"),
        ],
    )
    .await;
    for line in &server.first_lines {
        let json: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert!(json["fields"]["message"].is_string(), "{line}");
    }
    let log = server.drain_log();
    let metrics = format!("http://{}/metrics", server.addr);
    assert_eq!(
        get(&metrics).await.status,
        StatusCode::UNAUTHORIZED,
        "token from env"
    );
    let ok = common::send(
        http::Method::GET,
        &metrics,
        &[("authorization", "Bearer env-token")],
        None,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    server.stop("INT").await;
    let rest = log.await.expect("log task");
    assert!(
        rest.iter().all(|l| !l.contains("env-token")),
        "the token is never logged"
    );
}

#[tokio::test]
async fn binary_flag_given_twice_takes_its_last_value() {
    // So that a wrapper (a benchmark, a compose file) can override its own defaults.
    let mut server = spawn_server(
        &[
            "--bind",
            "127.0.0.1:1",
            "--api-token",
            "first",
            "--bind",
            "127.0.0.1:0",
            "--api-token",
            "second",
        ],
        &[],
    )
    .await;
    assert_ne!(server.addr, "127.0.0.1:1", "the last --bind wins");
    let metrics = format!("http://{}/metrics", server.addr);
    for (token, expected) in [
        ("first", StatusCode::UNAUTHORIZED),
        ("second", StatusCode::OK),
    ] {
        let bearer = format!("Bearer {token}");
        let r = common::send(
            http::Method::GET,
            &metrics,
            &[("authorization", bearer.as_str())],
            None,
        )
        .await;
        assert_eq!(r.status, expected, "token {token}");
    }
    server.stop("TERM").await;
}

/// `--max-retained` bounds the finished predictions kept: past it the oldest is
/// forgotten (404) long before its TTL, and `mockpredict_retained` stays at the cap.
#[tokio::test]
async fn binary_max_retained_forgets_the_oldest_results() {
    let mut server = spawn_fast_server(&["--max-retained", "2"]).await;
    let _log = server.drain_log();
    let base = format!("http://{}{PREDICT}", server.addr);
    let mut ids = Vec::new();
    for input in ["a", "b", "c"] {
        // Finished before the next is submitted: completion order is submit order.
        ids.push(finished_prediction(&base, input).await);
    }
    assert_eq!(
        get(&format!("{base}/{}", ids[0])).await.status,
        StatusCode::NOT_FOUND
    );
    for id in &ids[1..] {
        assert_eq!(get(&format!("{base}/{id}")).await.status, StatusCode::OK);
    }
    assert_retained(&server.addr, 2).await;
    server.stop("TERM").await;
}

/// `--max-retained-bytes` bounds what finished predictions keep by their text: a
/// large input evicts the results before it, however few, and stays as the newest.
#[tokio::test]
async fn binary_max_retained_bytes_forgets_the_oldest_results() {
    let mut server = spawn_fast_server(&["--max-retained-bytes", "2KiB"]).await;
    let _log = server.drain_log();
    let base = format!("http://{}{PREDICT}", server.addr);
    // Each weighs about 800 bytes: the mock's output repeats the input.
    let mut small = Vec::new();
    for _ in 0..2 {
        small.push(finished_prediction(&base, &"x".repeat(400)).await);
    }
    for id in &small {
        assert_eq!(get(&format!("{base}/{id}")).await.status, StatusCode::OK);
    }
    // About 3,000 bytes, over the budget on its own.
    let large = finished_prediction(&base, &"y".repeat(1500)).await;
    for id in &small {
        let r = get(&format!("{base}/{id}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    }
    assert_eq!(get(&format!("{base}/{large}")).await.status, StatusCode::OK);
    assert_retained(&server.addr, 1).await;
    // Its input twice (as input and in the output) and its result, 3 to 5 digits.
    let metrics = get(&format!("http://{}/metrics", server.addr)).await.text();
    let bytes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mockpredict_retained_bytes "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no mockpredict_retained_bytes in {metrics}"));
    assert!((3_003..=3_005).contains(&bytes), "{bytes}");
    server.stop("TERM").await;
}

/// Starts the binary on a free port with a 5 ms mock and `extra` flags.
async fn spawn_fast_server(extra: &[&str]) -> Spawned {
    let mut args = vec!["--bind", "127.0.0.1:0", "--latency", "5ms"];
    args.extend_from_slice(extra);
    spawn_server(&args, &[]).await
}

/// Asserts that the server at `addr` reports `n` retained predictions.
async fn assert_retained(addr: &str, n: usize) {
    let metrics = get(&format!("http://{addr}/metrics")).await.text();
    let line = format!("mockpredict_retained {n}");
    assert!(metrics.lines().any(|l| l == line), "{metrics}");
}

/// Submits `input` to the predict URL `base` and waits until it has finished; its ID.
async fn finished_prediction(base: &str, input: &str) -> String {
    let id = submit_id(base, input).await;
    let r = get(&format!("{base}/{id}?wait=5")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    id
}

#[tokio::test]
async fn binary_access_lines_arrive_while_it_runs() {
    let mut server = spawn_server(&["--bind", "127.0.0.1:0", "--latency", "5ms"], &[]).await;
    let mut log = server.log.take().expect("log");
    let r = get(&format!("http://{}/healthz", server.addr)).await;
    assert_eq!(r.status, StatusCode::OK);
    // Buffered, but written out within moments, not only at exit.
    let line = timeout(Duration::from_secs(5), async {
        while let Some(line) = log.next_line().await.expect("read log") {
            if line.contains("mockpredict_server::access") {
                return line;
            }
        }
        panic!("the log ended without an access line");
    })
    .await
    .expect("the access line arrives while the server runs");
    assert!(
        line.contains(r#"route="/healthz""#) && line.contains("status=200"),
        "{line}"
    );
    server.stop("TERM").await;
}

#[tokio::test]
async fn binary_access_log_off_writes_no_request_lines() {
    access_log_silenced_by(("MOCKPREDICT_ACCESS_LOG", "off")).await;
}

#[tokio::test]
async fn binary_access_log_follows_rust_log() {
    // The binary's own access writer (text format) honours the filter as the
    // `tracing` event does.
    access_log_silenced_by(("RUST_LOG", "info,mockpredict_server::access=off")).await;
}

#[tokio::test]
async fn binary_access_log_follows_a_field_filter() {
    // Access events carry no `nonexistent` field, so this filter drops them; the
    // binary's check must ask about the event's own fields to agree.
    access_log_silenced_by((
        "RUST_LOG",
        "info,mockpredict_server::access=warn,mockpredict_server::access[{nonexistent}]=info",
    ))
    .await;
}

/// Runs a sync prediction on the binary with `env` set; no access line is written,
/// and the request is still counted.
async fn access_log_silenced_by(env: (&str, &str)) {
    let mut server = spawn_server(&["--bind", "127.0.0.1:0", "--latency", "5ms"], &[env]).await;
    let log = server.drain_log();
    let url = format!("http://{}{PREDICT}?async_mode=false", server.addr);
    assert_eq!(
        post_json(&url, r#"{"input":"x"}"#).await.status,
        StatusCode::OK
    );
    let metrics = get(&format!("http://{}/metrics", server.addr)).await.text();
    assert!(
        metrics.contains(
            r#"mockpredict_http_requests_total{method="POST",route="/predictions/predict",code="200"} 1"#
        ),
        "requests are still counted: {metrics}"
    );
    server.stop("TERM").await;
    let rest = log.await.expect("log task");
    assert!(rest.iter().any(|l| l.contains("shut down")), "{rest:#?}");
    assert!(
        !rest
            .iter()
            .any(|l| l.contains("mockpredict_server::access")),
        "{rest:#?}"
    );
}

#[tokio::test]
async fn binary_exits_1_when_the_address_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mockpredict-server"))
        .args(["--bind", &addr])
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let says = format!("cannot listen on {addr}");
    assert_eq!(stderr.matches(&says).count(), 1, "said once: {stderr}");
    assert!(stderr.contains(&format!("error: {says}")), "{stderr}");
}

/// A flag value that does not validate is a usage error, like a malformed one: exit
/// 2 with clap's usage hint; nothing is started.
#[tokio::test]
async fn binary_exits_2_on_flag_values_that_do_not_validate() {
    for (args, says) in [
        (&["--failure-rate", "2"][..], "invalid --failure-rate"),
        (&["--capacity", "0"], "capacity must be at least 1"),
        (&["--concurrency", "0"], "concurrency must be between 1"),
        (
            &["--cors-origin", "nonsense"],
            r#""nonsense" is not an origin"#,
        ),
        (
            &["--latency", "bogus"],
            "invalid value 'bogus' for '--latency",
        ),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mockpredict-server"))
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .output()
            .await
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stderr.contains("--help"), "{args:?}: {stderr}");
        assert!(!stderr.contains("listening"), "{args:?}: {stderr}");
    }
}

/// At the shutdown timeout the queue cancels what is left, and every client still
/// waiting gets its answer (`canceled`) before the process exits: none is cut off
/// with no response at all.
#[tokio::test]
async fn at_the_shutdown_timeout_every_waiting_sync_client_gets_its_answer() {
    let mut server = spawn_server(
        &[
            "--bind",
            "127.0.0.1:0",
            "--latency",
            "30s",
            "--concurrency",
            "4",
            "--shutdown-timeout",
            "300ms",
            "--access-log",
            "off",
        ],
        &[],
    )
    .await;
    let _log = server.drain_log();
    let url = format!("http://{}{PREDICT}?async_mode=false", server.addr);
    let clients: Vec<_> = (0..300)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { post_json(&url, r#"{"input":"x"}"#).await })
        })
        .collect();
    // All 300 admitted (4 processing, 296 queued) before the signal.
    let metrics = format!("http://{}/metrics", server.addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get(&metrics)
        .await
        .text()
        .contains("mockpredict_queue_depth 296")
    {
        assert!(
            Instant::now() < deadline,
            "the 300 predictions were never admitted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.signal("TERM");
    for client in clients {
        let r = timeout(Duration::from_secs(10), client)
            .await
            .expect("answered in time")
            .expect("task");
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["status"], "canceled", "{}", r.text());
    }
    server.exited_0().await;
}

#[tokio::test]
async fn a_second_signal_cuts_the_drain_short_with_exit_130() {
    let mut server = spawn_server(&["--bind", "127.0.0.1:0", "--latency", "30s"], &[]).await;
    let _log = server.drain_log();
    // A sync request that would hold the drain for 30 s.
    let url = format!("http://{}{PREDICT}?async_mode=false", server.addr);
    let _in_flight = tokio::spawn(async move { post_json(&url, r#"{"input":"x"}"#).await });
    wait_in_flight(&server.addr).await;
    for _ in 0..2 {
        server.signal("TERM");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let status = timeout(Duration::from_secs(5), server.child.wait())
        .await
        .expect("exited without waiting for the drain")
        .expect("wait");
    assert_eq!(status.code(), Some(130));
}

/// The server raises its soft open-file limit to the hard one (every connection
/// holds a file), and warns when even that is below what `--max-connections` needs.
#[cfg(target_os = "linux")] // `/proc/PID/limits`
#[tokio::test]
async fn binary_raises_its_open_file_limit_and_warns_when_it_is_too_low() {
    // Soft limit 200, hard limit as it was: raised to the hard limit.
    let ours = std::fs::read_to_string("/proc/self/limits").expect("limits");
    let hard: u64 = ours
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX); // "unlimited"
    assert!(
        hard > 400,
        "this test needs a hard open-file limit above 400 (`ulimit -Hn`), not {hard}"
    );
    let mut raised = spawn_server_in_shell("ulimit -Sn 200", &["--bind", "127.0.0.1:0"]).await;
    let pid = raised.child.id().expect("running");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let numbers: Vec<&str> = files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft limit not raised: {files}");
    assert_ne!(numbers[0], "200", "soft limit not raised: {files}");
    // Serving (and so handling signals) before it is told to stop.
    let health = format!("http://{}/healthz", raised.addr);
    assert_eq!(get(&health).await.status, StatusCode::OK);
    raised.stop("TERM").await;
    // Both limits 200, below the default 1,024 connections: a warning at start.
    let mut low = spawn_server_in_shell("ulimit -n 200", &["--bind", "127.0.0.1:0"]).await;
    assert!(
        low.first_lines
            .iter()
            .any(|l| l.contains("open-file limit is below") && l.contains("max_connections=1024")),
        "{:#?}",
        low.first_lines
    );
    let health = format!("http://{}/healthz", low.addr);
    assert_eq!(get(&health).await.status, StatusCode::OK);
    low.stop("TERM").await;
}

/// [`spawn_server`], with a shell command (a `ulimit`, say) run first in the same
/// process.
#[cfg(target_os = "linux")]
async fn spawn_server_in_shell(first: &str, args: &[&str]) -> Spawned {
    let script = format!("{first} && exec \"$0\" \"$@\"");
    let mut all = vec!["-c", &script, env!("CARGO_BIN_EXE_mockpredict-server")];
    all.extend_from_slice(args);
    spawn_program("sh", &all, &[]).await
}

/// A `mockpredict-server` process started by [`spawn_server`].
struct Spawned {
    child: tokio::process::Child,
    /// `HOST:PORT` from its `listening on http://ADDR` log line.
    addr: String,
    /// The log lines up to and including that one.
    first_lines: Vec<String>,
    /// The rest of its log (stderr), until [`drain_log`](Self::drain_log) takes it.
    log: Option<Lines<BufReader<ChildStderr>>>,
}

impl Spawned {
    /// Keeps draining the log in the background so the child never blocks on a full
    /// pipe; the task returns every line once the process exits.
    fn drain_log(&mut self) -> tokio::task::JoinHandle<Vec<String>> {
        let mut log = self.log.take().expect("the log is drained once");
        tokio::spawn(async move {
            let mut all = Vec::new();
            while let Ok(Some(line)) = log.next_line().await {
                all.push(line);
            }
            all
        })
    }

    /// Sends `signal`, then waits (up to 10 s) for the process to exit with 0.
    async fn stop(&mut self, signal: &str) {
        self.signal(signal);
        self.exited_0().await;
    }

    /// Waits (up to 10 s) for the process to exit, and checks it exited with 0.
    async fn exited_0(&mut self) {
        let status = timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("exited in time")
            .expect("wait");
        assert_eq!(status.code(), Some(0));
    }

    /// Sends `signal` (`TERM`, `INT`) to the process.
    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let kill = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("run kill");
        assert!(kill.success());
    }
}

/// Starts the real binary with `args` and `env` (and no other `MOCKPREDICT_*`
/// variables, so a developer's shell cannot change the test), and waits for the
/// `listening on http://ADDR` line, in text or JSON logs.
async fn spawn_server(args: &[&str], env: &[(&str, &str)]) -> Spawned {
    spawn_program(env!("CARGO_BIN_EXE_mockpredict-server"), args, env).await
}

/// [`spawn_server`] through `program` (the server itself, or a shell that execs it).
async fn spawn_program(program: &str, args: &[&str], env: &[(&str, &str)]) -> Spawned {
    let mut command = tokio::process::Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MOCKPREDICT_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(args)
        // `info` unless the test sets its own.
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the server binary");
    let mut log = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut first_lines = Vec::new();
    let addr = timeout(Duration::from_secs(10), async {
        while let Some(line) = log.next_line().await.expect("read log") {
            let addr = listening_addr(&line);
            first_lines.push(line);
            if addr.is_some() {
                return addr;
            }
        }
        None
    })
    .await
    .expect("logged its address in time")
    .unwrap_or_else(|| panic!("never logged 'listening on http://ADDR': {first_lines:#?}"));
    Spawned {
        child,
        addr,
        first_lines,
        log: Some(log),
    }
}

/// `ADDR` from a log line saying `listening on http://ADDR`, text or JSON.
fn listening_addr(line: &str) -> Option<String> {
    let rest = line.split("listening on http://").nth(1)?;
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | ',' | '\x1b'))
        .collect();
    Some(addr)
}

#[test]
fn the_address_is_found_in_text_and_json_logs() {
    assert_eq!(
        listening_addr("INFO mockpredict_server: listening on http://127.0.0.1:42 addr=x"),
        Some("127.0.0.1:42".to_owned())
    );
    assert_eq!(
        listening_addr(r#"{"fields":{"message":"listening on http://127.0.0.1:42","addr":"x"}}"#),
        Some("127.0.0.1:42".to_owned())
    );
    assert_eq!(listening_addr("shut down"), None);
}
