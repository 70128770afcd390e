//! Instruction counts per prediction, queue vs bare channels, for callgrind: a fixed,
//! single-threaded workload whose count does not depend on machine load (wall-clock
//! benches on a shared 2-core VM do).
//!
//! Run (prints instructions per prediction for each side):
//!
//! ```sh
//! cargo build --release -p benches --bin queue_instr
//! for side in baseline queue; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$side \
//!     target/release/queue_instr $side 2>&1 | grep Collected
//! done
//! ```
//!
//! Divide "Collected" by 30,000 (3 rounds of 10,000). The queue keeps 10,000 results
//! retained, so evictions are part of the steady state.
#![allow(missing_docs)]

use mockpredict_core::{JobQueue, QueueConfig};

#[path = "instant_model.rs"]
mod instant_model;

use instant_model::{Instant, baseline, baseline_batch, queue_batch};

const BATCH: u64 = 10_000;
const ROUNDS: u64 = 3;

fn main() {
    let side = std::env::args().nth(1).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match side.as_str() {
            "baseline" => {
                let tx = baseline();
                for _ in 0..ROUNDS {
                    baseline_batch(&tx, BATCH).await;
                }
            }
            "queue" => {
                let config = QueueConfig::default()
                    .capacity(BATCH as usize)
                    .concurrency(1)
                    .max_retained(BATCH as usize);
                let queue = JobQueue::new(Instant, config).expect("valid");
                for _ in 0..ROUNDS {
                    queue_batch(&queue, BATCH).await;
                }
            }
            _ => eprintln!("usage: queue_instr baseline|queue"),
        }
    });
}
