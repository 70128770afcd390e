//! The embedding example stops as a container runtime stops it: SIGTERM while a
//! request is in flight gets that request answered, then exit 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `cargo test` builds the package's examples next to its test binaries' folder.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run through `cargo test -p examples`, which builds it",
        path.display()
    );
    path
}

#[test]
fn sigterm_answers_the_request_in_flight_then_exits_zero() {
    let mut child = Command::new(example("serve_text_scorer"))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("its first line");
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .expect("serving ... on http://ADDR")
        .to_owned();

    // A sync prediction of 500 words: the scorer thinks 2 ms a word, about a second.
    let body = format!(
        r#"{{"input": {{"text": "{}"}}}}"#,
        "good ".repeat(500).trim()
    );
    let mut conn = TcpStream::connect(&addr).expect("connects");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout set");
    write!(
        conn,
        "POST /predictions/predict?async_mode=false HTTP/1.1\r\nhost: {addr}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request sent");
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());

    let mut response = String::new();
    conn.read_to_string(&mut response).expect("an answer");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""label":"positive""#), "{response}");

    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "exit status {status}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("its last lines");
    assert!(rest.contains("stopped (drained: true)"), "{rest}");
}
