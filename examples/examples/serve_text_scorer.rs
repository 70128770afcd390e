//! Serves a small non-mock model, a deterministic sentiment scorer, on the same HTTP
//! routes as `mockpredict-server`: implement `Model`, hand it to `App`, call `serve`.
//!
//! ```sh
//! cargo run -p examples --example serve_text_scorer -- 127.0.0.1:8001
//! curl -s -X POST 'localhost:8001/predictions/predict?async_mode=false' \
//!      -H 'content-type: application/json' -d '{"input": {"text": "a great, lovely day"}}'
//! ```

use std::time::Duration;

use mockpredict_core::{Model, ModelError, PredictContext, QueueConfig};
use mockpredict_server::{App, ServerConfig, serve, shutdown_signal};
use serde::{Deserialize, Serialize};

/// What the scorer takes: `{"text": "..."}`.
#[derive(Debug, Deserialize, Serialize)]
struct Text {
    text: String,
}

/// What it answers: a score in `[-1, 1]`, a label, and how many words it read.
#[derive(Debug, Serialize)]
struct Sentiment {
    score: f64,
    label: &'static str,
    words: usize,
}

/// Scores text by counting words from two small lexicons. Deterministic: the same
/// text always gets the same score. It "thinks" 2 ms per word, capped at 2 s, so the
/// queue, async mode and cancellation have something to do.
struct LexiconScorer;

const POSITIVE: &[&str] = &[
    "good",
    "great",
    "lovely",
    "excellent",
    "happy",
    "love",
    "nice",
    "fast",
];
const NEGATIVE: &[&str] = &[
    "bad", "awful", "terrible", "sad", "hate", "slow", "broken", "poor",
];

impl Model for LexiconScorer {
    type Input = Text;
    type Output = Sentiment;

    fn name(&self) -> &str {
        "lexicon-sentiment"
    }

    fn version(&self) -> &str {
        "1.0.0"
    }

    async fn predict(
        &self,
        input: &Text,
        _: &PredictContext<Text>,
    ) -> Result<Sentiment, ModelError> {
        let words: Vec<String> = input
            .text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        if words.is_empty() {
            return Err(ModelError::new("no words to score"));
        }
        let think = Duration::from_millis(2 * words.len() as u64).min(Duration::from_secs(2));
        tokio::time::sleep(think).await;
        let pos = words
            .iter()
            .filter(|w| POSITIVE.contains(&w.as_str()))
            .count() as f64;
        let neg = words
            .iter()
            .filter(|w| NEGATIVE.contains(&w.as_str()))
            .count() as f64;
        let score = if pos + neg == 0.0 {
            0.0
        } else {
            (pos - neg) / (pos + neg)
        };
        let label = match score {
            s if s > 0.0 => "positive",
            s if s < 0.0 => "negative",
            _ => "neutral",
        };
        Ok(Sentiment {
            score,
            label,
            words: words.len(),
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8001".to_owned());
    let app = App::new(
        LexiconScorer,
        QueueConfig::default().concurrency(4).capacity(1_000),
        ServerConfig::default().sync_timeout(Duration::from_secs(10)),
    )?;
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!(
        "serving {} on http://{}",
        app.queue().model().name(),
        listener.local_addr()?
    );
    let report = serve(listener, app, shutdown_signal()).await?;
    println!("stopped (drained: {})", report.drained);
    Ok(())
}
