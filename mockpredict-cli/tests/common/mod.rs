//! Helpers shared by the CLI's integration tests: the `mockpredict` binary with a
//! clean environment, and a real `mockpredict-server` process on a free port.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

pub mod server;

/// The real `mockpredict` binary, with the variables that would point it at a server
/// removed, so a developer's shell cannot change what a test means.
pub fn mockpredict() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_mockpredict"));
    cmd.env_remove("MOCKPREDICT_SERVER")
        .env_remove("MOCKPREDICT_API_TOKEN")
        .env_remove("RUST_LOG");
    cmd
}

/// The lines of a command's stdout.
pub fn stdout_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Parses every stdout line as one JSON object.
pub fn json_lines(output: &std::process::Output) -> Vec<serde_json::Value> {
    stdout_lines(output)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A loopback URL nothing listens on: a port the OS just handed out and took back.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}")
}

/// Runs `mockpredict ARGS...` with stdout and stderr on a pseudo-terminal (through
/// util-linux `script`), as a person at a terminal would, so the spinner paths run.
/// Panics, naming the package, when `script` is missing. The output is everything the terminal
/// showed, stdout and stderr together.
pub fn on_a_terminal(args: &[&str]) -> std::process::Output {
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_mockpredict"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let output = std::process::Command::new("script")
        .args([
            "--quiet",
            "--return",
            "--command",
            &quoted.join(" "),
            "/dev/null",
        ])
        .env_remove("MOCKPREDICT_SERVER")
        .env_remove("MOCKPREDICT_API_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output();
    // Never skipped: a missing `script` fails the test with what to install.
    output.expect(
        "running the CLI on a pseudo-terminal needs `script` (util-linux; on Debian the \
         essential package bsdutils: apt-get install bsdutils)",
    )
}

/// Polls `ready` every 20 ms until it holds, failing with `what` after 10 s.
pub fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends SIGINT (Ctrl-C) to `child`, waits for it, and checks it exited 130; returns
/// its stderr.
pub fn interrupt(child: std::process::Child) -> String {
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(out.stdout.is_empty(), "no result on stdout: {out:?}");
    stderr
}
