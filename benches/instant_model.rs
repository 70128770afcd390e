//! Shared by the queue benches (`queue`, `queue_instr`): a model that answers at once,
//! so that what is measured is the queue itself, and the bare-channel baseline that
//! does the same hand-off with an `mpsc` to one worker task and a `oneshot` back.
//!
//! Included with `#[path]` by each, so some items are unused in one of them.
#![allow(dead_code, unreachable_pub)]

use mockpredict_core::{Model, ModelError, PredictContext};
use tokio::sync::{mpsc, oneshot};

/// Answers at once.
pub struct Instant;

impl Model for Instant {
    type Input = u64;
    type Output = u64;

    fn name(&self) -> &str {
        "instant"
    }

    fn version(&self) -> &str {
        "0"
    }

    async fn predict(&self, input: &u64, _: &PredictContext<u64>) -> Result<u64, ModelError> {
        Ok(input.wrapping_mul(3))
    }
}

/// The baseline's sending side: one worker task answers every request.
pub type Baseline = mpsc::UnboundedSender<(u64, oneshot::Sender<u64>)>;

/// Starts the baseline's worker task (inside a runtime).
pub fn baseline() -> Baseline {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, oneshot::Sender<u64>)>();
    tokio::spawn(async move {
        while let Some((input, reply)) = rx.recv().await {
            let _ = reply.send(input.wrapping_mul(3));
        }
    });
    tx
}

/// One batch through the baseline: send every input, then await every answer.
pub async fn baseline_batch(tx: &Baseline, batch: u64) {
    let mut replies = Vec::with_capacity(batch as usize);
    for i in 0..batch {
        let (reply, rx) = oneshot::channel();
        tx.send((i, reply)).expect("worker alive");
        replies.push(rx);
    }
    for rx in replies {
        std::hint::black_box(rx.await.expect("answered"));
    }
}

/// One batch through the queue: submit every input, then wait for every ID.
pub async fn queue_batch(queue: &mockpredict_core::JobQueue<Instant>, batch: u64) {
    let mut ids = Vec::with_capacity(batch as usize);
    for i in 0..batch {
        ids.push(queue.submit(i).await.expect("capacity"));
    }
    for id in ids {
        let p = queue.wait(id, None).await.expect("retained");
        std::hint::black_box(p.output);
    }
}
