//! Queue overhead: submit → finished throughput through `JobQueue` with a
//! zero-latency model, side by side with a baseline of bare tokio channels doing the
//! same hand-off (an mpsc to one worker task, a oneshot back per prediction).
//!
//! Run: `cargo bench -p benches --bench queue`. Target (issue 2): ≥ 500,000
//! predictions/s through the queue on a 2-core machine, and within 3× of the baseline.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mockpredict_core::{JobQueue, Model, ModelError, QueueConfig};
use tokio::sync::{mpsc, oneshot};

/// Answers at once: what is left to measure is the queue itself.
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("submit_to_finished");
    group.throughput(Throughput::Elements(BATCH));
    group.measurement_time(Duration::from_secs(8));

    group.bench_function(BenchmarkId::new("baseline_mpsc_oneshot", BATCH), |b| {
        let tx = rt.block_on(async {
            let (tx, mut rx) = mpsc::unbounded_channel::<(u64, oneshot::Sender<u64>)>();
            tokio::spawn(async move {
                while let Some((input, reply)) = rx.recv().await {
                    let _ = reply.send(input.wrapping_mul(3));
                }
            });
            tx
        });
        b.to_async(&rt).iter(|| {
            let tx = tx.clone();
            async move {
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
        });
    });

    for concurrency in [1, 64] {
        group.bench_function(
            BenchmarkId::new(format!("job_queue_c{concurrency}"), BATCH),
            |b| {
                let queue = rt.block_on(async {
                    JobQueue::new(
                        Instant,
                        QueueConfig::default()
                            .capacity(BATCH as usize)
                            .concurrency(concurrency),
                    )
                    .expect("valid")
                });
                b.to_async(&rt).iter(|| {
                    let queue = queue.clone();
                    async move {
                        let mut ids = Vec::with_capacity(BATCH as usize);
                        for i in 0..BATCH {
                            ids.push(queue.submit(i).await.expect("capacity"));
                        }
                        for id in ids {
                            let p = queue.wait(id, None).await.expect("retained");
                            std::hint::black_box(p.output);
                        }
                    }
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
