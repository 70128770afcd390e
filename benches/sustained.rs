//! Sustained-load runner of issue 5: starts `mockpredict-server` with the default
//! 8–15 s model latency as a child process on `127.0.0.1:0`, submits async predictions
//! at a fixed rate, and once a second prints the submissions answered, the
//! predictions finished per second, queued and in flight (from the server's
//! `/metrics`), retained results, and the server's resident memory (`VmRSS` from
//! `/proc/PID/status`). The summary checks the targets: 100,000 in flight at once with
//! RSS ≤ 200 MB, and ≥ 8,000 finished per second for at least a minute.
//!
//! `--probe-memory` instead measures bytes per prediction, separately for in-flight
//! ones (100,000 submitted to a server whose model takes an hour, so none finishes)
//! and retained ones (90,000 run through a zero-latency model and kept for an hour;
//! below the queue's default cap of 100,000 retained results).
//!
//! ```sh
//! cargo build --release -p mockpredict-server -p benches --bins
//! cargo run --release -p benches --bin sustained -- --rate 9000 --duration 90s
//! cargo run --release -p benches --bin sustained -- --probe-memory
//! ```
#![allow(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use clap::Parser;
use http::{Method, StatusCode};
use tokio::time::Instant;

#[path = "support.rs"]
mod support;

use support::{Conn, Server};

/// Submit at a fixed rate to mockpredict-server with a slow model; report finished/s,
/// in flight and resident memory over time.
#[derive(Debug, Parser)]
#[command(name = "sustained", max_term_width = 100)]
struct Flags {
    /// Async submissions per second.
    #[arg(long, default_value_t = 9000)]
    rate: u64,
    /// How long to submit.
    #[arg(long, default_value = "90s")]
    duration: humantime::Duration,
    /// After submitting stops, keep reporting until nothing is in flight, at most this.
    #[arg(long, default_value = "20s")]
    drain: humantime::Duration,
    /// The server's `--latency`.
    #[arg(long, default_value = "8s..15s")]
    latency: String,
    /// The server's `--concurrency`.
    #[arg(long, default_value_t = 100_000)]
    concurrency: usize,
    /// The server's `--capacity`.
    #[arg(long, default_value_t = 200_000)]
    capacity: usize,
    /// The server's `--result-ttl`: short, so retained results do not dominate memory.
    #[arg(long, default_value = "5s")]
    result_ttl: String,
    /// Connections the submissions are spread over.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// RUST_LOG for mockpredict-server. `info` (its default) writes one access-log
    /// line per request, to a pipe this tool drains; `info,mockpredict_server::access=off`
    /// silences only those (the `listening on` line is needed).
    #[arg(long, default_value = "info")]
    server_log: String,
    /// Extra argument for mockpredict-server (repeat the flag for several).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// The mockpredict-server binary (default: next to this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Measure bytes per in-flight and per retained prediction instead.
    #[arg(long)]
    probe_memory: bool,
    /// Predictions the in-flight memory probe holds in flight.
    #[arg(long, default_value_t = 100_000)]
    probe_count: usize,
    /// Worker threads of this tool's runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    ensure!(flags.threads > 0, "--threads must be at least 1");
    ensure!(flags.rate > 0, "--rate must be at least 1");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(flags.threads)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(async {
            if flags.probe_memory {
                probe_memory(&flags).await
            } else {
                sustained(&flags).await
            }
        })
}

fn start(flags: &Flags, latency: &str, result_ttl: &str) -> anyhow::Result<Server> {
    let bin = match &flags.server_bin {
        Some(p) => p.clone(),
        None => support::sibling_binary("mockpredict-server")?,
    };
    let mut args: Vec<String> = vec![
        "--bind".into(),
        "127.0.0.1:0".into(),
        "--latency".into(),
        latency.into(),
        "--concurrency".into(),
        flags.concurrency.to_string(),
        "--capacity".into(),
        flags.capacity.to_string(),
        "--result-ttl".into(),
        result_ttl.into(),
    ];
    args.extend(flags.server_args.iter().cloned());
    eprintln!("starting {} {}", bin.display(), args.join(" "));
    Server::start(
        "mockpredict",
        &bin,
        &args,
        &[("RUST_LOG".to_owned(), flags.server_log.clone())],
    )
}

/// The queue's gauges and counters, from `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
struct Gauges {
    queued: u64,
    processing: u64,
    retained: u64,
    finished_total: u64,
}

async fn gauges(conn: &mut Conn) -> anyhow::Result<Gauges> {
    let a = conn.send(Method::GET, "/metrics", None).await?;
    ensure!(a.status == StatusCode::OK, "/metrics answered {}", a.status);
    let text = String::from_utf8_lossy(&a.body);
    let get = |name: &str| support::metric(&text, name).unwrap_or(0.0) as u64;
    Ok(Gauges {
        queued: get("mockpredict_queue_depth"),
        processing: get("mockpredict_in_flight"),
        retained: get("mockpredict_retained"),
        finished_total: get("mockpredict_predictions_total"),
    })
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
}

