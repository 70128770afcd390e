//! The queue against bare channels, per prediction, in two measures:
//!
//! - **instructions** (under callgrind): a fixed, single-threaded workload whose count
//!   does not depend on machine load (wall-clock benches on a shared 2-core VM do);
//! - **wall-clock ns per prediction** (printed on every run): quick same-run A/B
//!   checks, alternating two builds, without criterion's analysis.
//!
//! Instructions (divide "Collected" by rounds × batch, 30,000 by default):
//!
//! ```sh
//! cargo build --release -p benches --bin queue_instr
//! for side in baseline queue; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$side \
//!     target/release/queue_instr $side 2>&1 | grep Collected
//! done
//! ```
//!
//! Wall clock, the default bench's shape (100,000 retained, two runtime threads):
//!
//! ```sh
//! target/release/queue_instr queue --rounds 30 --retained 100000 --multi-thread
//! ```
//!
//! The ratio, robustly (`compare`): both sides in one process and runtime, in
//! alternating pairs of `--rounds` batches each (which side goes first alternates
//! too), so that a noisy neighbour on a shared machine slows both sides of a pair
//! alike. Prints each pair's ratio, then the median, the quartiles and the range;
//! the issue 2 target is a median within 3×:
//!
//! ```sh
//! target/release/queue_instr compare --pairs 21 --rounds 4 --retained 100000 --multi-thread
//! ```
//!
//! By default the queue retains `--batch` results (10,000), so evictions are part of
//! the steady state.
#![allow(missing_docs)]

use std::time::Instant as Clock;

use clap::Parser;
use mockpredict_core::{JobQueue, QueueConfig};

#[path = "instant_model.rs"]
mod instant_model;

use instant_model::{Instant, baseline, baseline_batch, queue_batch};

#[derive(Debug, Parser)]
struct Flags {
    /// `baseline` (an mpsc to one worker task, a oneshot back), `queue`, or
    /// `compare` (both, alternating: see the file's header).
    #[arg(value_parser = ["baseline", "queue", "compare"])]
    side: String,
    /// Batches to run (per side and pair with `compare`): each submits `--batch`
    /// predictions, then waits for each.
    #[arg(long, default_value_t = 3)]
    rounds: u64,
    /// With `compare`: how many pairs of runs.
    #[arg(long, default_value_t = 21)]
    pairs: usize,
    /// Predictions per batch.
    #[arg(long, default_value_t = 10_000)]
    batch: u64,
    /// Finished results the queue keeps (default: one batch).
    #[arg(long)]
    retained: Option<usize>,
    /// A two-thread runtime (as the criterion bench) instead of one thread.
    #[arg(long)]
    multi_thread: bool,
    /// The queue's concurrency (the criterion bench runs 1 and 64).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
}

fn main() {
    let flags = Flags::parse();
    if flags.pairs == 0 {
        eprintln!("--pairs must be at least 1");
        std::process::exit(2);
    }
    if flags.retained.is_some_and(|r| r < flags.batch as usize) {
        eprintln!("--retained must be at least --batch: each batch waits for all its results");
        std::process::exit(2);
    }
    let rt = if flags.multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("runtime");
    rt.block_on(async {
        // Only the sides measured are built: under callgrind, the other's set-up
        // would count too.
        let tx = (flags.side != "queue").then(baseline);
        let queue = (flags.side != "baseline").then(|| {
            let config = QueueConfig::default()
                .capacity(flags.batch as usize)
                .concurrency(flags.concurrency)
                .max_retained(flags.retained.unwrap_or(flags.batch as usize));
            JobQueue::new(Instant, config).expect("valid")
        });
        let baseline_ns = async || {
            let tx = tx.as_ref().expect("built for this side");
            per_prediction(&flags, async || baseline_batch(tx, flags.batch).await).await
        };
        let queue_ns = async || {
            let queue = queue.as_ref().expect("built for this side");
            per_prediction(&flags, async || queue_batch(queue, flags.batch).await).await
        };
        match flags.side.as_str() {
            "baseline" => eprintln!("baseline: {:.0} ns per prediction", baseline_ns().await),
            "queue" => eprintln!("queue: {:.0} ns per prediction", queue_ns().await),
            _ => {
                // One unmeasured run of each first: the queue's retained results
                // and both sides' allocations reach their steady state.
                baseline_ns().await;
                queue_ns().await;
                let mut ratios = Vec::with_capacity(flags.pairs);
                for pair in 0..flags.pairs {
                    let (b, q) = if pair % 2 == 0 {
                        let b = baseline_ns().await;
                        (b, queue_ns().await)
                    } else {
                        let q = queue_ns().await;
                        (baseline_ns().await, q)
                    };
                    eprintln!("pair {pair:2}: baseline {b:5.0} ns, queue {q:5.0} ns, ratio {:.2}", q / b);
                    ratios.push(q / b);
                }
                ratios.sort_by(f64::total_cmp);
                let at = |f: f64| ratios[((ratios.len() - 1) as f64 * f).round() as usize];
                eprintln!(
                    "ratio queue/baseline over {} pairs: median {:.2}, quartiles {:.2}-{:.2}, range {:.2}-{:.2}",
                    ratios.len(),
                    at(0.5),
                    at(0.25),
                    at(0.75),
                    at(0.0),
                    at(1.0)
                );
            }
        }
    });
}

/// Wall-clock nanoseconds per prediction over `--rounds` runs of `batch`.
async fn per_prediction(flags: &Flags, mut batch: impl AsyncFnMut()) -> f64 {
    let started = Clock::now();
    for _ in 0..flags.rounds {
        batch().await;
    }
    started.elapsed().as_nanos() as f64 / (flags.rounds * flags.batch) as f64
}
