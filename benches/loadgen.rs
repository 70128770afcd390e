//! Load generator of issue 5: drives `mockpredict-server` and the `ceiling` server
//! side by side in one run and prints a table with their ratio.
//!
//! For each scenario it starts each server as a child process on `127.0.0.1:0`
//! (mockpredict: `--latency 0s`, big capacity), opens N keep-alive HTTP/1.1
//! connections, and on each sends one request after the other for a warm-up and then
//! for D seconds (closed loop), or at a fixed total rate (open loop, `--rate`; latency
//! then counts from when the request was due, so a stalled server is not flattered).
//! It reports requests/s, p50/p99/p99.9 latency, the server's CPU time per request
//! and its resident memory, then kills the server. Servers run one at a time, and the
//! order alternates between rounds, so drift on a shared machine hits both alike.
//!
//! Scenarios: `submit` (async `POST /predictions/predict`, 202), `poll` (`GET
//! /predictions/predict/{id}` of predictions created and finished beforehand, 200),
//! `health` (`GET /healthz`), `sync` (`POST ...?async_mode=false` with zero model
//! latency, 200, 1,000 connections by default).
//!
//! Build, then run (both binaries must be in the same target directory):
//!
//! ```sh
//! cargo build --release -p mockpredict-server -p benches --bins
//! cargo run --release -p benches --bin loadgen -- --scenario all --duration 10s
//! ```
#![allow(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http::{Method, StatusCode};
use tokio::time::Instant;

#[path = "support.rs"]
mod support;

use support::{Conn, Server};

/// Load mockpredict-server and the ceiling server side by side; print a ratio table.
#[derive(Debug, Parser)]
#[command(name = "loadgen", max_term_width = 100)]
struct Flags {
    /// Scenarios to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    scenario: Vec<Scenario>,
    /// Measured time per scenario and server (after the warm-up).
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Load before measuring starts (connections open, caches and allocator warm).
    #[arg(long, default_value = "2s")]
    warmup: humantime::Duration,
    /// Connections (one request in flight on each) for submit, poll and health.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Connections for the sync scenario (the target is stated at 1,000 clients).
    #[arg(long, default_value_t = 1000)]
    sync_connections: usize,
    /// Total requests/s for submit, poll and health; 0 = closed loop (as fast as the
    /// server answers).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total requests/s for sync (5 per client per second by default); 0 = closed
    /// loop. The p99 target needs an open loop: closed, 1,000 clients queue behind
    /// each other and p99 measures the backlog (Little's law), not the overhead.
    #[arg(long, default_value_t = 5000)]
    sync_rate: u64,
    /// Repeat each scenario on each server this many times, alternating the order;
    /// the table sums the rounds, the targets take the median of the rounds' ratios.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Predictions created (and finished) before the poll scenario polls them.
    #[arg(long, default_value_t = 1000)]
    poll_ids: usize,
    /// The mockpredict-server binary (default: next to this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The ceiling binary (default: next to this one).
    #[arg(long)]
    ceiling_bin: Option<PathBuf>,
    /// Another mockpredict-server binary (say, a release build of an earlier commit)
    /// to run in the ceiling's place, with the same flags as the one measured: the
    /// table's ratios are then this build's against that one.
    #[arg(long, value_name = "PATH", conflicts_with = "ceiling_bin")]
    baseline_server: Option<PathBuf>,
    /// RUST_LOG for mockpredict-server. `info` (its default) writes one access-log
    /// line per request, to a pipe this tool drains (the `listening on` line is
    /// needed, so keep `info` for `mockpredict_server`).
    #[arg(long, default_value = "info")]
    server_log: String,
    /// mockpredict-server's `--access-log`: `on` (its default) or `off`.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    access_log: String,
    /// Extra argument for mockpredict-server (repeat the flag for several).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Measure only one of the two servers.
    #[arg(long, value_enum)]
    only: Option<Target>,
    /// Worker threads of this tool's runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Run each server under `valgrind --tool=callgrind`, writing its profiles into
    /// this directory, and report instructions per request over the measured window
    /// (`callgrind_control -z` when it starts, `-d` when it ends). Instruction counts
    /// hardly move with the machine's load; use a low `--rate` (e.g. 300) so the
    /// server keeps up under valgrind.
    #[arg(long, value_name = "DIR")]
    callgrind: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    All,
    Submit,
    Poll,
    Health,
    Sync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Mockpredict,
    Ceiling,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::All => "all",
            Scenario::Submit => "async submit",
            Scenario::Poll => "poll by ID",
            Scenario::Health => "health",
            Scenario::Sync => "sync, 0 s model",
        }
    }

    fn expected(self) -> StatusCode {
        match self {
            Scenario::Submit => StatusCode::ACCEPTED,
            _ => StatusCode::OK,
        }
    }
}