/// Submits on `conns` connections at `rate` per second in total until `end`; each
/// connection sends at its share of the rate and catches up if it falls behind.
fn spawn_submitters(
    conns: Vec<Conn>,
    rate: u64,
    end: Instant,
    counters: &Arc<Counters>,
) -> tokio::task::JoinSet<()> {
    let n = conns.len();
    let interval = Duration::from_secs_f64(n as f64 / rate as f64);
    let start = Instant::now();
    let body = support::predict_body("benchmark input");
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let counters = Arc::clone(counters);
        let body = body.clone();
        tasks.spawn(async move {
            let mut due = start + interval.mul_f64(i as f64 / n as f64);
            while due < end {
                tokio::time::sleep_until(due).await;
                due += interval;
                let sent = tokio::time::timeout(
                    Duration::from_secs(30),
                    conn.send(Method::POST, "/predictions/predict", Some(body.clone())),
                )
                .await;
                match sent {
                    Ok(Ok(a)) if a.status == StatusCode::ACCEPTED => &counters.accepted,
                    Ok(Ok(a)) if a.status == StatusCode::TOO_MANY_REQUESTS => &counters.rejected,
                    Ok(Ok(_)) => &counters.errors,
                    Ok(Err(_)) | Err(_) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        return; // the connection is unusable
                    }
                }
                .fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tasks
}

async fn open(server: &Server, n: usize) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let mut c = Conn::open(server.addr).await?;
        c.send(Method::GET, "/healthz", None).await?;
        conns.push(c);
    }
    Ok(conns)
}

struct Sample {
    t: f64,
    gauges: Gauges,
    finished_per_s: f64,
    rss: u64,
}

async fn sustained(flags: &Flags) -> anyhow::Result<()> {
    let server = start(flags, &flags.latency, &flags.result_ttl)?;
    let conns = open(&server, flags.connections).await?;
    let mut probe = Conn::open(server.addr).await?;
    let base_rss = server.rss_bytes()?;
    eprintln!(
        "server {} pid {}, idle RSS {:.1} MB; submitting {}/s for {}",
        server.addr,
        server.pid(),
        base_rss as f64 / 1e6,
        flags.rate,
        flags.duration
    );
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let submit_end = started + Duration::from(flags.duration);
    let hard_end = submit_end + Duration::from(flags.drain);
    let mut submitters = spawn_submitters(conns, flags.rate, submit_end, &counters);
    println!(
        "{:>5} {:>9} {:>9} {:>7} {:>10} {:>9} {:>10} {:>9} {:>8}",
        "t s",
        "accepted",
        "acc/s",
        "429s",
        "finished/s",
        "queued",
        "in flight",
        "retained",
        "RSS MB"
    );
    let mut samples: Vec<Sample> = Vec::new();
    let mut last_accepted = 0;
    let mut last_finished = 0;
    let mut last_t = started;
    let mut tick =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let g = gauges(&mut probe).await?;
        let rss = server.rss_bytes()?;
        let dt = (now - last_t).as_secs_f64();
        let accepted = counters.accepted.load(Ordering::Relaxed);
        let s = Sample {
            t: (now - started).as_secs_f64(),
            gauges: g,
            finished_per_s: (g.finished_total - last_finished) as f64 / dt,
            rss,
        };
        println!(
            "{:>5.0} {:>9} {:>9.0} {:>7} {:>10.0} {:>9} {:>10} {:>9} {:>8.1}",
            s.t,
            accepted,
            (accepted - last_accepted) as f64 / dt,
            counters.rejected.load(Ordering::Relaxed),
            s.finished_per_s,
            g.queued,
            g.processing,
            g.retained,
            rss as f64 / 1e6
        );
        last_accepted = accepted;
        last_finished = g.finished_total;
        last_t = now;
        samples.push(s);
        let drained = g.queued + g.processing == 0;
        if now >= hard_end || (now >= submit_end && drained) {
            break;
        }
    }
    submitters.abort_all();
    while submitters.join_next().await.is_some() {}
    summarize(flags, &samples, &counters, base_rss);
    Ok(())
}

