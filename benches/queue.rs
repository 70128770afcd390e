//! Queue overhead: submit → finished throughput through `JobQueue` with a
//! zero-latency model, side by side with a baseline of bare tokio channels doing the
//! same hand-off (an mpsc to one worker task, a oneshot back per prediction).
//!
//! Run: `cargo bench -p benches --bench queue`. Target: ≥ 500,000 predictions/s
//! through the queue on a 2-core machine. The baseline is there for scale: it keeps
//! nothing, watches nothing and bounds nothing.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mockpredict_core::{JobQueue, QueueConfig};

#[path = "instant_model.rs"]
mod instant_model;

use instant_model::{Instant, baseline, baseline_batch, queue_batch};

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
        let tx = rt.block_on(async { baseline() });
        b.to_async(&rt).iter(|| {
            let tx = tx.clone();
            async move { baseline_batch(&tx, BATCH).await }
        });
    });

    for concurrency in [1, 64] {
        group.bench_function(
            BenchmarkId::new(format!("job_queue_c{concurrency}"), BATCH),
            |b| {
                let config = QueueConfig::default()
                    .capacity(BATCH as usize)
                    .concurrency(concurrency);
                let queue = rt.block_on(async { JobQueue::new(Instant, config).expect("valid") });
                b.to_async(&rt).iter(|| {
                    let queue = queue.clone();
                    async move { queue_batch(&queue, BATCH).await }
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
