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
