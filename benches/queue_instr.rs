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

use mockpredict_core::{JobQueue, Model, ModelError, QueueConfig};
use tokio::sync::{mpsc, oneshot};

struct Instant;

impl Model for Instant {
    type Input = u64;
    type Output = u64;

    fn name(&self) -> &str {
        "instant"
    }

    fn version(&self) -> &str {
        "0"
    }

    async fn predict(&self, input: &u64) -> Result<u64, ModelError> {
        Ok(input.wrapping_mul(3))
    }
}

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
                let (tx, mut rx) = mpsc::unbounded_channel::<(u64, oneshot::Sender<u64>)>();
                tokio::spawn(async move {
                    while let Some((input, reply)) = rx.recv().await {
                        let _ = reply.send(input.wrapping_mul(3));
                    }
                });
                for _ in 0..ROUNDS {
                    let mut replies = Vec::with_capacity(BATCH as usize);
                    for i in 0..BATCH {
                        let (reply, rx) = oneshot::channel();
                        tx.send((i, reply)).expect("worker alive");
                        replies.push(rx);
                    }
                    for rx in replies {
                        std::hint::black_box(rx.await.expect("answered"));
                    }
                }
            }
            "queue" => {
                let config = QueueConfig::default()
                    .capacity(BATCH as usize)
                    .concurrency(1)
                    .max_retained(BATCH as usize);
                let queue = JobQueue::new(Instant, config).expect("valid");
                for _ in 0..ROUNDS {
                    let mut ids = Vec::with_capacity(BATCH as usize);
                    for i in 0..BATCH {
                        ids.push(queue.submit(i).await.expect("capacity"));
                    }
                    for id in ids {
                        let p = queue.wait(id, None).await.expect("retained");
                        std::hint::black_box(p.output);
                    }
                }
            }
            _ => eprintln!("usage: queue_instr baseline|queue"),
        }
    });
}
