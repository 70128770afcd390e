//! [`MockModel`]: the original service's model, made configurable: a latency
//! distribution, an injected failure rate, and a seed that makes results reproducible.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rng::{SplitMix64, stable_hash};
use crate::{Latency, Model, ModelError, PredictContext};

/// The mock's output, in the original service's shape:
/// `{"input": "<the input>", "result": "<integer 100..=10000 as a string>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockOutput {
    /// The input, echoed.
    pub input: String,
    /// An integer in `100..=10000`, as a string (as the original sent it).
    pub result: String,
}

/// The error from building a [`MockModel`] with an invalid configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MockConfigError {
    /// `failure_rate` was outside `[0, 1]` or not a number.
    #[error("failure rate must be a number in [0, 1], got {0}")]
    FailureRate(f64),
}

/// A stand-in for a slow model: sleeps for a sampled latency, then answers a random
/// integer in `100..=10000` (or fails, at the configured rate).
///
/// The default is the original service's model: latency uniform in 8–15 s, no
/// failures, fresh randomness on every call. With a [seed](MockModel::with_seed) the
/// latency, the result and whether it fails are a pure function of `(seed, input)`:
/// the same in every run and every process, as a real model is a function of its input.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mockpredict_core::{MockModel, Model, PredictContext};
///
/// let model = MockModel::new().with_latency("10ms".parse()?).with_seed(42);
/// let input = "hello".to_owned();
/// let ctx = PredictContext::standalone(input.clone());
/// let a = model.predict(&input, &ctx).await?;
/// let b = model.predict(&input, &ctx).await?;
/// assert_eq!(a, b); // seeded: same input, same result
/// let n: u32 = a.result.parse()?;
/// assert!((100..=10_000).contains(&n));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MockModel {
    latency: Latency,
    failure_rate: f64,
    seed: Option<u64>,
}

/// What one mock call will do, drawn before it sleeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MockDraw {
    /// How long the call sleeps.
    pub latency: Duration,
    /// The result it answers, in `100..=10000`.
    pub result: u32,
    /// Whether it fails instead of answering.
    pub fails: bool,
}

impl MockModel {
    /// The original's model: 8–15 s uniform, no failures, unseeded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the latency distribution.
    #[must_use]
    pub fn with_latency(mut self, latency: Latency) -> Self {
        self.latency = latency;
        self
    }

    /// Makes every call a pure function of `(seed, input)`.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets the seed, or clears it with `None`.
    #[must_use]
    pub fn with_optional_seed(mut self, seed: Option<u64>) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the share of predictions, in `[0, 1]`, that fail with a model error after
    /// their latency.
    ///
    /// # Errors
    ///
    /// [`MockConfigError::FailureRate`] when `rate` is outside `[0, 1]` or NaN.
    pub fn with_failure_rate(mut self, rate: f64) -> Result<Self, MockConfigError> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(MockConfigError::FailureRate(rate));
        }
        self.failure_rate = rate;
        Ok(self)
    }

    /// The latency distribution.
    pub fn latency(&self) -> &Latency {
        &self.latency
    }

    /// The failure rate.
    pub fn failure_rate(&self) -> f64 {
        self.failure_rate
    }

    /// The seed, if any.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// What a call with this input would do. Seeded, this is what it *will* do.
    pub fn draw(&self, input: &str) -> MockDraw {
        let start = match self.seed {
            Some(seed) => stable_hash(seed, input.as_bytes()),
            None => rand::random(),
        };
        let mut rng = SplitMix64::new(start);
        // The positions of these draws are part of the seeded contract: changing them
        // changes every seeded result. The result and the failure draw come first, at
        // fixed positions, and the latency from a stream of its own, so a seeded
        // input keeps its result whatever latency distribution is configured (a fixed
        // latency draws nothing, a log-normal draws two), and a prediction that fails
        // at one failure rate also fails at every higher one.
        let result = 100 + rng.below_inclusive(9_900) as u32;
        let fails = rng.next_f64() < self.failure_rate;
        let latency = self.latency.sample(&mut SplitMix64::new(rng.next_u64()));
        MockDraw {
            latency,
            result,
            fails,
        }
    }
}

impl Model for MockModel {
    type Input = String;
    type Output = MockOutput;

    fn name(&self) -> &str {
        "mock"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn typical_latency(&self) -> Option<std::time::Duration> {
        Some(self.latency.typical())
    }

    async fn predict(
        &self,
        input: &String,
        _: &PredictContext<String>,
    ) -> Result<MockOutput, ModelError> {
        let draw = self.draw(input);
        // A zero sleep would still wait for the timer wheel's next 1 ms tick.
        if !draw.latency.is_zero() {
            tokio::time::sleep(draw.latency).await;
        }
        if draw.fails {
            return Err(ModelError::new(format!(
                "mock model failure (injected, failure_rate={})",
                self.failure_rate
            )));
        }
        Ok(MockOutput {
            input: input.clone(),
            result: draw.result.to_string(),
        })
    }
}
