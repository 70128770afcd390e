//! # mockpredict-server
//!
//! The HTTP front-end of mockpredict (hyper 1, HTTP/1.1 and HTTP/2 cleartext on one
//! port) over core's `JobQueue`, and a typed client for it. The original service's
//! routes and bodies are kept; the [`App`] is generic over any
//! [`Model`](mockpredict_core::Model) whose input and output are serde types, so a
//! Rust program serves its own model on the same routes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mockpredict_core::{MockModel, QueueConfig};
//! use mockpredict_server::{App, ServerConfig, serve};
//!
//! let model = MockModel::new().with_latency("250ms".parse()?);
//! let app = App::new(model, QueueConfig::default(), ServerConfig::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("listening on http://{}", listener.local_addr()?);
//! serve(listener, app, mockpredict_server::shutdown_signal()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - `app`: [`App`], the routes' handlers, auth, CORS, limits.
//! - `body`: the prediction body, written by hand for speed.
//! - `access`: the access log ([`AccessLog`], [`AccessRecord`]).
//! - `serve`: [`serve()`], the accept loop and graceful shutdown.
//! - `config`: [`ServerConfig`] and [`Cors`].
//! - `routes`: the route table ([`routes()`]).
//! - `error`: [`Error`], and the mapping of every error to a status and `error_type`.
//! - `metrics`: [`Metrics`], the Prometheus registry.
//! - `openapi`: [`openapi()`], the OpenAPI 3.1 document.
//! - `sse`: the Server-Sent Events stream.
//! - [`wire`]: the JSON bodies of the HTTP API, shared by server and client.
//! - [`client`]: a typed async client ([`client::Client`]).

mod access;
mod app;
mod body;
pub mod client;
mod config;
mod error;
mod metrics;
mod openapi;
mod routes;
mod serve;
mod sse;
pub mod wire;

pub use access::{ACCESS_TARGET, AccessLog, AccessLogSink, AccessRecord, TracingAccessLog};
pub use app::{App, Body};
pub use config::{ApiToken, Cors, ServerConfig};
pub use error::{Error, Result};
pub use metrics::Metrics;
pub use openapi::document as openapi;
pub use routes::routes;
pub use serve::{serve, shutdown_signal};
