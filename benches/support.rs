//! Shared by the load tools (`loadgen`, `sustained`): starting a server as a child
//! process on `127.0.0.1:0` and learning its address from its `listening on http://ADDR`
//! line, its resident memory from `/proc`, one keep-alive HTTP/1.1 connection per
//! client task, and latency histograms.
//!
//! Included with `#[path]` by each binary, so some items are unused in one of them.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The release binary next to the running one (`target/release/NAME`): the load
/// tools and the server are built into the same target directory.
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running binary")?;
    let dir = exe
        .parent()
        .context("the running binary has no directory")?;
    Ok(dir.join(name))
}

/// A server child process; killed (SIGKILL) and reaped when dropped, so no run leaves
/// one behind, even on an error. SIGKILL rather than SIGTERM: a graceful shutdown
/// would wait for up to 100,000 in-flight 8–15 s predictions.
pub struct Server {
    /// What the tables call it.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
}

impl Server {
    /// Starts `bin args...` with `env`, and waits (at most 20 s) for its
    /// `listening on http://ADDR` line on stdout or stderr. The rest of its output is
    /// read and thrown away by two threads, so a chatty server never blocks on a full
    /// pipe; its access log costs it what writing to a pipe costs.
    pub fn start(
        name: &str,
        bin: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        if !bin.exists() {
            bail!(
                "{} does not exist; build it first: \
                 cargo build --release -p mockpredict-server -p benches --bins",
                bin.display()
            );
        }
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let (tx, rx) = mpsc::channel::<String>();
        for out in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || drain(out, &tx));
        }
        drop(tx);
        let mut server = Self {
            name: name.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        server.addr = addr;
                        return Ok(server);
                    }
                    seen.push(line);
                }
                Err(_) => bail!(
                    "{} did not print `listening on http://ADDR` within 20 s (a RUST_LOG that \
                     hides info lines hides it too: silence only the access log with \
                     `info,mockpredict_server::access=off`); it printed:\n{}",
                    bin.display(),
                    seen.join("\n")
                ),
            }
        }
    }

    /// The child's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the child (`VmRSS` in `/proc/PID/status`), in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_bytes(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Passes lines to `tx` until the address is found (the receiver hangs up), then keeps
/// reading in big chunks and discarding.
fn drain(out: Box<dyn Read + Send>, tx: &mpsc::Sender<String>) {
    let mut reader = BufReader::with_capacity(1 << 16, out);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if tx.send(line.trim_end().to_owned()).is_err() {
                    break;
                }
            }
        }
    }
    let mut sink = [0u8; 1 << 16];
    while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
}

/// The address in a `... listening on http://127.0.0.1:PORT ...` log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on http://").nth(1)?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.parse().ok()
}

/// The full path of program `name` found on `PATH`.
pub fn on_path(name: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("`{name}` is not on PATH; install it (Debian: apt-get install valgrind)")
        })
}

/// Runs `callgrind_control ARG PID` (`-z` zeroes the counters of a process running
/// under callgrind, `-d` dumps them), failing if it does.
pub fn callgrind_control(pid: u32, arg: &str) -> anyhow::Result<()> {
    let status = Command::new("callgrind_control")
        .arg(arg)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running callgrind_control (Debian: apt-get install valgrind)")?;
    if !status.success() {
        bail!("callgrind_control {arg} {pid} failed: {status}");
    }
    Ok(())
}

/// The dumps callgrind wrote for `--callgrind-out-file=OUT`: `OUT.1`, `OUT.2`, ...
pub fn callgrind_dumps(out: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(base)) = (out.parent(), out.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", base.to_string_lossy());
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect()
}

/// Dumps the counters of `pid` (running under callgrind with
/// `--callgrind-out-file=OUT`) and returns the instructions counted since the last
/// zeroing, read from the `totals:` line of the newest dump, `OUT.N`.
pub fn callgrind_dump(pid: u32, out: &Path) -> anyhow::Result<u64> {
    let before = callgrind_dumps(out).len();
    callgrind_control(pid, "-d")?;
    // callgrind_control returns once the dump is written; allow for a slow file system.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let newest = loop {
        let mut files = callgrind_dumps(out);
        if files.len() > before {
            files.sort_by_key(|p| {
                p.extension()
                    .and_then(|e| e.to_str()?.parse::<u64>().ok())
                    .unwrap_or(0)
            });
            break files.pop().context("checked non-empty")?;
        }
        if std::time::Instant::now() > deadline {
            bail!("callgrind wrote no new dump next to {}", out.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&newest)
        .with_context(|| format!("reading {}", newest.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no totals: line in {}", newest.display()))
}

/// `VmRSS` of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS line")?;
    Ok(kib * 1024)
}

/// One keep-alive HTTP/1.1 connection; requests on it go one at a time.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

/// What one request got back.
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its `Location` header, if any.
    pub location: Option<String>,
    /// Its body.
    pub body: Bytes,
}

impl Conn {
    /// Connects (with `TCP_NODELAY`, as any latency-minded client would).
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            // Ends with the connection; an error here shows up on the next request.
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            host: addr.to_string(),
        })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Answer> {
        let mut req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(http::header::HOST, &self.host);
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .context("building a request")?;
        self.sender.ready().await.context("connection closed")?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .context("sending a request")?;
        let status = resp.status();
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading a response body")?
            .to_bytes();
        Ok(Answer {
            status,
            location,
            body,
        })
    }
}

/// A latency histogram in microseconds, 1 µs to 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("these bounds are valid")
}

/// Records `d` in `h`, saturating at the top bound instead of failing.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(us);
}

/// The `q` quantile of `h` as milliseconds.
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

/// The `{"input": ...}` body every tool submits.
pub fn predict_body(input: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "input": input }).to_string())
}

/// The sample value of `name` (summed over label sets, so `mockpredict_predictions_total`
/// is every finished prediction) in a Prometheus/OpenMetrics text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let series_name = series.split('{').next().unwrap_or_default();
        if series_name == name {
            if let Ok(v) = value.parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
    }
    found
}
