//! How fast a burst of submissions gets going: `--predictions` submitted at once to a
//! queue whose concurrency admits them all, with a model that does `--spin` of
//! synchronous work in its first poll (say, tokenizing) and then sleeps far longer
//! than the run. Prints the time until every model has done its synchronous part.
//!
//! On a two-thread runtime the floor is `predictions × spin / 2`: the starts are
//! spread over both threads. A worker pool whose starts all ran on one thread would
//! take `predictions × spin`.
//!
//! ```sh
//! cargo build --release -p benches --bin burst
//! target/release/burst --predictions 5000 --spin 200us --rounds 3
//! ```
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use mockpredict_core::{JobQueue, Latency, Model, ModelError, PredictContext, QueueConfig};

#[derive(Debug, Parser)]
struct Flags {
    /// Predictions submitted in one go.
    #[arg(long, default_value_t = 5_000)]
    predictions: usize,
    /// Synchronous work in each model's first poll, as a duration (`200us`, `1ms`).
    #[arg(long, default_value = "200us", value_parser = parse_fixed)]
    spin: Duration,
    /// Bursts to run, each on a fresh queue.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Runtime threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn parse_fixed(s: &str) -> Result<Duration, String> {
    match s.parse::<Latency>().map_err(|e| e.to_string())? {
        Latency::Fixed(d) => Ok(d),
        other => Err(format!("a fixed duration, not {other}")),
    }
}

/// Spins, counts itself, then sleeps past the end of the run.
struct Spin {
    spin: Duration,
    started: Arc<AtomicUsize>,
}

impl Model for Spin {
    type Input = u64;
    type Output = u64;

    fn name(&self) -> &str {
        "spin"
    }

    fn version(&self) -> &str {
        "0"
    }

    async fn predict(&self, input: &u64, _: &PredictContext<u64>) -> Result<u64, ModelError> {
        let t = Instant::now();
        while t.elapsed() < self.spin {
            std::hint::spin_loop();
        }
        self.started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(*input)
    }
}

fn main() {
    let flags = Flags::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(flags.threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    let floor = flags.spin * u32::try_from(flags.predictions).unwrap_or(u32::MAX)
        / u32::try_from(flags.threads.max(1)).unwrap_or(1);
    rt.block_on(async {
        for round in 1..=flags.rounds {
            let started = Arc::new(AtomicUsize::new(0));
            let model = Spin {
                spin: flags.spin,
                started: Arc::clone(&started),
            };
            let config = QueueConfig::default()
                .concurrency(flags.predictions)
                .capacity(flags.predictions);
            let queue = JobQueue::new(model, config).expect("valid");
            let t = Instant::now();
            for i in 0..flags.predictions as u64 {
                queue.submit(i).await.expect("admitted");
            }
            let submitted = t.elapsed();
            while started.load(Ordering::SeqCst) < flags.predictions {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let all = t.elapsed();
            let against_floor = if floor.is_zero() {
                String::new()
            } else {
                format!(
                    " ({:.2}× the {floor:.1?} floor)",
                    all.as_secs_f64() / floor.as_secs_f64()
                )
            };
            println!(
                "round {round}: {} submitted in {submitted:.1?}; every model past its {:?} \
                 of synchronous work after {all:.1?}{against_floor}",
                flags.predictions, flags.spin
            );
            queue.shutdown(Duration::ZERO).await;
        }
    });
}
