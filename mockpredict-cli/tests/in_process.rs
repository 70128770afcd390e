//! The `mockpredict` binary without a server: the mock model runs in the process, with
//! millisecond latencies so every test is quick. Also the mode-independent parts:
//! usage errors, completions, help, broken pipes, an unreachable server.

mod common;

use std::io::Read as _;
use std::process::Stdio;

use common::{closed_port_url, json_lines, mockpredict, stdout_lines};
use predicates::prelude::*;

fn result_of(output: &std::process::Output) -> u32 {
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("stdout is not a number ({e}): {text:?}"))
}

/// A sync prediction prints only the result, an integer in 100..=10000, and exits 0.
#[test]
fn predict_prints_the_result_alone() {
    let output = mockpredict()
        .args(["predict", "--latency", "5ms", "hello"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    assert!((100..=10_000).contains(&result_of(&output)));
    // Not a terminal, not async: nothing decorates the result.
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// With a seed the result is a function of (seed, input): the same across processes,
/// and a different seed gives a different result.
#[test]
fn a_seed_reproduces_the_result() {
    let run = |seed: &str| {
        let output = mockpredict()
            .args([
                "predict",
                "--latency",
                "1ms",
                "--seed",
                seed,
                "a photo of a cat",
            ])
            .output()
            .expect("runs");
        assert!(output.status.success(), "{output:?}");
        result_of(&output)
    };
    assert_eq!(run("42"), run("42"));
    assert_ne!(run("42"), run("43"), "seeds 42 and 43 are known to differ");
}

/// `--failure-rate 1` makes the prediction fail: exit 1 and the model's error on stderr.
#[test]
fn an_injected_failure_exits_1() {
    mockpredict()
        .args(["predict", "--latency", "1ms", "--failure-rate", "1", "x"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("failed").and(predicate::str::contains("injected")));
}

/// `-` reads the input from stdin, without its trailing newline.
#[test]
fn a_dash_reads_the_input_from_stdin() {
    let output = mockpredict()
        .args(["predict", "--latency", "1ms", "--json", "-"])
        .write_stdin("text from stdin\n")
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["input"], "text from stdin");
    assert_eq!(lines[0]["output"]["input"], "text from stdin");
}

/// `--json` prints one object in the server's prediction shape, and it carries the
/// same result the text mode prints for the same seed.
#[test]
fn json_output_is_the_prediction_body() {
    let args = ["predict", "--latency", "1ms", "--seed", "7", "hello"];
    let json = mockpredict()
        .args(args)
        .arg("--json")
        .output()
        .expect("runs");
    let text = mockpredict().args(args).output().expect("runs");
    let lines = json_lines(&json);
    assert_eq!(lines.len(), 1, "one object per line");
    let body = &lines[0];
    assert_eq!(body["status"], "succeeded");
    assert!(
        body["prediction_id"]
            .as_str()
            .is_some_and(|id| id.len() == 36)
    );
    assert!(
        body["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(body["error"].is_null());
    assert_eq!(body["output"]["result"], result_of(&text).to_string());
}

/// In-process `--async` prints the ID first, then (on stderr) each status it moves
/// through, then the result.
#[test]
fn async_prints_the_id_then_follows_the_statuses() {
    let output = mockpredict()
        .args(["predict", "--async", "--latency", "20ms", "hi"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].len(), 36, "first line is the ID: {lines:?}");
    assert!(lines[0].parse::<uuid_like::Id>().is_ok(), "{lines:?}");
    assert!(
        lines[1].parse::<u32>().is_ok(),
        "second line is the result: {lines:?}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let statuses: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(statuses, ["queued", "processing", "succeeded"], "{stderr}");
}

/// With `--json`, in-process `--async` streams one object per status change.
#[test]
fn async_json_streams_one_object_per_status() {
    let output = mockpredict()
        .args(["predict", "--async", "--json", "--latency", "5ms", "hi"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let lines = json_lines(&output);
    let statuses: Vec<&str> = lines
        .iter()
        .map(|l| l["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["queued", "processing", "succeeded"]);
    let ids: Vec<&serde_json::Value> = lines.iter().map(|l| &l["prediction_id"]).collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one prediction: {ids:?}"
    );
}

/// `--quiet` leaves only results: no status lines on stderr.
#[test]
fn quiet_async_prints_no_status_lines() {
    mockpredict()
        .args(["predict", "--async", "--quiet", "--latency", "1ms", "hi"])
        .assert()
        .success()
        .stderr("");
}

/// Bad flags and values, and commands that need a server, are usage errors: exit 2.
#[test]
fn usage_errors_exit_2() {
    let cases: [&[&str]; 6] = [
        &["predict"],
        &["predict", "--nonsense", "x"],
        &["predict", "--latency", "fast", "x"],
        &["predict", "--failure-rate", "1.5", "x"],
        &["status", "not-a-uuid"],
        &["status", "67e55044-10b1-426f-9247-bb680e5fe0c8"],
    ];
    for args in cases {
        let output = mockpredict().args(args).output().expect("runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(!output.stderr.is_empty(), "{args:?} explains itself");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

/// The latency parser is core's: its message names the bad input.
#[test]
fn a_bad_latency_is_explained_by_cores_parser() {
    mockpredict()
        .args(["predict", "--latency", "fast", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid latency").and(predicate::str::contains("fast")));
}

/// Mock options make no sense against a server: a usage error, not silently ignored.
#[test]
fn mock_options_with_a_server_are_refused() {
    mockpredict()
        .args(["predict", "--seed", "1", "x"])
        .env("MOCKPREDICT_SERVER", "http://127.0.0.1:1")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("in-process"));
}

/// Nothing listening: exit 3, the message names the URL and the OS's cause, and a
/// hint says what to check.
#[test]
fn an_unreachable_server_exits_3_naming_url_and_cause() {
    let url = closed_port_url();
    for args in [
        &["predict", "x"][..],
        &["health"],
        &["status", "67e55044-10b1-426f-9247-bb680e5fe0c8"],
    ] {
        let output = mockpredict()
            .args(["--server", &url])
            .args(args)
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(3), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&url), "{stderr}");
        assert!(
            stderr.to_lowercase().contains("connection refused"),
            "{stderr}"
        );
        assert!(stderr.contains("hint:"), "{stderr}");
    }
}

/// A host name that cannot resolve (`.invalid` never does): exit 3, the URL and the
/// DNS failure in the message, and a hint about the host name.
#[test]
fn an_unresolvable_host_exits_3_naming_the_dns_failure() {
    let output = mockpredict()
        .args(["--server", "http://no-such-host.invalid:8000", "health"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("http://no-such-host.invalid:8000"),
        "{stderr}"
    );
    assert!(stderr.contains("dns error"), "{stderr}");
    assert!(stderr.contains("host name did not resolve"), "{stderr}");
}

/// MOCKPREDICT_SERVER is the same as --server.
#[test]
fn the_server_comes_from_the_environment_too() {
    let url = closed_port_url();
    mockpredict()
        .arg("health")
        .env("MOCKPREDICT_SERVER", &url)
        .assert()
        .code(3)
        .stderr(predicate::str::contains(url));
}

/// https is refused with exit 3 and says why: the client has no TLS.
#[test]
fn https_is_refused_with_a_reason() {
    mockpredict()
        .args(["--server", "https://127.0.0.1:1", "health"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("TLS"));
}

/// `completions bash` prints a bash completion script for `mockpredict`.
#[test]
fn completions_print_a_script() {
    mockpredict()
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("complete -F")
                .and(predicate::str::contains("mockpredict"))
                .and(predicate::str::contains("predict")),
        );
    for shell in ["zsh", "fish", "powershell"] {
        mockpredict()
            .args(["completions", shell])
            .assert()
            .success();
    }
}

/// `--help` documents the exit codes; each command's shows examples first.
#[test]
fn help_documents_the_exit_codes() {
    mockpredict().arg("--help").assert().success().stdout(
        predicate::str::contains("Exit codes:")
            .and(predicate::str::contains("4    `wait` timed out"))
            .and(predicate::str::contains("130  interrupted")),
    );
    for command in ["predict", "status", "wait", "cancel", "health"] {
        mockpredict()
            .args([command, "--help"])
            .assert()
            .success()
            .stdout(
                predicate::str::contains("Examples:\n  mockpredict")
                    .and(predicate::str::contains("Exit codes:")),
            );
    }
}

/// Output that cannot be written (a full disk) is a local failure, exit 5, not a
/// usage error.
#[cfg(target_os = "linux")] // `/dev/full`
#[test]
fn an_unwritable_stdout_exits_5() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mockpredict"))
        .args(["predict", "x", "--latency", "1ms"])
        .env_remove("MOCKPREDICT_SERVER")
        .stdout(full)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("No space left"), "{stderr}");
}

/// A reader that goes away (`| head -0`) is not an error: exit 0, nothing on stderr.
#[test]
fn a_broken_pipe_is_not_an_error() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mockpredict"))
        .args(["predict", "--latency", "200ms", "hello"])
        .env_remove("MOCKPREDICT_SERVER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    // Close the read end long before the result is written.
    drop(child.stdout.take());
    let status = child.wait().expect("waits");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("reads stderr");
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "");
}

/// A closed stderr (`2>&- | ...`, a log pipe that went away) does not crash the status
/// notes: the result is still printed and the exit code is 0.
#[test]
fn a_closed_stderr_does_not_crash_the_status_notes() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mockpredict"))
        .args(["predict", "--async", "--latency", "200ms", "hello"])
        .env_remove("MOCKPREDICT_SERVER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    // Close the read end of stderr before the first status note is written.
    drop(child.stderr.take());
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)
        .expect("reads stdout");
    let status = child.wait().expect("waits");
    assert_eq!(status.code(), Some(0), "stdout: {stdout}");
    assert_eq!(
        stdout.lines().count(),
        2,
        "the ID, then the result: {stdout}"
    );
}

/// A tiny UUID shape check, so the tests need no uuid dependency.
mod uuid_like {
    pub(crate) struct Id;

    impl std::str::FromStr for Id {
        type Err = ();

        fn from_str(s: &str) -> Result<Self, ()> {
            let groups: Vec<usize> = s.split('-').map(str::len).collect();
            let hex = s.chars().all(|c| c == '-' || c.is_ascii_hexdigit());
            (groups == [8, 4, 4, 4, 12] && hex).then_some(Id).ok_or(())
        }
    }
}

/// Ctrl-C during an in-process prediction ends it with the process: exit 130, a word
/// on stderr, no result.
#[test]
fn ctrl_c_ends_an_in_process_prediction_with_exit_130() {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mockpredict"))
        .args(["predict", "--async", "x", "--latency", "30s"])
        .env_remove("MOCKPREDICT_SERVER")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // The ID comes once Ctrl-C is being listened for.
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut id = String::new();
    stdout.read_line(&mut id).expect("the ID line");
    assert_eq!(id.trim().len(), 36, "{id:?}");
    let stderr = common::interrupt(child);
    assert!(stderr.contains("ends with this process"), "{stderr}");
}
