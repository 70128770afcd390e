//! A real `mockpredict-server` process for the CLI's tests.
//!
//! Cargo builds only this package's binaries for its tests, so the server binary is
//! built once per test run with `cargo build -p mockpredict-server` into the same
//! target directory (found from the `mockpredict` binary's path), then started per
//! test on `127.0.0.1:0`; its `listening on http://ADDR` log line says where.

use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

/// A running server; killed when dropped.
pub struct TestServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mockpredict-server --bind 127.0.0.1:0 --latency LATENCY EXTRA...`.
///
/// # Panics
///
/// When the binary cannot be built or started, or never says where it listens.
pub fn start(latency: &str, extra: &[&str]) -> TestServer {
    let mut command = Command::new(server_binary());
    // Every server flag is also a MOCKPREDICT_* variable: a developer's shell must not
    // change the server a test gets.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MOCKPREDICT_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(["--bind", "127.0.0.1:0", "--latency", latency])
        .args(extra)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mockpredict-server");
    let (tx, rx) = mpsc::channel();
    // Both streams are drained for the server's whole life, so its logging never
    // blocks on a full pipe; the first line naming the address is sent back.
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    forward(Box::new(stdout), tx.clone());
    forward(Box::new(stderr), tx);
    let mut seen = Vec::new();
    let url = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                if let Some(url) = listening_url(&line) {
                    break url;
                }
                seen.push(line);
            }
            Err(e) => {
                let _ = child.kill();
                panic!("mockpredict-server never logged `listening on` ({e}); it said: {seen:#?}");
            }
        }
    };
    TestServer { child, url }
}

impl TestServer {
    /// The server's `/metrics` text, over a plain HTTP/1.1 request.
    pub fn metrics(&self) -> String {
        use std::io::Write as _;
        let addr = self.url.trim_start_matches("http://");
        let mut tcp = std::net::TcpStream::connect(addr).expect("connect to the server");
        write!(
            tcp,
            "GET /metrics HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
        )
        .expect("send the request");
        let mut text = String::new();
        tcp.read_to_string(&mut text).expect("read the answer");
        text
    }

    /// How many requests `/metrics` counted for `method route` answered `code`.
    pub fn requests(&self, method: &str, route: &str, code: u16) -> u64 {
        let labels = format!(r#"{{method="{method}",route="{route}",code="{code}"}} "#);
        self.metrics()
            .lines()
            .find_map(|l| {
                l.strip_prefix("mockpredict_http_requests_total")?
                    .strip_prefix(&labels)
            })
            .map_or(0, |n| n.trim().parse().expect("a count"))
    }
}

fn forward(stream: Box<dyn Read + Send>, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            // The receiver goes away once the address is known; keep draining.
            let _ = tx.send(line);
        }
    });
}

/// `http://ADDR` from a log line containing `listening on http://ADDR`.
pub fn listening_url(line: &str) -> Option<String> {
    let at = line.find("listening on http://")? + "listening on ".len();
    let url: String = line[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\x1b' | ','))
        .collect();
    Some(url.trim_end_matches('/').to_owned())
}

/// The server binary beside the CLI binary, built once per test process.
fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cli = Path::new(env!("CARGO_BIN_EXE_mockpredict"));
        let profile_dir = cli.parent().expect("the binary is in a profile directory");
        let target_dir = profile_dir
            .parent()
            .expect("the profile directory is in a target dir");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 profile directory name");
        // `dev` builds into `debug`; every other profile into a directory of its name.
        let profile = if profile == "debug" { "dev" } else { profile };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "mockpredict-server",
                "--bin",
                "mockpredict-server",
            ])
            .args(["--profile", profile])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build for mockpredict-server");
        assert!(status.success(), "building mockpredict-server failed");
        let binary = profile_dir.join(format!(
            "mockpredict-server{}",
            std::env::consts::EXE_SUFFIX
        ));
        assert!(binary.exists(), "{} was not built", binary.display());
        binary
    })
}