/// What one server did in one scenario (summed over rounds).
struct Measured {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    latency: Histogram<u64>,
    cpu_seconds: f64,
    /// The user-space part of `cpu_seconds` (the rest is the kernel's).
    user_seconds: f64,
    rss_bytes: u64,
    /// Instructions over the measured windows (with `--callgrind`).
    instructions: u64,
    /// Requests/s of each round, in order.
    round_rps: Vec<f64>,
}

impl Measured {
    fn new() -> Self {
        Self {
            ok: 0,
            errors: 0,
            first_error: None,
            seconds: 0.0,
            latency: support::histogram(),
            cpu_seconds: 0.0,
            user_seconds: 0.0,
            rss_bytes: 0,
            instructions: 0,
            round_rps: Vec::new(),
        }
    }

    fn rps(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }

    fn cpu_us_per_request(&self) -> f64 {
        self.cpu_seconds * 1e6 / (self.ok.max(1) as f64)
    }

    /// User-space and kernel CPU µs per request.
    fn user_system_us_per_request(&self) -> (f64, f64) {
        let per = |s: f64| s * 1e6 / (self.ok.max(1) as f64);
        (
            per(self.user_seconds),
            per(self.cpu_seconds - self.user_seconds),
        )
    }

    fn instructions_per_request(&self) -> f64 {
        self.instructions as f64 / (self.ok.max(1) as f64)
    }

    fn latencies(&self) -> String {
        format!(
            "{:.2} / {:.2} / {:.2}",
            support::ms(&self.latency, 0.5),
            support::ms(&self.latency, 0.99),
            support::ms(&self.latency, 0.999)
        )
    }
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    ensure!(flags.threads > 0, "--threads must be at least 1");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(flags.threads)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(flags))
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    let server_bin = match &flags.server_bin {
        Some(p) => p.clone(),
        None => support::sibling_binary("mockpredict-server")?,
    };
    let ceiling_bin = match &flags.ceiling_bin {
        Some(p) => p.clone(),
        None => support::sibling_binary("ceiling")?,
    };
    let scenarios: Vec<Scenario> = if flags.scenario.contains(&Scenario::All) {
        vec![
            Scenario::Submit,
            Scenario::Poll,
            Scenario::Health,
            Scenario::Sync,
        ]
    } else {
        flags.scenario.clone()
    };
    let targets: Vec<Target> = match flags.only {
        Some(t) => vec![t],
        None => vec![Target::Mockpredict, Target::Ceiling],
    };
    let mut rows = Vec::new();
    for &scenario in &scenarios {
        let mut results: Vec<(Target, Measured)> =
            targets.iter().map(|&t| (t, Measured::new())).collect();
        for round in 0..flags.rounds {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..results.len()).collect()
            } else {
                (0..results.len()).rev().collect()
            };
            for i in order {
                let target = results[i].0;
                let (server, profile) =
                    start(target, &flags, &server_bin, &ceiling_bin, scenario, round)?;
                eprintln!(
                    "{:<16} {:<12} round {}: {} on {}",
                    scenario.name(),
                    server.name,
                    round + 1,
                    if rate_of(&flags, scenario) == 0 {
                        "closed loop".to_owned()
                    } else {
                        format!("{} req/s", rate_of(&flags, scenario))
                    },
                    server.addr
                );
                measure(
                    &flags,
                    scenario,
                    &server,
                    profile.as_deref(),
                    &mut results[i].1,
                )
                .await?;
                let m = &results[i].1;
                eprintln!(
                    "  so far: {:.0} req/s, p50/p99/p99.9 {} ms, {} errors",
                    m.rps(),
                    m.latencies(),
                    m.errors
                );
            }
        }
        rows.push((scenario, results));
    }
    print_table(&flags, &rows);
    Ok(())
}

fn rate_of(flags: &Flags, scenario: Scenario) -> u64 {
    if scenario == Scenario::Sync {
        flags.sync_rate
    } else {
        flags.rate
    }
}