fn summarize(flags: &Flags, samples: &[Sample], counters: &Counters, base_rss: u64) {
    let peak = samples
        .iter()
        .max_by_key(|s| s.gauges.processing)
        .map_or(0, |s| s.gauges.processing);
    let max_rss = samples.iter().map(|s| s.rss).max().unwrap_or(0);
    // RSS while at least 100,000 were in flight: the target's condition.
    let rss_at_100k = samples
        .iter()
        .filter(|s| s.gauges.processing >= 100_000)
        .map(|s| s.rss)
        .max();
    // The longest stretch of consecutive seconds with ≥ 8,000 finished per second.
    let (mut best, mut best_sum, mut run, mut run_sum) = (0usize, 0.0, 0usize, 0.0);
    for s in samples {
        if s.finished_per_s >= 8000.0 {
            run += 1;
            run_sum += s.finished_per_s;
            if run > best {
                best = run;
                best_sum = run_sum;
            }
        } else {
            run = 0;
            run_sum = 0.0;
        }
    }
    let peak_finished = samples
        .iter()
        .map(|s| s.finished_per_s)
        .fold(0.0_f64, f64::max);
    println!();
    println!(
        "sustained: rate {}/s for {}, latency {}, concurrency {}, capacity {}, result TTL {}, RUST_LOG={}",
        flags.rate,
        flags.duration,
        flags.latency,
        flags.concurrency,
        flags.capacity,
        flags.result_ttl,
        flags.server_log
    );
    println!(
        "- submissions: {} accepted, {} refused (429), {} errors",
        counters.accepted.load(Ordering::Relaxed),
        counters.rejected.load(Ordering::Relaxed),
        counters.errors.load(Ordering::Relaxed)
    );
    println!(
        "- idle RSS {:.1} MB, max RSS {:.1} MB, peak in flight {peak}",
        base_rss as f64 / 1e6,
        max_rss as f64 / 1e6
    );
    match rss_at_100k {
        Some(rss) => println!(
            "- target 100,000 in flight with RSS ≤ 200 MB: max RSS while ≥ 100,000 in flight \
             {:.1} MB → {}",
            rss as f64 / 1e6,
            if rss <= 200_000_000 { "met" } else { "NOT met" }
        ),
        None => println!(
            "- target 100,000 in flight with RSS ≤ 200 MB: never reached 100,000 in flight \
             (peak {peak}) → NOT met"
        ),
    }
    println!(
        "- target ≥ 8,000 finished/s for ≥ 60 s: longest stretch {best} s at a mean of {:.0}/s \
         (peak {peak_finished:.0}/s) → {}",
        if best > 0 {
            best_sum / best as f64
        } else {
            0.0
        },
        if best >= 60 { "met" } else { "NOT met" }
    );
}

/// Submits `n` predictions as fast as the server takes them, on 64 connections.
async fn submit_burst(server: &Server, n: usize) -> anyhow::Result<()> {
    let conns = open(server, 64).await?;
    let left = Arc::new(AtomicU64::new(n as u64));
    let body = support::predict_body("benchmark input");
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let left = Arc::clone(&left);
        let body = body.clone();
        tasks.spawn(async move {
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1))
                .is_ok()
            {
                let a = conn
                    .send(Method::POST, "/predictions/predict", Some(body.clone()))
                    .await?;
                ensure!(
                    a.status == StatusCode::ACCEPTED,
                    "submit answered {}",
                    a.status
                );
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("a submitter panicked")??;
    }
    Ok(())
}

async fn settle_rss(server: &Server) -> anyhow::Result<u64> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.rss_bytes()
}

async fn probe_memory(flags: &Flags) -> anyhow::Result<()> {
    // In flight: a model that takes an hour, so all of them are still running.
    let n = flags.probe_count;
    let server = start(flags, "3600s", &flags.result_ttl)?;
    let mut probe = Conn::open(server.addr).await?;
    submit_burst(&server, 64).await?; // warm the connections, runtime and allocator
    let base = settle_rss(&server).await?;
    let t = Instant::now();
    submit_burst(&server, n).await?;
    let submit_secs = t.elapsed().as_secs_f64();
    let rss = settle_rss(&server).await?;
    let g = gauges(&mut probe).await?;
    let in_flight = g.processing + g.queued;
    let per_in_flight = rss.saturating_sub(base) as f64 / n as f64;
    drop(server);

    // Retained: a zero-latency model, results kept for an hour.
    let retained_n = 90_000.min(n);
    let server = start(flags, "0s", "3600s")?;
    let mut probe = Conn::open(server.addr).await?;
    submit_burst(&server, 64).await?;
    let base_r = settle_rss(&server).await?;
    submit_burst(&server, retained_n).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let g_r = loop {
        let g = gauges(&mut probe).await?;
        if g.processing + g.queued == 0 || Instant::now() > deadline {
            break g;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rss_r = settle_rss(&server).await?;
    let per_retained = rss_r.saturating_sub(base_r) as f64 / retained_n as f64;
    drop(server);

    println!();
    println!(
        "memory probe (input \"benchmark input\", 15 bytes; RUST_LOG={})",
        flags.server_log
    );
    println!("| state | predictions | idle RSS MB | RSS MB | bytes per prediction |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| in flight (model 1 h) | {in_flight} | {:.1} | {:.1} | {per_in_flight:.0} |",
        base as f64 / 1e6,
        rss as f64 / 1e6
    );
    println!(
        "| retained (model 0 s, TTL 1 h) | {} | {:.1} | {:.1} | {per_retained:.0} |",
        g_r.retained,
        base_r as f64 / 1e6,
        rss_r as f64 / 1e6
    );
    println!();
    println!(
        "- {n} submitted in {submit_secs:.1} s ({:.0}/s); target RSS ≤ 200 MB with 100,000 in \
         flight: {:.1} MB → {}",
        n as f64 / submit_secs,
        rss as f64 / 1e6,
        if in_flight >= 100_000 && rss <= 200_000_000 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
