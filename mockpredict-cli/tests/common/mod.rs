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