fn start(
    target: Target,
    flags: &Flags,
    server_bin: &std::path::Path,
    ceiling_bin: &std::path::Path,
    scenario: Scenario,
    round: usize,
) -> anyhow::Result<(Server, Option<PathBuf>)> {
    let (name, bin, args, env) = command(target, flags, server_bin, ceiling_bin);
    let Some(dir) = &flags.callgrind else {
        return Ok((Server::start(name, &bin, &args, &env)?, None));
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let valgrind = support::on_path("valgrind")?;
    let out = dir.join(format!(
        "{name}-{}-r{}.callgrind",
        scenario.name().replace([' ', ','], "_"),
        round + 1
    ));
    // callgrind numbers its dumps from `.1` in every process: an earlier run's would
    // be overwritten, and the new dump not told from the old one.
    for stale in support::callgrind_dumps(&out) {
        std::fs::remove_file(&stale).with_context(|| format!("removing {}", stale.display()))?;
    }
    let mut wrapped = vec![
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
        bin.display().to_string(),
    ];
    wrapped.extend(args);
    Ok((Server::start(name, &valgrind, &wrapped, &env)?, Some(out)))
}

/// What starts `target`: its name, binary, arguments and environment.
fn command(
    target: Target,
    flags: &Flags,
    server_bin: &std::path::Path,
    ceiling_bin: &std::path::Path,
) -> (&'static str, PathBuf, Vec<String>, Vec<(String, String)>) {
    let target = match (target, &flags.baseline_server) {
        (Target::Ceiling, Some(baseline)) => {
            let (_, _, args, env) = command(Target::Mockpredict, flags, server_bin, ceiling_bin);
            return ("baseline", baseline.clone(), args, env);
        }
        (target, _) => target,
    };
    match target {
        Target::Mockpredict => {
            let mut args: Vec<String> = [
                "--bind",
                "127.0.0.1:0",
                "--latency",
                "0s",
                "--concurrency",
                "10000",
                "--capacity",
                "1000000",
                "--result-ttl",
                "60s",
                "--max-connections",
                "4096",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            // Only when not the server's default, so `--server-arg --access-log ...`
            // and MOCKPREDICT_ACCESS_LOG keep working.
            if flags.access_log != "on" {
                args.extend(["--access-log".to_owned(), flags.access_log.clone()]);
            }
            args.extend(flags.server_args.iter().cloned());
            (
                "mockpredict",
                server_bin.to_owned(),
                args,
                vec![("RUST_LOG".to_owned(), flags.server_log.clone())],
            )
        }
        Target::Ceiling => (
            "ceiling",
            ceiling_bin.to_owned(),
            vec!["--bind".to_owned(), "127.0.0.1:0".to_owned()],
            Vec::new(),
        ),
    }
}

/// Creates `n` predictions and waits until each is finished; returns their poll paths.
async fn finished_predictions(server: &Server, n: usize) -> anyhow::Result<Vec<String>> {
    let body = support::predict_body("benchmark input");
    let mut conn = Conn::open(server.addr).await?;
    let mut paths = Vec::with_capacity(n);
    for _ in 0..n {
        let a = conn
            .send(Method::POST, "/predictions/predict", Some(body.clone()))
            .await?;
        ensure!(
            a.status == StatusCode::ACCEPTED,
            "{}: submit answered {}",
            server.name,
            a.status
        );
        paths.push(a.location.context("a 202 without Location")?);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for path in &paths {
        loop {
            let a = conn.send(Method::GET, path, None).await?;
            if a.status == StatusCode::OK {
                break;
            }
            ensure!(
                a.status == StatusCode::ACCEPTED && Instant::now() < deadline,
                "{}: {path} answered {} while waiting for it to finish",
                server.name,
                a.status
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(paths)
}

/// CPU time the process has used, in seconds: (user + system, user).
fn cpu_seconds(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14, 15.
    let after = stat.rsplit_once(')').context("odd /proc/PID/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let user: f64 = fields[11].parse()?;
    let system: f64 = fields[12].parse()?;
    let hz = clock_ticks_per_second();
    Ok(((user + system) / hz, user / hz))
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

struct ConnResult {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

async fn measure(
    flags: &Flags,
    scenario: Scenario,
    server: &Server,
    profile: Option<&std::path::Path>,
    into: &mut Measured,
) -> anyhow::Result<()> {
    let poll_paths = if scenario == Scenario::Poll {
        finished_predictions(server, flags.poll_ids.max(1)).await?
    } else {
        Vec::new()
    };
    let poll_paths: Arc<[String]> = poll_paths.into();
    let n = if scenario == Scenario::Sync {
        flags.sync_connections
    } else {
        flags.connections
    }
    .max(1);
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(Conn::open(server.addr).await?);
    }
    let rate = rate_of(flags, scenario);
    // Each connection sends every `n / rate` s, staggered so the total is even.
    let interval = (rate > 0).then(|| Duration::from_secs_f64(n as f64 / rate as f64));
    let warmup: Duration = flags.warmup.into();
    let duration: Duration = flags.duration.into();
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let body = support::predict_body("benchmark input");
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let poll_paths = Arc::clone(&poll_paths);
        let body = body.clone();
        tasks.spawn(async move {
            let mut r = ConnResult {
                ok: 0,
                errors: 0,
                first_error: None,
                latency: support::histogram(),
            };
            let mut due = match interval {
                Some(iv) => start + iv.mul_f64(i as f64 / n as f64),
                None => start,
            };
            let mut k = i;
            loop {
                if let Some(iv) = interval {
                    tokio::time::sleep_until(due).await;
                    due += iv;
                }
                let began = match interval {
                    Some(iv) => due - iv,
                    None => Instant::now(),
                };
                if began >= end {
                    break;
                }
                let (method, path, body): (Method, &str, Option<Bytes>) = match scenario {
                    Scenario::Submit => (Method::POST, "/predictions/predict", Some(body.clone())),
                    Scenario::Sync => (
                        Method::POST,
                        "/predictions/predict?async_mode=false",
                        Some(body.clone()),
                    ),
                    Scenario::Health => (Method::GET, "/healthz", None),
                    Scenario::Poll | Scenario::All => {
                        k = (k + n) % poll_paths.len();
                        (Method::GET, &poll_paths[k], None)
                    }
                };
                let answer =
                    tokio::time::timeout(Duration::from_secs(30), conn.send(method, path, body))
                        .await;
                let counted = began >= measure_from;
                let failure = match answer {
                    Ok(Ok(a)) if a.status == scenario.expected() => None,
                    Ok(Ok(a)) => Some(format!(
                        "status {}: {}",
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    )),
                    Ok(Err(e)) => Some(format!("{e:#}")),
                    Err(_) => Some("no answer within 30 s".to_owned()),
                };
                let broken = matches!(&failure, Some(f) if !f.starts_with("status"));
                if counted {
                    match failure {
                        None => {
                            r.ok += 1;
                            support::record(&mut r.latency, began.elapsed());
                        }
                        Some(f) => {
                            r.errors += 1;
                            r.first_error.get_or_insert(f);
                        }
                    }
                }
                if broken {
                    break; // the connection is unusable
                }
            }
            r
        });
    }
    tokio::time::sleep_until(measure_from).await;
    if profile.is_some() {
        support::callgrind_control(server.pid(), "-z")?;
    }
    let cpu_before = cpu_seconds(server.pid())?;
    tokio::time::sleep_until(end).await;
    let cpu_after = cpu_seconds(server.pid())?;
    if let Some(profile) = profile {
        into.instructions += support::callgrind_dump(server.pid(), profile)?;
    }
    let rss = server.rss_bytes()?;
    let ok_before = into.ok;
    while let Some(r) = tasks.join_next().await {
        let r = r.context("a client task panicked")?;
        into.ok += r.ok;
        into.errors += r.errors;
        if into.first_error.is_none() {
            into.first_error = r.first_error;
        }
        into.latency
            .add(&r.latency)
            .map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?;
    }
    let measured = duration.as_secs_f64();
    into.round_rps.push((into.ok - ok_before) as f64 / measured);
    into.seconds += measured;
    into.cpu_seconds += cpu_after.0 - cpu_before.0;
    into.user_seconds += cpu_after.1 - cpu_before.1;
    into.rss_bytes = into.rss_bytes.max(rss);
    if into.ok == 0 {
        bail!(
            "{} answered no {} request as expected; first error: {}",
            server.name,
            scenario.name(),
            into.first_error.as_deref().unwrap_or("none")
        );
    }
    Ok(())
}

fn print_table(flags: &Flags, rows: &[(Scenario, Vec<(Target, Measured)>)]) {
    println!();
    println!(
        "loadgen: {} s measured after {} s warm-up, {} round(s); {} connections ({} for sync); \
         rate {} (sync {}); mockpredict RUST_LOG={}, --access-log {}",
        Duration::from(flags.duration).as_secs_f64(),
        Duration::from(flags.warmup).as_secs_f64(),
        flags.rounds,
        flags.connections,
        flags.sync_connections,
        rate_label(flags.rate),
        rate_label(flags.sync_rate),
        flags.server_log,
        flags.access_log,
    );
    println!();
    let profiled = flags.callgrind.is_some();
    println!(
        "| scenario | server | req/s | ratio to ceiling | p50 / p99 / p99.9 ms | CPU µs/req | RSS MB | errors |{}",
        if profiled { " instr/req |" } else { "" }
    );
    println!(
        "|---|---|---:|---:|---:|---:|---:|---:|{}",
        if profiled { "---:|" } else { "" }
    );
    let mut notes = Vec::new();
    for (scenario, results) in rows {
        let ceiling = results
            .iter()
            .find(|(t, _)| *t == Target::Ceiling)
            .map(|(_, m)| m);
        for (target, m) in results {
            let ratio = match (target, ceiling) {
                (Target::Mockpredict, Some(c)) => format!("{:.2}", m.rps() / c.rps()),
                _ => String::new(),
            };
            println!(
                "| {} | {} | {:.0} | {} | {} | {:.1} | {:.1} | {} |{}",
                scenario.name(),
                match target {
                    Target::Mockpredict => "mockpredict",
                    Target::Ceiling => "ceiling",
                },
                m.rps(),
                ratio,
                m.latencies(),
                m.cpu_us_per_request(),
                m.rss_bytes as f64 / 1e6,
                m.errors,
                if profiled {
                    format!(" {:.0} |", m.instructions_per_request())
                } else {
                    String::new()
                }
            );
            if let Some(e) = &m.first_error {
                notes.push(format!(
                    "{} / {target:?}: first error: {e}",
                    scenario.name()
                ));
            }
        }
        let mp = results
            .iter()
            .find(|(t, _)| *t == Target::Mockpredict)
            .map(|(_, m)| m);
        if let (Some(mp), Some(c)) = (mp, ceiling) {
            // Each round runs the two servers back to back, so a round's ratio shares
            // the machine's load of that moment; the median of the rounds resists a
            // busy spell better than the ratio of the sums.
            let mut ratios: Vec<f64> = mp
                .round_rps
                .iter()
                .zip(&c.round_rps)
                .map(|(m, c)| m / c.max(1e-9))
                .collect();
            ratios.sort_by(f64::total_cmp);
            let ratio = median(&ratios);
            notes.push(format!(
                "{}: ratio per round {} → median {ratio:.2} (of the sums {:.2})",
                scenario.name(),
                ratios
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                mp.rps() / c.rps()
            ));
            let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
            let other = if flags.baseline_server.is_some() {
                "baseline"
            } else {
                "ceiling"
            };
            let ((mu, ms), (cu, cs)) = (
                mp.user_system_us_per_request(),
                c.user_system_us_per_request(),
            );
            notes.push(format!(
                "{}: mockpredict spends {:.2}× the {other}'s CPU per request (user \
                 {mu:.1} vs {cu:.1} µs: {:.2}×; kernel {ms:.1} vs {cs:.1} µs: {:.2}×)",
                scenario.name(),
                mp.cpu_us_per_request() / c.cpu_us_per_request(),
                mu / cu.max(1e-9),
                ms / cs.max(1e-9)
            ));
            if profiled {
                notes.push(format!(
                    "{}: mockpredict runs {:.2}× the ceiling's instructions per request",
                    scenario.name(),
                    mp.instructions_per_request() / c.instructions_per_request()
                ));
            }
            // At a fixed rate both servers answer the same number of requests: the
            // throughput targets need the closed loop.
            let closed = flags.rate == 0;
            match scenario {
                Scenario::Submit | Scenario::Poll if closed && flags.baseline_server.is_some() => {
                    notes.push(format!(
                        "guard {} ≥ 0.9 × the baseline build: median {ratio:.2} → {}",
                        scenario.name(),
                        verdict(ratio >= 0.9)
                    ));
                }
                Scenario::Submit if closed => notes.push(format!(
                    "target async submit ≥ 0.85 × ceiling: median {ratio:.2} → {}",
                    verdict(ratio >= 0.85)
                )),
                Scenario::Poll if closed => notes.push(format!(
                    "target poll by ID ≥ 0.9 × ceiling: median {ratio:.2} → {}",
                    verdict(ratio >= 0.9)
                )),
                Scenario::Submit | Scenario::Poll => {}
                Scenario::Sync => {
                    let overhead = support::ms(&mp.latency, 0.99) - support::ms(&c.latency, 0.99);
                    notes.push(format!(
                        "target sync p99 overhead ≤ 2 ms at {} clients: p99 {:.2} ms vs ceiling \
                         {:.2} ms, overhead {overhead:.2} ms → {}",
                        flags.sync_connections,
                        support::ms(&mp.latency, 0.99),
                        support::ms(&c.latency, 0.99),
                        verdict(overhead <= 2.0)
                    ));
                }
                Scenario::Health | Scenario::All => {}
            }
        }
    }
    println!();
    for n in notes {
        println!("- {n}");
    }
}

/// The median of sorted `values` (0 when empty).
fn median(values: &[f64]) -> f64 {
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn rate_label(rate: u64) -> String {
    if rate == 0 {
        "closed loop".to_owned()
    } else {
        format!("{rate}/s")
    }
}
