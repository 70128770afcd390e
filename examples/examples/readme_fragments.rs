//! The README's Rust fragments that are not whole programs, each between `README:`
//! marker comments inside a function that gives it what it assumes (a model, a
//! runtime), so that the workspace builds them; `tests/readme.rs` keeps the README's
//! copies the same.
//!
//! Run them too: `cargo run -p examples --example readme_fragments -- serve` serves
//! `MyModel` on 127.0.0.1:8001 until Ctrl-C; with `client`, the typed-client fragment
//! calls a server on 127.0.0.1:8000 (`mockpredict-server --api-token s3cret`).

use std::error::Error;

use mockpredict_core::{Model, ModelError, PredictContext};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct MyInput {
    text: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct MyOutput {
    words: usize,
}

/// Counts words, after a moment's "inference".
struct MyModel;

impl Model for MyModel {
    type Input = MyInput;
    type Output = MyOutput;
    fn name(&self) -> &str {
        "my-model"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    async fn predict(
        &self,
        input: &MyInput,
        _: &PredictContext<MyInput>,
    ) -> Result<MyOutput, ModelError> {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        Ok(MyOutput {
            words: input.text.split_whitespace().count(),
        })
    }
}

/// README, "Serving your own model".
async fn serve_my_model() -> Result<(), Box<dyn Error>> {
    // README: begin
    use mockpredict_core::QueueConfig;
    use mockpredict_server::{App, ServerConfig, serve, shutdown_signal};

    let app = App::new(
        MyModel,
        QueueConfig::default().concurrency(4),
        ServerConfig::default(),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8001").await?;
    println!("listening on http://{}", listener.local_addr()?);
    serve(listener, app, shutdown_signal()).await?;

    // Its typed client, for your model's input and output types:
    let client: mockpredict_server::client::Client<MyInput, MyOutput> =
        mockpredict_server::client::Client::for_model("http://127.0.0.1:8001")?;
    // README: end
    println!("a client for {}", client.base_url());
    Ok(())
}

/// README, "From Rust: the typed client".
async fn typed_client() -> Result<(), Box<dyn Error>> {
    // README: begin
    use mockpredict_server::client::Client;
    use std::time::Duration;

    let client = Client::new("http://127.0.0.1:8000")?.with_token("s3cret");
    let id = client.predict_async(&"a photo of a cat".to_owned()).await?;
    let done = client.wait(id, Some(Duration::from_secs(60))).await?; // long-polls, no busy loop

    let accepted = client.submit(&"a photo of a dog".to_owned()).await?; // the whole 202 body
    let mut events = client.events(accepted.prediction_id).await?; // Server-Sent Events
    while let Some(p) = events.next().await? {
        println!("{}", p.status); // from its status now (queued or processing) to the last
    }
    // README: end
    println!("{id}: {:?}", done.output.map(|o| o.result));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    match std::env::args().nth(1).as_deref() {
        Some("serve") => serve_my_model().await,
        Some("client") => typed_client().await,
        _ => Err("usage: readme_fragments serve|client".into()),
    }
}
