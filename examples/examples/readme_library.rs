//! The README's "Library" snippet, verbatim: built with the workspace, and kept the
//! same as the README's by `tests/readme.rs`. Run it with
//! `cargo run -p examples --example readme_library`.

use mockpredict_core::{JobQueue, Model, ModelError, PredictContext, QueueConfig, Status};
use std::time::Duration;

struct Upper;

impl Model for Upper {
    type Input = String;
    type Output = String;
    fn name(&self) -> &str {
        "upper"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    async fn predict(
        &self,
        input: &String,
        _: &PredictContext<String>,
    ) -> Result<String, ModelError> {
        tokio::time::sleep(Duration::from_millis(100)).await; // "inference"
        Ok(input.to_uppercase())
    }
}

#[tokio::main]
async fn main() -> mockpredict_core::Result<()> {
    let queue = JobQueue::new(Upper, QueueConfig::default().concurrency(8).capacity(1000))?;
    let id = queue.submit("hello".into()).await?; // async: an ID at once
    let p = queue.wait(id, Some(Duration::from_secs(30))).await?;
    assert_eq!(p.status, Status::Succeeded);
    let p = queue.predict("sync".into()).await?; // sync: submit + wait
    println!("{}", p.output.expect("succeeded")); // SYNC
    queue.cancel(id).await?; // no-op on a finished one
    queue.shutdown(Duration::from_secs(30)).await; // drain, then cancel the rest
    Ok(())
}
