//! # mockpredict-server
//!
//! The HTTP front-end of mockpredict, and a typed client for it.
//!
//! # Layout
//!
//! - [`wire`]: the JSON bodies of the HTTP API, shared by server and client.
//! - [`client`]: a typed async client ([`client::Client`]).

pub mod client;
pub mod wire;
