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
    /// `baseline` (an mpsc to one worker task, a oneshot back) or `queue`.
    #[arg(value_parser = ["baseline", "queue"])]
    side: String,
    /// Batches to run: each submits `--batch` predictions, then waits for each.
    #[arg(long, default_value_t = 3)]
    rounds: u64,
    /// Predictions per batch.
    #[arg(long, default_value_t = 10_000)]
    batch: u64,
    /// Finished results the queue keeps (default: one batch).
    #[arg(long)]
    retained: Option<usize>,
    /// A two-thread runtime (as the criterion bench) instead of one thread.
    #[arg(long)]
    multi_thread: bool,
}

fn main() {
    let flags = Flags::parse();
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
    let started = Clock::now();
    rt.block_on(async {
        if flags.side == "baseline" {
            let tx = baseline();
            for _ in 0..flags.rounds {
                baseline_batch(&tx, flags.batch).await;
            }
        } else {
            let config = QueueConfig::default()
                .capacity(flags.batch as usize)
                .concurrency(1)
                .max_retained(flags.retained.unwrap_or(flags.batch as usize));
            let queue = JobQueue::new(Instant, config).expect("valid");
            for _ in 0..flags.rounds {
                queue_batch(&queue, flags.batch).await;
            }
        }
    });
    let per = started.elapsed().as_nanos() as f64 / (flags.rounds * flags.batch) as f64;
    eprintln!("{}: {per:.0} ns per prediction", flags.side);
}
