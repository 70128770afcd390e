//! The `mockpredict` binary against a real `mockpredict-server` process on a free
//! loopback port: every command, `--json`, the token and unknown-ID errors, and the
//! wait timeout.

mod common;

use common::server::{self, TestServer};
use common::{interrupt, json_lines, mockpredict, on_a_terminal, stdout_lines, until};
use predicates::prelude::*;

const UNKNOWN_ID: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

/// A server whose predictions take 20 ms.
fn fast() -> TestServer {
    server::start("20ms", &[])
}

/// A server whose predictions take far longer than any test, to cancel and time out.
fn slow() -> TestServer {
    server::start("10m", &[])
}

/// `mockpredict --server URL ARGS...`.
fn at(server: &TestServer) -> assert_cmd::Command {
    let mut cmd = mockpredict();
    cmd.args(["--server", &server.url]);
    cmd
}

/// Submits `--async` and returns the ID it prints.
fn submit(server: &TestServer, input: &str) -> String {
    let output = at(server)
        .args(["predict", "--async", input])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let lines = stdout_lines(&output);
    assert_eq!(
        lines.len(),
        1,
        "--async against a server prints only the ID: {lines:?}"
    );
    lines[0].clone()
}

/// The server's log line is found whether it is plain text or JSON.
#[test]
fn the_helper_finds_the_address_in_plain_and_json_logs() {
    assert_eq!(
        server::listening_url(" INFO mockpredict_server: listening on http://127.0.0.1:4242"),
        Some("http://127.0.0.1:4242".to_owned())
    );
    assert_eq!(
        server::listening_url(r#"{"fields":{"message":"listening on http://127.0.0.1:1/"}}"#),
        Some("http://127.0.0.1:1".to_owned())
    );
}

/// A prediction against the server prints the result alone and exits 0.
#[test]
fn predict_prints_the_result() {
    let server = fast();
    let output = at(&server)
        .args(["predict", "hello"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let result: u32 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("stdout is the result");
    assert!((100..=10_000).contains(&result));
}

/// `--json` on a prediction prints the server's prediction body, one line.
#[test]
fn predict_json_is_the_servers_body() {
    let server = fast();
    let output = at(&server)
        .args(["predict", "--json", "hello"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["status"], "succeeded");
    assert_eq!(lines[0]["input"], "hello");
    assert!(lines[0]["output"]["result"].is_string());
}

/// Ctrl-C during a remote `predict` cancels the prediction on the server (the
/// command knows its ID from the submit on), says so, and exits 130.
#[test]
fn ctrl_c_during_a_remote_predict_cancels_it_and_exits_130() {
    let server = slow();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mockpredict"))
        .args(["--server", &server.url, "predict", "hello"])
        .env_remove("MOCKPREDICT_API_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    until("never started", || {
        server.metrics().contains("mockpredict_in_flight 1")
    });
    let stderr = interrupt(child);
    assert!(stderr.contains("interrupted: canceled "), "{stderr}");
    let metrics = server.metrics();
    assert!(
        metrics.contains(r#"mockpredict_predictions_total{status="canceled"} 1"#),
        "{metrics}"
    );
}

/// Ctrl-C during `wait` stops the waiting only: the prediction goes on.
#[test]
fn ctrl_c_during_wait_leaves_the_prediction_running() {
    let server = slow();
    let id = submit(&server, "hello");
    let open_connections = || -> u64 {
        server
            .metrics()
            .lines()
            .find_map(|l| l.strip_prefix("mockpredict_connections "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    // Only the scrape's own connection: the submit's has closed.
    until("connections never settled", || open_connections() == 1);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mockpredict"))
        .args(["--server", &server.url, "wait", &id])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Its long-poll is under way (the scrape's own connection is the other one), so
    // it is past setting up its Ctrl-C handling.
    until("never long-polled", || open_connections() >= 2);
    let stderr = interrupt(child);
    assert!(stderr.contains(&format!("{id} goes on")), "{stderr}");
    assert!(server.metrics().contains("mockpredict_in_flight 1"));
}

/// `-` reads the input from stdin against a server too.
#[test]
fn predict_reads_stdin_against_a_server() {
    let server = fast();
    let output = at(&server)
        .args(["predict", "--json", "-"])
        .write_stdin("piped\n")
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(json_lines(&output)[0]["input"], "piped");
}

/// `predict --async` prints the ID and exits; `wait` then prints the result and
/// `status` shows it succeeded.
#[test]
fn async_then_wait_then_status() {
    let server = fast();
    let id = submit(&server, "hello");
    let waited = at(&server).args(["wait", &id]).output().expect("runs");
    assert!(waited.status.success(), "{waited:?}");
    let result = String::from_utf8_lossy(&waited.stdout).trim().to_owned();
    assert!(
        result.parse::<u32>().is_ok(),
        "wait prints the result: {result:?}"
    );

    let status = at(&server).args(["status", &id]).output().expect("runs");
    assert!(status.status.success(), "{status:?}");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains(&id), "{text}");
    assert!(text.contains("succeeded"), "{text}");
    assert!(
        text.contains(&result),
        "status shows the same result: {text}"
    );

    let json = at(&server)
        .args(["status", "--json", &id])
        .output()
        .expect("runs");
    let body = &json_lines(&json)[0];
    assert_eq!(body["prediction_id"], id.as_str());
    assert_eq!(body["output"]["result"], result.as_str());
}

/// `predict --async --json` prints the server's 202 answer, in one request.
#[test]
fn async_json_prints_the_servers_answer() {
    let server = slow();
    let output = at(&server)
        .args(["predict", "--async", "--json", "hi"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["status"], "queued");
    assert_eq!(
        lines[0]["message"],
        "Request received. Processing asynchronously."
    );
    assert!(lines[0]["prediction_id"].is_string());
    let prediction = "/predictions/predict/{id}";
    assert_eq!(
        server.requests("GET", prediction, 202) + server.requests("GET", prediction, 200),
        0,
        "no second request for the body"
    );
}

/// A pending prediction's status exits 0 and says it is not finished.
#[test]
fn status_of_a_pending_prediction() {
    let server = slow();
    let id = submit(&server, "slow");
    at(&server)
        .args(["status", &id])
        .assert()
        .success()
        .stdout(predicate::str::is_match("status +(queued|processing)").expect("regex"));
}

/// `cancel` stops a running prediction (exit 0); afterwards `status` and `wait`
/// report it canceled with exit 1.
#[test]
fn cancel_then_status_and_wait_exit_1() {
    let server = slow();
    let id = submit(&server, "doomed");
    at(&server)
        .args(["cancel", &id])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("{id} canceled")));
    at(&server)
        .args(["status", &id])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("canceled"));
    at(&server)
        .args(["wait", &id])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("was canceled"));
}

/// `wait --timeout` gives up with exit 4 when the prediction is still running.
#[test]
fn wait_timeout_exits_4() {
    let server = slow();
    let id = submit(&server, "slow");
    let start = std::time::Instant::now();
    at(&server)
        .args(["wait", "--timeout", "300ms", &id])
        .assert()
        .code(4)
        .stdout("")
        .stderr(predicate::str::contains("timed out"));
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(300),
        "it did wait"
    );
}

/// A `--timeout` too long to add to the clock (`500000000000y`) means no limit; it
/// used to panic with exit 101.
#[test]
fn an_enormous_wait_timeout_means_no_limit() {
    let server = fast();
    let id = submit(&server, "hello");
    let output = at(&server)
        .args(["wait", "--timeout", "500000000000y", &id])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse::<u32>()
            .is_ok()
    );
}

/// `wait --timeout --json` still prints the (pending) body, then exits 4.
#[test]
fn wait_timeout_json_prints_the_pending_body() {
    let server = slow();
    let id = submit(&server, "slow");
    let output = at(&server)
        .args(["wait", "--json", "--timeout", "100ms", &id])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    assert!(matches!(
        json_lines(&output)[0]["status"].as_str(),
        Some("queued" | "processing")
    ));
}

/// An unknown ID is a 404: exit 3, and the hint says the ID is unknown or expired.
#[test]
fn an_unknown_id_exits_3_with_a_hint() {
    let server = fast();
    for cmd in ["status", "wait", "cancel"] {
        at(&server).args([cmd, UNKNOWN_ID]).assert().code(3).stderr(
            predicate::str::contains("404")
                .and(predicate::str::contains(&server.url))
                .and(predicate::str::contains("expired")),
        );
    }
}

/// A server with an API token: no token and a wrong token both exit 3 with a hint
/// about the token; the right one (from the environment) works.
#[test]
fn tokens_are_sent_and_refusals_explained() {
    let server = server::start("20ms", &["--api-token", "s3cret"]);
    at(&server).args(["predict", "x"]).assert().code(3).stderr(
        predicate::str::contains("401").and(predicate::str::contains("MOCKPREDICT_API_TOKEN")),
    );
    at(&server)
        .args(["--token", "wrong", "predict", "x"])
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains("401").and(predicate::str::contains("rejected the token")),
        );
    at(&server)
        .args(["predict", "x"])
        .env("MOCKPREDICT_API_TOKEN", "s3cret")
        .assert()
        .success();
}

/// `health` reports alive and ready; with `--json`, the server's body plus `ready`.
#[test]
fn health_of_a_running_server() {
    let server = fast();
    at(&server)
        .arg("health")
        .assert()
        .success()
        .stdout(predicate::str::contains(&server.url).and(predicate::str::contains("ready")));
    let output = at(&server)
        .args(["health", "--json"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(json_lines(&output)[0]["ready"], true);
}

/// A server that stopped is a server that cannot be reached: exit 3.
#[test]
fn a_stopped_server_exits_3() {
    let server = fast();
    let url = server.url.clone();
    drop(server);
    mockpredict()
        .args(["--server", &url, "health"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(url));
}

/// A full server queue is a 429: exit 3, the server's retry-after in the message, and
/// the sync and async paths report it alike.
#[test]
fn a_full_queue_exits_3_with_the_retry_after() {
    let server = server::start("10m", &["--capacity", "1"]);
    submit(&server, "fills the queue");
    for args in [&["predict", "--async", "x"][..], &["predict", "x"]] {
        at(&server).args(args).assert().code(3).stdout("").stderr(
            predicate::str::contains("429")
                .and(predicate::str::contains("retry after"))
                .and(predicate::str::contains("hint:")),
        );
    }
}

/// `predict` submits, then waits on the ID: a prediction that outlasts the server's
/// long-poll cap (`--max-wait`) still ends with its result, and no request held a
/// sync POST.
#[test]
fn a_prediction_longer_than_the_servers_long_poll_cap_still_ends_with_its_result() {
    let server = server::start("1500ms", &["--max-wait", "1s"]);
    let start = std::time::Instant::now();
    let output = at(&server)
        .args(["predict", "--json", "slow"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    assert!(start.elapsed() >= std::time::Duration::from_millis(1500));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1, "only the final body: {lines:?}");
    assert_eq!(lines[0]["status"], "succeeded");
    assert_eq!(server.requests("POST", "/predictions/predict", 202), 1);
    assert_eq!(server.requests("POST", "/predictions/predict", 200), 0);
    assert!(server.requests("GET", "/predictions/predict/{id}", 200) >= 1);
}

const EVENTS: &str = "/predictions/predict/{id}/events";

/// What the terminal showed, line by line (each spinner redraw is a line of its
/// own), without ANSI control sequences.
fn final_lines(output: &std::process::Output) -> Vec<String> {
    let text = String::from_utf8_lossy(&output.stdout);
    let mut plain = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters... final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .split(['\n', '\r'])
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// On a terminal, `wait` shows the live status from the event stream: one request,
/// no polling, and the result at the end.
#[test]
fn on_a_terminal_wait_follows_the_event_stream() {
    let server = server::start("600ms", &[]);
    let id = submit(&server, "live");
    let output = on_a_terminal(&["--server", &server.url, "wait", &id]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let lines = final_lines(&output);
    assert!(
        lines.last().is_some_and(|l| l.parse::<u32>().is_ok()),
        "the result is printed last: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(&format!("{id} processing"))),
        "the spinner showed the live status: {lines:?}"
    );
    assert_eq!(server.requests("GET", EVENTS, 200), 1);
    assert_eq!(
        server.requests("GET", "/predictions/predict/{id}", 202),
        0,
        "no polling"
    );
}

/// On a terminal, a sync `predict` submits and follows the event stream, so the
/// spinner can show the status; the result is the same.
#[test]
fn on_a_terminal_predict_follows_the_event_stream() {
    let server = server::start("300ms", &[]);
    let output = on_a_terminal(&["--server", &server.url, "predict", "hello"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        final_lines(&output)
            .last()
            .is_some_and(|l| l.parse::<u32>().is_ok()),
        "{output:?}"
    );
    assert_eq!(server.requests("POST", "/predictions/predict", 202), 1);
    assert_eq!(server.requests("GET", EVENTS, 200), 1);
}

/// On a terminal, `wait --timeout` still gives up on time with exit 4, and a failed
/// or canceled prediction still exits 1.
#[test]
fn on_a_terminal_wait_keeps_its_timeout_and_exit_codes() {
    let server = slow();
    let id = submit(&server, "slow");
    let start = std::time::Instant::now();
    let output = on_a_terminal(&["--server", &server.url, "wait", "--timeout", "500ms", &id]);
    let took = start.elapsed();
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("timed out"),
        "{output:?}"
    );
    assert!(
        took >= std::time::Duration::from_millis(500) && took < std::time::Duration::from_secs(5),
        "{took:?}"
    );
    at(&server).args(["cancel", &id]).assert().success();
    let output = on_a_terminal(&["--server", &server.url, "wait", &id]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
}
