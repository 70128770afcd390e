//! Memory per retained prediction: admits 1,000,000 predictions through a
//! zero-latency `MockModel`, lets them finish, and reports resident bytes per retained
//! prediction beyond its input and output bytes.
//!
//! Run: `cargo bench -p benches --bench memory`. Target (issue 2): ≤ 512 bytes per
//! prediction beyond its input and output bytes.
#![allow(missing_docs)]

use std::time::Duration;

use mockpredict_core::{JobQueue, MockModel, QueueConfig, Status};

const N: usize = 1_000_000;

fn rss_bytes() -> usize {
    // /proc/self/statm: size resident shared ... in pages.
    let statm = std::fs::read_to_string("/proc/self/statm").expect("linux /proc");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm resident field");
    pages * 4096
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful:
    // only measure when asked to bench, so test runs stay fast.
    if !std::env::args().any(|a| a == "--bench") {
        println!("memory bench: run with `cargo bench -p benches --bench memory`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let model = MockModel::new().with_latency("0s".parse().expect("valid"));
        let config = QueueConfig::default()
            .capacity(N)
            .concurrency(1_000)
            .max_retained(N)
            .result_ttl(Duration::from_secs(3600));
        let queue = JobQueue::new(model, config).expect("valid");
        // Warm the runtime and allocator so the baseline is not an empty process.
        let warm = queue.predict("warm-up".to_owned()).await.expect("admitted");
        assert_eq!(warm.status, Status::Succeeded);
        let before = rss_bytes();
        let mut payload = 0;
        let mut last = None;
        for i in 0..N {
            // Inputs are made here, after the baseline, so they count as growth.
            let input = format!("{i:07}");
            payload += input.len();
            last = Some(queue.submit(input).await.expect("capacity"));
        }
        let last = last.expect("N > 0");
        // FIFO: when the last one is finished, all are.
        while !queue.wait(last, None).await.expect("retained").is_finished() {}
        while queue.stats().await.retained < N {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after = rss_bytes();
        let stats = queue.stats().await;
        assert_eq!(stats.succeeded_total as usize, N + 1);
        // Output: {input: a copy of the 7-byte input, result: 3-5 digit string}.
        let output_bytes = payload + N * 4;
        let per = (after - before) as f64 / N as f64;
        let beyond = (after - before - payload - output_bytes) as f64 / N as f64;
        println!("retained predictions: {}", stats.retained);
        println!("resident growth: {:.1} MiB", (after - before) as f64 / 1048576.0);
        println!("bytes per retained prediction: {per:.0} (input+output payload {:.0})", (payload + output_bytes) as f64 / N as f64);
        println!("bytes per retained prediction beyond input and output bytes: {beyond:.0} (target <= 512)");
    });
}
