//! Embeds the core `JobQueue` with a custom `Model`: a toy sentiment scorer that
//! "thinks" for a while, like a real model, and fails on empty input.
//!
//! Shows the async mode (submit, follow status changes, wait), the sync mode
//! (`predict`), cancellation, backpressure (`QueueFull`), stats and graceful shutdown.
//!
//! Run: `cargo run -p examples --example embed_queue`

use std::time::Duration;

use mockpredict_core::{Error, JobQueue, Model, ModelError, PredictContext, QueueConfig, Status};

/// Counts positive and negative words; takes 200 ms per prediction.
struct SentimentModel {
    think: Duration,
}

/// The scorer's answer.
#[derive(Debug)]
struct Sentiment {
    score: i32,
    label: &'static str,
}

impl Model for SentimentModel {
    type Input = String;
    type Output = Sentiment;

    fn name(&self) -> &str {
        "toy-sentiment"
    }

    fn version(&self) -> &str {
        "1.0.0"
    }

    async fn predict(
        &self,
        text: &String,
        _: &PredictContext<String>,
    ) -> Result<Sentiment, ModelError> {
        if text.trim().is_empty() {
            return Err(ModelError::new("input is empty"));
        }
        // Dropping this future (cancel, deadline) stops the "inference" here.
        tokio::time::sleep(self.think).await;
        let score: i32 = text
            .split_whitespace()
            .map(|w| {
                match w
                    .to_lowercase()
                    .trim_matches(|c: char| !c.is_alphanumeric())
                {
                    "good" | "great" | "love" | "fast" => 1,
                    "bad" | "awful" | "hate" | "slow" => -1,
                    _ => 0,
                }
            })
            .sum();
        let label = match score {
            s if s > 0 => "positive",
            0 => "neutral",
            _ => "negative",
        };
        Ok(Sentiment { score, label })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = SentimentModel {
        think: Duration::from_millis(200),
    };
    let config = QueueConfig::default()
        .concurrency(2)
        .capacity(4)
        .deadline(Some(Duration::from_secs(5)));
    let queue = JobQueue::new(model, config)?;
    println!(
        "serving {} v{}",
        queue.model().name(),
        queue.model().version()
    );

    // Async mode: an ID at once; follow its status changes to the result.
    let id = queue.submit("I love how fast this is".to_owned()).await?;
    let mut events = queue.subscribe(id).await?;
    while let Some(p) = events.next().await {
        match &p.output {
            Some(s) => println!("{id}: {} -> {} (score {})", p.status, s.label, s.score),
            None => println!("{id}: {}", p.status),
        }
    }

    // Sync mode: submit and wait in one call. A model error is data, not an Err.
    let p = queue.predict("   ".to_owned()).await?;
    assert_eq!(p.status, Status::Failed);
    println!(
        "empty input: {} ({})",
        p.status,
        p.error.expect("failed").message
    );

    // Backpressure: capacity 4 admits four, the fifth gets QueueFull with a hint.
    let mut ids = Vec::new();
    for text in ["good", "bad", "great", "awful", "slow"] {
        match queue.submit(text.to_owned()).await {
            Ok(id) => ids.push(id),
            Err(Error::QueueFull { retry_after, .. }) => {
                println!("queue full; retry after {retry_after:?}");
            }
            Err(e) => return Err(e.into()),
        }
    }

    // Cancel the last one admitted; it never runs.
    let last = *ids.last().expect("four admitted");
    println!("canceled: {}", queue.cancel(last).await?.status);

    for id in &ids {
        let p = queue.wait(*id, Some(Duration::from_secs(5))).await?;
        let label = p.output.as_ref().map_or("-", |s| s.label);
        println!("{id}: {} {label}", p.status);
    }

    let stats = queue.stats().await;
    println!(
        "succeeded {} failed {} canceled {} retained {}",
        stats.succeeded_total, stats.failed_total, stats.canceled_total, stats.retained
    );
    let report = queue.shutdown(Duration::from_secs(5)).await;
    println!("shut down (drained: {})", report.drained);
    Ok(())
}
