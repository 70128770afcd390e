//! Test models shared by the core's integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mockpredict_core::{Model, ModelError, PredictContext};

/// What a [`Scripted`] prediction does: sleep, then answer, fail or panic.
#[derive(Debug, Clone)]
pub struct Script {
    pub latency: Duration,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Answer,
    Fail,
    Panic,
}

impl Script {
    pub fn ok(ms: u64) -> Self {
        Self {
            latency: Duration::from_millis(ms),
            action: Action::Answer,
        }
    }
    pub fn fail(ms: u64) -> Self {
        Self {
            latency: Duration::from_millis(ms),
            action: Action::Fail,
        }
    }
    pub fn panic(ms: u64) -> Self {
        Self {
            latency: Duration::from_millis(ms),
            action: Action::Panic,
        }
    }
}

/// A model driven by its input, which counts started, dropped and finished calls.
#[derive(Debug, Default, Clone)]
pub struct Scripted {
    pub started: Arc<AtomicUsize>,
    pub dropped_unfinished: Arc<AtomicUsize>,
}

struct DropProbe<'a> {
    counter: &'a AtomicUsize,
    armed: bool,
}

impl Drop for DropProbe<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.counter.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Model for Scripted {
    type Input = Script;
    type Output = u64;

    fn name(&self) -> &str {
        "scripted"
    }

    fn version(&self) -> &str {
        "0"
    }

    async fn predict(&self, input: &Script, _: &PredictContext<Script>) -> Result<u64, ModelError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let mut probe = DropProbe {
            counter: &self.dropped_unfinished,
            armed: true,
        };
        tokio::time::sleep(input.latency).await;
        probe.armed = false;
        match input.action {
            Action::Answer => Ok(input.latency.as_millis() as u64),
            Action::Fail => Err(ModelError::new("scripted failure")),
            Action::Panic => panic!("scripted panic"),
        }
    }
}
